"""Figures: ax=None -> new Figure, given ax -> its Figure, stable colours, labelled log axes."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from analysis_testlib import ROOT  # noqa: E402,F401

from analysis import stages  # noqa: E402

from analysis.report import plots  # noqa: E402
from analysis.options import AnalysisOptions  # noqa: E402
from analysis.synthetic import synthetic_study  # noqa: E402


@pytest.fixture(scope="module")
def data():
    df = synthetic_study(np.random.default_rng(8), n_variants=3)
    return df, stages.analyse(df, AnalysisOptions(n_boot=30, n_boot_approach3=0), np.random.default_rng(0))


def test_palette_stable():
    a = plots.variant_palette(["b", "a", "c"])
    b = plots.variant_palette(["c", "a", "b", "a"])
    assert a == b and len(set(a.values())) == 3


def test_learning_curves_figure(data):
    df, tables = data
    fig = plots.plot_learning_curves(df, tables, "v1")
    ax = fig.axes[0]
    assert isinstance(fig, matplotlib.figure.Figure)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "compute (FLOPs)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "learning-curve envelope" in labels and "final-point frontier" in labels
    assert any("pure" in t for t in labels) and any("E +" in t for t in labels)
    assert len(ax.collections) >= 2  # CI bands of both fits
    plt.close(fig)
    fig, ax = plt.subplots()
    assert plots.plot_learning_curves(df, tables, "v0", ax=ax) is fig
    plt.close(fig)


def test_every_figure_builds(data):
    df, tables = data
    figs = plots.all_figures(df, tables)
    assert {"curves_v0", "frontiers_causal", "exponent_forest", "delta_alpha_eterm", "extrapolation",
            "loss_vs_params"} <= set(figs)
    assert figs["loss_vs_params"].axes[0].get_xlabel() == "non-embedding parameters"
    colour = plots.variant_palette(df["variant"])["v0"]
    line = figs["frontiers_causal"].axes[0].get_lines()[0]
    assert matplotlib.colors.to_rgb(line.get_color()) == pytest.approx(colour)
    for f in figs.values():
        plt.close(f)
