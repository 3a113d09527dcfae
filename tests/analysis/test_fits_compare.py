"""Fit dataclasses and the exponent comparison (bootstrap p, Holm, verdicts) on hand-made draws."""
import dataclasses

import numpy as np
import pytest
from analysis_testlib import ROOT  # noqa: F401
from scipy.stats import norm
from statsmodels.stats.multitest import multipletests

from analysis.comparison.comparisons import CROSS_OBJECTIVE, NOT_DISTINGUISHABLE, exponent_pairs
from analysis.fits.powerlaw import FitError, PowerLawFit, fit_eterm, fit_pure
from analysis.options import AnalysisOptions


def _fit(alpha, sd, n=4000, seed=0):
    # exact normal quantiles (mean alpha, SD sd) in a random order: independent across variants
    q = np.random.default_rng(seed).permutation(norm.ppf((np.arange(n) + 0.5) / n))
    draws = np.column_stack([alpha + sd * q, np.full(n, 1e17), np.full(n, 2.0)])
    return PowerLawFit("eterm", "C", alpha, 1e17, 2.0, 40, 0.01, 0.99, 0.001, (1e14, 1e18), draws)


def test_holm_decides_the_verdict():
    """Holm within the same-objective family; the cross-objective pair a-c is descriptive only."""
    spec = {"a": ("causal", 0.300), "b": ("causal", 0.270), "c": ("masked", 0.301), "d": ("causal", 0.200),
            "e": ("causal", 0.299)}
    fitted = {(v, "eterm"): (obj, _fit(alpha, 0.01, seed=i)) for i, (v, (obj, alpha)) in enumerate(spec.items())}
    p = exponent_pairs(fitted, AnalysisOptions()).set_index(["variant_a", "variant_b"])
    assert len(p) == 10
    same = p[~p["cross_objective"]]
    assert len(same) == 6 and (same["family"] == "eterm/causal").all()
    np.testing.assert_allclose(same["p_holm"], multipletests(same["p_boot"], method="holm")[1])
    cross = p[p["cross_objective"]]
    assert (cross["family"] == "").all() and cross["p_holm"].isna().all() and (cross["verdict"] == CROSS_OBJECTIVE).all()
    ab = p.loc[("a", "b")]  # z = 0.03 / 0.0141 = 2.1: p ~ 0.034 raw, > 0.05 after Holm over the 6 causal pairs
    assert ab["p_boot"] == pytest.approx(2 * norm.sf(0.03 / np.sqrt(2) / 0.01), rel=0.02)
    assert ab["p_boot"] < 0.05 < ab["p_holm"]
    assert ab["verdict"] == NOT_DISTINGUISHABLE and ab["steeper_variant"] == ""
    assert ab["delta_lo"] > 0 > ab["delta_lo_adj"]  # unadjusted 95% excludes 0, the Holm-level interval does not
    ad = p.loc[("a", "d")]
    assert ad["verdict"] == "steeper" and ad["steeper_variant"] == "a"
    assert ad["delta_lo"] == pytest.approx(0.1 - 1.96 * np.sqrt(2) * 0.01, abs=2e-3)
    assert p.loc[("a", "c"), "cross_objective"] and not p.loc[("a", "b"), "cross_objective"]


def test_fit_dataclass_api():
    c = np.geomspace(1e15, 1e18, 30)
    loss = 2.0 + (1e17 / c) ** 0.25
    f = fit_eterm(c, loss)
    assert f.alpha == pytest.approx(0.25, rel=1e-4) and f.E == pytest.approx(2.0, rel=1e-4)
    np.testing.assert_allclose(f.predict(c), loss, rtol=1e-6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.alpha = 1.0
    s = f.summary()
    assert {"alpha", "C_c", "E", "rmse_log", "huber"} <= set(s["param"])
    assert f.conf_int().isna().all().all()  # no bootstrap yet: NaN, not made-up numbers
    p = fit_pure(c, (1e30 / c) ** 0.05)
    assert p.alpha == pytest.approx(0.05) and p.x_c == pytest.approx(1e30, rel=1e-6) and p.E == 0
    with pytest.raises(FitError, match="does not decrease"):
        fit_pure(c, c ** 0.1)
