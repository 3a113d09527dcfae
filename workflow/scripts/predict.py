from archscale.workflow import setup

log = setup(snakemake)
from archscale import workflow as wf  # noqa: E402
from analysis.stages import predict_stage  # noqa: E402

tables = predict_stage(wf.curves(snakemake.input.curves))
wf.write(tables, snakemake.output)
t = tables["predictions"]
log.info("predictions: %d runs, %d predicted", len(t), int((t["status"] == "ok").sum()))
