from archscale.workflow import setup

log = setup(snakemake)
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import pandas as pd  # noqa: E402

from analysis.io import write_figure  # noqa: E402
from analysis.report.plots import all_figures  # noqa: E402

tables = {name: pd.concat([pd.read_csv(p) for p in paths]) if isinstance(paths, list) else pd.read_csv(paths)
          for name, paths in snakemake.input.items() if name != "curves"}
figs = all_figures(pd.read_csv(snakemake.input.curves), tables, snakemake.params.compute, snakemake.params.ci_level)
for stem, path in snakemake.output.items():
    if stem not in figs:
        raise RuntimeError(f"figure {stem!r} was not produced; made: {sorted(figs)}")
    write_figure(figs[stem], path)
