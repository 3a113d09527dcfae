import sys; sys.path.insert(0, snakemake.scriptdir)  # noqa: E702
from _common import setup

log = setup(snakemake)
import _analysis  # noqa: E402
from analysis.stages import frontier_stage  # noqa: E402

opts = _analysis.options(snakemake)
_analysis.write(frontier_stage(_analysis.curves(snakemake.input.curves), opts), snakemake.output)
