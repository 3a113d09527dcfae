import sys; sys.path.insert(0, snakemake.scriptdir)  # noqa: E702
from _common import setup

log = setup(snakemake)
import _analysis  # noqa: E402
from analysis.stages import sensitivity_stage  # noqa: E402

opts = _analysis.options(snakemake)
tables = sensitivity_stage(_analysis.curves(snakemake.input.curves), opts, _analysis.rng(opts))
_analysis.write(tables, snakemake.output)
summary = tables["sensitivity_summary"]
log.info("sensitivity: %d cells x headlines, %d of %d headlines fragile (%d resamples per cell)",
         len(tables["sensitivity"]), int(summary["fragile"].sum()), len(summary), opts.n_boot_sensitivity)
