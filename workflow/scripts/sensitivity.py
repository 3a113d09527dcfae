from archscale.workflow import setup

log = setup(snakemake)
from archscale import workflow as wf  # noqa: E402
from analysis.stages import sensitivity_stage  # noqa: E402

opts = wf.options(snakemake)
tables = sensitivity_stage(wf.curves(snakemake.input.curves), opts, wf.rng(opts))
wf.write(tables, snakemake.output)
summary = tables["sensitivity_summary"]
log.info(
    "sensitivity: %d rows, %d of %d headlines fragile (%d resamples per cell)",
    len(tables["sensitivity"]),
    int(summary["fragile"].sum()),
    len(summary),
    opts.n_boot_sensitivity,
)
