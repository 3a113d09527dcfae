"""Predict each warmup-stable-decay run's final loss from the beginning of its stable phase.

A wsd run (training/loop.py) trains at a constant rate after its warmup, branches at its *branch point*
(the last row with ``phase == "stable"``, 80% of its budget in the default study) and cools down to its
budget. ``predict_final_losses`` predicts the last row's loss of every run from:

1. **its own early stable rows**: rows with ``phase == "stable"``, tokens >= ``warmup_tokens`` (the rate
   has reached its peak) and tokens <= ``fraction`` x the run's branch tokens ("the first 30%" is 30% of
   the tokens its stable phase runs before its own cooldown starts, counted from token 0; the warmup is
   inside that 30%). ``fit_early_curve`` fits L(S) = E + A S^-a on them, where S = tokens - warmup/2 is
   the learning-rate area in peak-rate tokens (a linear warmup of w tokens does the work of w/2 tokens
   at the peak rate; Tissue et al. 2024, "Scaling law with learning rate annealing"), with
   ``analysis.fits.fit_eterm`` on log-loss, and extrapolates to the branch point, with a delta-method
   standard error of the log prediction (residual variance on n - 3 degrees of freedom);
2. **the cooldown drop** of other lineages' finished runs: drop = ln(final loss) - ln(loss at the branch
   point), observed for every run with a cooldown; a run's drop is the mean over the runs of the same
   variant in *other* lineages (a lineage = variant, size, seed, lr: its budgets share one stable run, so
   they would leak its later stable rows); its spread enters the interval;
3. an **extrapolation bias** the same way: ln(observed branch loss) - ln(early fit's prediction there),
   averaged over the same other-lineage runs (the extrapolation from 30% of the stable phase to its end
   is systematically off for curves that bend; the other lineages measure how much).

prediction = exp(ln stable fit at branch + mean bias + mean drop). The run's own rows after its 30% cut
(its branch loss, its cooldown, its final loss) and every row of its lineage's other budgets are never used.

**Interval** (level ``level``, 90% by default): a model standard deviation sigma^2 = se_fit^2 +
var(drop) (1 + 1/n) + var(bias) (1 + 1/n) over the n other-lineage runs, scaled by a factor kappa
calibrated on other lineages (split-conformal with normalised scores): every run j of another lineage
is predicted the same way (also without the target's lineage), its score is |ln actual_j - ln predicted_j| /
sigma_j, and kappa is the ceil((m + 1) level)-th smallest of the m scores. With fewer than
ceil(1/(1 - level)) - 1 scores kappa is the normal quantile and the row says so ("uncalibrated").
So the interval never uses the run's own final loss, and its coverage is near ``level`` when runs are
exchangeable.

Pure: numpy, scipy (through analysis.fits), pandas; nothing printed, no files.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .fits import FitError, PowerLawFit, _eterm_jac, fit_eterm
from .table import validate_curves

FRACTION = 0.3  # share of a run's stable tokens (up to its branch) the prediction may see
LEVEL = 0.9  # interval level
MIN_POINTS = 4  # early points after warmup the E + A S^-a fit needs (3 parameters, >= 1 residual dof)
MIN_DONOR_LINEAGES = 2  # other lineages of the variant whose cooldowns set the drop model
FIT_DELTA = 1.0  # Huber delta on log-loss residuals: plain least squares at the scale of learning-curve noise
LINEAGE = ("variant", "size", "seed", "lr")
PREDICTION_COLS = ["run", "variant", "objective", "size", "seed", "lr", "budget", "status", "note", "n_points",
                   "cut_tokens", "branch_tokens", "final_tokens", "E", "E_lo", "E_hi", "stable_at_branch",
                   "se_fit", "bias", "drop", "n_donors", "kappa", "n_scores", "predicted", "lo", "hi", "actual",
                   "branch_actual", "abs_error", "rel_error", "inside", "fraction", "level"]


class PredictError(ValueError):
    """A run's final loss cannot be predicted; the message says why (the predictions table's note)."""


@dataclass(frozen=True)
class EarlyFit:
    """L(S) = E + (S_c / S)^alpha on a run's early stable rows, S = tokens - ``offset`` (``fit``:
    analysis.fits.PowerLawFit with x = S), with the covariance of (E, b, alpha) of fits' log-loss
    parameterisation (b = alpha (ln S_c - u0), u0 = mean ln S of the fitted points) for the delta method."""
    fit: PowerLawFit
    offset: float
    u0: float
    cov: np.ndarray = field(repr=False)
    dof: int

    def _theta(self) -> np.ndarray:
        return np.array([self.fit.E, self.fit.alpha * (math.log(self.fit.x_c) - self.u0), self.fit.alpha])

    def predict(self, tokens):
        return self.fit.predict(np.asarray(tokens, float) - self.offset)

    def log_se(self, tokens) -> np.ndarray:
        """Standard error of ln L(tokens) (delta method)."""
        u = np.log(np.atleast_1d(np.asarray(tokens, float)) - self.offset) - self.u0
        g = _eterm_jac(self._theta(), u, np.zeros_like(u))  # d ln L / d theta, (n, 3)
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", g, self.cov, g), 0.0))

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Interval of the asymptote E (t with the fit's residual dof), statsmodels-style."""
        se = math.sqrt(max(self.cov[0, 0], 0.0))
        t = stats.t.ppf(1 - alpha / 2, max(self.dof, 1))
        return pd.DataFrame({"lower": [max(self.fit.E - t * se, 0.0)], "upper": [self.fit.E + t * se]},
                            index=pd.Index(["E"], name="param"))


def fit_early_curve(tokens, loss, warmup_tokens: float = 0.0, min_points: int = MIN_POINTS) -> EarlyFit:
    """E + A S^-a (S = tokens - warmup/2) on one run's early points, least squares on ln L; raises
    PredictError with fewer than ``min_points`` points (at least 4: three parameters and one residual)."""
    tokens, loss = np.asarray(tokens, float), np.asarray(loss, float)
    if tokens.size < max(min_points, 4):
        raise PredictError(f"{tokens.size} stable point(s) after warmup in the window; need >= {max(min_points, 4)}")
    offset = warmup_tokens / 2.0
    s = tokens - offset
    try:
        fit = fit_eterm(s, loss, x_name="S", delta=FIT_DELTA)
    except FitError as e:
        raise PredictError(f"early-curve fit failed: {e}") from None
    u0 = float(np.mean(np.log(s)))
    theta = np.array([fit.E, fit.alpha * (math.log(fit.x_c) - u0), fit.alpha])
    jac = _eterm_jac(theta, np.log(s) - u0, np.log(loss))
    resid = np.log(fit.predict(s)) - np.log(loss)
    dof = tokens.size - 3
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.pinv(jac.T @ jac)
    return EarlyFit(fit, offset, u0, cov, dof)


# ---------------------------------------------------------------- one row per run: what it shows and what it hides
def _run_facts(g: pd.DataFrame, fraction: float) -> dict:
    """The observed quantities of one run (rows sorted by tokens): its branch, its early window, its end."""
    stable = g[g["phase"] == "stable"]
    last = g.iloc[-1]
    warm = float(g["warmup_tokens"].iloc[0]) if "warmup_tokens" in g and pd.notna(g["warmup_tokens"].iloc[0]) else 0.0
    facts = {"run": last["run"], **{k: last[k] for k in ("variant", "objective", "size", "seed")},
             "lr": last.get("lr", np.nan), "budget": last.get("budget", ""), "final_tokens": float(last["tokens"]),
             "actual": float(last["loss"]), "warmup": warm, "status_run": last.get("status", "ok")}
    if not len(stable) or (g["phase"] == "cooldown").sum() == 0:
        return {**facts, "branch_tokens": np.nan, "cut_tokens": np.nan, "branch_actual": np.nan, "early": stable.iloc[0:0]}
    branch = stable.iloc[-1]
    cut = fraction * float(branch["tokens"])
    early = stable[(stable["tokens"] >= warm) & (stable["tokens"] <= cut)]
    return {**facts, "branch_tokens": float(branch["tokens"]), "cut_tokens": cut, "branch_actual": float(branch["loss"]),
            "early": early}


def _early_row(f: dict, min_points: int) -> dict:
    """Fit the early window: status, the stable prediction at the branch and its log SE."""
    row = {k: v for k, v in f.items() if k not in ("early", "warmup", "status_run")}
    row["n_points"] = len(f["early"])
    if f["status_run"] != "ok":
        return {**row, "status": "refused", "note": f"run status {f['status_run']}: no final loss to predict"}
    if not np.isfinite(f["branch_tokens"]):
        return {**row, "status": "refused", "note": "no stable phase followed by a cooldown (not a wsd run)"}
    try:
        ef = fit_early_curve(f["early"]["tokens"], f["early"]["loss"], f["warmup"], min_points)
    except PredictError as e:
        status = "refused" if "need >=" in str(e) else "failed"
        return {**row, "status": status, "note": f"{e} (first {f['cut_tokens']:.0f} tokens)"}
    e_ci = ef.conf_int(0.05).iloc[0]
    return {**row, "status": "ok", "note": "", "E": ef.fit.E, "E_lo": e_ci["lower"], "E_hi": e_ci["upper"],
            "stable_at_branch": float(ef.predict(f["branch_tokens"])), "se_fit": float(ef.log_se(f["branch_tokens"])[0])}


# ---------------------------------------------------------------- other lineages: drop, bias, calibration
@dataclass(frozen=True)
class _Pool:
    """Per-run arrays (one entry per run of the table) the leave-lineage-out steps index into."""
    variant: np.ndarray
    lineage: np.ndarray
    fitted: np.ndarray  # the run's early fit succeeded
    has_cool: np.ndarray  # the run has a branch point and a final loss
    log_stable: np.ndarray  # ln early-fit prediction at the branch
    se_fit: np.ndarray
    drop: np.ndarray  # ln final - ln branch (observed)
    bias: np.ndarray  # ln branch - ln early-fit prediction at the branch (observed; NaN without a fit)
    log_actual: np.ndarray


def _pool(rows: pd.DataFrame) -> _Pool:
    fitted = (rows["status"] == "ok").to_numpy()
    has_cool = np.isfinite(rows["branch_actual"].to_numpy(float))
    log_stable = np.log(rows["stable_at_branch"].to_numpy(float))
    log_branch = np.log(rows["branch_actual"].to_numpy(float))
    log_actual = np.log(rows["actual"].to_numpy(float))
    lineage = rows[list(LINEAGE)].astype(str).agg("/".join, axis=1).to_numpy()
    return _Pool(rows["variant"].to_numpy(str), lineage, fitted, has_cool, log_stable, rows["se_fit"].to_numpy(float),
                 log_actual - log_branch, np.where(fitted, log_branch - log_stable, np.nan), log_actual)


def _correction(p: _Pool, j: int, exclude: np.ndarray) -> tuple[float, float, int] | None:
    """(mean drop + mean bias, their predictive variance, n) for run j from same-variant runs outside
    the excluded lineages; None when fewer than MIN_DONOR_LINEAGES lineages remain."""
    donors = (p.variant == p.variant[j]) & p.has_cool & ~np.isin(p.lineage, exclude)
    if len(set(p.lineage[donors])) < MIN_DONOR_LINEAGES:
        return None
    drop, bias = p.drop[donors], p.bias[donors & p.fitted]
    if bias.size < 2:
        return None
    n_d, n_b = drop.size, bias.size
    var = drop.var(ddof=1) * (1 + 1 / n_d) + bias.var(ddof=1) * (1 + 1 / n_b)
    return float(drop.mean() + bias.mean()), float(var), int(n_d)


def _predict_one(p: _Pool, j: int, exclude: np.ndarray):
    """(ln prediction, sigma, mean drop part, n donors) of run j without the excluded lineages."""
    corr = _correction(p, j, exclude)
    if corr is None or not p.fitted[j]:
        return None
    shift, var, n = corr
    return p.log_stable[j] + shift, math.sqrt(p.se_fit[j] ** 2 + var), n


def _kappa(p: _Pool, r: int, level: float) -> tuple[float, int]:
    """Conformal scale for run r: scores of every fitted run outside r's lineage, each predicted
    without its own and r's lineage."""
    scores = []
    for j in np.flatnonzero(p.fitted & p.has_cool & (p.lineage != p.lineage[r])):
        pred = _predict_one(p, j, np.array([p.lineage[j], p.lineage[r]]))
        if pred is not None and pred[1] > 0:
            scores.append(abs(p.log_actual[j] - pred[0]) / pred[1])
    m = len(scores)
    k = math.ceil((m + 1) * level)
    if k > m:
        return float(stats.norm.ppf(0.5 + level / 2)), m
    return float(np.sort(scores)[k - 1]), m


def _finish_row(row: dict, p: _Pool, r: int, level: float) -> dict:
    if row["status"] != "ok":
        return row
    pred = _predict_one(p, r, np.array([p.lineage[r]]))
    if pred is None:
        return {**row, "status": "refused",
                "note": f"fewer than {MIN_DONOR_LINEAGES} other lineages of {row['variant']} with a cooldown and an "
                        "early fit: no drop model"}
    log_pred, sigma, n = pred
    kappa, m = _kappa(p, r, level)
    corr = _correction(p, r, np.array([p.lineage[r]]))
    donors = (p.variant == p.variant[r]) & p.has_cool & (p.lineage != p.lineage[r])
    lo, hi = math.exp(log_pred - kappa * sigma), math.exp(log_pred + kappa * sigma)
    note = "" if m >= math.ceil(1 / (1 - level)) - 1 else f"uncalibrated: {m} calibration score(s), normal quantile used"
    return {**row, "note": note, "drop": float(p.drop[donors].mean()), "bias": corr[0] - float(p.drop[donors].mean()),
            "n_donors": n, "kappa": kappa, "n_scores": m, "predicted": math.exp(log_pred), "lo": lo, "hi": hi,
            "abs_error": abs(math.exp(log_pred) - row["actual"]),
            "rel_error": math.exp(log_pred) / row["actual"] - 1, "inside": bool(lo <= row["actual"] <= hi)}


@dataclass(frozen=True)
class Predictions:
    """Predicted vs actual final loss of every run (``table``: PREDICTION_COLS), statsmodels-style."""
    table: pd.DataFrame
    fraction: float
    level: float

    @property
    def ok(self) -> pd.DataFrame:
        return self.table[self.table["status"] == "ok"]

    def coverage(self) -> float:
        """Share of predicted runs whose actual final loss lies inside its interval."""
        return float(self.ok["inside"].astype(bool).mean()) if len(self.ok) else float("nan")

    def median_abs_error(self) -> float:
        return float(self.ok["abs_error"].median()) if len(self.ok) else float("nan")

    def conf_int(self, alpha: float | None = None) -> pd.DataFrame:
        """The prediction intervals (run-indexed lower/upper) at ``level`` (the only level computed)."""
        if alpha is not None and not math.isclose(1 - alpha, self.level):
            raise ValueError(f"intervals were computed at level {self.level}; call predict_final_losses(level={1 - alpha})")
        return self.ok.set_index("run")[["lo", "hi"]].rename(columns={"lo": "lower", "hi": "upper"})

    def summary(self) -> dict:
        return {"n_runs": len(self.table), "n_predicted": len(self.ok), "fraction": self.fraction, "level": self.level,
                "median_abs_error": self.median_abs_error(),
                "median_abs_rel_error": float(self.ok["rel_error"].abs().median()) if len(self.ok) else float("nan"),
                "coverage": self.coverage()}


def summary_line(table: pd.DataFrame) -> str:
    """One line on a predictions table: runs predicted, median absolute error, interval coverage."""
    if table is None or not len(table):
        return ""
    ok = table[table["status"] == "ok"]
    line = (f"predictions: {len(ok)} of {len(table)} run(s) predicted from the first "
            f"{float(table['fraction'].iloc[0]):.0%} of their stable phase")
    if len(ok):
        inside = ok["inside"].astype(str).str.lower().eq("true")
        line += (f"; median absolute error {(ok['predicted'] - ok['actual']).abs().median():.3g} nats; "
                 f"{float(table['level'].iloc[0]):.0%} intervals cover {int(inside.sum())}/{len(ok)}")
    return line


def predict_final_losses(curves, fraction: float = FRACTION, level: float = LEVEL,
                         min_points: int = MIN_POINTS) -> Predictions:
    """Predict every run's final loss from the first ``fraction`` of its stable phase (module docstring)."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction!r} must be in (0, 1), e.g. 0.3 for the first 30% of the stable phase")
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} must be in (0, 1), e.g. 0.9")
    curves = validate_curves(curves)
    if "phase" not in curves:
        raise ValueError("the curve table has no 'phase' column: predictions need warmup-stable-decay runs "
                         "(phase = stable / cooldown, as training/collect.py writes them)")
    curves = curves.assign(lr=curves["lr"] if "lr" in curves else np.nan)
    facts = [_run_facts(g.sort_values("tokens", kind="stable"), fraction) for _, g in curves.groupby("run", sort=True)]
    rows = pd.DataFrame([_early_row(f, min_points) for f in facts]).reindex(
        columns=list(dict.fromkeys(PREDICTION_COLS + ["branch_actual"])))
    p = _pool(rows)
    out = pd.DataFrame([_finish_row(row, p, r, level) for r, row in enumerate(rows.to_dict("records"))])
    return Predictions(out.assign(fraction=fraction, level=level).reindex(columns=PREDICTION_COLS), fraction, level)
