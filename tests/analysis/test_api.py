"""The notebook API: analysis.fit_frontier / compare, statsmodels-style results."""
import subprocess
import sys

import numpy as np
import pytest
import statsmodels.api as sm

import analysis
from analysis.synthetic import synthetic_budget_grid, synthetic_study


@pytest.fixture(scope="module")
def kaplan():
    return synthetic_study(np.random.default_rng(0), n_variants=2)


def test_importing_analysis_leaves_matplotlib_alone(root):
    raw = "dict.__getitem__(matplotlib.rcParams, 'backend')"  # read without resolving (that imports pyplot)
    code = (f"import sys, matplotlib; b = {raw}; import analysis; from analysis import fit_frontier; "
            f"assert 'matplotlib.pyplot' not in sys.modules; assert {raw} == b")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_pure_fit_has_ols_intervals_without_a_bootstrap(kaplan):
    res = analysis.fit_frontier(kaplan, "v0", drop_fraction=0.0)
    assert res.frontier == "envelope" and list(res.params.index) == ["alpha", "C_c"]
    ols = sm.OLS(np.log(res.points["loss"]), sm.add_constant(np.log(res.points["compute"]))).fit()
    lo, hi = ols.conf_int(0.05).iloc[1]  # slope = -alpha
    ci = res.conf_int(alpha=0.05)
    assert ci.loc["alpha", "lower"] == pytest.approx(-hi) and ci.loc["alpha", "upper"] == pytest.approx(-lo)
    assert ci.loc["C_c", "lower"] < res.params["C_c"] < ci.loc["C_c", "upper"]
    assert res.conf_int(0.5).loc["alpha", "lower"] > ci.loc["alpha", "lower"]  # a 50% interval is narrower
    table = res.summary()
    assert list(table.columns) == ["estimate", "lower", "upper"] and "OLS 95% intervals" in table.attrs["title"]


def test_bootstrap_fit_on_final_points_and_a_comparison():
    df = synthetic_budget_grid(np.random.default_rng(0), n_range=(2e3, 2e6), tokens_per_param=(2, 2e5))
    res = analysis.fit_frontier(df, form="eterm", n_boot=100, rng=np.random.default_rng(1))
    assert res.frontier == "final" and len(res.points) == 5 and res.fit.n_boot == 100
    lo, hi = res.conf_int().loc["alpha"]
    assert lo < res.params["alpha"] < hi
    same = analysis.compare(res, res)
    assert same["delta_alpha"] == 0 and same["p"] == pytest.approx(1.0)


def test_plot_takes_an_axis_and_returns_its_figure(kaplan):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert analysis.fit_frontier(kaplan, "v1").plot(ax=ax) is fig
    plt.close(fig)


def test_bad_calls_name_the_problem(kaplan):
    with pytest.raises(ValueError, match="has variants"):
        analysis.fit_frontier(kaplan)
    with pytest.raises(ValueError, match="no variant 'gpt9'"):
        analysis.fit_frontier(kaplan, "gpt9")
    with pytest.raises(ValueError, match="alpha=95"):
        analysis.fit_frontier(kaplan, "v0").conf_int(alpha=95)


@pytest.mark.parametrize("frontier", ["final", "envelope"])
def test_the_notebook_api_and_the_pipeline_give_the_same_alphas_intervals_and_verdicts(frontier):
    """One study table through the pipeline's stages (python -m analysis, Snakemake's fit and compare jobs) and
    through analysis.fit_frontier / compare with the same seed: identical alphas, intervals and pair tests."""
    from analysis.options import AnalysisOptions
    from analysis.stages import analyse

    import pandas as pd

    rng = np.random.default_rng(3)
    df = pd.concat([synthetic_budget_grid(rng, variant=v, alpha=a, n_range=(2e3, 2e6), tokens_per_param=(2, 2e5))
                    for v, a in (("a", 0.30), ("b", 0.34), ("c", 0.45))], ignore_index=True)
    opts = AnalysisOptions(frontier=frontier, n_boot=60, seed=7)
    tables = analyse(df, opts, np.random.default_rng(opts.seed))
    # the stages return exactly the tables of the one list the workflow declares as outputs
    from analysis.table_list import STAGE_TABLES

    assert set(tables) == {t for stage in ("frontier", "fit", "compare", "predict") for t in STAGE_TABLES[stage]}
    fits = tables["fits"].set_index(["variant", "frontier", "form"])
    pairs = tables["pairs"]
    results = {}
    for variant in sorted(df["variant"].unique()):
        for form in ("pure", "eterm"):
            row = fits.loc[(variant, frontier, form)]
            res = analysis.fit_frontier(df, variant, form=form, frontier=frontier, n_boot=60,
                                        rng=np.random.default_rng(opts.seed))
            results[(variant, form)] = res
            assert res.fit.alpha == row["alpha"]
            lo, hi = res.conf_int(1 - opts.ci_level).loc["alpha"]
            assert (lo, hi) == (row["alpha_lo"], row["alpha_hi"])
    if frontier != tables["fits"].loc[tables["fits"]["primary"], "frontier"].iloc[0]:
        return  # the pipeline compares variants on its primary frontier only
    assert len(pairs) == 6
    for p in pairs.to_dict("records"):
        api = analysis.compare(results[(p["variant_a"], p["form"])], results[(p["variant_b"], p["form"])],
                               level=opts.ci_level)
        assert api["delta_alpha"] == p["delta_alpha"] and api["se"] == pytest.approx(p["se_delta"], rel=1e-12)
        assert api["p"] == pytest.approx(p["p_boot"], rel=1e-9)
        assert (api["lower"], api["upper"]) == pytest.approx((p["delta_lo"], p["delta_hi"]), rel=1e-9)
        # one pair alone: its verdict is the pipeline's where Holm's level for it is the plain significance
        if p["p_holm"] <= opts.significance / 3:
            assert api["p"] < opts.significance
