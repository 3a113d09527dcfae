"""Coverage of the cluster-bootstrap 95% percentile intervals on synthetic frontiers with known truth.

``python benchmarks/ci_coverage.py [--replicates 200] [--n-boot 1000] [--n-jobs 2]``

Each replicate draws a fresh synthetic variant (analysis.synthetic: the envelope of the runs is exactly
F(C) = E + (C_c/C)^alpha, plus a per-run offset of 0.4 % and per-point eval noise of 0.2 %), fits the
frontier like fit_stage does and bootstraps whole runs.  Printed per scenario and parameter: coverage
(share of replicates whose interval contains the truth, with its binomial SE), mean interval width
relative to 2 x 1.96 x the SD of the estimates across replicates (1 = ideally sized), and the bias.
Goal: coverage 90-98 %.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.fits.bootstrap import bootstrap_frontier, fit_envelope  # noqa: E402
from analysis.fits.powerlaw import FitError  # noqa: E402
from analysis.frontier.envelope import RunCurves  # noqa: E402
from analysis.options import AnalysisOptions  # noqa: E402
from analysis.stages import prepare  # noqa: E402
from analysis.synthetic import DEFAULT_SIZES, synthetic_curves  # noqa: E402

E_TRUTH = dict(E=2.0, alpha=0.2, C_c=1e17)
PURE_TRUTH = dict(E=0.0, alpha=0.05, C_c=1e30)
SIX_SIZES = DEFAULT_SIZES + (("xxl", 1.62e8), ("x3l", 4.86e8))
SCENARIOS = [  # name, truth, fitted form, synthetic_curves kwargs, n_boot factor
    ("default study: 4 sizes x 1 seed, E-term truth", E_TRUTH, "eterm", {}, 1.0),
    ("4 sizes x 1 seed, pure power-law truth", PURE_TRUTH, "pure", {}, 1.0),
    ("6 sizes x 1 seed, E-term truth", E_TRUTH, "eterm", {"sizes": SIX_SIZES}, 1.0),
    ("4 sizes x 3 seeds, E-term truth", E_TRUTH, "eterm", {"seeds": (0, 1, 2)}, 0.3),
]
OPTS = AnalysisOptions()


def replicate(seed, truth, form, kw, n_boot):
    rng = np.random.default_rng(seed)
    df = synthetic_curves(rng, **truth, **kw)
    rc = RunCurves.from_table(prepare(df, OPTS).curves, OPTS.compute)
    try:
        fit = fit_envelope(rc, form, OPTS.grid_points, OPTS.huber_delta)
    except FitError:
        return None
    fit = bootstrap_frontier(rc, {form: fit}, n_boot, rng, OPTS.grid_points, OPTS.huber_delta)[form]
    ci = fit.conf_int(1 - OPTS.ci_level)
    est = fit.params()
    return {p: (est[p], ci.loc[p, "lower"], ci.loc[p, "upper"]) for p in ("alpha", "C_c", "E")}, fit.n_failed


def run_scenario(name, truth, form, kw, n_boot, replicates, n_jobs, seed0):
    res = Parallel(n_jobs=n_jobs)(delayed(replicate)(seed0 + i, truth, form, kw, n_boot) for i in range(replicates))
    ok = [r for r in res if r is not None]
    rows = []
    params = ("alpha", "C_c", "E") if form == "eterm" else ("alpha", "C_c")
    for p in params:
        est, lo, hi = (np.array([r[0][p][k] for r in ok]) for k in range(3))
        t = truth[p]
        cov = np.mean((lo <= t) & (t <= hi))
        scale = (lambda v: np.log(v)) if p == "C_c" else (lambda v: v)  # C_c spread judged in log space
        sd = np.std(scale(est), ddof=1)
        rows.append(dict(scenario=name, form=form, param=p, truth=t, replicates=len(ok),
                         failed_fits=replicates - len(ok), failed_resamples=sum(r[1] for r in ok),
                         coverage=cov, coverage_se=np.sqrt(cov * (1 - cov) / len(ok)),
                         width_ratio=np.mean(scale(hi) - scale(lo)) / (2 * 1.96 * sd),
                         bias=np.mean(est) - t if p != "C_c" else np.exp(np.mean(np.log(est)) - np.log(t)) - 1))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=200)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20240)
    ap.add_argument("--only", type=int, nargs="*", help="scenario indices to run")
    args = ap.parse_args(argv)
    rows = []
    for i, (name, truth, form, kw, factor) in enumerate(SCENARIOS):
        if args.only and i not in args.only:
            continue
        n_boot = max(50, int(args.n_boot * factor))
        t = time.perf_counter()
        rows += run_scenario(name, truth, form, kw, n_boot, args.replicates, args.n_jobs, args.seed + 100000 * i)
        print(f"[{time.perf_counter() - t:6.1f} s] {name} ({n_boot} resamples per replicate)", flush=True)
    tab = pd.DataFrame(rows)
    with pd.option_context("display.width", 220, "display.max_columns", 20):
        print(tab.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    main_alpha = tab[(tab["param"] == "alpha")]
    print("alpha coverage in 90-98 %:", ", ".join(f"{r.scenario}: {r.coverage:.1%} ({'yes' if 0.9 <= r.coverage <= 0.98 else 'NO'})"
                                              for r in main_alpha.itertuples()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
