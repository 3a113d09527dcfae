from archscale.workflow import setup

log = setup(snakemake)
from archscale import workflow as wf  # noqa: E402
from analysis.stages import frontier_stage  # noqa: E402

opts = wf.options(snakemake)
wf.write(frontier_stage(wf.curves(snakemake.input.curves), opts), snakemake.output)
