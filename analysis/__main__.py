"""Bring your own runs: ``python -m analysis curves.csv --out DIR [--report] [--compute ...] [--n-boot N] [--seed S]``.

DIR is checked before any work and then replaced as a whole (all tables, figures and, with --report, the PDF
report are written to a new folder beside it, which is renamed into place), so it never mixes outputs of two
runs.  The console gets one line per thing that could not be used or fitted, then a short summary (each
variant's alpha with its interval, the verdicts, the tiers, what was dropped as early transient, warnings,
the headlines that change under another reasonable analysis choice), and where the outputs went.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.io import (OutputFolderError, check_output_folder, replace_folder, safe_names, write_figure, write_file,
                 write_tables)
from analysis.options import AnalysisOptions
from analysis.forecast.predict import summary_line as prediction_summary
from analysis.stages import analyse
from analysis.curves.table import OPTIONAL, REQUIRED, CurveTableError, thin_runs, validate_curves

# Densely logged runs (a W&B export logs every step) are thinned to this many points: Approach 3 costs
# time linear in the points and would weigh runs by their logging rate; 100 log-spaced points per run
# resolve a learning curve far finer than the 40-point frontier grid.
MAX_POINTS = 100
SENS_N_BOOT = AnalysisOptions.n_boot_sensitivity
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
    ap.add_argument("--report", action="store_true", help="also write the PDF report (DIR/report.pdf)")
    ap.add_argument("--no-sensitivity", action="store_true",
                    help="skip the sensitivity of the headlines to the analysis choices (the costliest part)")
    ap.add_argument("--sensitivity-n-boot", type=int, default=None, metavar="N",
                    help=f"resamples per cell of the sensitivity grid (default {SENS_N_BOOT}, or --n-boot if smaller)")
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


def _write_figures(stage: Path, tables: dict, curves, opts: AnalysisOptions) -> dict:
    """Every figure into stage/figures; returns {stem: path}."""
    import matplotlib.pyplot as plt

    from analysis.report.plots import all_figures
    figs = all_figures(curves, tables, opts.compute, opts.ci_level)
    names = safe_names(figs)  # stems hold variant names: never let them leave figures/
    paths = {}
    for stem, fig in figs.items():
        paths[stem] = write_figure(fig, stage / "figures" / f"{names[stem]}.png")
        plt.close(fig)
    return paths


def report_inputs(tables: dict, curves, opts: AnalysisOptions, figures: dict, source: Path):
    """ReportInputs for a table from elsewhere: a minimal config (analysis options, title; no training sections,
    so the report says the table was not trained here), the analysis run table as the runs."""
    from importlib.metadata import PackageNotFoundError, version

    from analysis.report.pdf import ReportInputs

    curves = validate_curves(curves)
    runs = tables["runs"].copy()
    runs["tokens"] = runs["final_tokens"]
    runs["flops"] = runs["run"].map(curves.groupby("run")["flops"].max())
    try:
        ours = version("archscale")
    except PackageNotFoundError:
        ours = "(source tree)"
    config = {"study_name": f"Learning curves from {source.name}", "analysis": dataclasses.asdict(opts),
              "report": {"title": f"archscale: scaling analysis of {source.name}"}}
    environment = {"date": datetime.date.today().isoformat(), "version": ours, "commit": "-", "input": str(source),
                   "python": sys.version.split()[0]}
    return ReportInputs(config=config, curves=curves, runs=runs, tables=tables, alt_fits=None, figures=figures,
                        environment=environment)


def write_outputs(out: Path, tables: dict, curves, opts: AnalysisOptions, figures: bool, report: bool = False,
                  source: Path = Path("curves.csv")) -> tuple[int, int, bool]:
    """Every table, figure and (report=True) the PDF report into a new folder that then replaces ``out``;
    returns (n tables, n figures, report written)."""
    with replace_folder(out) as stage:
        write_tables(tables, stage)
        paths = _write_figures(stage, tables, curves, opts) if figures else {}
        if report:
            from analysis.report.pdf import build_report

            pdf = build_report(report_inputs(tables, curves, opts, paths, source))
            write_file(stage / "report.pdf", lambda tmp: Path(tmp).write_bytes(pdf))
    return len(tables), len(paths), report


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
    lines += _status_lines(tables.get("size_fits"), "L(N) fits with N =", "n_measure")
    lines += _status_lines(tables.get("extrapolation"), "extrapolation", "form")
    lines += [line for line in [prediction_summary(tables.get("predictions"))] if line]
    if caught:
        first = caught[0]
        text = str(first.message).splitlines()[0].split(". ")[0][:120]
        lines.append(f"note: {len(caught)} warning(s) from numpy / matplotlib not shown (first: "
                     f"{first.category.__name__} at {Path(first.filename).name}:{first.lineno}: {text})")
    return lines


def _fmt(x, digits=3) -> str:
    from analysis.report.pdf import fmt
    return fmt(x, digits)


def _sensitivity_of(tables: dict, headline: str) -> pd.DataFrame:
    s = tables.get("sensitivity_summary")
    if s is None or not len(s):
        return pd.DataFrame(columns=["subject"])
    return s[s["headline"] == headline].set_index("subject")


def alpha_lines(tables: dict, opts: AnalysisOptions) -> list[str]:
    """Each variant's alpha (pure L(C), primary frontier) with its interval, and its spread across choices."""
    from analysis.report.pdf import ci, primary

    fits = primary(tables.get("fits", pd.DataFrame(columns=["form", "frontier"])))
    fits = fits[fits["form"] == "pure"]
    if not len(fits):
        return []
    kind = "final-point frontier" if str(fits["frontier"].iloc[0]) == "final" else "learning-curve envelope"
    sens = _sensitivity_of(tables, "alpha")
    how = ("OLS (no bootstrap: --n-boot 0)" if not opts.n_boot else
           f"bootstrap ({opts.n_boot} resamples: rough)" if opts.n_boot < 100 else "bootstrap")
    lines = [f"alpha (pure L(C) = (C_c/C)^alpha on the {kind}, compute '{opts.compute}', "
             f"{opts.ci_level:.0%} {how} interval):"]
    for r in fits.sort_values("variant").to_dict("records"):
        if r["status"] != "ok":
            lines.append(f"  {r['variant']}: no fit ({r['status']})")
            continue
        line = f"  {r['variant']}: {ci(r, 'alpha')}"
        if r["variant"] in sens.index and pd.notna(sens.loc[r["variant"], "min"]):
            x = sens.loc[r["variant"]]
            line += f"; {_fmt(x['min'])} to {_fmt(x['max'])} across analysis choices"
            if str(x["fragile"]).lower() == "true":
                line += f" (outside the interval under: {x['differs_under']})"
        lines.append(line)
    return lines


def verdict_lines(tables: dict) -> list[str]:
    """The same-objective verdicts of the pure fits with their Holm-level intervals, marked when fragile."""
    from analysis.comparison.sensitivity import fragile_pairs

    pairs = tables.get("pairs", pd.DataFrame())
    if not len(pairs):
        return []
    p = pairs[pairs["form"] == "pure"]
    tested = p[p["family"].fillna("") != ""]
    frag = fragile_pairs(p, tables.get("sensitivity_summary"), "pure").set_index("subject")
    lines = ["verdicts (pure fits, Holm within each objective):"] if len(tested) else []
    for r in tested.to_dict("records"):
        subject = f"{r['variant_a']} vs {r['variant_b']}"
        verdict = f"{r['steeper_variant']} steeper" if r["verdict"] == "steeper" else r["verdict"]
        line = (f"  {subject}: {verdict} (delta alpha {_fmt(r['delta_alpha'])}, Holm-level interval "
                f"[{_fmt(r['delta_lo_adj'])}, {_fmt(r['delta_hi_adj'])}], Holm p {_fmt(r['p_holm'], 2)})")
        if subject in frag.index and frag.loc[subject, "fragile"]:
            line += f"; FRAGILE: {frag.loc[subject, 'why']}"
        lines.append(line)
    n_cross = int((p["family"].fillna("") == "").sum())
    if n_cross:
        lines.append(f"  ({n_cross} pair(s) of different objectives: exponents descriptive, not tested)")
    return lines


def tier_lines(tables: dict, opts: AnalysisOptions) -> list[str]:
    """Each variant's size tiers, and a warning where the noise floor does not come from seed replicates."""
    from analysis.report.pdf import tier_sentences

    tiers = tables.get("tiers", pd.DataFrame())
    if not len(tiers):
        return []
    lines = ["tiers:"] + ["  " + t for t in tier_sentences(tiers)]
    sources = tiers.groupby("variant", sort=True)["floor_source"].first()
    for source, why in (("eval_loss_se", "no replicates: tier floor from eval_loss_se"),
                        ("default", f"no replicates and no eval_loss_se: tier floor is the default "
                                    f"{opts.noise_floor_default} nats")):
        names = sorted(sources[sources == source].index)
        if names:
            lines.append(f"warning: {why} ({', '.join(names)})")
    return lines


def transient_lines(tables: dict) -> list[str]:
    from analysis.curves.transient import TransientDrop, summary_lines as transient_summary

    runs = tables.get("transient")
    if runs is None or not len(runs):
        return []
    return ["dropped (early transient): " + t for t in transient_summary(TransientDrop(pd.Series(dtype=bool), runs))]


def fragile_lines(tables: dict) -> list[str]:
    """Verdicts, crossovers and tiers that change under another reasonable analysis choice."""
    s = tables.get("sensitivity_summary")
    if s is None or not len(s):
        return []
    frag = s[(s["headline"] != "alpha") & s["fragile"].astype(str).str.lower().eq("true")]
    n = int((s["headline"] != "alpha").sum())
    lines = [f"sensitivity: {len(frag)} of {n} verdict(s), crossover(s) and tier grouping(s) change under another "
             "analysis choice (sensitivity_summary.csv)"]
    for r in frag.to_dict("records"):
        lines.append(f"  fragile: {r['headline']} {r['subject']} ({r['baseline_verdict']}) changes under "
                     f"{r['differs_under']}")
    return lines


def headline_lines(tables: dict, opts: AnalysisOptions) -> list[str]:
    """The short summary the console prints after the problems: alpha, verdicts, tiers, drops, warnings, fragility."""
    return (alpha_lines(tables, opts) + verdict_lines(tables) + tier_lines(tables, opts) + transient_lines(tables)
            + fragile_lines(tables))


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        out = check_output_folder(args.out, keep=[args.curves])
        n_sens = min(SENS_N_BOOT, args.n_boot) if args.sensitivity_n_boot is None else args.sensitivity_n_boot
        opts = AnalysisOptions(compute=args.compute, n_boot=args.n_boot, seed=args.seed, n_jobs=args.n_jobs,
                               drop_fraction=args.drop_fraction, n_boot_sensitivity=n_sens)
        curves, n_thinned = thin_runs(validate_curves(read_curves(args.curves)), args.max_points_per_run)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tables = analyse(curves, opts, np.random.default_rng(opts.seed), sensitivity=not args.no_sensitivity)
            n_tables, n_figs, wrote_report = write_outputs(out, tables, curves, opts, not args.no_figures, args.report,
                                                           args.curves)
    except (CurveTableError, OutputFolderError, ValueError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        sys.stderr.write(f"error: cannot write the outputs ({e.strerror or e}:{where}); nothing in --out {args.out} "
                         "was changed: check free space and permissions\n")
        return 2
    for line in curves.attrs.get("assumed", []):
        print(f"assumed: {line}")
    if n_thinned:
        print(f"thinned: {n_thinned} run(s) with more than {args.max_points_per_run} evaluation points were analysed "
              f"at about {args.max_points_per_run} log-spaced points each (first, last and lowest-loss points kept; "
              "--max-points-per-run 0 keeps every point)")
    for line in summary_lines(tables, caught) + headline_lines(tables, opts):
        print(line)
    print(f"wrote {n_tables} tables and {n_figs} figures{' and report.pdf' if wrote_report else ''} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
