from archscale.workflow import setup

log = setup(snakemake)
from archscale import workflow as wf  # noqa: E402
from analysis.stages import fit_stage  # noqa: E402

opts = wf.options(snakemake)
curves = wf.curves(snakemake.input.curves)
curves = curves[curves["variant"] == snakemake.wildcards.variant]
wf.write(fit_stage(curves, opts, wf.rng(opts)), snakemake.output)
