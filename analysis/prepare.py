"""What every analysis stage starts from, in one place: the prepared table (validated, diverged runs out, the
best lr per size, early points dropped), the primary frontier, the per-variant random streams, and each
variant's L(C) fits on either frontier. The stages (analysis/stages.py), the sensitivity grid
(analysis/comparison/sensitivity.py) and the notebook API (analysis/api.py) all build on these."""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.fits.bootstrap import FORMS, fit_and_bootstrap
from analysis.frontier import approaches as finals
from analysis.frontier.envelope import RunCurves
from analysis.options import AnalysisOptions
from analysis.curves.table import run_table, select_best_lr, validate_curves
from analysis.curves.transient import early_transient

MIN_RUNS = 3
STREAM_FRONTIER, STREAM_A3, STREAM_SIZE_FITS, STREAM_EXTRAP, STREAM_FINAL, STREAM_ISOFLOP = range(6)


@dataclass(frozen=True)
class Prepared:
    curves: pd.DataFrame  # points used for the learning-curve envelope: ok runs at the chosen lr, early points dropped
    runs: pd.DataFrame  # every run, with used / reason
    lr_choice: pd.DataFrame
    finals: pd.DataFrame  # the final point of every ok run at the chosen lr (Approaches 1-3)
    frontier: str  # the primary frontier: "final" or "envelope"
    transient: pd.DataFrame  # per run: the early-transient cut of the learning-curve envelope (analysis.curves.transient)


def primary_frontier(curves: pd.DataFrame, opts: AnalysisOptions) -> str:
    """'final' or 'envelope': opts.frontier, with 'auto' decided by the table's design (one decision for
    the whole table, so every variant is measured the same way): final when some size has several budgets or
    when no run has 3 or more points (a table of final points), else the learning curves' envelope."""
    if opts.frontier != "auto":
        return opts.frontier
    if finals.has_budgets(curves):
        return "final"
    # a table of final points (one or two rows per run, as papers publish them) has no learning curves to take
    # the lower envelope of: its runs' final points are the frontier
    return "final" if (curves.groupby("run").size() < 3).all() else "envelope"


def prepare(curves, opts: AnalysisOptions) -> Prepared:
    valid = validate_curves(curves)
    selected, lr_choice = select_best_lr(valid)
    runs = run_table(valid)
    chosen = set(selected["run"])
    runs["reason"] = np.where(runs["status"] == "stopped", "stopped early: predicted off the frontier",
                              np.where(runs["status"] != "ok", "diverged",
                                       np.where(runs["run"].isin(chosen), "", "lr not chosen")))
    kept = selected[selected["status"] == "ok"]
    cut = early_transient(kept, fraction=opts.drop_fraction, use_warmup=opts.drop_warmup)
    kept = cut.kept(kept).reset_index(drop=True)
    n_kept = kept.groupby("run").size()
    runs["n_kept"] = runs["run"].map(n_kept).fillna(0).astype("int64")
    runs["used"] = (runs["reason"] == "") & (runs["n_kept"] > 0)
    runs.loc[(runs["reason"] == "") & ~runs["used"], "reason"] = "no points left after dropping early points"
    ok = selected[selected["status"] == "ok"]
    return Prepared(kept, runs, lr_choice, finals.final_points(ok), primary_frontier(valid, opts), cut.runs)


def base_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2 ** 63))


def variant_rng(base: int, variant: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([base, zlib.crc32(variant.encode()), stream])


def by_variant(prep: Prepared):
    for variant, g in prep.curves.groupby("variant", sort=True):
        yield variant, g["objective"].iloc[0], g


def envelope_fits(g: pd.DataFrame, opts: AnalysisOptions, rng, forms=FORMS) -> tuple[dict, dict, int]:
    """Pure and E-term L(C) (or only `forms`) on the learning-curve envelope (Kaplan), cluster bootstrap over runs."""
    rc = RunCurves.from_table(g, opts.compute)
    if len(rc) < MIN_RUNS or len(set(rc.sizes)) < MIN_RUNS:
        note = (f"fit refused: {len(rc)} usable run(s) of {len(set(rc.sizes))} size(s); need >= {MIN_RUNS} sizes "
                "(add sizes or check diverged / lr-excluded runs)")
        return {f: None for f in forms}, {f: note for f in forms}, len(rc)
    fits, notes = fit_and_bootstrap(rc, forms, opts.n_boot, rng, opts.grid_points, opts.huber_delta, opts.n_jobs)
    return fits, notes, len(rc)


def final_fits(fin: pd.DataFrame, opts: AnalysisOptions, rng) -> tuple[dict, dict]:
    """Pure and E-term L(C) on the final-point frontier (Approach 1)."""
    if len(fin) < MIN_RUNS or fin["size"].nunique() < MIN_RUNS:
        note = f"fit refused: {len(fin)} final point(s) of {fin['size'].nunique()} size(s); need >= {MIN_RUNS} sizes"
        return {f: None for f in FORMS}, {f: note for f in FORMS}
    return finals.frontier_fits(fin, opts.compute, opts.n_boot, rng, opts.huber_delta)


def frontier_fits(g: pd.DataFrame, fin: pd.DataFrame, opts: AnalysisOptions, base: int, frontier: str):
    """One variant's pure and E-term L(C) on its `frontier` ("final": its final points, Approach 1; "envelope":
    its learning curves' lower envelope), each bootstrapped from the variant's own stream of `base`:
    ({form: fit or None}, {form: note}, runs used). The pipeline's fit stage and the notebook API both call this."""
    variant = g["variant"].iloc[0] if len(g) else fin["variant"].iloc[0]
    if frontier == "final":
        fits, notes = final_fits(fin, opts, variant_rng(base, variant, STREAM_FINAL))
        return fits, notes, len(fin)
    return envelope_fits(g, opts, variant_rng(base, variant, STREAM_FRONTIER))
