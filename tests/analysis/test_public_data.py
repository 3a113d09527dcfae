"""Public scaling runs in tests/data (sources, licences and published numbers in tests/data/README.md)."""
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from analysis_testlib import DATA

from analysis.fits.powerlaw import fit_approach3, fit_eterm

# Gemstones (McLeish et al. 2025): the authors' Approach-3 fits, Huber delta 1e-3 on log-loss
# (parameters_delta-3/approach_3_parameters_grid_search_0_{series}.json); E = exp(irreducible_error).
GEMSTONE = {
    "hot": dict(alpha=0.2928686863, beta=0.712872206, log_E=0.7622636901, huber=0.0019816129),
    "cool_end": dict(alpha=0.3002728205, beta=0.580241077, log_E=0.7297863295, huber=0.0019640865),
}
# Porian et al. 2024, fit_results['basic'] of their released summaries: L*(C) = E + A C^-alpha fitted by least
# squares on log-loss over the per-budget optima with 1e16 < C < 5e17, and the N_opt exponent a.
PORIAN = {
    "rw/base/long/kaplan/kaplan/train": (0.8338, 0.1752, 2.6599),
    "rw/base/long/kaplan/standard/val": (0.7009, 0.3331, 2.8609),
    "rw/base/short/kaplan/standard/val": (0.6035, 0.3533, 3.2330),
    "rw/base/short/chinchilla/standard/val": (0.5714, 0.3359, 3.0818),
    "rw/tuned/short/const/standard/val": (0.4970, 0.1060, 2.0056),
    "owt2/base/long/kaplan/kaplan/train": (0.8700, 0.1571, 2.1173),
    "owt2/base/long/kaplan/standard/val": (0.7000, 0.2955, 2.3227),
    "owt2/base/short/kaplan/standard/val": (0.6016, 0.3228, 2.7537),
    "owt2/base/short/chinchilla/standard/val": (0.5689, 0.2948, 2.5533),
    "owt2/tuned/short/const/standard/val": (0.5184, 0.1397, 2.0747),
    "rw/tuned/long/const/kaplan/train": (0.7081, 0.0538, 0.3608),
    "rw/base/long/kaplan/attention/train": (0.7159, 0.5240, 3.4214),
    "rw/base/short/kaplan/attention/train": (0.6240, 0.3267, 3.1720),
    "rw/base/short/chinchilla/attention/train": (0.5778, 0.2815, 2.8721),
    "rw/tuned/short/const/attention/train": (0.5041, 0.1003, 1.9276),
}
# Pythia: published training setup and parameter counts (total, non-embedding)
PYTHIA_TOKENS_PER_STEP, PYTHIA_STEPS = 2_097_152, 143_000
PYTHIA_PARAMS = {"14m": (14_067_712, 1_189_888), "70m": (70_426_624, 18_915_328), "160m": (162_322_944, 85_056_000)}


@pytest.fixture(scope="module")
def gemstone():
    return pd.read_csv(DATA / "gemstone_loss_curves.csv")


@pytest.mark.parametrize("series", ["hot", "cool_end"])
def test_gemstone_approach3_matches_published(gemstone, series):
    """Same objective as the authors (Huber 1e-3 on log-loss, summed), so the optimum must agree.
    Tolerance 0.002 on the exponents (measured |diff| < 2e-4) and 0.01 on E: the authors' L-BFGS starts from a
    coarse grid, ours from variable projection; both must land on the same minimum, ours no worse."""
    d = gemstone[gemstone["series"] == series]
    if series == "hot":
        d = d[d["step"] % 2385 == 0]  # the authors fitted the 10B-token checkpoints
    assert len(d) == (220 if series == "hot" else 199)
    fit = fit_approach3(d["params"], d["tokens"], d["loss"], delta=1e-3)
    pub = GEMSTONE[series]
    assert fit.alpha == pytest.approx(pub["alpha"], abs=0.002)
    assert fit.beta == pytest.approx(pub["beta"], abs=0.002)
    assert fit.E == pytest.approx(np.exp(pub["log_E"]), abs=0.01)
    assert fit.huber <= pub["huber"] * (1 + 1e-6)


@pytest.fixture(scope="module")
def porian():
    return pd.read_csv(DATA / "porian_isoflop.csv")


def test_porian_optimal_loss_fits_match_published(porian):
    """Our E-term fit with a delta so large that the Huber loss is the squared loss (the authors' least squares on
    log-loss) reproduces the published L*(C) fit of every configuration: alpha within 0.002 (measured < 2e-4),
    E within 0.01 nats (measured < 1e-4 except rw/tuned/long/const/kaplan/train, 0.006, where E is nearly
    unidentified: alpha = 0.054 and E = 0.36 nats)."""
    opt = porian[porian["kind"] == "optimum"].dropna(subset=["loss"])
    assert set(opt["config"]) == set(PORIAN)
    for config, (a_pub, alpha_pub, e_pub) in PORIAN.items():
        d = opt[opt["config"] == config]
        window = d[(d["flops"] > 1e16) & (d["flops"] < 5e17)]
        fit = fit_eterm(window["flops"], window["loss"], delta=10.0)
        assert fit.alpha == pytest.approx(alpha_pub, abs=0.002), config
        assert fit.E == pytest.approx(e_pub, abs=0.01), config
        n = d.dropna(subset=["n"])
        a = sm.OLS(np.log(n["n"]), sm.add_constant(np.log(n["flops"]))).fit().params.iloc[1]
        assert a == pytest.approx(a_pub, abs=0.001), config


def test_porian_isoflop_points_bracket_the_optimum(porian):
    """Each published per-budget optimum lies inside the range of model sizes trained at that budget."""
    iso, opt = porian[porian["kind"] == "isoflop"], porian[porian["kind"] == "optimum"].dropna(subset=["n"])
    rng = iso.groupby(["config", "flops"])["n"].agg(["min", "max"])
    joined = opt.join(rng, on=["config", "flops"], how="inner")
    assert len(joined) >= 150
    assert ((joined["n"] >= joined["min"]) & (joined["n"] <= joined["max"])).all()


def test_pythia_file_matches_published_setup():
    d = pd.read_csv(DATA / "pythia_train_loss.csv")
    runs = d.groupby(["size", "seed"])
    assert runs.ngroups == 20 and set(d["size"]) == set(PYTHIA_PARAMS)
    assert (runs["step_hi"].max() == PYTHIA_STEPS - 1).all()  # every run complete: steps 1 .. 142,999
    assert (runs["n"].sum() == PYTHIA_STEPS - 1).all()  # every step averaged exactly once
    assert (runs["loss"].first() > 10.0).all()  # starts near ln(50k vocabulary) = 10.8 nats
    final = runs["loss"].last().groupby("size").mean()
    assert final["14m"] > final["70m"] > final["160m"]
