"""Predict each warmup-stable-decay run's final loss from the beginning of its stable phase.

A wsd run (training/loop.py) trains at a constant rate after its warmup, branches at its *branch point*
(the last row with ``phase == "stable"``, 80% of its budget in the default study) and cools down to its
budget. ``predict_final_losses`` predicts the last row's loss of every run from:

1. **its own early stable rows** (the *window*): rows with ``phase == "stable"``, tokens >= ``warmup_tokens``
   (the rate has reached its peak) and tokens <= ``fraction`` x the run's branch tokens ("the first 30%" is
   30% of the tokens its stable phase runs before its own cooldown starts, counted from token 0, so the
   warmup is inside it). ``fit_early_curve`` summarises the window in one of three *forms*, each giving
   ln L at the branch point with a delta-method standard error (residual variance on n - (free parameters)
   degrees of freedom), with S = tokens - warmup/2 the learning-rate area in peak-rate tokens (a linear
   warmup of w tokens does the work of w/2 at the peak rate; Tissue et al. 2024, "Scaling law with learning
   rate annealing"):
   "eterm" L = E + A S^-a (``fits.fit_eterm`` on log-loss, >= 4 points), "pure" L = A S^-a (``fits.fit_pure``,
   >= 3) and "level" (the window's geometric-mean loss, >= 2: no extrapolation of its own; the bias below
   carries it to the branch). Fewer than 2 points: ``refused``;
2. **the cooldown drop**: drop = ln(final loss) - ln(loss at the branch point), observed on every finished
   run; a run's drop is the mean over the runs of the same variant in *other* lineages (a lineage = variant,
   size, seed, lr: its budgets share one stable run, so they would leak its later stable rows);
3. **the extrapolation bias** of the form, the same way: ln(observed branch loss) - ln(the form's value at the
   branch from that run's own window), averaged over the same other-lineage runs (an extrapolation from 30%
   of the stable phase to its end is systematically off for curves that bend; the other lineages measure how
   much; for "level" it is the typical ratio between the window's level and the branch loss).

prediction = exp(form at branch + mean bias + mean drop). Which form: the one whose predictions of the runs
of *other* lineages (each made the same way without its own and the target's lineage) have the smallest
median absolute log error - a cross-validated choice, per run (in the default study every run chose
"level": with 2-5 early points on curves with plateaus, a fitted extrapolation was worse than the other
lineages' window-to-branch ratio; the forms' numbers are in the report).

**Interval** (level ``level``, 90% by default): a model standard deviation sigma^2 = se_fit^2 +
var(drop) (1 + 1/n) + var(bias) (1 + 1/n) over the n other-lineage runs, scaled by a factor kappa calibrated
on the same cross-check (split conformal with normalised scores): kappa is the ceil((m + 1) level)-th
smallest of the m scores |ln actual_j - ln predicted_j| / sigma_j of the chosen form. With fewer than
ceil(1/(1 - level)) - 1 scores kappa is the normal quantile and the row says so ("uncalibrated"). The
coverage is near ``level`` across runs when runs are exchangeable; it is not guaranteed per variant.

What a prediction uses: the run's own window (never its later stable rows, branch loss, cooldown or final
loss, nor any row of its lineage's other budgets) and the complete curves of runs of other lineages (the
same variant for drop and bias; every variant for the choice of form and kappa) - a leave-lineage-out
cross-validation, the post-hoc stand-in for "runs already finished when this one reaches its 30%".

Pure: numpy, scipy (through analysis.fits.powerlaw), pandas; nothing printed, no files.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from analysis.fits.powerlaw import FitError, _eterm_jac, fit_eterm, fit_pure
from analysis.curves.table import validate_curves

FRACTION = 0.3  # share of a run's stable tokens (up to its branch) the prediction may see
LEVEL = 0.9  # interval level
FORM_POINTS = {"eterm": 4, "pure": 3, "level": 2}  # early points each form needs (its parameters + 1 residual dof)
FORMS = ("eterm", "pure", "level")  # candidate forms (order: ties and the uncalibrated fallback)
MIN_DONOR_LINEAGES = 2  # other lineages of the variant whose cooldowns set the drop model
FIT_DELTA = 1.0  # Huber delta on log-loss residuals: plain least squares at the scale of learning-curve noise
LINEAGE = ("variant", "size", "seed", "lr")
PREDICTION_COLS = ["run", "variant", "objective", "size", "seed", "lr", "budget", "status", "note", "form", "n_points",
                   "cut_tokens", "branch_tokens", "final_tokens", "E", "E_lo", "E_hi", "stable_at_branch",
                   "se_fit", "bias", "drop", "n_donors", "kappa", "n_scores", "predicted", "lo", "hi", "actual",
                   "branch_actual", "abs_error", "rel_error", "inside", "fraction", "level"]


class PredictError(ValueError):
    """A run's final loss cannot be predicted; the message says why (the predictions table's note)."""


@dataclass(frozen=True)
class EarlyFit:
    """ln L(S) = ln(E + exp(b - alpha (ln S - u0))) on a run's early stable rows, S = tokens - ``offset``: the
    log-loss parameterisation of analysis.fits.powerlaw (E + (S_c/S)^alpha with b = alpha (ln S_c - u0), u0 = mean ln S
    of the fitted points). ``form`` "eterm": E, b, alpha free; "pure": E = 0; "level": E = 0 and alpha = 0 (the
    window's geometric-mean loss). ``cov``: covariance of (E, b, alpha), zero where fixed."""
    form: str
    theta: tuple
    offset: float
    u0: float
    cov: np.ndarray = field(repr=False)
    dof: int

    @property
    def E(self) -> float:
        return float(self.theta[0])

    @property
    def alpha(self) -> float:
        return float(self.theta[2])

    def _u(self, tokens) -> np.ndarray:
        return np.log(np.atleast_1d(np.asarray(tokens, float)) - self.offset) - self.u0

    def predict(self, tokens):
        """L at these token counts (a float for a scalar)."""
        E, b, alpha = self.theta
        out = E + np.exp(b - alpha * self._u(tokens))
        return out if np.ndim(tokens) else float(out[0])

    def log_se(self, tokens) -> np.ndarray:
        """Standard error of ln L(tokens) (delta method)."""
        u = self._u(tokens)
        g = _eterm_jac(np.asarray(self.theta, float), u, np.zeros_like(u))  # d ln L / d theta, (n, 3)
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", g, self.cov, g), 0.0))

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Interval of the asymptote E (t with the fit's residual dof), statsmodels-style; NaN where E is fixed."""
        if self.form != "eterm":
            return pd.DataFrame({"lower": [np.nan], "upper": [np.nan]}, index=pd.Index(["E"], name="param"))
        se = math.sqrt(max(self.cov[0, 0], 0.0))
        t = stats.t.ppf(1 - alpha / 2, max(self.dof, 1))
        return pd.DataFrame({"lower": [max(self.E - t * se, 0.0)], "upper": [self.E + t * se]},
                            index=pd.Index(["E"], name="param"))


def _theta(form: str, s: np.ndarray, loss: np.ndarray, u0: float) -> tuple:
    """(E, b, alpha) of one form by fits.fit_eterm / fits.fit_pure (least squares on ln L), or the mean ln L."""
    if form == "level":
        return 0.0, float(np.mean(np.log(loss))), 0.0
    fit = fit_eterm(s, loss, "S", FIT_DELTA) if form == "eterm" else fit_pure(s, loss, "S", FIT_DELTA)
    return float(fit.E), float(fit.alpha * (math.log(fit.x_c) - u0)), float(fit.alpha)


def fit_early_curve(tokens, loss, warmup_tokens: float = 0.0, form: str = "eterm") -> EarlyFit:
    """One form (EarlyFit) on one run's early points with S = tokens - warmup/2: "eterm" E + A S^-a (>= 4
    points), "pure" A S^-a (>= 3), "level" (>= 2; the geometric-mean loss of the points). The
    covariance from the Jacobian and the residual variance on n - (free parameters) degrees of freedom.
    PredictError when the form cannot be fitted (too few points, or fits.FitError)."""
    tokens, loss = np.asarray(tokens, float), np.asarray(loss, float)
    if form not in FORM_POINTS:
        raise ValueError(f"form={form!r} is not allowed; use one of {', '.join(FORM_POINTS)}")
    if tokens.size < FORM_POINTS[form]:
        raise PredictError(f"{tokens.size} stable point(s) after warmup in the window; need >= {FORM_POINTS[form]}")
    offset = warmup_tokens / 2.0
    s = tokens - offset
    u0 = float(np.mean(np.log(s)))
    try:
        theta = _theta(form, s, loss, u0)
    except FitError as e:
        raise PredictError(f"early-curve fit failed: {e}") from None
    free = {"eterm": [0, 1, 2], "pure": [1, 2], "level": [1]}[form]
    jac = _eterm_jac(np.asarray(theta), np.log(s) - u0, np.log(loss))[:, free]
    ef = EarlyFit(form, theta, offset, u0, np.zeros((3, 3)), tokens.size - len(free))
    resid = np.log(ef.predict(tokens)) - np.log(loss)
    ef.cov[np.ix_(free, free)] = float(resid @ resid) / ef.dof * np.linalg.pinv(jac.T @ jac)
    return ef


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


def _early_row(f: dict, forms) -> dict:
    """Fit the early window with every form in ``forms`` (which one a run uses is chosen later, by its
    cross-check); status ok when some form fitted, else why not. ``run_ok``: the run finished (a donor)."""
    row = {k: v for k, v in f.items() if k not in ("early", "warmup", "status_run")}
    row.update(n_points=len(f["early"]), run_ok=f["status_run"] == "ok")
    if f["status_run"] != "ok":
        return {**row, "status": "refused", "note": f"run status {f['status_run']}: no final loss to predict"}
    if not np.isfinite(f["branch_tokens"]):
        return {**row, "status": "refused", "note": "no stable phase followed by a cooldown (not a wsd run)"}
    errors = []
    for form in forms:
        try:
            ef = fit_early_curve(f["early"]["tokens"], f["early"]["loss"], f["warmup"], form)
        except PredictError as e:
            errors.append(str(e))
            continue
        row.update({f"log_stable_{form}": float(np.log(ef.predict(f["branch_tokens"]))),
                    f"se_{form}": float(ef.log_se(f["branch_tokens"])[0]), "status": "ok", "note": ""})
        if form == "eterm":
            e_ci = ef.conf_int(0.05).iloc[0]
            row.update(E=ef.E, E_lo=e_ci["lower"], E_hi=e_ci["upper"])
    if row.get("status") != "ok":
        status = "refused" if all("need >=" in e for e in errors) else "failed"
        return {**row, "status": status, "note": f"{errors[-1]} (first {f['cut_tokens']:.0f} tokens)"}
    return row


# ---------------------------------------------------------------- other lineages: drop, bias, calibration
@dataclass(frozen=True)
class _Pool:
    """Per-run arrays (one entry per run of the table) the leave-lineage-out steps index into."""
    forms: tuple  # early-fit forms in order of preference
    variant: np.ndarray
    lineage: np.ndarray
    has_cool: np.ndarray  # the run finished (status ok) with a branch point and a final loss: a donor
    log_stable: dict  # form -> ln early-fit prediction at the branch (NaN where that form did not fit)
    se_fit: dict  # form -> its log standard error
    drop: np.ndarray  # ln final - ln branch (observed)
    log_branch: np.ndarray
    log_actual: np.ndarray

    def bias(self, form: str) -> np.ndarray:
        """ln branch - ln early-fit prediction at the branch with ``form`` (observed; NaN without that fit)."""
        return self.log_branch - self.log_stable[form]

    @property
    def fitted(self) -> np.ndarray:
        return np.any([np.isfinite(v) for v in self.log_stable.values()], axis=0)


def _pool(rows: pd.DataFrame, forms) -> _Pool:
    col = lambda name: rows[name].to_numpy(float) if name in rows else np.full(len(rows), np.nan)  # noqa: E731
    log_branch, log_actual = np.log(col("branch_actual")), np.log(col("actual"))
    lineage = rows[list(LINEAGE)].astype(str).agg("/".join, axis=1).to_numpy()
    ok = (rows["status"] == "ok").to_numpy()
    finished = rows["run_ok"].to_numpy(bool) & np.isfinite(log_branch) & np.isfinite(log_actual)
    return _Pool(tuple(forms), rows["variant"].to_numpy(str), lineage, finished,
                 {f: np.where(ok, col(f"log_stable_{f}"), np.nan) for f in forms}, {f: col(f"se_{f}") for f in forms},
                 log_actual - log_branch, log_branch, log_actual)


def _correction(p: _Pool, j: int, exclude: np.ndarray, form: str) -> tuple[float, float, float, int] | None:
    """(mean drop, mean bias of ``form``, their predictive variance, n) for run j from the same variant's runs
    outside the excluded lineages; None when fewer than MIN_DONOR_LINEAGES lineages give a drop and a bias."""
    donors = (p.variant == p.variant[j]) & p.has_cool & ~np.isin(p.lineage, exclude)
    with_bias = donors & np.isfinite(p.bias(form))
    if len(set(p.lineage[with_bias])) < MIN_DONOR_LINEAGES:
        return None
    drop, bias = p.drop[donors], p.bias(form)[with_bias]
    var = drop.var(ddof=1) * (1 + 1 / drop.size) + bias.var(ddof=1) * (1 + 1 / bias.size)
    return float(drop.mean()), float(bias.mean()), float(var), int(drop.size)


def _predict_form(p: _Pool, j: int, exclude: np.ndarray, form: str):
    """(ln prediction, sigma, mean drop, mean bias, n donors) of run j with ``form`` without the excluded
    lineages; None when run j has no such fit or the remaining runs give no bias for it."""
    if not np.isfinite(p.log_stable[form][j]):
        return None
    corr = _correction(p, j, exclude, form)
    if corr is None:
        return None
    drop, bias, var, n = corr
    return p.log_stable[form][j] + drop + bias, math.sqrt(p.se_fit[form][j] ** 2 + var), drop, bias, n


def _cross_check(p: _Pool, r: int, form: str) -> tuple[np.ndarray, np.ndarray]:
    """(|ln error|, |ln error| / sigma) of ``form`` on every run outside run r's lineage, each predicted without
    its own and r's lineage: how well the form predicts runs run r's prediction does not touch."""
    errors, scores = [], []
    for j in np.flatnonzero(p.fitted & p.has_cool & (p.lineage != p.lineage[r])):
        pred = _predict_form(p, j, np.array([p.lineage[j], p.lineage[r]]), form)
        if pred is not None and pred[1] > 0:
            errors.append(abs(p.log_actual[j] - pred[0]))
            scores.append(errors[-1] / pred[1])
    return np.asarray(errors), np.asarray(scores)


def _choose_form(p: _Pool, r: int, level: float):
    """(form, kappa, m) for run r: among the forms run r can be predicted with, the one with the smallest median
    absolute error on the other lineages' runs (``_cross_check``; forms with fewer than the calibration minimum
    of scores only when none has it, then in FORMS order); kappa = the ceil((m + 1) level)-th smallest of its
    m normalised scores (split conformal), or the normal quantile when m is below that minimum."""
    need = math.ceil(1 / (1 - level)) - 1
    candidates = []
    for rank, form in enumerate(p.forms):
        if _predict_form(p, r, np.array([p.lineage[r]]), form) is None:
            continue
        errors, scores = _cross_check(p, r, form)
        key = (len(scores) < need, float(np.median(errors)) if len(scores) >= need else rank)
        candidates.append((key, form, scores))
    if not candidates:
        return None
    _, form, scores = min(candidates, key=lambda c: c[0])
    m = len(scores)
    if m < need:
        return form, float(stats.norm.ppf(0.5 + level / 2)), m
    return form, float(np.sort(scores)[math.ceil((m + 1) * level) - 1]), m


def _finish_row(row: dict, p: _Pool, r: int, level: float) -> dict:
    if row["status"] != "ok":
        return row
    chosen = _choose_form(p, r, level)
    if chosen is None:
        return {**row, "status": "refused",
                "note": f"fewer than {MIN_DONOR_LINEAGES} other lineages of {row['variant']} with a cooldown and an "
                        "early fit of a form this run has: no drop model"}
    form, kappa, m = chosen
    log_pred, sigma, drop, bias, n = _predict_form(p, r, np.array([p.lineage[r]]), form)
    lo, hi, predicted = math.exp(log_pred - kappa * sigma), math.exp(log_pred + kappa * sigma), math.exp(log_pred)
    note = "" if m >= math.ceil(1 / (1 - level)) - 1 else f"uncalibrated: {m} calibration score(s), normal quantile used"
    return {**row, "note": note, "form": form, "stable_at_branch": math.exp(p.log_stable[form][r]),
            "se_fit": p.se_fit[form][r], "drop": drop, "bias": bias, "n_donors": n, "kappa": kappa, "n_scores": m,
            "predicted": predicted, "lo": lo, "hi": hi, "abs_error": abs(predicted - row["actual"]),
            "rel_error": predicted / row["actual"] - 1, "inside": bool(lo <= row["actual"] <= hi)}


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


def _check_args(fraction: float, level: float, forms) -> None:
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction!r} must be in (0, 1), e.g. 0.3 for the first 30% of the stable phase")
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} must be in (0, 1), e.g. 0.9")
    if not forms or any(f not in FORM_POINTS for f in forms):
        raise ValueError(f"forms={forms!r}: give one or more of {', '.join(FORM_POINTS)}")


def _wsd_facts(curves, fraction: float) -> list[dict]:
    """_run_facts of every run of a learning-curve table (validated here)."""
    curves = validate_curves(curves)
    if "phase" not in curves:
        raise ValueError("the curve table has no 'phase' column: predictions need warmup-stable-decay runs "
                         "(phase = stable / cooldown, as training/collect.py writes them)")
    curves = curves.assign(lr=curves["lr"] if "lr" in curves else np.nan)
    return [_run_facts(g.sort_values("tokens", kind="stable"), fraction) for _, g in curves.groupby("run", sort=True)]


def _predict_rows(facts: list[dict], fraction: float, level: float, forms) -> pd.DataFrame:
    return _finish_rows(pd.DataFrame([_early_row(f, forms) for f in facts]), fraction, level, forms)


def _finish_rows(rows: pd.DataFrame, fraction: float, level: float, forms) -> pd.DataFrame:
    rows = rows.reindex(columns=list(dict.fromkeys(PREDICTION_COLS + list(rows.columns))))
    p = _pool(rows, forms)
    out = pd.DataFrame([_finish_row(row, p, r, level) for r, row in enumerate(rows.to_dict("records"))])
    return out.assign(fraction=fraction, level=level).reindex(columns=PREDICTION_COLS)


def predict_final_losses(curves, fraction: float = FRACTION, level: float = LEVEL, forms=FORMS) -> Predictions:
    """Predict every run's final loss from the first ``fraction`` of its stable phase (module docstring);
    ``forms``: the early-curve forms to try, in order (a run uses the first that fits)."""
    _check_args(fraction, level, forms)
    return Predictions(_predict_rows(_wsd_facts(curves, fraction), fraction, level, forms), fraction, level)


@dataclass(frozen=True)
class ReferenceRuns:
    """A reference study's runs with their early windows fitted once (``reference_runs``), for repeated
    ``predict_in_progress`` calls."""
    rows: pd.DataFrame = field(repr=False)
    fraction: float
    forms: tuple


def reference_runs(curves, fraction: float = FRACTION, forms=FORMS) -> ReferenceRuns:
    """Fit every run of a learning-curve table of wsd runs once, as ``predict_in_progress``'s other lineages."""
    _check_args(fraction, LEVEL, forms)
    rows = pd.DataFrame([_early_row(f, forms) for f in _wsd_facts(curves, fraction)])
    return ReferenceRuns(rows, fraction, tuple(forms))


def predict_in_progress(reference, stable_rows, ident: dict, branches, seen_tokens: float | None = None,
                        fraction: float = FRACTION, level: float = LEVEL, forms=FORMS) -> pd.DataFrame:
    """Predict the final losses of a stable run still in progress, one row per budget it branches into
    (PREDICTION_COLS; ``actual`` NaN), the same way as ``predict_final_losses`` but with the finished runs of
    ``reference`` (a learning-curve table of wsd runs, e.g. a previous study's) as the other lineages: their
    cooldown drops, extrapolation biases, cross-checked choice of form and calibration. A reference run of
    the same lineage (``ident``'s variant, size, seed, lr) is left out, as its own lineage is in
    ``predict_final_losses``. ``stable_rows``: the run's curve so far (columns tokens, loss, phase,
    warmup_tokens); ``ident``: run, variant, objective, size, seed, lr; ``branches``: [(budget,
    branch_tokens)], where each budget's cooldown starts; ``seen_tokens``: how far the run has trained (default:
    its last row). A budget's window is its rows up to ``fraction`` x its branch tokens: the run must have
    trained that far (``ValueError`` otherwise). ``reference``: a learning-curve table, or its
    ``reference_runs`` (fitted once for many calls)."""
    _check_args(fraction, level, forms)
    rows = pd.DataFrame(stable_rows)
    rows = rows[rows["phase"] == "stable"].sort_values("tokens", kind="stable")
    warm = float(rows["warmup_tokens"].iloc[0]) if len(rows) and pd.notna(rows["warmup_tokens"].iloc[0]) else 0.0
    seen = float(seen_tokens) if seen_tokens is not None else float(rows["tokens"].max()) if len(rows) else 0.0
    targets = []
    for budget, branch in branches:
        cut = fraction * float(branch)
        if cut > seen:
            raise ValueError(f"budget {budget}: its window ends at {cut:.0f} tokens but the run has reached {seen:.0f}")
        early = rows[(rows["tokens"] >= warm) & (rows["tokens"] <= cut)]
        targets.append({**{k: ident[k] for k in ("variant", "objective", "size", "seed")},
                        "run": f"{ident['run']}@{budget}", "lr": ident.get("lr", np.nan), "budget": budget,
                        "final_tokens": np.nan, "actual": np.nan, "warmup": warm, "status_run": "ok",
                        "branch_tokens": float(branch), "cut_tokens": cut, "branch_actual": np.nan, "early": early})
    if not isinstance(reference, ReferenceRuns):
        reference = reference_runs(reference, fraction, forms)
    if reference.fraction != fraction or reference.forms != tuple(forms):
        raise ValueError(f"the reference was fitted with fraction={reference.fraction}, forms={reference.forms}; "
                         f"asked for fraction={fraction}, forms={tuple(forms)}")
    own = pd.DataFrame([_early_row(f, forms) for f in targets])
    out = _finish_rows(pd.concat([reference.rows, own], ignore_index=True), fraction, level, forms)
    out = out.iloc[len(out) - len(targets):].reset_index(drop=True)
    return out.assign(inside=np.nan, abs_error=np.nan, rel_error=np.nan)
