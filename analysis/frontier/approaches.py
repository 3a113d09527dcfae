"""Scaling laws from final points: one (N, D, C, L) per run, the loss at the end of its budget.

A run's last evaluation is the only point of its curve where its schedule has finished (a wsd run's
cooldown, a cosine run's decay); earlier points of a run are not the loss that budget buys. Hence:

* **Approach 1** (``final_frontier``): the compute-efficient frontier is the lower envelope of the
  final points over compute. Where the table names budgets, the best point of each budget is the
  candidate (the sizes of an IsoFLOP budget share one compute up to rounding), then the envelope
  keeps a candidate only when it is lower than every candidate of less compute, so the frontier
  falls monotonically by construction. Fits of L(C) on it: ``analysis.fits.powerlaw``.
* **Approach 2** (``isoflop_table``, ``allocation_fits``): per budget, final loss against log N
  is fitted by a parabola (Hoffmann et al. 2022); its minimum is N_opt(C). A budget is
  *bracketed* only when its best observed size has a smaller and a larger neighbour in that
  budget; unbracketed budgets are flagged and left out of the N_opt(C) and D_opt(C) power laws.
  D_opt is read off the budget's own (N, D) pairs (log-log interpolation), so no FLOP model is
  assumed. Intervals: a parametric bootstrap that perturbs every final loss with the study's
  noise (``noise_scale``: seed replicates where there are any, else the parabolas' residuals,
  else the stated default) and refits everything.

Columns used: variant, objective, size, run, loss, tokens, the compute column, params_nonembedding
(N of Approach 2) and, when present, budget and seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FINAL_COLS = ["variant", "objective", "run", "size", "seed", "budget", "params_total", "params_nonembedding",
              "tokens", "flops", "flops_6n", "loss", "eval_loss_se", "candidate", "on_frontier"]
ISOFLOP_COLS = ["variant", "objective", "budget", "compute", "n_sizes", "sizes", "best_size", "bracketed", "status",
                "note", "parab_a", "parab_b", "parab_c", "N_opt", "N_opt_lo", "N_opt_hi", "D_opt", "D_opt_lo", "D_opt_hi", "loss_opt",
                "n_boot", "n_failed"]
ALLOC_COLS = ["variant", "objective", "quantity", "status", "note", "n_budgets", "exponent", "exponent_lo",
              "exponent_hi", "coefficient", "r2_log", "n_boot", "n_failed", "noise", "noise_source"]


def final_points(curves: pd.DataFrame) -> pd.DataFrame:
    """The last evaluation of every run (validated curves in, one row per run out)."""
    last = curves.sort_values(["run", "tokens"], kind="stable").groupby("run", sort=True).tail(1)
    out = last.reset_index(drop=True).copy()
    if "budget" not in out.columns:
        out["budget"] = ""
    out["budget"] = out["budget"].fillna("").astype(str)
    return out


def has_budgets(curves: pd.DataFrame) -> bool:
    """Does the table hold several budgets of one size (the design final-point analysis needs)?
    True when some (variant, size) has runs that end at two or more different token counts."""
    finals = final_points(curves)
    return bool((finals.groupby(["variant", "size"])["tokens"].nunique() > 1).any())


def _groups(budget: np.ndarray) -> np.ndarray:
    """Integer group of each point: its budget where budgets are named, else one group per point."""
    if np.all(budget == ""):
        return np.arange(budget.size)
    return np.unique(budget, return_inverse=True)[1]


def envelope_mask(compute: np.ndarray, loss: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(candidate, on_frontier) masks: a candidate is the best point of its group; it is on the
    frontier when no candidate of less compute is as low."""
    candidate = np.zeros(loss.size, bool)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        candidate[idx[np.argmin(loss[idx])]] = True
    on = np.zeros(loss.size, bool)
    best = np.inf
    for i in np.flatnonzero(candidate)[np.argsort(compute[candidate], kind="stable")]:
        if loss[i] < best:
            on[i], best = True, loss[i]
    return candidate, on


def final_frontier(finals: pd.DataFrame, compute: str) -> pd.DataFrame:
    """One variant's final points with `candidate` and `on_frontier` flags (Approach 1)."""
    f = finals.sort_values(compute, kind="stable").reset_index(drop=True)
    cand, on = envelope_mask(f[compute].to_numpy(float), f["loss"].to_numpy(float), _groups(f["budget"].to_numpy(str)))
    return f.assign(candidate=cand, on_frontier=on)


# ---------------------------------------------------------------- Approach 2
@dataclass(frozen=True)
class Parabola:
    """loss = a u^2 + b u + c in u = ln N; minimum at u* = -b / 2a when a > 0."""
    a: float
    b: float
    c: float
    resid: np.ndarray

    @property
    def u_opt(self) -> float:
        return -self.b / (2 * self.a) if self.a > 0 else np.nan


def fit_parabola(lnN: np.ndarray, loss: np.ndarray) -> Parabola:
    a, b, c = np.polyfit(lnN, loss, 2)
    return Parabola(float(a), float(b), float(c), loss - np.polyval([a, b, c], lnN))


def _parabola_vertices(lnN: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """u* of the least-squares parabola for every row of losses (B, n), vectorised; NaN where a <= 0."""
    X = np.column_stack([lnN ** 2, lnN, np.ones_like(lnN)])
    coef = np.linalg.lstsq(X, losses.T, rcond=None)[0]  # (3, B)
    a, b = coef[0], coef[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, -b / (2 * a), np.nan)


@dataclass(frozen=True)
class Budget:
    """One IsoFLOP budget of one variant: its points (sorted by N) and whether it brackets an optimum."""
    name: str
    compute: float
    lnN: np.ndarray
    lnD: np.ndarray
    loss: np.ndarray
    sizes: tuple

    @property
    def best(self) -> int:
        return int(np.argmin(self.loss))

    @property
    def bracketed(self) -> bool:
        return len(self.sizes) >= 3 and 0 < self.best < len(self.sizes) - 1

    def d_at(self, u):
        """ln D at ln N = u, log-log interpolation between the budget's sizes."""
        return np.interp(u, self.lnN, self.lnD)


def budgets_of(finals: pd.DataFrame, compute: str) -> list[Budget]:
    """The IsoFLOP budgets of one variant's final points: the named budgets, else groups of final
    points whose compute agrees within 5%. Replicate seeds of a size are averaged."""
    f = finals.copy()
    if (f["budget"] == "").all():
        logc = np.log(f[compute].to_numpy(float))
        order = np.argsort(logc)
        group = np.zeros(len(f), int)
        group[order] = np.concatenate([[0], np.cumsum(np.diff(logc[order]) > np.log(1.05))])
        f["budget"] = [f"C{np.exp(logc[group == g]).mean():.3g}" for g in group]
    out = []
    for name, g in f.groupby("budget", sort=False):
        by_size = g.groupby("size").agg(N=("params_nonembedding", "first"), D=("tokens", "mean"),
                                        loss=("loss", "mean")).sort_values("N")
        if by_size["N"].nunique() != len(by_size):
            continue  # two sizes with one N cannot be told apart on the N axis
        out.append(Budget(str(name), float(g[compute].median()), np.log(by_size["N"].to_numpy(float)),
                          np.log(by_size["D"].to_numpy(float)), by_size["loss"].to_numpy(float),
                          tuple(by_size.index)))
    return sorted(out, key=lambda b: b.compute)


def noise_scale(finals: pd.DataFrame, budgets: list[Budget], default: float) -> tuple[float, str]:
    """SD of a final loss around its size's truth, for the parametric bootstrap: pooled SD across seed
    replicates (same size and budget) where any exist; else the parabolas' residual SD (budgets
    with more than three sizes); else the stated default (nats)."""
    if "seed" in finals.columns:
        reps = finals.groupby(["budget", "size"])["loss"].agg(["var", "count"]).dropna()
        reps = reps[reps["count"] >= 2]
        if len(reps):
            return float(np.sqrt(np.sum(reps["var"] * (reps["count"] - 1)) / np.sum(reps["count"] - 1))), "seeds"
    ss, df = 0.0, 0
    for b in budgets:
        if len(b.sizes) > 3:
            ss += float(np.sum(fit_parabola(b.lnN, b.loss).resid ** 2))
            df += len(b.sizes) - 3
    if df:
        return float(np.sqrt(ss / df)), "parabola residuals"
    return float(default), "default"


def isoflop_table(finals: pd.DataFrame, compute: str, n_boot: int, rng: np.random.Generator, ci_level: float,
                  noise_default: float) -> tuple[pd.DataFrame, dict]:
    """Approach 2 per budget for one variant: (table, draws) where draws[name] = bootstrap ln N_opt
    (NaN where a resample's parabola has no minimum). Unbracketed budgets get no N_opt."""
    ident = {"variant": finals["variant"].iloc[0], "objective": finals["objective"].iloc[0]}
    budgets = budgets_of(finals, compute)
    sigma, _ = noise_scale(finals, budgets, noise_default)
    q = 50 * (1 - ci_level)
    rows, draws = [], {}
    for b in budgets:
        row = {**ident, "budget": b.name, "compute": b.compute, "n_sizes": len(b.sizes), "sizes": " ".join(b.sizes),
               "best_size": b.sizes[b.best], "bracketed": b.bracketed, "n_boot": n_boot}
        if len(b.sizes) < 3:
            rows.append({**row, "status": "refused", "note": f"{len(b.sizes)} size(s); a parabola needs >= 3"})
            continue
        p = fit_parabola(b.lnN, b.loss)
        row.update(parab_a=p.a, parab_b=p.b, parab_c=p.c)
        if not b.bracketed:
            edge = "smallest" if b.best == 0 else "largest"
            rows.append({**row, "status": "unbracketed",
                         "note": f"best size {b.sizes[b.best]} is the {edge} of this budget: add a "
                                 f"{'smaller' if edge == 'smallest' else 'larger'} size; left out of the optimum fits"})
            continue
        u = p.u_opt
        boot = _parabola_vertices(b.lnN, b.loss[None, :] + rng.normal(0.0, sigma, (n_boot, b.loss.size))) \
            if n_boot else np.empty(0)
        boot = np.where((boot >= b.lnN[0]) & (boot <= b.lnN[-1]), boot, np.nan)  # a vertex outside: no optimum
        draws[b.name] = boot
        ok = boot[np.isfinite(boot)]
        lo, hi = np.percentile(ok, [q, 100 - q]) if ok.size else (np.nan, np.nan)
        rows.append({**row, "status": "ok", "note": "", "N_opt": np.exp(u), "N_opt_lo": np.exp(lo), "N_opt_hi": np.exp(hi),
                     # D falls as N rises at a fixed budget: N's upper bound gives D's lower one
                     "D_opt": np.exp(b.d_at(u)), "D_opt_lo": np.exp(b.d_at(hi)) if ok.size else np.nan,
                     "D_opt_hi": np.exp(b.d_at(lo)) if ok.size else np.nan,
                     "loss_opt": float(np.polyval([p.a, p.b, p.c], u)), "n_failed": int(n_boot - ok.size)})
    table = pd.DataFrame(rows).reindex(columns=ISOFLOP_COLS)
    return table, {"budgets": {b.name: b for b in budgets}, "draws": draws, "sigma": sigma}


def _slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """OLS y = k x + m: (k, m, r^2)."""
    k, m = np.polyfit(x, y, 1)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1 - float(np.sum((y - (k * x + m)) ** 2)) / ss_tot if ss_tot > 0 else np.nan
    return float(k), float(m), r2


def allocation_fits(table: pd.DataFrame, state: dict, finals: pd.DataFrame, compute: str, ci_level: float,
                    noise_default: float) -> pd.DataFrame:
    """N_opt ~ C^a and D_opt ~ C^b over the bracketed budgets (OLS in logs), with bootstrap intervals
    from the budgets' N_opt draws (one joint draw across budgets per resample)."""
    ident = {"variant": finals["variant"].iloc[0], "objective": finals["objective"].iloc[0]}
    sigma, source = noise_scale(finals, list(state["budgets"].values()), noise_default)
    ok = table[table["status"] == "ok"]
    base = {**ident, "n_budgets": len(ok), "noise": sigma, "noise_source": source}
    if len(ok) < 2:
        note = (f"{len(ok)} bracketed budget(s); N_opt(C) needs >= 2 "
                f"({int((table['status'] == 'unbracketed').sum())} unbracketed)")
        return pd.DataFrame([{**base, "quantity": q, "status": "refused", "note": note} for q in ("N_opt", "D_opt")],
                            columns=ALLOC_COLS)
    lnC = np.log(ok["compute"].to_numpy(float))
    budgets = [state["budgets"][n] for n in ok["budget"]]
    U = np.column_stack([state["draws"][n] for n in ok["budget"]])  # (B, k) ln N_opt draws
    q = 50 * (1 - ci_level)
    rows = []
    for quantity, point, draw in (("N_opt", np.log(ok["N_opt"].to_numpy(float)), U),
                                  ("D_opt", np.log(ok["D_opt"].to_numpy(float)),
                                   np.column_stack([b.d_at(U[:, j]) for j, b in enumerate(budgets)]) if U.size else U)):
        k, m, r2 = _slope(lnC, point)
        good = np.all(np.isfinite(draw), axis=1) if draw.size else np.zeros(0, bool)
        ks = np.polyfit(lnC, draw[good].T, 1)[0] if good.any() else np.empty(0)
        lo, hi = np.percentile(ks, [q, 100 - q]) if ks.size else (np.nan, np.nan)
        rows.append({**base, "quantity": quantity, "status": "ok", "note": "", "exponent": k, "exponent_lo": lo,
                     "exponent_hi": hi, "coefficient": float(np.exp(m)), "r2_log": r2, "n_boot": int(draw.shape[0]),
                     "n_failed": int((~good).sum())})
    return pd.DataFrame(rows, columns=ALLOC_COLS)


# ---------------------------------------------------------------- Approach 1 fits with a bootstrap
def frontier_fits(finals: pd.DataFrame, compute: str, n_boot: int, rng: np.random.Generator,
                  delta: float = 1e-3) -> tuple[dict, dict]:
    """Pure and E-term L(C) on one variant's final-point frontier; bootstrap over runs (resample the
    final points with replacement, rebuild the frontier, refit). Returns ({form: fit or None},
    {form: note}); a resample whose frontier is too short for a form counts as failed."""
    from dataclasses import replace

    from analysis.fits.powerlaw import FitError, fit_form

    C = finals[compute].to_numpy(float)
    L = finals["loss"].to_numpy(float)
    groups = _groups(finals["budget"].fillna("").astype(str).to_numpy())

    def frontier(idx):
        _, on = envelope_mask(C[idx], L[idx], groups[idx])
        return C[idx][on], L[idx][on]

    x, y = frontier(np.arange(L.size))
    fits, notes = {}, {}
    for form in ("pure", "eterm"):
        try:
            fits[form] = fit_form(form, x, y, "C", delta)
        except FitError as e:
            fits[form], notes[form] = None, f"final-point frontier has {x.size} point(s): {e}"
    if not n_boot or not any(f is not None for f in fits.values()):
        return fits, notes
    draws = {f: np.full((n_boot, 3), np.nan) for f in fits if fits[f] is not None}
    cache = {}
    for r, idx in enumerate(rng.integers(0, L.size, size=(n_boot, L.size))):
        key = tuple(np.unique(idx))  # a duplicated run cannot change the frontier
        if key not in cache:
            bx, by = frontier(np.asarray(key))
            cache[key] = {}
            for form in draws:
                try:
                    f = fit_form(form, bx, by, "C", delta, start=fits[form])
                    cache[key][form] = (f.alpha, f.x_c, f.E)
                except FitError:
                    pass
        for form, value in cache[key].items():
            draws[form][r] = value
    return {f: (replace(fit, draws=draws[f]) if fit is not None else None) for f, fit in fits.items()}, notes


def extrapolation_check(fin: pd.DataFrame, opts, rng: np.random.Generator) -> pd.DataFrame:
    """Would the final-point frontier of the smaller budgets have predicted the largest one? Refit it
    without the top budget's runs and predict the best final loss there, with a bootstrap prediction
    interval (bootstrap fit prediction x a resampled log residual of the fit)."""
    from analysis.comparison.comparisons import EXTRAP_COLS, extrapolation_row

    ident = {"variant": fin["variant"].iloc[0], "objective": fin["objective"].iloc[0]}
    groups = _groups(fin["budget"].fillna("").astype(str).to_numpy())
    c = fin[opts.compute].to_numpy(float)
    top = groups[np.argmax(c)]
    held, train = fin[groups == top], fin[groups != top]
    if train["budget"].nunique() < 3 and (train["budget"] != "").all():
        note = f"refused: needs >= 3 budgets below the largest, has {train['budget'].nunique()}"
        return pd.DataFrame([{**ident, "form": f, "status": "refused", "note": note} for f in ("pure", "eterm")],
                            columns=EXTRAP_COLS)
    best = held.loc[held["loss"].idxmin()]
    c_eval, actual = float(best[opts.compute]), float(best["loss"])
    fits, notes = frontier_fits(train, opts.compute, opts.n_boot, rng, opts.huber_delta)
    front = final_frontier(train, opts.compute)
    front = front[front["on_frontier"]]
    base = {**ident, "held_out_size": f"{best['budget'] or best['size']} (best: {best['size']})",
            "c_eval": c_eval, "c_max_train": float(train[opts.compute].max()), "actual_loss": actual}
    rows = [extrapolation_row(base, form, f, notes.get(form, ""), front[opts.compute], front["loss"], rng, opts.ci_level)
            for form, f in fits.items()]
    return pd.DataFrame(rows, columns=EXTRAP_COLS)
