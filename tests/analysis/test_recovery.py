"""Synthetic frontiers with known (C_c, alpha, E): recovery, interval coverage, extrapolation."""
import numpy as np
import pytest

from analysis import stages
from analysis.fits.bootstrap import bootstrap_frontier, fit_envelope
from analysis.frontier.envelope import RunCurves
from analysis.options import AnalysisOptions
from analysis.synthetic import synthetic_curves, synthetic_study

TRUE_ALPHAS = np.linspace(0.15, 0.30, 3)


@pytest.fixture(scope="module")
def tables():
    df = synthetic_study(np.random.default_rng(21), n_variants=3)
    # synthetic curves have no early transient: keep every point (the default rule would drop 10%)
    return stages.analyse(df, AnalysisOptions(n_boot=100, n_boot_approach3=20, drop_fraction=0.0), np.random.default_rng(0))


def test_eterm_recovers_truth(tables):
    f = tables["fits"].query("form == 'eterm' and primary").set_index("variant")
    assert (f["frontier"] == "envelope").all()  # one token budget for every size: the learning-curve envelope
    for v, alpha in zip(["v0", "v1", "v2"], TRUE_ALPHAS):
        assert f.loc[v, "alpha"] == pytest.approx(alpha, abs=0.025)
        assert f.loc[v, "alpha_lo"] <= alpha <= f.loc[v, "alpha_hi"]
        assert f.loc[v, "E"] == pytest.approx(2.0, abs=0.2)
        assert f.loc[v, "C_c"] == pytest.approx(1e17, rel=0.6)
        assert f.loc[v, "rmse_log"] < 0.006  # noise is ~0.5 %
    assert (f["n_failed"] <= 0.05 * f["n_boot"]).all()  # clean synthetic curves: resamples rarely fail


def test_bootstrap_table_matches_fits(tables):
    b, f = tables["bootstrap"], tables["fits"].set_index(["variant", "form", "frontier"])
    alpha = b[b["param"] == "alpha"]
    assert len(alpha.groupby(["variant", "form", "frontier"])) == 3 * 4  # pure + eterm on two frontiers
    for (v, form, frontier), g in alpha.groupby(["variant", "form", "frontier"]):
        assert len(g) == f.loc[(v, form, frontier), "n_boot"] == 100
        assert g["value"].isna().sum() == f.loc[(v, form, frontier), "n_failed"]
        assert np.nanpercentile(g["value"], 2.5) == pytest.approx(f.loc[(v, form, frontier), "alpha_lo"])


def test_extrapolation_eterm_close_pure_biased(tables):
    e = tables["extrapolation"].set_index(["variant", "form"])
    assert (e["status"] == "ok").all()
    assert (e["held_out_size"] == "xl").all() and (e["c_eval"] > 5 * e["c_max_train"]).all()
    eterm = e.xs("eterm", level="form")
    assert (eterm["rel_error"].abs() < 0.03).all()
    assert eterm["inside"].mean() >= 2 / 3
    assert (e.xs("pure", level="form")["rel_error"] < -0.03).all()  # a pure power law misses the floor E


def test_pure_power_law_recovery():
    df = synthetic_curves(np.random.default_rng(4), E=0.0, alpha=0.05, C_c=1e30)
    f = stages.fit_stage(df, AnalysisOptions(n_boot=50, n_boot_approach3=0), np.random.default_rng(0))["fits"]
    f = f[f["primary"]].set_index("form")
    assert f.loc["pure", "alpha"] == pytest.approx(0.05, abs=0.01)
    assert f.loc["pure", "r2_log"] > 0.98


def test_cheap_interval_coverage():
    """30 synthetic variants (4 sizes x 21 points, E + power law truth), 100 cluster resamples each.

    The 95% percentile interval for alpha must cover the truth in >= 85% of replicates (P(fail) ~ 2%
    at 95% coverage) AND must not be uselessly wide: mean width / (2 x 1.96 x the SD of the estimates
    across replicates) within [0.5, 3] (measured ~1.7: with 4 runs the cluster bootstrap is conservative)."""
    rng = np.random.default_rng(99)
    truth = 0.2
    est, lo, hi = [], [], []
    for _ in range(30):
        df = synthetic_curves(rng, E=2.0, alpha=truth, C_c=1e17)
        rc = RunCurves.from_table(stages.prepare(df, AnalysisOptions()).curves, "flops")
        fit = fit_envelope(rc, "eterm", 40, 1e-3)
        fit = bootstrap_frontier(rc, {"eterm": fit}, 100, rng)["eterm"]
        ci = fit.conf_int(0.05).loc["alpha"]
        est.append(fit.alpha), lo.append(ci["lower"]), hi.append(ci["upper"])
    est, lo, hi = map(np.asarray, (est, lo, hi))
    coverage = np.mean((lo <= truth) & (truth <= hi))
    width_ratio = np.mean(hi - lo) / (2 * 1.96 * np.std(est, ddof=1))
    assert coverage >= 0.85, coverage
    assert 0.5 <= width_ratio <= 3.0, width_ratio
    assert abs(np.mean(est) - truth) < 0.01
