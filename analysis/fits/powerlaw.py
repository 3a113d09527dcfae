"""Scaling-law fits: pure and E-term power laws in one variable, and Chinchilla Approach 3.

All fits are on log-loss.  Pure power law L = (x_c/x)^alpha: statsmodels OLS of log L on log x.
E-term L = E + (x_c/x)^alpha and L(N, D) = E + A/N^alpha + B/D^beta: Huber loss (delta on the
log-loss residual, summed over points) minimised with scipy.optimize.least_squares(loss="huber"),
started from a variable-projection scan (for fixed exponents the model is linear in E, A, B).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.optimize import least_squares, nnls
from scipy.special import huber

ALPHA_MAX = 10.0


def huber_sum(resid, delta: float) -> float:
    return float(np.sum(huber(delta, np.asarray(resid))))


def _gof(resid, logy, delta):
    ss_res = float(np.sum(resid ** 2))
    ss_tot = float(np.sum((logy - logy.mean()) ** 2))
    return dict(rmse_log=float(np.sqrt(ss_res / resid.size)),
                r2_log=float(1 - ss_res / ss_tot) if ss_tot > 0 else np.nan,
                huber=huber_sum(resid, delta))


def _interval(draws: np.ndarray | None, names, level_alpha: float) -> pd.DataFrame:
    lo, hi = np.full(len(names), np.nan), np.full(len(names), np.nan)
    if draws is not None and draws.size:
        good = draws[np.all(np.isfinite(draws), axis=1)]
        if len(good):
            lo, hi = np.percentile(good, [50 * level_alpha, 100 - 50 * level_alpha], axis=0)
    return pd.DataFrame({"lower": lo, "upper": hi}, index=pd.Index(list(names), name="param"))


class _FitMixin:
    """Shared conf_int / summary / n_failed for fit dataclasses with a ``draws`` array."""

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Bootstrap percentile interval at level 1 - alpha; without bootstrap draws, a pure power law's
        OLS interval (t on alpha, delta method on ln C_c), else NaN."""
        if self.draws is None and getattr(self, "ols_cov", None) is not None:
            return self._ols_interval(alpha)
        return _interval(self.draws, self.params(), alpha)

    @property
    def n_boot(self) -> int:
        return 0 if self.draws is None else int(len(self.draws))

    @property
    def n_failed(self) -> int:
        return 0 if self.draws is None else int((~np.all(np.isfinite(self.draws), axis=1)).sum())

    def summary(self, alpha: float = 0.05) -> pd.DataFrame:
        ci = self.conf_int(alpha)
        est = pd.Series(self.params(), name="estimate")
        out = pd.concat([est, ci], axis=1).reset_index().rename(columns={"index": "param"})
        gof = pd.DataFrame({"param": ["rmse_log", "r2_log", "huber", "n_points", "n_boot", "n_failed"],
                            "estimate": [self.rmse_log, self.r2_log, self.huber, self.n_points,
                                         self.n_boot, self.n_failed]})
        return pd.concat([out, gof], ignore_index=True)


@dataclass(frozen=True)
class PowerLawFit(_FitMixin):
    """L(x) = E + (x_c / x)^alpha (E = 0 for the pure form)."""
    form: str  # "pure" | "eterm"
    x_name: str  # "C" or "N": names the scale parameter C_c / N_c
    alpha: float
    x_c: float
    E: float
    n_points: int
    rmse_log: float
    r2_log: float
    huber: float
    x_range: tuple = (np.nan, np.nan)
    draws: np.ndarray | None = field(default=None, compare=False, repr=False)  # (B, 3): alpha, x_c, E
    at_bound: tuple = ()  # E-term: ("E",) when E ended at its bound 0 (no irreducible term found)
    # pure form: covariance of the OLS (intercept, slope) of ln L on ln x and its residual dof
    ols_cov: np.ndarray | None = field(default=None, compare=False, repr=False)
    ols_df: int = 0

    def params(self) -> dict:
        return {"alpha": self.alpha, f"{self.x_name}_c": self.x_c, "E": self.E}

    def _ols_interval(self, level_alpha: float) -> pd.DataFrame:
        from scipy.stats import t

        q = t.ppf(1 - level_alpha / 2, max(self.ols_df, 1))
        b1 = -self.alpha
        b0 = self.alpha * np.log(self.x_c)
        se_a = float(np.sqrt(self.ols_cov[1, 1]))
        g = np.array([-1.0 / b1, b0 / b1 ** 2])  # ln x_c = -b0 / b1
        se_lx = float(np.sqrt(g @ self.ols_cov @ g))
        lo = [self.alpha - q * se_a, float(np.exp(np.log(self.x_c) - q * se_lx)), 0.0]
        hi = [self.alpha + q * se_a, float(np.exp(np.log(self.x_c) + q * se_lx)), 0.0]
        return pd.DataFrame({"lower": lo, "upper": hi}, index=pd.Index(list(self.params()), name="param"))

    def predict(self, x):
        return self.E + (self.x_c / np.asarray(x, float)) ** self.alpha

    def predict_draws(self, x) -> np.ndarray:
        """(B, len(x)) predictions from the bootstrap draws (NaN rows for failed resamples)."""
        a, xc, e = (self.draws[:, i:i + 1] for i in range(3))
        return e + (xc / np.atleast_1d(np.asarray(x, float))[None, :]) ** a


@dataclass(frozen=True)
class Approach3Fit(_FitMixin):
    """Chinchilla Approach 3: L(N, D) = E + A / N^alpha + B / D^beta."""
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    n_points: int
    rmse_log: float
    r2_log: float
    huber: float
    draws: np.ndarray | None = field(default=None, compare=False, repr=False)  # (B, 7) as params()
    at_bound: tuple = ()  # names of parameters that ended on a bound of the search: not an optimum

    @staticmethod
    def allocation(E, A, B, alpha, beta):
        """N_opt(C) = G (C/6)^a with a = beta/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta)).

        Computed in logs with numpy floats, so a degenerate fit (A or B = 0, alpha + beta = 0) gives
        inf/NaN instead of raising; ``fit_approach3`` refuses such fits before they get here.
        """
        E, A, B, alpha, beta = (np.float64(v) for v in (E, A, B, alpha, beta))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            a = beta / (alpha + beta)
            G = np.exp((np.log(alpha) + np.log(A) - np.log(beta) - np.log(B)) / (alpha + beta))
        return float(a), float(G)

    def params(self) -> dict:
        a, G = self.allocation(self.E, self.A, self.B, self.alpha, self.beta)
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta, "a": a, "G": G}

    def predict(self, N, D):
        return self.E + self.A / np.asarray(N, float) ** self.alpha + self.B / np.asarray(D, float) ** self.beta

    def n_opt(self, C):
        a, G = self.allocation(self.E, self.A, self.B, self.alpha, self.beta)
        return G * (np.asarray(C, float) / 6.0) ** a


class FitError(ValueError):
    """A fit could not be made; the message says why (recorded in the fit table's note)."""


def _check_xy(x, loss, need: int):
    x, loss = np.asarray(x, float), np.asarray(loss, float)
    ok = np.isfinite(x) & np.isfinite(loss) & (x > 0) & (loss > 0)
    x, loss = x[ok], loss[ok]
    if x.size < need or np.unique(x).size < 2:
        raise FitError(f"needs at least {need} points at 2+ distinct x, got {x.size}")
    return x, loss


def _scale(log_xc: float, x_name: str, alpha: float) -> float:
    """x_c = exp(log x_c), refused when it is not a finite positive float (a nearly flat curve has a
    scale beyond 1e308, which would turn predictions and multipliers into inf/NaN downstream)."""
    with np.errstate(over="ignore"):
        x_c = float(np.exp(log_xc))
    if not 0.0 < x_c < np.inf:
        raise FitError(f"the loss barely changes with {x_name} (fitted alpha = {alpha:.3g}), or its scale is "
                       f"extreme: {x_name}_c = exp({log_xc:.4g}) is outside the float range")
    return x_c


# ---------------------------------------------------------------- pure power law (OLS)
def fit_pure(x, loss, x_name: str = "C", delta: float = 1e-3) -> PowerLawFit:
    x, loss = _check_xy(x, loss, 3)
    lx, ly = np.log(x), np.log(loss)
    res = sm.OLS(ly, sm.add_constant(lx)).fit()
    b0, b1 = res.params
    alpha = -b1
    if not alpha > 0:
        raise FitError(f"loss does not decrease with {x_name} (fitted alpha = {alpha:.3g})")
    x_c = _scale(b0 / alpha, x_name, alpha)
    return PowerLawFit("pure", x_name, float(alpha), x_c, 0.0, int(x.size),
                       **_gof(res.fittedvalues - ly, ly, delta), x_range=(float(x.min()), float(x.max())),
                       ols_cov=np.asarray(res.cov_params()), ols_df=int(res.df_resid))


# ---------------------------------------------------------------- E-term power law (Huber)
def _eterm_residuals(theta, u, ly):
    E, b, alpha = theta
    with np.errstate(over="ignore", divide="ignore"):
        return np.log(E + np.exp(np.minimum(b - alpha * u, 700.0))) - ly


def _eterm_jac(theta, u, ly):
    E, b, alpha = theta
    p = np.exp(np.minimum(b - alpha * u, 700.0))
    s = E + p
    return np.column_stack([1.0 / s, p / s, -u * p / s])


def _eterm_starts(u, loss, k=3):
    """Variable projection scan: for fixed E, log(L - E) is linear in u."""
    starts = []
    for frac in (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98):
        E = frac * loss.min()
        slope, b = np.polyfit(u, np.log(loss - E), 1)
        if -slope > 0:
            r = np.log(E + np.exp(b + slope * u)) - np.log(loss)
            starts.append((float(np.sum(r ** 2)), (E, b, min(-slope, ALPHA_MAX))))
    return [s for _, s in sorted(starts, key=lambda t: t[0])[:k]]


def fit_eterm(x, loss, x_name: str = "C", delta: float = 1e-3, start: PowerLawFit | None = None) -> PowerLawFit:
    """L = E + (x_c/x)^alpha by Huber loss on log-loss residuals; several starts, best kept.

    Starts come from a variable-projection scan over E.  With ``start`` (the full-data fit, for
    bootstrap resamples) that warm start is polished first, and the best scan start only if it is
    already better than the polished warm start.
    """
    x, loss = _check_xy(x, loss, 4)
    lx, ly = np.log(x), np.log(loss)
    u0 = float(lx.mean())
    u = lx - u0
    lower, upper = [0.0, -np.inf, 1e-6], [np.inf, np.inf, ALPHA_MAX]

    def polish(s):
        s = np.clip(np.asarray(s, float), lower, upper)
        try:
            return least_squares(_eterm_residuals, s, jac=_eterm_jac, args=(u, ly), loss="huber", f_scale=delta,
                                 bounds=(lower, upper), x_scale="jac", method="trf", max_nfev=200)
        except ValueError:  # residuals not finite at this start (the power term underflows to 0 with E = 0)
            return None

    scan = _eterm_starts(u, loss, k=1 if start is not None else 3)
    runs = []
    if start is not None and np.isfinite(start.alpha):
        runs.append(polish((min(start.E, 0.99 * loss.min()), start.alpha * (np.log(start.x_c) - u0), start.alpha)))
        if runs[0] is not None:
            scan = [s for s in scan if huber_sum(_eterm_residuals(s, u, ly), delta) < runs[0].cost]
    runs = [r for r in runs + [polish(s) for s in scan] if r is not None]
    if not runs:
        raise FitError(f"loss does not decrease with {x_name}")
    best = min(runs, key=lambda r: r.cost)
    E, b, alpha = best.x
    if not np.all(np.isfinite(best.x)) or alpha >= ALPHA_MAX * 0.999:
        raise FitError(f"E-term fit did not converge (alpha -> {alpha:.3g})")
    resid = _eterm_residuals(best.x, u, ly)
    return PowerLawFit("eterm", x_name, float(alpha), _scale(u0 + b / alpha, x_name, alpha), float(E), int(x.size),
                       **_gof(resid, ly, delta), x_range=(float(x.min()), float(x.max())),
                       at_bound=("E",) if E <= 1e-9 * loss.min() else ())


def fit_form(form: str, x, loss, x_name="C", delta=1e-3, start=None) -> PowerLawFit:
    return fit_pure(x, loss, x_name, delta) if form == "pure" else fit_eterm(x, loss, x_name, delta, start)


# ---------------------------------------------------------------- Chinchilla Approach 3
def _a3_terms(theta, lN, lD):
    e, a, b, alpha, beta = theta
    t1, t2 = a - alpha * lN, b - beta * lD
    m = np.maximum(np.maximum(t1, t2), e)
    w1, w2, w3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(e - m)
    s = w1 + w2 + w3
    return m + np.log(s), w1 / s, w2 / s, w3 / s


def _a3_residuals(theta, lN, lD, ly):
    """log(E + A N^-alpha + B D^-beta) - log L, with (e, a, b) = log(E, A, B)."""
    return _a3_terms(theta, lN, lD)[0] - ly


def _a3_jac(theta, lN, lD, ly):
    _, w1, w2, w3 = _a3_terms(theta, lN, lD)
    return np.column_stack([w3, w1, w2, -lN * w1, -lD * w2])


def _a3_starts(N, D, L, delta, k=4, grid=np.linspace(0.05, 1.5, 30)):
    """Variable projection: for fixed (alpha, beta) fit E, A, B >= 0 by NNLS on relative residuals."""
    inv = 1.0 / L
    ly = np.log(L)
    cands = []
    for al in grid:
        nterm = N ** -al
        for be in grid:
            X = np.column_stack([inv, nterm * inv, D ** -be * inv])
            scale = X.max(axis=0)
            coef, _ = nnls(X / scale, np.ones_like(L))
            coef = np.maximum(coef / scale, 1e-12)
            r = np.log(coef[0] + coef[1] * nterm + coef[2] * D ** -be) - ly
            cands.append((huber_sum(r, delta), (np.log(coef[0]), np.log(coef[1]), np.log(coef[2]), al, be)))
    cands.sort(key=lambda t: t[0])
    picked = []
    for _, th in cands:  # distinct exponent pairs only
        if all(abs(th[3] - p[3]) + abs(th[4] - p[4]) > 0.15 for p in picked):
            picked.append(th)
        if len(picked) == k:
            break
    return picked


A3_MIN_SHARE = 1e-6  # a term below this share of the loss at every point has vanished: its exponent is unidentified


def _check_a3_terms(theta, lN, lD):
    """Refuse an optimum whose A or B term vanished (below ``A3_MIN_SHARE`` of the loss at every point, or
    exp underflowing to 0: the loss does not fall with N or D, and that exponent is arbitrary) or whose
    allocation G is not finite; such a fit has no meaningful N_opt(C) and would divide by zero downstream."""
    e, a, b, alpha, beta = theta
    _, w1, w2, _ = _a3_terms(theta, lN, lD)
    for name, log_v, share, var in (("A", a, w1, "parameters N"), ("B", b, w2, "tokens D")):
        with np.errstate(over="ignore", under="ignore"):
            value = np.exp(log_v)
        if not (0.0 < value < np.inf and share.max() >= A3_MIN_SHARE):
            raise FitError(f"Approach 3 fit is degenerate: the loss does not fall with {var} ({name} = "
                           f"exp({log_v:.4g}), at most {share.max():.2g} of the loss at any point)")
    if not np.isfinite(Approach3Fit.allocation(np.exp(e), np.exp(a), np.exp(b), alpha, beta)[1]):
        raise FitError("Approach 3 fit is degenerate: the allocation G = (alpha A / (beta B))^(1/(alpha+beta)) "
                       "is not finite")


def fit_approach3(N, D, loss, delta: float = 1e-3, start: Approach3Fit | None = None, n_starts: int = 4,
                  tol: float = 1e-12, max_nfev: int = 2000, scan: bool = True) -> Approach3Fit:
    """Chinchilla Approach 3 by Huber loss (delta on log-loss residuals, summed over points).

    Starts: ``start`` (warm start) if given, then -- when there is none, it fails, and ``scan`` --
    the ``n_starts`` best distinct exponent pairs of the variable-projection scan.
    """
    N, D, L = (np.asarray(v, float) for v in (N, D, loss))
    ok = np.isfinite(N) & np.isfinite(D) & np.isfinite(L) & (N > 0) & (D > 0) & (L > 0)
    N, D, L = N[ok], D[ok], L[ok]
    if L.size < 6 or np.unique(N).size < 2 or np.unique(D).size < 2:
        raise FitError(f"Approach 3 needs >= 6 points with 2+ distinct N and D, got {L.size}")
    lN, lD, ly = np.log(N), np.log(D), np.log(L)
    # log E >= -12 keeps a vanishing E (pure power-law data) from drifting to -inf; exponents in [0, 5]
    # (for losses far below 1, the bound moves down with them so that it stays below the upper bound)
    e_lo = min(-12.0, float(ly.max()) - 12.0)
    lower, upper = [e_lo, -np.inf, -np.inf, 0.0, 0.0], [float(ly.max()) + 1.0, np.inf, np.inf, 5.0, 5.0]

    def polish(starts):
        best = None
        for s in starts:
            s = np.clip(np.nan_to_num(np.asarray(s, float), neginf=e_lo), lower, upper)
            try:
                r = least_squares(_a3_residuals, s, jac=_a3_jac, args=(lN, lD, ly), loss="huber",
                                  bounds=(lower, upper), f_scale=delta, x_scale="jac", method="trf", ftol=tol,
                                  xtol=tol, gtol=tol, max_nfev=max_nfev)
            except ValueError:  # residuals not finite at this start
                continue
            if best is None or r.cost < best.cost:
                best = r
        good = (best is not None and best.status > 0 and np.all(np.isfinite(best.x)) and best.x[3] > 0
                and best.x[4] > 0)
        return best if good else None

    # warm start (bootstrap resamples) first; the variable-projection scan when there is none or it fails
    with np.errstate(divide="ignore"):
        warm = [(np.log(start.E), np.log(start.A), np.log(start.B), start.alpha, start.beta)] if start else []
    best = polish(warm) if warm else None
    if best is None and scan:
        best = polish(_a3_starts(N, D, L, delta, k=n_starts))
    if best is None:
        raise FitError("Approach 3 fit did not converge to positive exponents")
    _check_a3_terms(best.x, lN, lD)
    e, a, b, alpha, beta = best.x
    resid = _a3_residuals(best.x, lN, lD, ly)
    names = ("E", "A", "B", "alpha", "beta")
    near = [n for n, v, lo, hi in zip(names, best.x, lower, upper)  # within 1e-3 of a finite bound
            if min(abs(v - lo), abs(v - hi)) < 1e-3]
    return Approach3Fit(float(np.exp(e)), float(np.exp(a)), float(np.exp(b)), float(alpha), float(beta),
                        int(L.size), **_gof(resid, ly, delta), at_bound=tuple(near))


def bootstrap_approach3(fit: Approach3Fit, N, D, loss, clusters, n_boot: int, rng: np.random.Generator,
                        delta: float = 1e-3) -> Approach3Fit:
    """Resample clusters (e.g. runs; a point per cluster for Chinchilla) with replacement, refit from the
    full-data optimum; a resample whose refit does not converge in 200 evaluations counts as failed."""
    N, D, L, clusters = (np.asarray(v) for v in (N, D, loss, clusters))
    ids, inverse = np.unique(clusters, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(ids.size)]
    draws = np.full((n_boot, 7), np.nan)
    for k, pick in enumerate(rng.integers(0, ids.size, size=(n_boot, ids.size))):
        rows = np.concatenate([members[i] for i in pick])
        try:
            f = fit_approach3(N[rows], D[rows], L[rows], delta, start=fit, tol=1e-10, max_nfev=200, scan=False)
        except FitError:
            continue
        draws[k] = list(f.params().values())
    return replace(fit, draws=draws)
