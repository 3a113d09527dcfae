"""Comparisons between variants: exponents, crossovers, compute multipliers, tiers, extrapolation."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from .bootstrap import FORMS, bootstrap_frontier, fit_frontier
from .fits import FitError, PowerLawFit
from .frontier import RunCurves, grid_frontier
from .table import run_table

NOT_DISTINGUISHABLE = "not distinguishable at this scale"
NO_CROSSOVER = "no crossover within the observed range"
PAIR_COLS = ["form", "variant_a", "variant_b", "objective_a", "objective_b", "cross_objective", "alpha_a",
             "alpha_b", "delta_alpha", "delta_lo", "delta_hi", "n_boot_used", "p_boot", "p_holm", "verdict",
             "steeper_variant"]
CROSS_COLS = ["form", "objective", "variant_a", "variant_b", "range_lo", "range_hi", "crossover_c",
              "crossover_lo", "crossover_hi", "p_cross_boot", "crossover_verdict", "c_at", "loss_a_at",
              "multiplier", "multiplier_lo", "multiplier_hi", "note"]
TIER_COLS = ["variant", "objective", "size", "params_total", "params_nonembedding", "n_runs", "best_loss",
             "tier", "improvement", "floor", "floor_source", "joins_previous"]
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


def _boot_p(d: np.ndarray) -> float:
    """Two-sided bootstrap p-value for 'difference = 0' from the draws d."""
    n = d.size
    return float(min(1.0, 2 * min((1 + np.sum(d <= 0)) / (1 + n), (1 + np.sum(d >= 0)) / (1 + n))))


def _paired(fa: PowerLawFit, fb: PowerLawFit):
    if fa.draws is None or fb.draws is None:
        return None, None
    n = min(len(fa.draws), len(fb.draws))
    return fa.draws[:n], fb.draws[:n]


def exponent_pairs(fitted: dict, opts) -> pd.DataFrame:
    """Every pair of variants, per form: delta alpha, bootstrap CI and p, Holm across pairs."""
    q = 50 * (1 - opts.ci_level)
    out = []
    for form in FORMS:
        variants = sorted(v for v, f in fitted if f == form)
        rows = []
        for a, b in combinations(variants, 2):
            (oa, fa), (ob, fb) = fitted[(a, form)], fitted[(b, form)]
            row = dict(form=form, variant_a=a, variant_b=b, objective_a=oa, objective_b=ob,
                       cross_objective=oa != ob, alpha_a=fa.alpha, alpha_b=fb.alpha,
                       delta_alpha=fa.alpha - fb.alpha, n_boot_used=0, p_boot=np.nan)
            da, db = _paired(fa, fb)
            if da is not None:
                d = da[:, 0] - db[:, 0]
                d = d[np.isfinite(d)]
                if d.size:
                    lo, hi = np.percentile(d, [q, 100 - q])
                    row.update(delta_lo=lo, delta_hi=hi, n_boot_used=int(d.size), p_boot=_boot_p(d))
            rows.append(row)
        if not rows:
            continue
        tab = pd.DataFrame(rows)
        tab["p_holm"] = np.nan
        ok = tab["p_boot"].notna()
        if ok.any():
            tab.loc[ok, "p_holm"] = multipletests(tab.loc[ok, "p_boot"], method="holm")[1]
        steep = tab["p_holm"] < opts.significance
        tab["verdict"] = np.where(steep, "steeper", NOT_DISTINGUISHABLE)
        tab["steeper_variant"] = np.where(steep, np.where(tab["delta_alpha"] > 0, tab["variant_a"],
                                                          tab["variant_b"]), "")
        out.append(tab)
    return pd.concat(out, ignore_index=True).reindex(columns=PAIR_COLS) if out else pd.DataFrame(columns=PAIR_COLS)


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


def tiers(curves: pd.DataFrame, opts) -> pd.DataFrame:
    """Per variant, order sizes by parameters; a size joins the current tier when its best eval loss is not
    lower than the tier's best by more than the noise floor.

    Noise floor for two sizes i, j (mean best loss over n_i, n_j seeds):
      'seeds':        2 * s_p * sqrt(1/n_i + 1/n_j), s_p = pooled SD of best loss across seeds within sizes
      'eval_loss_se': 2 * sqrt(se_i^2 + se_j^2), se = eval_loss_se at the best point (mean over seeds)
      'default':      opts.noise_floor_default
    """
    out = []
    for variant, g in curves.groupby("variant", sort=True):
        runs = run_table(g)
        se = _best_point_se(g)
        runs["best_se"] = runs["run"].map(se) if len(se) else np.nan
        sizes = (runs.groupby("size").agg(params_total=("params_total", "mean"),
                                          params_nonembedding=("params_nonembedding", "mean"),
                                          n_runs=("run", "size"), best_loss=("best_loss", "mean"),
                                          sd=("best_loss", "std"),
                                          se=("best_se", lambda s: np.sqrt(np.sum(s ** 2)) / len(s)))
                 .sort_values("params_total").reset_index())
        reps = sizes[sizes["n_runs"] >= 2]
        if len(reps):
            source = "seeds"
            sp = np.sqrt(np.sum((reps["n_runs"] - 1) * reps["sd"] ** 2) / np.sum(reps["n_runs"] - 1))
            floor = lambda i, j: 2 * sp * np.sqrt(1 / sizes.n_runs[i] + 1 / sizes.n_runs[j])
        elif sizes["se"].notna().all() and len(se):
            source = "eval_loss_se"
            floor = lambda i, j: 2 * np.sqrt(sizes.se[i] ** 2 + sizes.se[j] ** 2)
        else:
            source = "default"
            floor = lambda i, j: opts.noise_floor_default
        tier, ref = 0, 0
        tiers_, imps, floors, joins = [0], [np.nan], [np.nan], [False]
        for j in range(1, len(sizes)):
            imp = sizes.best_loss[ref] - sizes.best_loss[j]
            fl = float(floor(ref, j))
            join = not imp > fl
            if join:
                ref = j if sizes.best_loss[j] < sizes.best_loss[ref] else ref
            else:
                tier, ref = tier + 1, j
            tiers_.append(tier), imps.append(imp), floors.append(fl), joins.append(join)
        sizes = sizes.assign(variant=variant, objective=g["objective"].iloc[0], tier=tiers_, improvement=imps,
                             floor=floors, floor_source=source, joins_previous=joins)
        out.append(sizes)
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
    rows = []
    if len(set(rc.size_rank)) < 2 or len(train_idx) < 3:
        note = f"refused: needs >= 3 runs below the largest size, has {len(train_idx)}"
        return pd.DataFrame([{**ident, "form": f, "status": "refused", "note": note} for f in FORMS])
    train = rc.subset(train_idx)
    held_size = rc.sizes[held[0]]
    c_eval = max(np.exp(rc.logc[i][-1]) for i in held)
    logx_all, logy_all, _ = grid_frontier(rc, opts.grid_points)
    actual = float(np.exp(np.interp(np.log(c_eval), logx_all, logy_all)))
    c_max_train = float(np.exp(max(c[-1] for c in train.logc)))
    fits, notes = {}, {}
    for form in FORMS:
        try:
            fits[form] = fit_frontier(train, form, opts.grid_points, opts.huber_delta)
        except FitError as e:
            fits[form], notes[form] = None, str(e)
    fits = bootstrap_frontier(train, fits, opts.n_boot, rng, opts.grid_points, opts.huber_delta, opts.n_jobs)
    logx, logy, _ = grid_frontier(train, opts.grid_points)
    q = 50 * (1 - opts.ci_level)
    for form in FORMS:
        row = {**ident, "form": form, "held_out_size": held_size, "c_eval": c_eval, "c_max_train": c_max_train,
               "actual_loss": actual}
        f = fits[form]
        if f is None:
            rows.append({**row, "status": "failed", "note": notes[form]})
            continue
        pred = float(f.predict(c_eval))
        row.update(status="ok", note="", predicted_loss=pred, rel_error=(pred - actual) / actual)
        if f.draws is not None:
            p = f.predict_draws([c_eval])[:, 0]
            p = p[np.isfinite(p)]
            resid = np.log(f.predict(np.exp(logx))) - logy
            p = p * np.exp(-rng.choice(resid, size=p.size))  # truth = fit - residual
            if p.size:
                row["pi_lo"], row["pi_hi"] = np.percentile(p, [q, 100 - q])
                row["inside"] = bool(row["pi_lo"] <= actual <= row["pi_hi"])
        rows.append(row)
    return pd.DataFrame(rows)
