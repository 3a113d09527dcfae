"""Issue 12, item 3: every headline recomputed under a grid of analysis choices; a verdict that depends on the
compute column is fragile, a clear one is not; the table has every choice; the figure marks the baseline."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from analysis_testlib import ROOT  # noqa: E402,F401

from analysis.comparison import sensitivity as sens  # noqa: E402
from analysis.options import AnalysisOptions  # noqa: E402
from analysis.report.plots import plot_sensitivity  # noqa: E402
from analysis.stages import analyse, sensitivity_stage  # noqa: E402
from analysis.synthetic import synthetic_curves  # noqa: E402

SIZES = (("s", 2.0e6), ("m", 6.0e6), ("l", 1.8e7), ("xl", 5.4e7), ("xxl", 1.6e8))
OPTS = AnalysisOptions(n_boot=40, n_boot_approach3=0, n_boot_sensitivity=100)


def crafted_study() -> pd.DataFrame:
    """Three causal variants, 5 sizes x 2 seeds.  a and c have the same true exponent (0.2) and the same accounted
    FLOPs; b is much steeper (0.35).  c's non-embedding share shrinks with size (params_nonembedding =
    params_total x (N / N_min)^-0.5), so in flops_6n = 6 N_ne D its larger models look cheaper and its exponent
    steeper: a vs c is 'not distinguishable' on flops but 'c steeper' on flops_6n (fragile); a vs b is
    'b steeper' under every choice (robust)."""
    rng = np.random.default_rng(5)
    kw = dict(seeds=(0, 1), E=0.5, sizes=SIZES)
    a = synthetic_curves(rng, variant="a", alpha=0.2, **kw)
    b = synthetic_curves(rng, variant="b", alpha=0.35, **kw)
    c = synthetic_curves(rng, variant="c", alpha=0.2, **kw)
    n0 = c["params_total"].min()
    c["params_nonembedding"] = (c["params_total"] * (c["params_total"] / n0) ** -0.5).round().astype("int64")
    c["flops_6n"] = 6.0 * c["params_nonembedding"] * c["tokens"]
    return pd.concat([a, b, c], ignore_index=True)


@pytest.fixture(scope="module")
def study():
    return crafted_study()


@pytest.fixture(scope="module")
def tables(study):
    return analyse(study, OPTS, np.random.default_rng(0), sensitivity=True)


def _summary_row(tables, headline, subject):
    s = tables["sensitivity_summary"]
    return s[(s["headline"] == headline) & (s["subject"] == subject)].iloc[0]


def test_the_table_has_every_choice_for_every_headline(tables):
    long = tables["sensitivity"]
    expected = [c.label for c in sens.choices(OPTS, "envelope")]
    assert set(long["dimension"]) == {"baseline", "frontier", "drop fraction", "grid points", "compute", "fit form",
                                      "sizes"}
    assert {"drop fraction = 0", "drop fraction = 0.05", "drop fraction = 0.2", "grid points = 20",
            "grid points = 80", "compute = flops_6n", "fit form = eterm", "without the smallest size",
            "frontier = final"} == set(expected) - {"as analysed"}
    for (headline, subject), g in long.groupby(["headline", "subject"]):
        assert list(g["choice"]) == expected, (headline, subject)
    assert set(long["headline"]) == {"alpha", "verdict", "tiers", "crossover"}
    assert set(long.loc[long["headline"] == "verdict", "subject"]) == {"a vs b", "a vs c", "b vs c"}
    # each cell uses what its label says
    cell = long[(long["choice"] == "compute = flops_6n")]
    assert (cell["compute"] == "flops_6n").all() and (long.loc[long["choice"] != "compute = flops_6n", "compute"]
                                                       == "flops").all()
    assert (long.loc[long["choice"] == "fit form = eterm", "form"] == "eterm").all()
    tiers = long[(long["headline"] == "tiers") & (long["subject"] == "a")].set_index("choice")["verdict"]
    assert tiers["as analysed"].startswith("s") and not tiers["without the smallest size"].startswith("s")


def test_a_verdict_that_depends_on_the_compute_column_is_fragile(tables):
    long = tables["sensitivity"]
    ac = long[(long["headline"] == "verdict") & (long["subject"] == "a vs c")].set_index("choice")["verdict"]
    assert ac["as analysed"] == "not distinguishable at this scale"
    assert ac["compute = flops_6n"] == "c steeper"
    row = _summary_row(tables, "verdict", "a vs c")
    assert row["fragile"] and "compute = flops_6n" in row["differs_under"].split("; ")


def test_a_clear_verdict_is_not_fragile(tables):
    long = tables["sensitivity"]
    ab = long[(long["headline"] == "verdict") & (long["subject"] == "a vs b")]
    assert (ab["verdict"] == "b steeper").all(), ab[["choice", "verdict", "note"]]
    row = _summary_row(tables, "verdict", "a vs b")
    assert not row["fragile"] and row["n_differ"] == 0 and row["n_choices"] == len(ab)


def test_the_baseline_cell_is_the_reported_analysis(tables, study):
    fits = tables["fits"]
    pure = fits[(fits["form"] == "pure") & fits["primary"]].set_index("variant")["alpha"]
    base = tables["sensitivity"]
    base = base[base["baseline"] & (base["headline"] == "alpha")].set_index("subject")["value"]
    np.testing.assert_allclose(base.sort_index(), pure.sort_index(), rtol=1e-12)
    row = _summary_row(tables, "alpha", "b")
    assert row["min"] <= row["baseline_value"] <= row["max"]
    # the stage alone with a fresh generator equals what analyse(..., sensitivity=True) gave
    alone = sensitivity_stage(study, OPTS, np.random.default_rng(0))
    pd.testing.assert_frame_equal(alone["sensitivity"], tables["sensitivity"])


def test_choices_on_a_final_point_primary_frontier_read_the_envelope():
    cells = sens.choices(AnalysisOptions(drop_fraction=0.1), "final")
    assert cells[0].dimension == "baseline" and cells[0].frontier == "final"
    by = {c.label: c for c in cells}
    assert "drop fraction = default rule (10%) (envelope)" not in by  # 0.1 is the default rule
    assert by["drop fraction = 0.05 (envelope)"].frontier == "envelope"
    assert by["grid points = 80 (envelope)"].opts.grid_points == 80
    assert by["frontier = envelope"].opts.drop_fraction == 0.1
    assert by["compute = flops_6n"].frontier == "final" and by["fit form = eterm"].form == "eterm"


def _long(rows):
    base = dict(objective="causal", frontier="envelope", form="pure", compute="flops", lo=np.nan, hi=np.nan, note="")
    return pd.DataFrame([{**base, **r} for r in rows], columns=sens.SENS_COLS)


def test_a_changed_tier_grouping_is_fragile_but_a_missing_size_is_not():
    assert sens.same_tiers("s | m, l | xl", "m, l | xl")  # the smallest size left out: same grouping of the rest
    assert not sens.same_tiers("s | m, l | xl", "m | l | xl")
    cell = dict(headline="tiers", subject="v", value=3.0)
    long = _long([{**cell, "dimension": "baseline", "choice": "as analysed", "baseline": True, "verdict": "s | m, l | xl"},
                  {**cell, "dimension": "sizes", "choice": "without", "baseline": False, "verdict": "m, l | xl"},
                  {**cell, "dimension": "compute", "choice": "6n", "baseline": False, "verdict": "s | m | l | xl"}])
    row = sens.summarise(long).iloc[0]
    assert row["fragile"] and row["differs_under"] == "6n" and row["n_differ"] == 1


def test_a_reported_verdict_that_differs_from_the_sensitivity_baseline_is_fragile():
    summary = pd.DataFrame([{"headline": "verdict", "subject": "a vs b", "baseline_verdict": "b steeper",
                             "fragile": False, "differs_under": ""}], columns=sens.SUMMARY_COLS)
    pairs = pd.DataFrame([{"form": "pure", "variant_a": "a", "variant_b": "b", "family": "pure/causal",
                           "verdict": "not distinguishable at this scale", "steeper_variant": ""}])
    out = sens.fragile_pairs(pairs, summary)
    assert out["fragile"].tolist() == [True] and "near the threshold" in out["why"].iloc[0]
    pairs["verdict"], pairs["steeper_variant"] = "steeper", "b"
    assert not sens.fragile_pairs(pairs, summary)["fragile"].iloc[0]


def test_the_figure_shows_every_variant_and_marks_the_baseline(tables):
    fig = plot_sensitivity(tables["sensitivity"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "baseline (interval)" in labels and "compute" in labels and "fit form" in labels
    n_alpha = int((tables["sensitivity"]["headline"] == "alpha").sum())
    dots = sum(len(line.get_xdata()) for line in ax.get_lines() if line.get_marker() == "o")
    assert dots == n_alpha - 3  # every non-baseline cell of every variant drawn
    plt.close(fig)
