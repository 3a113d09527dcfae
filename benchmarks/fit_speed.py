"""Fit speed benchmarks (run from the repo root: ``python benchmarks/fit_speed.py``).

1. Chinchilla Approach 3 (reference data, 5 highest-loss points dropped): our variable-projection
   start + least_squares(huber) versus the published 4500-start L-BFGS-B grid (alpha, beta in 0..2
   step 0.5; log E in -1..1 step 0.5; log A, log B in 0..25 step 5), both run here in this process
   (the grid with joblib over 2 workers).  Goal: same optimum (Huber sum within 1e-6 relative) in
   >= 20x less time.
2. 1000 cluster-bootstrap resamples of the L(C) fits (pure and E-term) for six synthetic variants
   shaped like the default study (4 sizes x 21 eval points).  Goal: < 30 s on 2 cores.
"""
from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

ROOT = Path(__file__).resolve().parents[1]
from analysis.fits.bootstrap import FORMS, bootstrap_frontier, fit_envelope  # noqa: E402
from analysis.fits.powerlaw import fit_approach3  # noqa: E402
from analysis.frontier.envelope import RunCurves  # noqa: E402
from analysis.options import AnalysisOptions  # noqa: E402
from analysis.stages import fit_stage, prepare  # noqa: E402
from analysis.synthetic import synthetic_study  # noqa: E402

REFERENCE = ROOT / "tests" / "data" / "chinchilla_epoch_reconstruction.csv"
DELTA = 1e-3


def chinchilla():
    d = pd.read_csv(REFERENCE).sort_values("loss").iloc[:-5]
    N, C, L = d["Model Size"].to_numpy(), d["Training FLOP"].to_numpy(), d["loss"].to_numpy()
    return N, C / (6 * N), L


def _objective(p, lN, lD, ly):
    from scipy.special import huber, logsumexp  # imported here: joblib workers unpickle this by value

    a, b, e, alpha, beta = p
    pred = logsumexp([a - alpha * lN, b - beta * lD, np.full_like(lN, e)], axis=0)
    return np.sum(huber(DELTA, pred - ly))


def _grid_chunk(starts, lN, lD, ly):
    from scipy.optimize import minimize

    best = None
    for s in starts:
        r = minimize(_objective, s, args=(lN, lD, ly), method="L-BFGS-B")
        if best is None or r.fun < best.fun:
            best = r
    return best


def grid_lbfgs(N, D, L, n_jobs=2):
    lN, lD, ly = np.log(N), np.log(D), np.log(L)
    grid = [(a, b, e, al, be) for al, be, e, a, b in itertools.product(
        np.arange(0, 2.01, 0.5), np.arange(0, 2.01, 0.5), np.arange(-1, 1.01, 0.5), np.arange(0, 25.1, 5),
        np.arange(0, 25.1, 5))]
    chunks = np.array_split(np.array(grid), 8 * n_jobs)
    res = Parallel(n_jobs=n_jobs)(delayed(_grid_chunk)(c, lN, lD, ly) for c in chunks)
    best = min(res, key=lambda r: r.fun)
    a, b, e, alpha, beta = best.x
    return len(grid), dict(E=np.exp(e), A=np.exp(a), B=np.exp(b), alpha=alpha, beta=beta, huber=best.fun)


def bench_chinchilla(rows):
    N, D, L = chinchilla()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        fit = fit_approach3(N, D, L, DELTA)
        times.append(time.perf_counter() - t)
    ours = float(np.median(times))
    t = time.perf_counter()
    n_starts, ref = grid_lbfgs(N, D, L)
    grid_s = time.perf_counter() - t
    rel = abs(fit.huber - ref["huber"]) / ref["huber"]
    print(f"Approach 3, ours : E={fit.E:.4f} A={fit.A:.1f} B={fit.B:.1f} alpha={fit.alpha:.4f} "
          f"beta={fit.beta:.4f} huber={fit.huber:.8g}")
    print(f"Approach 3, grid : E={ref['E']:.4f} A={ref['A']:.1f} B={ref['B']:.1f} alpha={ref['alpha']:.4f} "
          f"beta={ref['beta']:.4f} huber={ref['huber']:.8g} ({n_starts} L-BFGS-B starts)")
    print(f"Huber sum relative difference {rel:.2e} (ours - grid = {fit.huber - ref['huber']:+.3e})")
    rows.append(dict(task="Approach 3 (Chinchilla, 240 pts)", reference=f"{n_starts}-start L-BFGS-B grid",
                     reference_s=grid_s, ours_s=ours, ratio=grid_s / ours, goal=">= 20x, huber rel <= 1e-6",
                     ok=bool(grid_s / ours >= 20 and rel <= 1e-6)))


def bench_bootstrap(rows, n_boot=1000, n_jobs=2):
    for label, seeds in (("4 sizes x 1 seed", (0,)), ("4 sizes x 3 seeds", (0, 1, 2))):
        df = synthetic_study(np.random.default_rng(0), seeds=seeds)
        opts = AnalysisOptions(n_boot=n_boot, n_jobs=n_jobs)
        t = time.perf_counter()
        prep = prepare(df, opts)
        n_failed = 0
        for i, (v, g) in enumerate(prep.curves.groupby("variant")):
            rc = RunCurves.from_table(g, opts.compute)
            fits = {f: fit_envelope(rc, f, opts.grid_points, opts.huber_delta) for f in FORMS}
            fits = bootstrap_frontier(rc, fits, n_boot, np.random.default_rng([opts.seed, i]), opts.grid_points,
                                      opts.huber_delta, n_jobs)
            n_failed += sum(f.n_failed for f in fits.values())
        secs = time.perf_counter() - t
        rows.append(dict(task=f"bootstrap L(C) pure+E, 6 variants, {label}, {n_boot} resamples",
                         reference="30 s budget", reference_s=30.0, ours_s=secs, ratio=30.0 / secs,
                         goal="< 30 s", ok=secs < 30, n_failed=n_failed))
    df = synthetic_study(np.random.default_rng(0))
    t = time.perf_counter()
    fit_stage(df, AnalysisOptions(n_boot=n_boot, n_jobs=n_jobs), np.random.default_rng(0))
    secs = time.perf_counter() - t
    rows.append(dict(task=f"whole fit_stage (L(C), Approach 3, L(N)), 6 variants x 4 runs, {n_boot} resamples",
                     reference="(information)", reference_s=np.nan, ours_s=secs, ratio=np.nan, goal="-", ok=True))


def main():
    rows = []
    bench_bootstrap(rows)
    if REFERENCE.is_file():
        bench_chinchilla(rows)
    else:
        print(f"skipping the Chinchilla benchmark: {REFERENCE} is absent")
    tab = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_colwidth", 80, "display.max_columns", 20):
        print(tab.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0 if tab["ok"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
