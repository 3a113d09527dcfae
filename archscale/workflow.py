"""Glue the workflow scripts share (workflow/scripts/*.py): logging to the rule's log, one-line errors on
the console, and the analysis stages' options, table reading and writing. It takes the `snakemake`
object the scripts are given; it never imports Snakemake.
"""
import dataclasses
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

# Errors whose message already names the problem and the fix: print that line, no traceback.
ONE_LINE_ERRORS = ("InputError", "StudyError", "CurveTableError", "ConfigError", "FitError", "Preempted", "RunFailed")


def setup(snakemake):
    console = sys.stderr
    if snakemake.log:
        Path(snakemake.log[0]).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(snakemake.log[0], "w", buffering=1)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def excepthook(kind, value, tb):
        if kind.__name__ in ONE_LINE_ERRORS or issubclass(kind, OSError):
            line = f"archscale error in rule {snakemake.rule}: {value}"
            print(line, file=sys.stderr)
            if console is not sys.stderr:
                print(line, file=console)
            sys.exit(1)
        sys.__excepthook__(kind, value, tb)
        if console is not sys.stderr:
            print(f"archscale: rule {snakemake.rule} failed with {kind.__name__}: {value} (traceback in {snakemake.log[0]})",
                  file=console)

    sys.excepthook = excepthook
    return logging.getLogger("archscale")


# ---------------------------------------------------------------- analysis stages
def options(snakemake):
    from analysis.options import AnalysisOptions

    fields = {f.name for f in dataclasses.fields(AnalysisOptions)}
    params = {k: v for k, v in snakemake.params.analysis.items() if k in fields}
    return AnalysisOptions(**params, n_jobs=max(1, snakemake.threads))


def curves(path) -> pd.DataFrame:
    from analysis.curves.table import validate_curves

    return validate_curves(pd.read_csv(path))


def rng(opts) -> np.random.Generator:
    return np.random.default_rng(opts.seed)


def write(tables: dict, outputs) -> None:
    """Write the named tables; every declared output must be among them."""
    missing = [name for name in outputs.keys() if name not in tables]
    if missing:
        raise RuntimeError(f"analysis stage did not produce table(s) {missing}")
    out_dirs = {str(Path(path).parent) for path in outputs}
    if len(out_dirs) != 1 or any(Path(path).name != f"{name}.csv" for name, path in outputs.items()):
        raise RuntimeError(f"outputs must be <dir>/<table name>.csv in one folder: {list(outputs)}")
    from analysis.io import write_tables

    write_tables({name: tables[name] for name in outputs.keys()}, out_dirs.pop())
