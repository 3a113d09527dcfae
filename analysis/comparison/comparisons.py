"""Comparisons between variants: exponents, crossovers, compute multipliers, tiers, extrapolation."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import norm
from statsmodels.stats.multitest import multipletests

from analysis.fits.bootstrap import FORMS, fit_and_bootstrap
from analysis.fits.powerlaw import PowerLawFit
from analysis.frontier.envelope import RunCurves, grid_frontier
from analysis.curves.table import run_table

NOT_DISTINGUISHABLE = "not distinguishable at this scale"
CROSS_OBJECTIVE = "not tested: different objectives"
NO_CROSSOVER = "no crossover within the observed range"
PAIR_COLS = ["form", "variant_a", "variant_b", "objective_a", "objective_b", "cross_objective", "alpha_a",
             "alpha_b", "delta_alpha", "delta_lo", "delta_hi", "n_boot_used", "p_boot", "p_holm", "verdict",
             "steeper_variant", "family", "se_delta", "z", "delta_lo_adj", "delta_hi_adj"]
PAIR_METHOD = ("Exponent comparisons: delta alpha = alpha_a - alpha_b with a normal-approximation (Wald) test, "
               "z = delta / sqrt(se_a^2 + se_b^2), each se the standard deviation of that variant's cluster-bootstrap "
               "draws (variants are resampled independently); the p-value's resolution does not depend on the number "
               "of resamples. Holm's step-down adjustment within each family of same-objective pairs of one fit form; "
               "'steeper' when the Holm-adjusted p < {significance}. Pairs of different objectives are descriptive only "
               "(not tested, not in any family). Each verdict is printed with the interval at the level Holm tested "
               "that pair at (alpha / (m - i + 1) for the i-th smallest p), which excludes zero exactly when the "
               "verdict says 'steeper'; it is at least as wide as the unadjusted interval at level 1 - {significance} and no wider than the Bonferroni one.")
CROSS_COLS = ["form", "objective", "variant_a", "variant_b", "range_lo", "range_hi", "crossover_c",
              "crossover_lo", "crossover_hi", "p_cross_boot", "crossover_verdict", "c_at", "loss_a_at",
              "multiplier", "multiplier_lo", "multiplier_hi", "note"]
TIER_COLS = ["variant", "objective", "size", "params_total", "params_nonembedding", "n_runs", "best_loss",
             "tier", "improvement", "floor", "floor_source", "floor_unpaired", "joins_previous", "config", "n_replicates"]
RUN_IDENTITY = ("lr", "budget", "budget_tokens", "schedule")  # with variant and size: a run's identity but its seed
TIER_METHOD = ("Tiers: a variant's sizes in order of parameters, each represented by its best configuration (the "
               "budget / schedule / lr with the lowest mean best eval loss over seeds); a size joins the current tier "
               "when it is not better than the tier's best by more than the noise floor. Replicates are runs that "
               "differ only in seed (same variant, size, lr, token budget and schedule; without a budget column, the "
               "same final token count): the floor is 2 s_p sqrt(1/n_i + 1/n_j) from their pooled SD (source "
               "'seeds'); runs of one size at different budgets never count as replicates. Without replicates, when "
               "each size's best point carries its per-batch eval losses (every run is scored on the same held-out "
               "batches), the floor is twice the standard error of the paired differences, 2 sd(l_i - l_j) / sqrt(n) "
               "over the n batches ('paired eval batches'; the unpaired value beside it); else 2 sqrt(se_i^2 + "
               "se_j^2) from eval_loss_se at the best points ('eval_loss_se'), else {default} nats ('default').")
EXTRAP_COLS = ["variant", "objective", "form", "status", "note", "held_out_size", "c_eval", "c_max_train",
               "actual_loss", "predicted_loss", "pi_lo", "pi_hi", "rel_error", "inside"]
_FIT_PARAMS = {"pure": ("alpha", "C_c", "E"), "eterm": ("alpha", "C_c", "E")}


def fits_from_tables(fit_tables: dict) -> dict:
    """{(variant, form): (objective, PowerLawFit with draws)} for the L(C) fits that succeeded."""
    fits, boot = fit_tables["fits"], fit_tables.get("bootstrap")
    if "primary" in fits.columns:  # the frontier the study compares on (final points or envelope)
        fits = fits[fits["primary"].astype(str).str.lower() == "true"]
    out = {}
    for _, r in fits[(fits["status"] == "ok") & fits["form"].isin(FORMS)].iterrows():
        draws = None
        if boot is not None and len(boot):
            b = boot[(boot["variant"] == r["variant"]) & (boot["form"] == r["form"])]
            if "frontier" in boot.columns and "frontier" in r:
                b = b[b["frontier"] == r["frontier"]]
            if len(b):
                wide = b.pivot(index="replicate", columns="param", values="value").sort_index()
                draws = wide[list(_FIT_PARAMS[r["form"]])].to_numpy(float)
        E = 0.0 if r["form"] == "pure" else float(r["E"])
        out[(r["variant"], r["form"])] = (r["objective"], PowerLawFit(
            r["form"], "C", float(r["alpha"]), float(r["C_c"]), E, int(r["n_points"]), float(r["rmse_log"]),
            float(r["r2_log"]), float(r["huber"]), (float(r["c_min"]), float(r["c_max"])), draws))
    return out


def _paired(fa: PowerLawFit, fb: PowerLawFit):
    if fa.draws is None or fb.draws is None:
        return None, None
    n = min(len(fa.draws), len(fb.draws))
    return fa.draws[:n], fb.draws[:n]


def alpha_se(fit: PowerLawFit, ols: bool = False) -> tuple[float, int]:
    """Bootstrap standard error of alpha (SD of the finite draws) and the number of finite draws; without
    draws NaN, or with `ols` the OLS standard error of a pure fit (the notebook API's fits without a bootstrap)."""
    if fit.draws is None:
        if ols and fit.ols_cov is not None:
            return float(np.sqrt(fit.ols_cov[1, 1])), 0
        return np.nan, 0
    a = fit.draws[:, 0]
    a = a[np.isfinite(a)]
    return (float(np.std(a, ddof=1)), int(a.size)) if a.size >= 2 else (np.nan, int(a.size))


def wald_p(delta: float, se: float) -> float:
    """Two-sided normal-approximation p-value of delta / se (NaN without a usable se)."""
    if not (np.isfinite(se) and se > 0):
        return np.nan
    return float(2 * norm.sf(abs(delta) / se))


def _holm_levels(p: np.ndarray, alpha: float) -> np.ndarray:
    """The level at which Holm's step-down procedure tests each hypothesis: alpha / (m - i) for the i-th smallest
    p (0-based) up to the first non-rejection; every later hypothesis gets that first non-rejected one's level.
    An interval at this level excludes zero exactly when Holm rejects."""
    m = p.size
    order = np.argsort(p, kind="stable")
    levels = np.empty(m)
    level = alpha / m
    stopped = False
    for rank, i in enumerate(order):
        if not stopped:
            level = alpha / (m - rank)
            stopped = not p[i] < level
        levels[i] = level
    return levels


def _pair_row(form, a, b, fitted, z_ci) -> dict:
    (oa, fa), (ob, fb) = fitted[(a, form)], fitted[(b, form)]
    (se_a, n_a), (se_b, n_b) = alpha_se(fa), alpha_se(fb)
    delta, se = fa.alpha - fb.alpha, float(np.hypot(se_a, se_b))
    row = dict(form=form, variant_a=a, variant_b=b, objective_a=oa, objective_b=ob, cross_objective=oa != ob,
               alpha_a=fa.alpha, alpha_b=fb.alpha, delta_alpha=delta, n_boot_used=min(n_a, n_b), se_delta=se,
               z=delta / se if se > 0 else np.nan, p_boot=wald_p(delta, se),
               family="" if oa != ob else f"{form}/{oa}")
    if np.isfinite(row["p_boot"]):
        row.update(delta_lo=delta - z_ci * se, delta_hi=delta + z_ci * se)
    return row


def _verdicts(tab: pd.DataFrame, significance: float) -> pd.DataFrame:
    """Holm within each family (same form and objective); cross-objective rows stay descriptive."""
    tab = tab.assign(p_holm=np.nan, verdict=NOT_DISTINGUISHABLE, steeper_variant="", delta_lo_adj=np.nan,
                     delta_hi_adj=np.nan)
    tab.loc[tab["cross_objective"], "verdict"] = CROSS_OBJECTIVE
    for _, g in tab[(tab["family"] != "") & tab["p_boot"].notna()].groupby("family"):
        p = g["p_boot"].to_numpy(float)
        tab.loc[g.index, "p_holm"] = multipletests(p, method="holm")[1]
        half = norm.isf(_holm_levels(p, significance) / 2) * g["se_delta"].to_numpy(float)
        tab.loc[g.index, "delta_lo_adj"] = g["delta_alpha"].to_numpy() - half
        tab.loc[g.index, "delta_hi_adj"] = g["delta_alpha"].to_numpy() + half
    steep = tab["p_holm"] < significance
    tab.loc[steep, "verdict"] = "steeper"
    tab.loc[steep, "steeper_variant"] = np.where(tab.loc[steep, "delta_alpha"] > 0, tab.loc[steep, "variant_a"],
                                                 tab.loc[steep, "variant_b"])
    return tab


def exponent_pairs(fitted: dict, opts) -> pd.DataFrame:
    """Every pair of variants, per form: delta alpha with a bootstrap-standard-error test (PAIR_METHOD).

    p_boot: two-sided normal-approximation p of z = delta / se, se = sqrt(se_a^2 + se_b^2) from the SDs of the
    two variants' independent bootstrap draws (its resolution does not depend on the number of resamples).
    delta_lo/hi: unadjusted interval delta -/+ z_{ci} se at opts.ci_level.  Holm across the same-objective
    pairs of a form (`family`); cross-objective pairs are descriptive (`family` empty, no p_holm, verdict
    CROSS_OBJECTIVE).  delta_lo_adj/hi_adj: the interval at the level Holm tested the pair at, so it excludes
    zero exactly when the verdict is 'steeper'.

    Calibration (benchmarks/compare_calibration.py, 8 synthetic variants, 40 studies per cell): with ideally
    calibrated normal draws the family-wise false 'steeper' rate is the nominal 5% (tests); through the cluster
    bootstrap it is 0/40 for 1 and 3 seeds per size because the bootstrap SD overstates the SD of the estimates
    (E-term x3.1 with 1 seed, x1.1 with 3; pure x10.8 and x3.7).  Power, E-term, 1 seed: gaps of 0.09 / 0.12 in
    alpha are called 'steeper' in 93% / 100% of pairs; 3 seeds: 99% at 0.03.  A robust scale (MAD) instead of
    the SD would gain power with 1 seed but understates the SD with 3 seeds (x0.5-0.8): not used.
    """
    z_ci = norm.isf((1 - opts.ci_level) / 2)
    rows = [_pair_row(form, a, b, fitted, z_ci) for form in FORMS
            for a, b in combinations(sorted(v for v, f in fitted if f == form), 2)]
    if not rows:
        return pd.DataFrame(columns=PAIR_COLS)
    return _verdicts(pd.DataFrame(rows), opts.significance).reindex(columns=PAIR_COLS)


def _curves(params: np.ndarray, logc: np.ndarray) -> np.ndarray:
    """log L on logc for rows of (alpha, C_c, E)."""
    a, cc, e = (params[:, i:i + 1] for i in range(3))
    return np.log(e + np.exp(a * (np.log(cc) - logc[None, :])))


def _first_crossing(diff: np.ndarray, logc: np.ndarray) -> np.ndarray:
    """ln C of the first sign change of each row of diff (NaN where none)."""
    s = np.sign(diff)
    change = (s[:, :-1] * s[:, 1:] < 0) | ((s[:, 1:] == 0) & (s[:, :-1] != 0))
    has = change.any(axis=1)
    j = np.argmax(change, axis=1)
    rows = np.arange(diff.shape[0])
    d0, d1 = diff[rows, j], diff[rows, j + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(d1 != d0, d0 / (d0 - d1), 0.0)
    return np.where(has, logc[j] + t * (logc[j + 1] - logc[j]), np.nan)


def _inverse_c(params: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Compute at which each fitted curve reaches `loss` (inf where loss <= E)."""
    a, cc, e = params[:, 0], params[:, 1], params[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(loss > e, cc * (loss - e) ** (-1.0 / a), np.inf)


def crossovers(fitted: dict, opts, c_at: float | None = None, n_grid: int = 512) -> pd.DataFrame:
    """Same-objective pairs: where the fitted frontiers cross in the shared observed compute range, and
    the compute multiplier B needs to reach A's loss at ``c_at`` (default: the geometric middle of
    that range; a stated c_at outside it is noted as extrapolated)."""
    stated = c_at
    q = 50 * (1 - opts.ci_level)
    rows = []
    for form in FORMS:
        variants = sorted(v for v, f in fitted if f == form)
        for a, b in combinations(variants, 2):
            (oa, fa), (ob, fb) = fitted[(a, form)], fitted[(b, form)]
            if oa != ob:
                continue
            lo, hi = max(fa.x_range[0], fb.x_range[0]), min(fa.x_range[1], fb.x_range[1])
            row = dict(form=form, objective=oa, variant_a=a, variant_b=b, range_lo=lo, range_hi=hi, note="")
            if not hi > lo:
                rows.append({**row, "crossover_verdict": NO_CROSSOVER,
                             "note": "observed compute ranges do not overlap"})
                continue
            logc = np.linspace(np.log(lo), np.log(hi), n_grid)
            pa = np.array([[fa.alpha, fa.x_c, fa.E]])
            pb = np.array([[fb.alpha, fb.x_c, fb.E]])
            x = _first_crossing(_curves(pa, logc) - _curves(pb, logc), logc)[0]
            c_at = float(np.sqrt(lo * hi)) if stated is None else float(stated)
            if not lo <= c_at <= hi:
                row["note"] = "c_at outside the shared observed range: multiplier is extrapolated"
            loss_at = float(fa.predict(c_at))
            mult = float(_inverse_c(pb, np.array([loss_at]))[0] / c_at)
            row.update(crossover_c=np.exp(x), crossover_verdict="crossover" if np.isfinite(x) else NO_CROSSOVER,
                       c_at=c_at, loss_a_at=loss_at, multiplier=mult)
            da, db = _paired(fa, fb)
            if da is not None:
                good = np.all(np.isfinite(da), axis=1) & np.all(np.isfinite(db), axis=1)
                da, db = da[good], db[good]
                if len(da):
                    xs = _first_crossing(_curves(da, logc) - _curves(db, logc), logc)
                    row["p_cross_boot"] = float(np.mean(np.isfinite(xs)))
                    if np.isfinite(xs).any():
                        row["crossover_lo"], row["crossover_hi"] = np.exp(np.percentile(xs[np.isfinite(xs)],
                                                                                        [q, 100 - q]))
                    la = np.exp(_curves(da, np.array([np.log(c_at)]))[:, 0])
                    m = _inverse_c(db, la) / c_at
                    row["multiplier_lo"], row["multiplier_hi"] = np.quantile(m, [q / 100, 1 - q / 100],
                                                                             method="inverted_cdf")
            rows.append(row)
    return pd.DataFrame(rows).reindex(columns=CROSS_COLS) if rows else pd.DataFrame(columns=CROSS_COLS)


def _best_point_se(curves: pd.DataFrame) -> pd.Series:
    """eval_loss_se at each run's best (lowest-loss) point."""
    if "eval_loss_se" not in curves.columns:
        return pd.Series(dtype=float)
    at_best = curves.loc[curves.groupby("run")["loss"].idxmin()]
    return at_best.set_index("run")["eval_loss_se"]


def _best_point_batches(curves: pd.DataFrame) -> pd.Series:
    """The per-batch eval losses (an array) at each run's best point, where the table records them."""
    if "eval_batch_losses" not in curves.columns:
        return pd.Series(dtype=object)
    at_best = curves.loc[curves.groupby("run")["loss"].idxmin()].set_index("run")["eval_batch_losses"]
    return at_best.map(lambda text: np.array(text.split(), dtype=float) if isinstance(text, str) and text.strip()
                       else None)


def paired_se(a: np.ndarray, b: np.ndarray) -> float:
    """Standard error of the mean difference of two runs scored on the same n batches: sd(a - b) / sqrt(n). Two
    runs' losses on one batch are correlated (the hard batches are hard for both), so this is far below the
    unpaired sqrt(se_a^2 + se_b^2)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    return float(d.std(ddof=1) / np.sqrt(d.size))


def run_configs(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per run: run_table plus `config`, the run's identity without its seed (RUN_IDENTITY columns that
    the table has; the final token count when it has neither `budget` nor `budget_tokens`).  Runs with the same
    variant and config differ only in seed: they are replicates."""
    runs = run_table(curves)
    present = [c for c in RUN_IDENTITY if c in curves.columns]
    first = curves.groupby("run", sort=True)[present].first() if present else pd.DataFrame(index=runs["run"])
    parts = [runs["size"].map(lambda v: f"size={v}")]
    for col in present:
        parts.append(runs["run"].map(first[col]).map(lambda v, c=col: f"{c}={v}"))
    if not {"budget", "budget_tokens"} & set(present):
        parts.append(runs["final_tokens"].map(lambda v: f"final_tokens={v:.6g}"))
    runs["config"] = pd.concat(parts, axis=1).agg(", ".join, axis=1) if len(runs) else pd.Series(dtype=str)
    se = _best_point_se(curves)
    runs["best_se"] = runs["run"].map(se) if len(se) else np.nan
    batches = _best_point_batches(curves)
    runs["best_batches"] = runs["run"].map(batches) if len(batches) else None
    return runs


def _se_of_mean(se: pd.Series) -> float:
    """Standard error of a mean of independent evaluations with these SEs; NaN when any is missing."""
    return float(np.sqrt((se ** 2).sum(min_count=len(se))) / len(se))


def _config_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (size, config): replicates (distinct seeds), mean best loss, SD across seeds, eval-loss SE of the mean."""
    g = runs.groupby(["size", "config"], sort=True)
    out = g.agg(params_total=("params_total", "mean"), params_nonembedding=("params_nonembedding", "mean"),
                n_reps=("run", "size"), n_seeds=("seed", "nunique"), best_loss=("best_loss", "mean"),
                sd=("best_loss", "std"), se=("best_se", _se_of_mean),
                batches=("best_batches", lambda x: x.iloc[0] if len(x) == 1 else None))
    out["replicated"] = (out["n_reps"] >= 2) & (out["n_seeds"] == out["n_reps"])  # same seed twice: not replicates
    return out.reset_index()


def _unpaired(chosen: pd.DataFrame):
    """floor(i, j) from eval_loss_se at the best points (None when some size lacks it)."""
    if chosen["se"].notna().all() and len(chosen):
        se = chosen["se"].to_numpy(float)
        return lambda i, j: 2 * np.sqrt(se[i] ** 2 + se[j] ** 2)
    return None


def _floor_rule(configs: pd.DataFrame, chosen: pd.DataFrame, opts):
    """(source, floor(i, j)) for the chosen configs: replicates only, else paired eval batches, else eval_loss_se,
    else the default."""
    reps = configs[configs["replicated"]]
    if len(reps):
        sp = float(np.sqrt(np.sum((reps["n_reps"] - 1) * reps["sd"] ** 2) / np.sum(reps["n_reps"] - 1)))
        n = chosen["n_reps"].where(chosen["replicated"], 1).to_numpy(float)
        return "seeds", lambda i, j: 2 * sp * np.sqrt(1 / n[i] + 1 / n[j])
    batches = list(chosen["batches"]) if "batches" in chosen else []
    if batches and all(b is not None and len(b) >= 2 for b in batches) and len({len(b) for b in batches}) == 1:
        return "paired eval batches", lambda i, j: 2 * paired_se(batches[i], batches[j])
    unpaired = _unpaired(chosen)
    if unpaired is not None:
        return "eval_loss_se", unpaired
    return "default", lambda i, j: opts.noise_floor_default


def _assign_tiers(best: np.ndarray, floor) -> tuple[list, list, list, list]:
    tier, ref = 0, 0
    tiers_, imps, floors, joins = [0], [np.nan], [np.nan], [False]
    for j in range(1, best.size):
        imp, fl = best[ref] - best[j], float(floor(ref, j))
        join = not imp > fl
        if join:
            ref = j if best[j] < best[ref] else ref
        else:
            tier, ref = tier + 1, j
        tiers_.append(tier), imps.append(imp), floors.append(fl), joins.append(join)
    return tiers_, imps, floors, joins


def tiers(curves: pd.DataFrame, opts) -> pd.DataFrame:
    """Per variant, order sizes by parameters; a size joins the current tier when its best eval loss is not
    lower than the tier's best by more than the noise floor (TIER_METHOD).

    A size is represented by its best configuration (the config, see run_configs, with the lowest mean best
    loss over its seeds).  Noise floor for two sizes i, j with n_i, n_j seeds in their chosen configs:
      'seeds':        2 * s_p * sqrt(1/n_i + 1/n_j), s_p = pooled SD of best loss across seeds within configs
                      (replicates only: runs of one size at different budgets, lrs or schedules never pool)
      'eval_loss_se': 2 * sqrt(se_i^2 + se_j^2), se = eval_loss_se at the best point (mean over seeds)
      'default':      opts.noise_floor_default
    """
    out = []
    for variant, g in curves.groupby("variant", sort=True):
        runs = run_configs(g)
        configs = _config_table(runs)
        chosen = (configs.sort_values(["size", "best_loss", "config"]).groupby("size", sort=False).head(1)
                  .sort_values(["params_total", "size"]).reset_index(drop=True))
        source, floor = _floor_rule(configs, chosen, opts)
        tiers_, imps, floors, joins = _assign_tiers(chosen["best_loss"].to_numpy(float), floor)
        unpaired = _unpaired(chosen) if source == "paired eval batches" else None
        beside = [np.nan] + [float(unpaired(k - 1, k)) if unpaired else np.nan for k in range(1, len(chosen))]
        n_runs = runs.groupby("size")["run"].size()
        out.append(chosen.assign(variant=variant, objective=g["objective"].iloc[0], n_runs=chosen["size"].map(n_runs),
                                 n_replicates=chosen["n_seeds"], tier=tiers_, improvement=imps, floor=floors,
                                 floor_source=source, floor_unpaired=beside, joins_previous=joins))
    return pd.concat(out, ignore_index=True).reindex(columns=TIER_COLS) if out else pd.DataFrame(columns=TIER_COLS)


def extrapolation(g: pd.DataFrame, opts, rng: np.random.Generator) -> pd.DataFrame:
    """Fit on all but the largest size, predict the full frontier's loss at the largest run's compute;
    bootstrap prediction interval = bootstrap fit prediction x a resampled log residual of the fit."""
    variant, objective = g["variant"].iloc[0], g["objective"].iloc[0]
    rc = RunCurves.from_table(g, opts.compute)
    ident = dict(variant=variant, objective=objective)
    largest = max(rc.size_rank) if len(rc) else 0
    train_idx = [i for i, r in enumerate(rc.size_rank) if r != largest]
    held = [i for i, r in enumerate(rc.size_rank) if r == largest]
    if len(set(rc.size_rank)) < 2 or len(train_idx) < 3:
        note = f"refused: needs >= 3 runs below the largest size, has {len(train_idx)}"
        return pd.DataFrame([{**ident, "form": f, "status": "refused", "note": note} for f in FORMS])
    train = rc.subset(train_idx)
    held_size = rc.sizes[held[0]]
    c_eval = max(np.exp(rc.logc[i][-1]) for i in held)
    logx_all, logy_all, _ = grid_frontier(rc, opts.grid_points)
    actual = float(np.exp(np.interp(np.log(c_eval), logx_all, logy_all)))
    c_max_train = float(np.exp(max(c[-1] for c in train.logc)))
    fits, notes = fit_and_bootstrap(train, FORMS, opts.n_boot, rng, opts.grid_points, opts.huber_delta, opts.n_jobs)
    logx, logy, _ = grid_frontier(train, opts.grid_points)
    base = {**ident, "held_out_size": held_size, "c_eval": c_eval, "c_max_train": c_max_train, "actual_loss": actual}
    return pd.DataFrame([extrapolation_row(base, form, fits[form], notes.get(form, ""), np.exp(logx), np.exp(logy), rng,
                                           opts.ci_level) for form in FORMS])


def extrapolation_row(base: dict, form: str, fit, note: str, train_c, train_loss, rng, ci_level: float) -> dict:
    """One extrapolation-check row: the fit's prediction at base['c_eval'] against base['actual_loss'], and
    a bootstrap prediction interval (bootstrap fit prediction x a log residual of the fit on its own
    training frontier (train_c, train_loss), resampled)."""
    row = {**base, "form": form}
    if fit is None:
        return {**row, "status": "failed", "note": note}
    actual, c_eval = base["actual_loss"], base["c_eval"]
    pred = float(fit.predict(c_eval))
    row.update(status="ok", note="", predicted_loss=pred, rel_error=(pred - actual) / actual)
    if fit.draws is not None:
        p = fit.predict_draws([c_eval])[:, 0]
        p = p[np.isfinite(p)]
        resid = np.log(fit.predict(np.asarray(train_c, float))) - np.log(np.asarray(train_loss, float))
        p = p * np.exp(-rng.choice(resid, size=p.size))  # truth = fit - residual
        if p.size:
            q = 50 * (1 - ci_level)
            row["pi_lo"], row["pi_hi"] = np.percentile(p, [q, 100 - q])
            row["inside"] = bool(row["pi_lo"] <= actual <= row["pi_hi"])
    return row
