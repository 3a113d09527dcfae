"""Stop a stable run early when its predicted final losses are confidently off the frontier.

A wsd lineage (variant, size, seed, lr) trains one stable run and branches one cooldown per budget off it
(training/loop.py). After ``fraction`` of the stable run's tokens (30% by default: every budget's window of
``analysis.forecast.predict`` has then been seen), ``decide`` predicts the final loss of each budget whose cooldown
has not yet branched off (``predict.predict_in_progress``, with a *reference* study's finished runs as the
other lineages) and compares the interval with the reference study's frontier at that budget's compute.
The run stops when, for every such budget, the interval's lower bound lies above the frontier by more than
``margin`` (relative): a 90% interval's lower bound is a 95% one-sided bound, so a run that would have been
on the frontier is stopped at about 5% per budget when the predictions are calibrated.

**Brackets are kept.** A budget's IsoFLOP parabola and its bracketing need the optimum and a smaller and a
larger neighbour (analysis.frontier.approaches). So a size is never stopped at a budget where it is one of those three:
the size of the budget's list nearest (in log N) to the reference's best size at the nearest reference
budget, and its neighbours in that list (``protected``). Early stopping thus saves the far ends of wide
IsoFLOP profiles (four or more sizes per budget); in a study of three sizes per budget around the expected
optimum every run is needed, and nothing stops.

The reference frontier (``reference_frontier``): per variant and budget of the reference table, the lowest
final loss of its finished runs, at their median accounted compute; between budgets it is interpolated
log-log (``frontier_at``), and outside the reference's range of compute there is no frontier and no stop
(the frontier is not extrapolated). Budgets whose window or frontier is missing, or whose prediction is
refused, keep the run going: only a confident prediction stops one.

Pure: numpy and pandas (and analysis.forecast.predict); nothing printed, no files.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.frontier.approaches import final_points
from analysis.forecast.predict import FRACTION, LEVEL, predict_in_progress
from analysis.curves.table import validate_curves

MARGIN = 0.0  # relative: stop when every lower bound exceeds the frontier x (1 + margin)
FRONTIER_COLS = ["variant", "budget", "compute", "loss", "run", "size", "params_nonembedding"]
DECISION_COLS = ["budget", "branch_tokens", "compute", "frontier", "protected", "status", "note", "form", "predicted",
                 "lo", "hi", "off_frontier"]


def reference_frontier(reference, compute: str = "flops") -> pd.DataFrame:
    """Per variant and budget of a learning-curve table: the lowest final loss of its finished (status ok)
    runs and the budget's median final compute (FRONTIER_COLS, by variant and compute)."""
    curves = validate_curves(reference)
    if "budget" not in curves or curves["budget"].fillna("").astype(str).eq("").all():
        raise ValueError("the reference table names no budgets: an early-stop frontier needs a study of budgets "
                         "(IsoFLOP or token budgets per size)")
    fin = final_points(curves)
    fin = fin[fin["status"] == "ok"] if "status" in fin else fin
    rows = []
    for (variant, budget), g in fin.groupby(["variant", "budget"], sort=True):
        best = g.loc[g["loss"].idxmin()]
        rows.append({"variant": variant, "budget": budget, "compute": float(g[compute].median()),
                     "loss": float(best["loss"]), "run": best["run"], "size": best["size"],
                     "params_nonembedding": int(best["params_nonembedding"])})
    out = pd.DataFrame(rows, columns=FRONTIER_COLS)
    return out.sort_values(["variant", "compute"], kind="stable").reset_index(drop=True)


ENDS_RTOL = 0.02  # a budget this close to the reference's first or last counts as inside (whole-step rounding)


def frontier_at(frontier: pd.DataFrame, variant: str, compute: float) -> float:
    """The reference frontier's loss at ``compute``: log-log interpolation between its budgets (the lowest
    loss where two budgets share a compute); NaN outside its range (beyond ENDS_RTOL: a budget's runs end
    within a step of its level, so the same level can fall just outside) or for a variant it lacks."""
    f = frontier[frontier["variant"] == variant].groupby("compute")["loss"].min()
    if not len(f) or not f.index.min() / (1 + ENDS_RTOL) <= compute <= f.index.max() * (1 + ENDS_RTOL):
        return float("nan")
    return float(np.exp(np.interp(math.log(compute), np.log(f.index.to_numpy(float)), np.log(f.to_numpy(float)))))


def protected(frontier: pd.DataFrame, variant: str, compute: float, sizes: dict) -> set:
    """The sizes of a budget (``sizes``: {size: non-embedding N}) that bracket its expected optimum: the one
    nearest in log N to the reference's best size at the reference budget nearest in log compute, and its
    smaller and larger neighbour in ``sizes``. Empty without a reference budget of the variant."""
    f = frontier[frontier["variant"] == variant]
    if not len(f) or not sizes:
        return set()
    best = f.iloc[int(np.argmin(np.abs(np.log(f["compute"].to_numpy(float)) - math.log(compute))))]
    order = sorted(sizes, key=sizes.get)
    i = int(np.argmin([abs(math.log(sizes[s]) - math.log(best["params_nonembedding"])) for s in order]))
    return set(order[max(0, i - 1):i + 2])


@dataclass(frozen=True)
class Decision:
    """What the check decided: ``stop``, why (``reason``) and one row per budget it looked at (``table``)."""
    stop: bool
    reason: str
    table: pd.DataFrame

    def as_dict(self) -> dict:
        """JSON-ready: stop, reason and the per-budget rows (NaN as None)."""
        rows = self.table.astype(object).where(self.table.notna(), None).to_dict("records")
        return {"stop": self.stop, "reason": self.reason, "budgets": rows}


def decide(reference, frontier: pd.DataFrame, stable_rows, ident: dict, budgets, seen_tokens: float,
           fraction: float = FRACTION, level: float = LEVEL, margin: float = MARGIN) -> Decision:
    """Whether a stable run at ``seen_tokens`` should stop (module docstring). ``budgets``: [(budget,
    branch_tokens, compute, sizes)] of its lineage, compute the accounted FLOPs at the budget's end, sizes
    {size: non-embedding N} of the budget's size list (for ``protected``; None: nothing protected); only
    those branching after ``seen_tokens`` are judged (the others already have their branch checkpoints).
    ``reference``: the reference learning-curve table, or its ``predict.reference_runs`` (fitted once)."""
    if margin < 0:
        raise ValueError(f"margin={margin!r} must be >= 0 (a relative distance above the frontier)")
    later = [(b, br, c, sz) for b, br, c, sz in budgets if br > seen_tokens]
    if not later:
        return Decision(False, "every budget's cooldown has branched off already", pd.DataFrame(columns=DECISION_COLS))
    pred = predict_in_progress(reference, stable_rows, ident, [(b, br) for b, br, _, _ in later], seen_tokens,
                               fraction, level)
    rows = []
    for (budget, branch, compute, sizes), p in zip(later, pred.to_dict("records")):
        front = frontier_at(frontier, ident["variant"], compute)
        keep = ident["size"] in protected(frontier, ident["variant"], compute, sizes or {})
        ok = p["status"] == "ok" and np.isfinite(front)
        note = p["note"] if p["status"] != "ok" else \
            f"no reference frontier at {compute:.3g} FLOPs (outside its budgets)" if not np.isfinite(front) else \
            f"size {ident['size']} brackets the expected optimum of {budget}" if keep else ""
        rows.append({"budget": budget, "branch_tokens": float(branch), "compute": float(compute), "frontier": front,
                     "protected": keep, "status": p["status"], "note": note, "form": p["form"],
                     "predicted": p["predicted"], "lo": p["lo"], "hi": p["hi"],
                     "off_frontier": bool(ok and p["lo"] > front * (1 + margin))})
    table = pd.DataFrame(rows, columns=DECISION_COLS)
    off = table["off_frontier"].astype(bool) & ~table["protected"].astype(bool)
    if off.all():
        worst = table.assign(gap=table["lo"] / table["frontier"] - 1).sort_values("gap").iloc[0]
        return Decision(True, f"all {len(table)} later budget(s) predicted off the frontier (closest: {worst['budget']}, "
                              f"{level:.0%} interval [{worst['lo']:.3f}, {worst['hi']:.3f}] vs frontier "
                              f"{worst['frontier']:.3f})", table)
    first = table[~off].iloc[0]
    why = first["note"] or (f"its {level:.0%} interval [{first['lo']:.3f}, {first['hi']:.3f}] reaches the frontier "
                            f"{first['frontier']:.3f} (x{1 + margin:g})")
    return Decision(False, f"budget {first['budget']} goes on: {why}", table)
