"""Compute-efficient frontier: lower envelope of the runs' loss curves over compute."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class RunCurves:
    """One variant's runs as arrays (log compute, log loss), sorted by compute."""
    runs: tuple  # run ids
    sizes: tuple  # size name per run
    size_rank: tuple  # 0 = smallest (by params_total)
    logc: tuple  # per run: np.ndarray of log compute (strictly increasing)
    logl: tuple  # per run: np.ndarray of log loss
    raw: tuple = ()  # per run: (compute, loss) as given, for exact envelope points

    @classmethod
    def from_table(cls, curves: pd.DataFrame, compute: str) -> "RunCurves":
        runs, sizes, params, logc, logl, raw = [], [], [], [], [], []
        for run, g in curves.groupby("run", sort=True):
            g = g.sort_values(compute).drop_duplicates(compute, keep="last")
            runs.append(run)
            sizes.append(g["size"].iloc[0])
            params.append(g["params_total"].iloc[0])
            logc.append(np.log(g[compute].to_numpy(float)))
            logl.append(np.log(g["loss"].to_numpy(float)))
            raw.append((g[compute].to_numpy(float), g["loss"].to_numpy(float)))
        order = {p: i for i, p in enumerate(sorted(set(params)))}
        return cls(tuple(runs), tuple(sizes), tuple(order[p] for p in params), tuple(logc), tuple(logl), tuple(raw))

    def subset(self, idx) -> "RunCurves":
        idx = sorted(set(int(i) for i in idx))
        pick = lambda seq: tuple(seq[i] for i in idx)
        return RunCurves(pick(self.runs), pick(self.sizes), pick(self.size_rank), pick(self.logc), pick(self.logl),
                         pick(self.raw) if self.raw else ())

    def __len__(self):
        return len(self.runs)


def _interp_matrix(rc: RunCurves, logx: np.ndarray) -> np.ndarray:
    """Log-log interpolation of every run at logx; NaN outside a run's observed range."""
    out = np.full((len(rc), logx.size), np.nan)
    for i, (c, ll) in enumerate(zip(rc.logc, rc.logl)):
        inside = (logx >= c[0]) & (logx <= c[-1])
        out[i, inside] = np.interp(logx[inside], c, ll)
    return out


def grid_frontier(rc: RunCurves, grid_points: int):
    """Frontier on a log-spaced grid spanning the runs' compute range.

    Returns (log grid, log loss, owner index); grid points that no run covers are dropped.
    """
    if len(rc) == 0:
        return np.empty(0), np.empty(0), np.empty(0, int)
    lo = min(c[0] for c in rc.logc)
    hi = max(c[-1] for c in rc.logc)
    if not hi > lo:
        return np.empty(0), np.empty(0), np.empty(0, int)
    logx = np.linspace(lo, hi, grid_points)
    logx[0], logx[-1] = lo, hi  # exact ends, no rounding outside a run's range
    m = _interp_matrix(rc, logx)
    covered = ~np.all(np.isnan(m), axis=0)
    m, logx = m[:, covered], logx[covered]
    owner = np.argmin(np.where(np.isnan(m), np.inf, m), axis=0)
    return logx, m[owner, np.arange(logx.size)], owner


def envelope_points(rc: RunCurves) -> pd.DataFrame:
    """Raw points lying on the lower envelope (no other run is lower at that compute)."""
    rows = []
    for i, (c, ll) in enumerate(zip(rc.logc, rc.logl)):
        others = _interp_matrix(rc, c)
        others[i] = np.nan
        best_other = np.nanmin(np.where(np.isnan(others), np.inf, others), axis=0)
        on = ll <= best_other
        comp, loss = rc.raw[i] if rc.raw else (np.exp(c), np.exp(ll))
        rows.append(pd.DataFrame({"run": rc.runs[i], "size": rc.sizes[i], "compute": comp[on], "loss": loss[on]}))
    if not rows:
        return pd.DataFrame(columns=["run", "size", "compute", "loss"])
    return pd.concat(rows, ignore_index=True).sort_values("compute", kind="stable").reset_index(drop=True)


def variant_frontier(rc: RunCurves, grid_points: int) -> dict:
    """Frontier tables for one variant: grid, raw envelope points, ownership stretches, bracketing."""
    logx, logy, owner = grid_frontier(rc, grid_points)
    grid = pd.DataFrame({"compute": np.exp(logx), "loss": np.exp(logy),
                         "run": [rc.runs[o] for o in owner], "size": [rc.sizes[o] for o in owner]})
    stretch = np.concatenate([[0], np.cumsum(owner[1:] != owner[:-1])]) if owner.size else owner
    owners = (grid.assign(stretch=stretch).groupby("stretch", sort=True)
              .agg(run=("run", "first"), size=("size", "first"), c_start=("compute", "min"),
                   c_end=("compute", "max"), n_grid=("compute", "size")).reset_index(drop=True))
    if owner.size:
        top = int(owner[-1])
        largest = max(rc.size_rank)
        bracketed = rc.size_rank[top] != largest
        largest_name = rc.sizes[rc.size_rank.index(largest)]
        note = "" if bracketed else (f"not bracketed: largest size {largest_name!r} owns the frontier at the "
                                     "highest compute; add a larger size")
        summary = dict(c_min=float(grid["compute"].iloc[0]), c_max=float(grid["compute"].iloc[-1]),
                       largest_size=largest_name, top_owner=rc.runs[top], top_owner_size=rc.sizes[top],
                       bracketed=bool(bracketed), note=note)
    else:
        summary = dict(c_min=np.nan, c_max=np.nan, largest_size="", top_owner="", top_owner_size="",
                       bracketed=False, note="no frontier: no run spans a compute range")
    summary.update(n_runs=len(rc), n_sizes=len(set(rc.sizes)))
    return {"grid": grid, "points": envelope_points(rc), "owners": owners, "summary": summary}
