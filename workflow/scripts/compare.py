from archscale.workflow import setup

log = setup(snakemake)
import pandas as pd  # noqa: E402

from archscale import workflow as wf  # noqa: E402
from analysis.stages import compare_stage  # noqa: E402
from analysis.table_list import STAGE_TABLES  # noqa: E402

opts = wf.options(snakemake)
fit_tables = {
    kind: pd.concat([pd.read_csv(p) for p in getattr(snakemake.input, kind)], ignore_index=True)
    for kind in STAGE_TABLES["fit"]
}
tables = compare_stage(wf.curves(snakemake.input.curves), fit_tables, opts, wf.rng(opts))
wf.write(tables, snakemake.output)
