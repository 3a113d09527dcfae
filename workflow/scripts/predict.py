import sys; sys.path.insert(0, snakemake.scriptdir)  # noqa: E702
from _common import setup

log = setup(snakemake)
import _analysis  # noqa: E402
from analysis.stages import predict_stage  # noqa: E402

tables = predict_stage(_analysis.curves(snakemake.input.curves))
_analysis.write(tables, snakemake.output)
t = tables["predictions"]
log.info("predictions: %d runs, %d predicted", len(t), int((t["status"] == "ok").sum()))
