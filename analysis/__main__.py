"""Bring your own runs: ``python -m analysis curves.csv --out DIR [--compute ...] [--n-boot N] [--seed S]``.

DIR is checked before any work and then replaced as a whole (all tables and figures are written to
a new folder beside it, which is renamed into place), so it never mixes outputs of two runs.  The
console gets one line per thing that could not be used or fitted, and where the outputs went.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .io import OutputFolderError, check_output_folder, replace_folder, safe_names, write_figure, write_tables
from .options import AnalysisOptions
from .predict import summary_line as prediction_summary
from .stages import analyse
from .table import OPTIONAL, REQUIRED, CurveTableError, thin_runs, validate_curves

# Densely logged runs (a W&B export logs every step) are thinned to this many points: Approach 3 costs
# time linear in the points and would weigh runs by their logging rate; 100 log-spaced points per run
# resolve a learning curve far finer than the 40-point frontier grid.
MAX_POINTS = 100
READ_CHUNK = 250_000  # rows per read_csv chunk


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    ap.add_argument("curves", type=Path, help="learning-curve table (CSV)")
    ap.add_argument("--out", type=Path, required=True,
                    help="output folder for tables (CSV) and figures; replaced as a whole")
    ap.add_argument("--compute", default="flops", choices=["flops", "flops_6n"])
    ap.add_argument("--n-boot", type=int, default=AnalysisOptions.n_boot)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--drop-fraction", type=float, default=None,
                    help="envelope: drop each run's points before this share of its tokens (default: the 10%% rule)")
    ap.add_argument("--max-points-per-run", type=int, default=MAX_POINTS, metavar="K",
                    help="analyse about K log-spaced points of runs that have more (first, last and best kept); "
                         f"0 keeps every point (default {MAX_POINTS})")
    ap.add_argument("--no-figures", action="store_true")
    return ap


def read_curves(path: Path) -> pd.DataFrame:
    """The CSV's table columns as a DataFrame (other columns, e.g. of a W&B export, are never loaded), or a
    CurveTableError naming the file and why it cannot be read."""
    wanted = set(REQUIRED) | set(OPTIONAL)
    try:  # in chunks: the parser's buffers for a 2M-row file at once cost more than the table itself
        chunks = list(pd.read_csv(path, usecols=lambda c: c in wanted, chunksize=READ_CHUNK))
        return pd.concat(chunks, ignore_index=True) if chunks else pd.read_csv(path, usecols=lambda c: c in wanted)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[0]
        raise CurveTableError(f"cannot read the curve table {path}: {why}; give a CSV file "
                              "(one row per evaluation point)") from None


def write_outputs(out: Path, tables: dict, curves, opts: AnalysisOptions, figures: bool) -> tuple[int, int]:
    """Every table and figure into a new folder that then replaces ``out``; returns (n tables, n figures)."""
    n_figs = 0
    with replace_folder(out) as stage:
        write_tables(tables, stage)
        if figures:
            import matplotlib.pyplot as plt

            from .plots import all_figures
            figs = all_figures(curves, tables, opts.compute, opts.ci_level)
            names = safe_names(figs)  # stems hold variant names: never let them leave figures/
            for stem, fig in figs.items():
                write_figure(fig, stage / "figures" / f"{names[stem]}.png")
                plt.close(fig)
            n_figs = len(figs)
    return len(tables), n_figs


def _status_lines(table: pd.DataFrame, what: str, key: str) -> list[str]:
    """'<status>: <variant> <what> <keys>: <note>' for every (variant, status, note) that is not ok."""
    if table is None or not len(table) or "status" not in table:
        return []
    bad = table[table["status"].astype(str) != "ok"].fillna({"note": ""})
    bad = bad.assign(note=bad["note"].astype(str).str.replace(r"^(fit )?refused: ", "", regex=True))
    return [f"{status}: {variant} {what} {', '.join(map(str, g[key]))}: {note}".rstrip(": ")
            for (variant, status, note), g in bad.groupby(["variant", "status", "note"], sort=True)]


def summary_lines(tables: dict, caught: list) -> list[str]:
    """What could not be used or fitted, one line each (the tables' status / note / reason columns)."""
    lines = []
    runs = tables.get("runs", pd.DataFrame())
    if len(runs):
        unused = runs[~runs["used"].astype(bool)]
        for reason, g in unused.groupby("reason", sort=True):
            shown = ", ".join(g["run"].head(5)) + (", ..." if len(g) > 5 else "")
            lines.append(f"not used: {len(g)} of {len(runs)} run(s): {reason} ({shown})")
        if not runs["used"].astype(bool).any():
            lines.append("refused: no run is usable, so nothing was fitted or compared")
    fits = tables.get("fits")
    if fits is not None and len(fits) and "primary" in fits:  # the primary frontier's fits and Approach 3
        fits = fits[fits["primary"].astype(bool) | (fits["form"] == "approach3")]
    lines += _status_lines(fits, "L(C) fits", "form")
    lines += _status_lines(tables.get("ln_fits"), "L(N) fits with N =", "n_measure")
    lines += _status_lines(tables.get("extrapolation"), "extrapolation", "form")
    lines += [line for line in [prediction_summary(tables.get("predictions"))] if line]
    if caught:
        first = caught[0]
        text = str(first.message).splitlines()[0].split(". ")[0][:120]
        lines.append(f"note: {len(caught)} warning(s) from numpy / matplotlib not shown (first: "
                     f"{first.category.__name__} at {Path(first.filename).name}:{first.lineno}: {text})")
    return lines


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        out = check_output_folder(args.out, keep=[args.curves])
        opts = AnalysisOptions(compute=args.compute, n_boot=args.n_boot, seed=args.seed, n_jobs=args.n_jobs,
                               drop_fraction=args.drop_fraction)
        curves, n_thinned = thin_runs(validate_curves(read_curves(args.curves)), args.max_points_per_run)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tables = analyse(curves, opts, np.random.default_rng(opts.seed))
            n_tables, n_figs = write_outputs(out, tables, curves, opts, not args.no_figures)
    except (CurveTableError, OutputFolderError, ValueError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        sys.stderr.write(f"error: cannot write the outputs ({e.strerror or e}:{where}); nothing in --out {args.out} "
                         "was changed: check free space and permissions\n")
        return 2
    if n_thinned:
        print(f"thinned: {n_thinned} run(s) with more than {args.max_points_per_run} evaluation points were analysed "
              f"at about {args.max_points_per_run} log-spaced points each (first, last and lowest-loss points kept; "
              "--max-points-per-run 0 keeps every point)")
    for line in summary_lines(tables, caught):
        print(line)
    print(f"wrote {n_tables} tables and {n_figs} figures to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
