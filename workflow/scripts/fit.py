import sys; sys.path.insert(0, snakemake.scriptdir)  # noqa: E702
from _common import setup

log = setup(snakemake)
import _analysis  # noqa: E402
from analysis.stages import fit_stage  # noqa: E402

opts = _analysis.options(snakemake)
curves = _analysis.curves(snakemake.input.curves)
curves = curves[curves["variant"] == snakemake.wildcards.variant]
_analysis.write(fit_stage(curves, opts, _analysis.rng(opts)), snakemake.output)
