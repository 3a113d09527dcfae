"""Early transients: which points of each learning curve come before its power-law regime.

A run's first evaluations (loss falling from ln V through the unigram plateau) are not scaling: on a log-spaced
compute grid they own the low end of the frontier and steepen a pure power law (Pythia, below: alpha_C 0.14
with them, 0.08-0.10 without).  This module decides, per run, which points to drop; it is a pure function of the
validated learning-curve table and says what it dropped and why.

Rule (per run; its points with `tokens < cut` are dropped):
  * no fraction given (the default rule): cut = max(DEFAULT_FRACTION (10%) of the run's final tokens,
    warmup_tokens when present and use_warmup). A warmup ends long before the transient does (the
    pipeline's wsd runs warm up over 25 steps; their loss is still falling through the unigram plateau
    for a decade of steps after it), so the warmup alone never replaces the 10% rule.
  * a fraction given: cut = max(fraction x final tokens, warmup_tokens when present and use_warmup).
  * extend_steep=True (an option, not the default): the cut is then moved past the run's last point, within the
    first half of the run, whose local log-log slope (d ln L / d ln tokens over the next SLOPE_WINDOW decades)
    is steeper than STEEP_SLOPE (-0.2): a rule on where the curve becomes power-law-like.
  Every run's table row gives the local slope at its cut; `steep_at_cut` flags a run still steeper than
  STEEP_SLOPE there (its transient may extend past the cut: raise the fraction or use extend_steep).

Why 10% (benchmarks/transient_evidence.py on public curves in tests/data; envelope pure alpha_C over flops):
  * Pythia (14m/70m/160m, 20 runs logged every step, one token budget): the transient (loss 11 -> ~4 nats,
    slopes -0.25 to -0.5) is over by 1.5-2% of every run.  alpha 0.140 with nothing dropped, 0.079-0.089 for
    cuts at 2-5%, 0.102 at 10%, 0.120 at 20% (the rise past 5% is the pure form's curvature, not the transient).
  * Gemstones (22 constant-lr runs, curves from 2% of training): 0.062 for 0-2%, 0.056-0.058 for 3-15%.
  * A token-budget ladder readmits the transient, since a fixed share of a short run is an early point in
    tokens: the Pythia runs plus each run truncated at 1/4 and 1/16 give 0.107 at 5%, 0.094 at 10%, 0.081 at
    20%; 19 of the 60 runs are flagged steep at a 10% cut.  extend_steep gives 0.081 at any fraction up to 20%.
  10% is past the transient of every full run, with margin for moderately shorter runs, and keeps about one
  decade of each run's compute.  It is the per-run-fraction convention of published envelope fits (which drop
  each run's first 5-20%): on these sets the envelope fit at 10% lies within -16%..+15% of raw-envelope fits at
  5-20%, 0-3% from the one at 10% (+10% with the short Gemstones runs).  extend_steep is not the default: it
  departs from that convention (Pythia ladder: 14% below the 10% fit) and its threshold is set on one family.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DEFAULT_FRACTION = 0.10
STEEP_SLOPE = -0.2  # d ln L / d ln tokens steeper than this = still in the transient (Pythia: -0.25..-0.5 early)
SLOPE_WINDOW = 0.25  # decades of tokens after the cut over which the local slope is fitted
EXTEND_LIMIT = 0.5  # extend_steep never cuts beyond this share of a run's final tokens
TRANSIENT_COLS = ["run", "variant", "size", "n_points", "final_tokens", "warmup_tokens", "fraction", "cut_tokens",
                  "rule", "n_dropped", "n_kept", "loss_first", "loss_at_cut", "slope_at_cut", "steep_at_cut", "note"]


@dataclass(frozen=True)
class TransientDrop:
    """Result of `early_transient`: `drop` is aligned with the input rows (True = dropped), `runs` one row per run."""
    drop: pd.Series
    runs: pd.DataFrame

    @property
    def n_dropped(self) -> int:
        return int(self.drop.sum())

    def kept(self, curves: pd.DataFrame) -> pd.DataFrame:
        """The rows of `curves` (the table passed to early_transient) that are kept."""
        return curves.loc[~self.drop.reindex(curves.index, fill_value=False)]


def local_slope(tokens: np.ndarray, loss: np.ndarray, window: float = SLOPE_WINDOW) -> float:
    """OLS slope of ln loss on ln tokens over the first `window` decades of the points given (>= 3 points;
    widened to the first 3 points when the window holds fewer); NaN with fewer than 3 points."""
    lt, ll = np.log(np.asarray(tokens, float)), np.log(np.asarray(loss, float))
    if lt.size < 3:
        return np.nan
    inside = lt <= lt[0] + window * np.log(10)
    if inside.sum() < 3:
        inside = np.arange(lt.size) < 3
    x, y = lt[inside], ll[inside]
    if np.ptp(x) == 0:
        return np.nan
    return float(np.polyfit(x, y, 1)[0])


def _steep_end(tokens: np.ndarray, loss: np.ndarray, cut: float) -> float:
    """Tokens of the first point after the last point (at or after `cut`, within EXTEND_LIMIT of the run) whose
    forward local slope is steeper than STEEP_SLOPE; `cut` when there is none."""
    limit = EXTEND_LIMIT * tokens.max()
    idx = np.flatnonzero((tokens >= cut) & (tokens <= limit))
    steep = [i for i in idx if local_slope(tokens[i:], loss[i:]) < STEEP_SLOPE]
    if not steep or steep[-1] + 1 >= tokens.size:
        return cut
    return max(cut, float(tokens[steep[-1] + 1]))


def _run_fraction(fraction, has_warmup: bool) -> tuple[float, str]:
    """(fraction, source) for one run."""
    if fraction is not None:
        return float(fraction), "fraction"
    return DEFAULT_FRACTION, "default"


def _run_row(run: str, g: pd.DataFrame, fraction, use_warmup: bool, extend: bool) -> tuple[dict, np.ndarray]:
    """Cut one run (rows sorted by tokens); returns (table row, drop mask for g's rows)."""
    tokens, loss = g["tokens"].to_numpy(float), g["loss"].to_numpy(float)
    final = tokens.max()
    warm = float(g["warmup_tokens"].iloc[0]) if use_warmup and "warmup_tokens" in g.columns else np.nan
    has_warmup = bool(np.isfinite(warm) and warm > 0)
    frac, source = _run_fraction(fraction, has_warmup)
    by_fraction = frac * final
    cut = max(by_fraction, warm if has_warmup else 0.0)
    extended = extend and _steep_end(tokens, loss, cut) > cut
    if extended:
        cut = _steep_end(tokens, loss, cut)
    drop = tokens < cut
    if not drop.any():
        rule = "none"
    elif extended:
        rule = "steep extension"
    elif has_warmup and warm >= by_fraction:
        rule = "warmup"
    else:
        rule = {"default": "default fraction", "fraction": "fraction"}[source]
    keep = ~drop
    slope = local_slope(tokens[keep], loss[keep]) if keep.any() else np.nan
    steep = bool(np.isfinite(slope) and slope < STEEP_SLOPE)
    why = {"none": "nothing before the cut",
           "warmup": f"tokens < warmup_tokens ({warm:.6g})",
           "default fraction": f"tokens < {frac:.0%} of final tokens (default early-transient rule)",
           "fraction": f"tokens < {frac:.3g} x final tokens",
           "steep extension": f"tokens before the end of the steep early stretch (local slope < {STEEP_SLOPE}), "
                              f"past {frac:.3g} x final tokens"}[rule]
    if steep:
        why += f"; still steep at the cut (slope {slope:.2f} < {STEEP_SLOPE}): the transient may extend past it"
    if not keep.any():
        why += "; no points left"
    row = dict(run=run, variant=g["variant"].iloc[0], size=g["size"].iloc[0], n_points=int(tokens.size),
               final_tokens=final, warmup_tokens=warm if has_warmup else np.nan, fraction=frac, cut_tokens=cut,
               rule=rule, n_dropped=int(drop.sum()), n_kept=int(keep.sum()), loss_first=float(loss[0]),
               loss_at_cut=float(loss[keep][0]) if keep.any() else np.nan, slope_at_cut=slope, steep_at_cut=steep,
               note=why)
    return row, drop


def early_transient(curves: pd.DataFrame, fraction: float | None = None, use_warmup: bool = True,
                    extend_steep: bool = False) -> TransientDrop:
    """Which points of each run belong to its early transient (see the module docstring for the rule).

    curves: a validated learning-curve table (`analysis.curves.table.validate_curves`; needs run, variant, size,
    tokens, loss, optionally warmup_tokens).  fraction: None for the default rule, else a fraction in [0, 1) of
    each run's final tokens.  use_warmup: also cut at each run's warmup_tokens when the column is present.
    extend_steep: move the cut of a run still steeper than STEEP_SLOPE past its steep stretch (module docstring).
    Returns `TransientDrop(drop, runs)`: `drop` is a boolean Series on curves' index, `runs` has TRANSIENT_COLS.
    """
    if fraction is not None and not 0.0 <= fraction < 1.0:
        raise ValueError(f"early_transient: fraction={fraction!r} is invalid; use None (default rule) or a "
                         "fraction in [0, 1)")
    missing = [c for c in ("run", "variant", "size", "tokens", "loss") if c not in curves.columns]
    if missing:
        raise ValueError(f"early_transient: the table lacks column(s) {', '.join(missing)}; pass a table from "
                         "analysis.curves.table.validate_curves")
    drop = pd.Series(False, index=curves.index)
    rows = []
    for run, g in curves.groupby("run", sort=True):
        g = g.sort_values("tokens", kind="stable")
        row, mask = _run_row(run, g, fraction, use_warmup, extend_steep)
        rows.append(row)
        drop.loc[g.index[mask]] = True
    runs = pd.DataFrame(rows).reindex(columns=TRANSIENT_COLS) if rows else pd.DataFrame(columns=TRANSIENT_COLS)
    return TransientDrop(drop, runs)


def summary_lines(result: TransientDrop, max_runs: int = 12) -> list[str]:
    """Short human-readable lines of what was dropped (for the CLI and the report's methods)."""
    r = result.runs
    if r.empty:
        return []
    out = []
    for rule, g in r.groupby("rule", sort=True):
        cuts = g["cut_tokens"] / g["final_tokens"]
        out.append(f"{rule}: {len(g)} run(s), {int(g['n_dropped'].sum())} point(s) dropped "
                   f"(cut at {cuts.min():.1%}-{cuts.max():.1%} of each run's final tokens)")
    steep = r[r["steep_at_cut"]]
    for row in steep.head(max_runs).itertuples():
        out.append(f"{row.run}: still steep at the cut (slope {row.slope_at_cut:.2f}); consider a larger "
                   "drop fraction or extend_steep")
    if len(steep) > max_runs:
        out.append(f"... and {len(steep) - max_runs} more run(s) still steep at the cut")
    return out
