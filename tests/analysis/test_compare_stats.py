"""Exponent comparisons: size on nulls, power, resolution beyond the resample count, intervals that agree with
the verdicts, Holm families.  Larger calibration runs: benchmarks/compare_calibration.py."""
import gc

import numpy as np
import pandas as pd
import pytest
from analysis_testlib import ROOT  # noqa: F401

from analysis import stages

from analysis.comparison import comparisons as compare
from analysis.comparison.comparisons import CROSS_OBJECTIVE, exponent_pairs
from analysis.fits.powerlaw import PowerLawFit
from analysis.options import AnalysisOptions
from analysis.synthetic import synthetic_curves

OPTS = AnalysisOptions()


@pytest.fixture
def fast_holm(monkeypatch):
    """statsmodels' Holm calls gc.collect() on every call (~0.15 s here); the many-study tests skip that."""
    monkeypatch.setattr(gc, "collect", lambda *a: 0)


def _fit(alpha_hat, sd, rng, n=1000, form="eterm"):
    """A fit whose bootstrap draws are N(alpha_hat, sd): what an ideally calibrated bootstrap returns."""
    draws = np.column_stack([alpha_hat + sd * rng.standard_normal(n), np.full(n, 1e17), np.full(n, 2.0)])
    return PowerLawFit(form, "C", alpha_hat, 1e17, 2.0, 40, 0.01, 0.99, 0.001, (1e14, 1e18), draws)


def _study(true_alphas, sd, rng, objectives=None):
    """Each variant's estimate ~ N(true, sd), its draws ~ N(estimate, sd)."""
    objectives = objectives or ["causal"] * len(true_alphas)
    return {(f"v{i}", "eterm"): (obj, _fit(a + sd * rng.standard_normal(), sd, rng))
            for i, (a, obj) in enumerate(zip(true_alphas, objectives))}


def test_size_on_identical_variants(fast_holm):
    """300 null studies of 8 identical variants (28 pairs, one Holm family): the share of studies with any false
    'steeper' must be near the nominal 5% (measured 5.0% over 400 studies); the Holm-level intervals of all 28
    pairs cover zero together in ~95% of studies."""
    rng = np.random.default_rng(2024)
    anyfalse, covered = 0, 0
    for _ in range(300):
        p = exponent_pairs(_study([0.2] * 8, 0.01, rng), OPTS)
        anyfalse += (p["verdict"] == "steeper").any()
        covered += ((p["delta_lo_adj"] <= 0) & (p["delta_hi_adj"] >= 0)).all()
    assert 0.015 <= anyfalse / 300 <= 0.09, anyfalse
    assert covered / 300 >= 0.9


def test_power_and_resolution_beyond_the_resample_count():
    """8 variants 0.02 apart with se 0.005 each (pair se 0.007): every pair 3 or more steps apart (|z| >= 8) is
    'steeper'.  With 1000 resamples a counting p-value cannot go below 2/1001, so Holm over 28 pairs could never
    reach 0.05; the normal-approximation p can."""
    rng = np.random.default_rng(7)
    true = 0.15 + 0.02 * np.arange(8)
    p = exponent_pairs(_study(true, 0.005, rng), OPTS)
    assert len(p) == 28 and (p["n_boot_used"] == 1000).all()
    steps = p.apply(lambda r: abs(int(r["variant_a"][1:]) - int(r["variant_b"][1:])), axis=1)
    assert (p.loc[steps >= 3, "verdict"] == "steeper").all()
    assert (p.loc[steps >= 3, "steeper_variant"] == p.loc[steps >= 3, "variant_b"]).all()  # larger index, larger alpha
    assert p["p_boot"].min() < 2 / 1001 / 1e3


def test_intervals_agree_with_verdicts():
    rng = np.random.default_rng(3)
    p = exponent_pairs(_study(0.2 + 0.006 * np.arange(8), 0.005, rng), OPTS)
    excludes = (p["delta_lo_adj"] > 0) | (p["delta_hi_adj"] < 0)
    assert (excludes == (p["verdict"] == "steeper")).all()
    assert 0 < (p["verdict"] == "steeper").sum() < 28  # a mix, so the agreement is not trivial
    assert (p["delta_lo_adj"] <= p["delta_lo"] + 1e-12).all() and (p["delta_hi_adj"] >= p["delta_hi"] - 1e-12).all()
    z_bonf = compare.norm.isf(0.05 / 28 / 2)
    assert ((p["delta_hi_adj"] - p["delta_alpha"]) <= z_bonf * p["se_delta"] + 1e-12).all()
    assert p["z"].to_numpy() == pytest.approx((p["delta_alpha"] / p["se_delta"]).to_numpy())


def test_families_are_same_objective_pairs_of_a_form():
    rng = np.random.default_rng(5)
    objectives = ["causal", "causal", "causal", "masked", "masked", "rtd"]
    p = exponent_pairs(_study([0.2, 0.3, 0.4, 0.2, 0.3, 0.25], 0.005, rng, objectives), OPTS)
    fam = p.groupby("family").size()
    assert fam.to_dict() == {"": 15 - 3 - 1, "eterm/causal": 3, "eterm/masked": 1}
    cross = p[p["cross_objective"]]
    assert (cross["verdict"] == CROSS_OBJECTIVE).all() and cross["p_holm"].isna().all()
    assert cross["delta_lo_adj"].isna().all() and cross["p_boot"].notna().all()  # descriptive: raw p and interval
    masked = p[p["family"] == "eterm/masked"].iloc[0]
    assert masked["p_holm"] == pytest.approx(masked["p_boot"])  # a family of one pair: no adjustment


def _synthetic_fitted(alphas, seed):
    rng = np.random.default_rng(seed)
    df = pd.concat([synthetic_curves(rng, variant=f"v{i}", alpha=float(a)) for i, a in enumerate(alphas)],
                   ignore_index=True)
    opts = AnalysisOptions(n_boot=200, n_boot_approach3=0)
    return compare.fits_from_tables(stages.fit_stage(df, opts, rng)), opts


def test_pipeline_null_and_clearly_different_exponents():
    """Through fit_stage (4 sizes x 1 seed per variant, 200 cluster resamples): 8 identical variants give no
    'steeper' verdict; 8 variants 0.03 apart (true E-term exponents 0.15-0.36) give 'steeper' for every E-term
    pair >= 0.12 apart, in the right direction.  The cluster bootstrap over 4 runs is conservative (bootstrap SD
    ~2.6x the SD of the estimates for the E-term, benchmarks/compare_calibration.py), so smaller gaps are not
    all detected."""
    fitted, opts = _synthetic_fitted([0.2] * 8, seed=31)
    p = exponent_pairs(fitted, opts)
    assert len(p) == 56 and not (p["verdict"] == "steeper").any()
    true = 0.15 + 0.03 * np.arange(8)
    fitted, opts = _synthetic_fitted(true, seed=32)
    p = exponent_pairs(fitted, opts)
    e = p[p["form"] == "eterm"]
    gap = e.apply(lambda r: true[int(r["variant_b"][1:])] - true[int(r["variant_a"][1:])], axis=1)
    clear = e[gap >= 0.12 - 1e-9]
    assert len(clear) == 10 and (clear["verdict"] == "steeper").all()
    assert (clear["steeper_variant"] == clear["variant_b"]).all()
