import sys; sys.path.insert(0, snakemake.scriptdir)  # noqa: E702
from _common import setup

log = setup(snakemake)
import pandas as pd  # noqa: E402

import _analysis  # noqa: E402
from analysis.stages import compare_stage  # noqa: E402

opts = _analysis.options(snakemake)
fit_tables = {
    kind: pd.concat([pd.read_csv(p) for p in getattr(snakemake.input, kind)], ignore_index=True)
    for kind in ("fits", "bootstrap", "ln_fits", "isoflop", "allocation")
}
tables = compare_stage(_analysis.curves(snakemake.input.curves), fit_tables, opts, _analysis.rng(opts))
_analysis.write(tables, snakemake.output)
