"""Cluster bootstrap of frontier fits: resample whole runs, rebuild the frontier, refit.

The envelope of a resample depends only on the *set* of runs drawn (a duplicate run cannot lower
it), so each distinct set is fitted once and mapped back to its replicates; distinct sets are
spread over joblib workers when ``n_jobs != 1``.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from joblib import Parallel, delayed

from analysis.fits.powerlaw import FitError, PowerLawFit, fit_form
from analysis.frontier.envelope import RunCurves, grid_frontier

FORMS = ("pure", "eterm")


def fit_envelope(rc: RunCurves, form: str, grid_points: int, delta: float, start=None) -> PowerLawFit:
    """One form's L(C) fit on the lower envelope of the runs' learning curves (on a grid of `grid_points`)."""
    logx, logy, _ = grid_frontier(rc, grid_points)
    need = 3 if form == "pure" else 4
    if logx.size < need:
        raise FitError(f"frontier covers only {logx.size} grid point(s), the {form} fit needs {need}; "
                       "runs need evaluation points spanning a compute range")
    return fit_form(form, np.exp(logx), np.exp(logy), "C", delta, start)


def _fit_sets(rc, sets, fits, grid_points, delta):
    out = np.full((len(sets), len(fits), 3), np.nan)
    for i, s in enumerate(sets):
        sub = rc.subset(s)
        logx, logy, _ = grid_frontier(sub, grid_points)
        for j, (form, start) in enumerate(fits):
            try:
                f = fit_form(form, np.exp(logx), np.exp(logy), "C", delta, start)
            except FitError:
                continue
            out[i, j] = (f.alpha, f.x_c, f.E)
    return out


def resample_runs(n_runs: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_runs) run indices drawn with replacement."""
    return rng.integers(0, n_runs, size=(n_boot, n_runs))


def bootstrap_frontier(rc: RunCurves, point_fits: dict, n_boot: int, rng: np.random.Generator,
                       grid_points: int = 40, delta: float = 1e-3, n_jobs: int = 1, draws_idx=None) -> dict:
    """Attach bootstrap draws to each fitted form in ``point_fits`` ({form: PowerLawFit or None})."""
    forms = [f for f in FORMS if point_fits.get(f) is not None]
    if n_boot == 0 or not forms:
        return dict(point_fits)
    idx = resample_runs(len(rc), n_boot, rng) if draws_idx is None else draws_idx
    keys = [tuple(sorted(set(row.tolist()))) for row in idx]
    uniq = sorted(set(keys))
    where = {k: i for i, k in enumerate(uniq)}
    todo = [(f, point_fits[f]) for f in forms]
    if n_jobs == 1 or len(uniq) < 64:
        res = _fit_sets(rc, uniq, todo, grid_points, delta)
    else:
        chunks = np.array_split(np.arange(len(uniq)), 4 * (n_jobs if n_jobs > 0 else 4))
        parts = Parallel(n_jobs=n_jobs)(delayed(_fit_sets)(rc, [uniq[i] for i in c], todo, grid_points, delta)
                                        for c in chunks if len(c))
        res = np.concatenate(parts)
    rows = np.array([where[k] for k in keys])
    out = dict(point_fits)
    for j, f in enumerate(forms):
        out[f] = replace(point_fits[f], draws=res[rows, j, :])
    return out


def fit_and_bootstrap(rc: RunCurves, forms, n_boot: int, rng: np.random.Generator, grid_points: int,
                      huber_delta: float, n_jobs: int = 1) -> tuple[dict, dict]:
    """Each form's point fit on the envelope of `rc` (None and the reason where it fails), then the cluster
    bootstrap of the ones that succeeded: ({form: fit or None}, {form: failure note})."""
    fits, notes = {}, {}
    for form in forms:
        try:
            fits[form] = fit_envelope(rc, form, grid_points, huber_delta)
        except FitError as e:
            fits[form], notes[form] = None, str(e)
    return bootstrap_frontier(rc, fits, n_boot, rng, grid_points, huber_delta, n_jobs), notes
