"""Stage entry points called by the Snakemake workflow and by ``python -m analysis``.

Every stage takes the raw (or validated) learning-curve table and repeats the cheap preparation
(validate, drop diverged runs, pick the best lr, drop early points), so any stage can run alone.
Randomness: each stage draws one 63-bit integer from ``rng`` and derives per-variant generators
``default_rng([base, crc32(variant), stream])``; results for a variant do not depend on which
other variants are present, and calling a stage with a fresh ``default_rng(seed)`` reproduces
what ``analyse(curves, opts, default_rng(seed))`` gives (it hands each stage a copy of rng).
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from analysis.comparison import comparisons as compare
from analysis.comparison.sensitivity import sensitivity, summarise
from analysis.curves.table import validate_curves
from analysis.curves.transient import TRANSIENT_COLS
from analysis.fits.bootstrap import FORMS
from analysis.fits.powerlaw import FitError, bootstrap_approach3, fit_approach3, fit_pure
from analysis.forecast import predict
from analysis.frontier import approaches as finals
from analysis.frontier.envelope import RunCurves, variant_frontier
from analysis.options import AnalysisOptions
from analysis.prepare import (MIN_RUNS, STREAM_A3, STREAM_EXTRAP, STREAM_ISOFLOP, STREAM_SIZE_FITS, Prepared, base_seed,
                              by_variant, frontier_fits, prepare, variant_rng)

PARAM_COLS = ("alpha", "C_c", "E", "A", "B", "beta", "a", "G")
FIT_COLS = (["variant", "objective", "form", "frontier", "primary", "status", "note", "compute", "n_runs", "n_points", "n_boot",
             "n_failed"] + [f"{p}{s}" for p in PARAM_COLS for s in ("", "_lo", "_hi")]
            + ["rmse_log", "r2_log", "huber", "c_min", "c_max"])
SIZE_FIT_COLS = ["variant", "objective", "n_measure", "status", "note", "n_runs", "n_sizes", "n_boot", "n_failed",
           "alpha", "alpha_lo", "alpha_hi", "N_c", "N_c_lo", "N_c_hi", "rmse_log", "r2_log"]


def _stack(frames, columns=None) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=columns or [])
    out = pd.concat(frames, ignore_index=True)
    return out.reindex(columns=columns) if columns else out


# ---------------------------------------------------------------- frontier
def frontier_stage(curves, opts: AnalysisOptions) -> dict:
    prep = prepare(curves, opts)
    grids, points, owners, summaries = [], [], [], []
    for variant, objective, g in by_variant(prep):
        fr = variant_frontier(RunCurves.from_table(g, opts.compute), opts.grid_points)
        ident = {"variant": variant, "objective": objective}
        grids.append(fr["grid"].assign(**ident))
        points.append(fr["points"].assign(**ident))
        owners.append(fr["owners"].assign(**ident))
        summaries.append(pd.DataFrame([{**ident, "compute": opts.compute, **fr["summary"]}]))
    lead = ["variant", "objective"]
    final = [finals.final_frontier(g, opts.compute) for _, g in prep.finals.groupby("variant", sort=True)]
    return {
        "final_points": _stack(final, finals.FINAL_COLS).assign(primary=prep.frontier == "final"),
        "transient": prep.transient.reindex(columns=TRANSIENT_COLS),
        "frontier_points": _stack(points, lead + ["run", "size", "compute", "loss"]),
        "frontier_grid": _stack(grids, lead + ["compute", "loss", "run", "size"]),
        "frontier_owners": _stack(owners, lead + ["run", "size", "c_start", "c_end", "n_grid"]),
        "frontier_summary": _stack(summaries, lead + ["compute", "n_runs", "n_sizes", "c_min", "c_max",
                                                      "largest_size", "top_owner", "top_owner_size",
                                                      "bracketed", "note"]),
        "runs": prep.runs,
    }


# ---------------------------------------------------------------- fits
def _fit_row(ident, form, fit, note, opts, n_runs, c_range=(np.nan, np.nan)) -> dict:
    row = {**ident, "form": form, "status": "ok" if fit is not None else ("refused" if "refused" in note
                                                                          else "failed"),
           "note": note, "compute": opts.compute, "n_runs": n_runs, "c_min": c_range[0], "c_max": c_range[1]}
    if fit is None:
        return row
    if fit.at_bound:
        row.update(status="at_bound", note=f"{', '.join(fit.at_bound)} at a bound of the search: not an optimum; "
                                           "not used for comparisons")
    ci = fit.conf_int(1 - opts.ci_level)
    params = fit.params()
    params = {("C_c" if k in ("C_c", "x_c") else k): v for k, v in params.items()}
    for (name, value), (lo, hi) in zip(params.items(), ci.to_numpy()):
        row.update({name: value, f"{name}_lo": lo, f"{name}_hi": hi})
    row.update(n_points=fit.n_points, n_boot=fit.n_boot, n_failed=fit.n_failed, rmse_log=fit.rmse_log,
               r2_log=fit.r2_log, huber=fit.huber)
    return row


def _boot_long(ident, form, fit) -> pd.DataFrame:
    if fit is None or fit.draws is None:
        return pd.DataFrame()
    names = [("C_c" if k == "C_c" else k) for k in fit.params()]
    wide = pd.DataFrame(fit.draws, columns=names)
    wide["replicate"] = np.arange(len(wide))
    long = wide.melt(id_vars="replicate", var_name="param", value_name="value")
    return long.assign(variant=ident["variant"], form=form, frontier=ident.get("frontier", ""))[
        ["variant", "form", "frontier", "replicate", "param", "value"]]


def _batch_ols_slopes(x, y, idx):
    """Closed-form OLS of y on x for each resample (rows of idx); returns slope, intercept."""
    w = np.zeros((idx.shape[0], x.size))
    np.add.at(w, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), idx.ravel()), 1.0)
    n = w.sum(1, keepdims=True)
    mx, my = (w @ x)[:, None] / n, (w @ y)[:, None] / n
    sxx = (w * (x[None] - mx) ** 2).sum(1)
    sxy = (w * (x[None] - mx) * (y[None] - my)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(sxx > 0, sxy / sxx, np.nan)
    return slope, my[:, 0] - slope * mx[:, 0]


def _size_fit_rows(ident, runs: pd.DataFrame, opts, rng) -> list:
    """L(N) = (N_c/N)^alpha on each run's final loss, with total and with non-embedding N."""
    rows = []
    idx = rng.integers(0, len(runs), size=(opts.n_boot, len(runs))) if opts.n_boot else None
    for measure, col in (("total", "params_total"), ("nonembedding", "params_nonembedding")):
        row = {**ident, "n_measure": measure, "n_runs": len(runs), "n_sizes": runs[col].nunique(),
               "n_boot": opts.n_boot, "note": ""}
        if runs[col].nunique() < MIN_RUNS:
            rows.append({**row, "status": "refused",
                         "note": f"fit refused: {runs[col].nunique()} distinct size(s); need >= {MIN_RUNS}"})
            continue
        try:
            fit = fit_pure(runs[col], runs["final_loss"], "N", opts.huber_delta)
        except FitError as e:
            rows.append({**row, "status": "failed", "note": str(e)})
            continue
        row.update(status="ok", alpha=fit.alpha, N_c=fit.x_c, rmse_log=fit.rmse_log, r2_log=fit.r2_log)
        if idx is not None:
            lx, ly = np.log(runs[col].to_numpy(float)), np.log(runs["final_loss"].to_numpy(float))
            slope, icpt = _batch_ols_slopes(lx, ly, idx)
            alpha = -slope
            good = np.isfinite(alpha) & (alpha > 0)
            draws = np.column_stack([alpha, np.exp(icpt / alpha)])[good]
            q = 50 * (1 - opts.ci_level)
            if len(draws):
                (a_lo, n_lo), (a_hi, n_hi) = np.percentile(draws, [q, 100 - q], axis=0)
                row.update(alpha_lo=a_lo, alpha_hi=a_hi, N_c_lo=n_lo, N_c_hi=n_hi)
            row["n_failed"] = int((~good).sum())
        rows.append(row)
    return rows


def _approach3(fin: pd.DataFrame, opts: AnalysisOptions, rng):
    """Chinchilla Approach 3 on final points only (a run's intermediate points are not the loss its
    budget buys); N = all parameters, D = tokens; bootstrap over final points."""
    try:
        a3 = fit_approach3(fin["params_total"], fin["tokens"], fin["loss"], opts.huber_delta)
    except FitError as e:
        return None, f"{e} (final points only)"
    if opts.n_boot_approach3_resolved:
        a3 = bootstrap_approach3(a3, fin["params_total"], fin["tokens"], fin["loss"], fin["run"], opts.n_boot_approach3_resolved,
                                 rng, opts.huber_delta)
    return a3, ""


def _size_fit_table(fin: pd.DataFrame) -> pd.DataFrame:
    """L(N) input: each size's (and seed's) best final loss over its budgets."""
    best = fin.loc[fin.groupby(["size", "seed"])["loss"].idxmin()]
    return best.rename(columns={"loss": "final_loss"})


def fit_variant(g: pd.DataFrame, fin: pd.DataFrame, opts: AnalysisOptions, base: int, primary: str):
    """All fits for one variant: (fit rows, bootstrap table, L(N) rows, IsoFLOP rows, allocation rows).
    g: its prepared learning-curve rows; fin: its final points; primary: the frontier comparisons use."""
    variant, objective = g["variant"].iloc[0], g["objective"].iloc[0]
    ident = {"variant": variant, "objective": objective}
    ln = _size_fit_rows(ident, _size_fit_table(fin), opts, variant_rng(base, variant, STREAM_SIZE_FITS))
    env, env_notes, n_env = frontier_fits(g, fin, opts, base, "envelope")
    fin_fits, fin_notes, _ = frontier_fits(g, fin, opts, base, "final")
    a3, a3_note = _approach3(fin, opts, variant_rng(base, variant, STREAM_A3))
    rows, boots = [], []
    for frontier, fits, notes, n_runs in (("final", fin_fits, fin_notes, len(fin)), ("envelope", env, env_notes, n_env)):
        for form in FORMS:
            fit = fits[form]
            c_range = fit.x_range if fit is not None else (np.nan, np.nan)
            tag = {**ident, "frontier": frontier, "primary": frontier == primary}
            rows.append(_fit_row(tag, form, fit, notes.get(form, ""), opts, n_runs, c_range))
            boots.append(_boot_long(tag, form, fit))
    tag = {**ident, "frontier": "final", "primary": False}
    rows.append(_fit_row(tag, "approach3", a3, a3_note, opts, len(fin)))
    boots.append(_boot_long(tag, "approach3", a3))
    iso, state = finals.isoflop_table(fin, opts.compute, opts.n_boot, variant_rng(base, variant, STREAM_ISOFLOP),
                                      opts.ci_level, opts.noise_floor_default)
    alloc = finals.allocation_fits(iso, state, fin, opts.compute, opts.ci_level, opts.noise_floor_default)
    return rows, _stack(boots), ln, iso, alloc


def fit_stage(curves, opts: AnalysisOptions, rng: np.random.Generator) -> dict:
    prep = prepare(curves, opts)
    base = base_seed(rng)
    rows, boots, lns, isos, allocs = [], [], [], [], []
    for variant, _, g in by_variant(prep):
        r, b, ln, iso, alloc = fit_variant(g, prep.finals[prep.finals["variant"] == variant], opts, base, prep.frontier)
        rows += r
        boots.append(b)
        lns += ln
        isos.append(iso)
        allocs.append(alloc)
    return {
        "fits": pd.DataFrame(rows).reindex(columns=FIT_COLS),
        "bootstrap": _stack(boots, ["variant", "form", "frontier", "replicate", "param", "value"]),
        "size_fits": pd.DataFrame(lns).reindex(columns=SIZE_FIT_COLS),
        "isoflop": _stack(isos, finals.ISOFLOP_COLS),
        "allocation": _stack(allocs, finals.ALLOC_COLS),
    }


# ---------------------------------------------------------------- comparisons
def _extrapolation(prep: Prepared, variant: str, g: pd.DataFrame, opts, rng) -> pd.DataFrame:
    """The extrapolation check on the primary frontier: without the top budget (final points) or
    without the largest size (envelope)."""
    if prep.frontier == "final":
        return finals.extrapolation_check(prep.finals[prep.finals["variant"] == variant], opts, rng)
    return compare.extrapolation(g, opts, rng)


def compare_stage(curves, fit_tables: dict, opts: AnalysisOptions, rng: np.random.Generator) -> dict:
    prep = prepare(curves, opts)
    base = base_seed(rng)
    fitted = compare.fits_from_tables(fit_tables)
    return {
        "pairs": compare.exponent_pairs(fitted, opts),
        "crossovers": compare.crossovers(fitted, opts),
        "tiers": compare.tiers(prep.curves, opts),
        "extrapolation": _stack([_extrapolation(prep, v, g, opts, variant_rng(base, v, STREAM_EXTRAP))
                                 for v, _, g in by_variant(prep)], compare.EXTRAP_COLS),
        "lr_choice": prep.lr_choice,
    }


# ---------------------------------------------------------------- sensitivity
def sensitivity_stage(curves, opts: AnalysisOptions, rng: np.random.Generator) -> dict:
    """Every headline recomputed under a grid of analysis choices (analysis.comparison.sensitivity):
    `sensitivity` (long table) and `sensitivity_summary` (per headline: spread and `fragile`)."""
    long = sensitivity(validate_curves(curves), opts, rng, opts.n_boot_sensitivity)
    return {"sensitivity": long, "sensitivity_summary": summarise(long)}


# ---------------------------------------------------------------- final-loss predictions
def predict_stage(curves) -> dict:
    """Every wsd run's final loss predicted from the first 30% of its stable phase (analysis.forecast.predict);
    a table without stable/cooldown phases gives an empty table."""
    curves = validate_curves(curves)
    if "phase" not in curves or not curves["phase"].isin(["stable"]).any():
        return {"predictions": pd.DataFrame(columns=predict.PREDICTION_COLS)}
    return {"predictions": predict.predict_final_losses(curves).table}


def analyse(curves, opts: AnalysisOptions, rng: np.random.Generator, sensitivity: bool = False) -> dict:
    """Frontier, fit, compare and predict stages in order (and, when asked, the costlier sensitivity stage);
    each stage gets its own copy of rng."""
    curves = validate_curves(curves)
    tables = frontier_stage(curves, opts)
    tables.update(fit_stage(curves, opts, copy.deepcopy(rng)))
    tables.update(compare_stage(curves, tables, opts, copy.deepcopy(rng)))
    tables.update(predict_stage(curves))
    if sensitivity:
        tables.update(sensitivity_stage(curves, opts, copy.deepcopy(rng)))
    return tables
