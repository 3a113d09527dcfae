"""Bring your own runs: ``python -m analysis curves.csv --out DIR [--compute ...] [--n-boot N] [--seed S]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .io import write_figure, write_tables
from .options import AnalysisOptions
from .stages import analyse
from .table import CurveTableError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    ap.add_argument("curves", type=Path, help="learning-curve table (CSV)")
    ap.add_argument("--out", type=Path, required=True, help="output folder for tables (CSV) and figures")
    ap.add_argument("--compute", default="flops", choices=["flops", "flops_6n"])
    ap.add_argument("--n-boot", type=int, default=AnalysisOptions.n_boot)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--drop-fraction", type=float, default=None,
                    help="envelope: drop each run's points before this share of its tokens (default: the 10%% rule)")
    ap.add_argument("--no-figures", action="store_true")
    args = ap.parse_args(argv)
    try:
        opts = AnalysisOptions(compute=args.compute, n_boot=args.n_boot, seed=args.seed, n_jobs=args.n_jobs,
                               drop_fraction=args.drop_fraction)
        curves = pd.read_csv(args.curves)
        tables = analyse(curves, opts, np.random.default_rng(opts.seed))
    except (CurveTableError, ValueError, OSError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    write_tables(tables, args.out)
    if not args.no_figures:
        import matplotlib.pyplot as plt

        from .plots import all_figures
        for name, fig in all_figures(curves, tables, opts.compute, opts.ci_level).items():
            write_figure(fig, args.out / "figures" / f"{name}.png")
            plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
