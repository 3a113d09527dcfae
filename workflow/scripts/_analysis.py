"""Shared by the analysis-stage scripts: options from params, the curve table, table writing."""
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.io import write_tables
from analysis.options import AnalysisOptions
from analysis.table import validate_curves


def options(snakemake) -> AnalysisOptions:
    fields = {f.name for f in dataclasses.fields(AnalysisOptions)}
    params = {k: v for k, v in snakemake.params.analysis.items() if k in fields}
    return AnalysisOptions(**params, n_jobs=max(1, snakemake.threads))


def curves(path) -> pd.DataFrame:
    return validate_curves(pd.read_csv(path))


def rng(opts: AnalysisOptions) -> np.random.Generator:
    return np.random.default_rng(opts.seed)


def write(tables: dict, outputs) -> None:
    """Write the named tables; every declared output must be among them."""
    missing = [name for name in outputs.keys() if name not in tables]
    if missing:
        raise RuntimeError(f"analysis stage did not produce table(s) {missing}")
    out_dirs = {str(Path(path).parent) for path in outputs}
    if len(out_dirs) != 1 or any(Path(path).name != f"{name}.csv" for name, path in outputs.items()):
        raise RuntimeError(f"outputs must be <dir>/<table name>.csv in one folder: {list(outputs)}")
    write_tables({name: tables[name] for name in outputs.keys()}, out_dirs.pop())
