"""Early-transient rule (analysis.curves.transient): hand-made runs, and the evidence on public curves in tests/data."""
import numpy as np
import pandas as pd
import pytest
from analysis_testlib import gemstone_curves, make_run, pythia_curves, with_short_runs

from analysis.fits.bootstrap import fit_envelope
from analysis.frontier.envelope import RunCurves
from analysis.curves.table import validate_curves
from analysis.curves.transient import DEFAULT_FRACTION, EXTEND_LIMIT, STEEP_SLOPE, TRANSIENT_COLS, early_transient, \
    local_slope, summary_lines

TOKENS = np.geomspace(1e3, 1e6, 31).round()


def _run(loss, size="s", params=1e6, **extra):
    return make_run("v", size, params, TOKENS, loss, **extra)


def _settled(t=TOKENS):
    return 3.0 * (t / 1e6) ** -0.05  # slope -0.05 everywhere


def _with_transient(end_share: float, t=TOKENS):
    """slope -0.5 until end_share of the run, then -0.05 (continuous)."""
    t_end = end_share * t.max()
    steep = 3.0 * (t_end / 1e6) ** -0.05 * (t / t_end) ** -0.5
    return np.where(t < t_end, steep, _settled(t))


def test_default_rule_drops_ten_percent_and_says_why():
    df = validate_curves(_run(_settled()))
    res = early_transient(df)
    r = res.runs.iloc[0]
    assert list(res.runs.columns) == TRANSIENT_COLS
    assert r["rule"] == "default fraction" and r["fraction"] == DEFAULT_FRACTION
    assert r["cut_tokens"] == pytest.approx(0.1 * TOKENS.max())
    assert res.n_dropped == r["n_dropped"] == int((TOKENS < 0.1 * TOKENS.max()).sum())
    assert "default early-transient rule" in r["note"] and not r["steep_at_cut"]
    assert r["slope_at_cut"] == pytest.approx(-0.05, abs=1e-6)
    kept = res.kept(df)
    assert kept["tokens"].min() >= 0.1 * TOKENS.max() and len(kept) == r["n_kept"]


def test_a_warmup_never_replaces_the_default_but_can_extend_it():
    df = validate_curves(_run(_settled(), warmup_tokens=5e3))
    r = early_transient(df).runs.iloc[0]  # warmup 0.5% of the run: the 10% rule still applies
    assert r["rule"] == "default fraction" and r["cut_tokens"] == pytest.approx(0.1 * TOKENS.max())
    df = validate_curves(_run(_settled(), warmup_tokens=2e5))
    r = early_transient(df).runs.iloc[0]  # a warmup longer than 10% of the run: cut at its end
    assert r["rule"] == "warmup" and r["cut_tokens"] == 2e5
    r = early_transient(df, use_warmup=False).runs.iloc[0]
    assert r["rule"] == "default fraction"


def test_given_fraction_combines_with_warmup():
    df = validate_curves(_run(_settled(), warmup_tokens=5e3))
    r = early_transient(df, fraction=0.2).runs.iloc[0]
    assert r["rule"] == "fraction" and r["cut_tokens"] == pytest.approx(0.2 * TOKENS.max())
    r = early_transient(df, fraction=0.001).runs.iloc[0]
    assert r["rule"] == "warmup" and r["cut_tokens"] == 5e3
    r = early_transient(df, fraction=0.0, use_warmup=False).runs.iloc[0]
    assert r["rule"] == "none" and r["n_dropped"] == 0


def test_steep_stretch_is_flagged_and_optionally_dropped():
    """A run whose transient lasts 30% of its tokens: the default 10% cut is flagged as still steep; with
    extend_steep the cut moves past the steep stretch."""
    df = validate_curves(_run(_with_transient(0.3)))
    r = early_transient(df).runs.iloc[0]
    assert r["rule"] == "default fraction" and r["steep_at_cut"] and r["slope_at_cut"] < STEEP_SLOPE
    assert "still steep" in r["note"]
    assert any("still steep" in line for line in summary_lines(early_transient(df)))
    ext = early_transient(df, extend_steep=True).runs.iloc[0]
    assert ext["rule"] == "steep extension" and not ext["steep_at_cut"]
    assert 0.3 * TOKENS.max() <= ext["cut_tokens"] <= 0.45 * TOKENS.max()
    assert early_transient(validate_curves(_run(_settled())), extend_steep=True).runs.iloc[0]["rule"] == \
        "default fraction"  # nothing steep: nothing extended


def test_extension_never_passes_half_the_run():
    df = validate_curves(_run(3.0 * (TOKENS / 1e6) ** -0.4))  # steep everywhere
    r = early_transient(df, extend_steep=True).runs.iloc[0]
    first_past_limit = TOKENS[TOKENS > EXTEND_LIMIT * TOKENS.max()][0]
    assert r["cut_tokens"] == first_past_limit  # the point after the last steep one inside the first half
    assert r["n_kept"] == int((TOKENS >= first_past_limit).sum()) >= 3 and r["steep_at_cut"]


def test_runs_are_cut_independently_and_mask_is_aligned():
    a, b = _run(_settled(), size="s"), _run(_with_transient(0.3), size="m", params=2e6)
    df = validate_curves(pd.concat([a, b], ignore_index=True)).sample(frac=1.0, random_state=0)
    res = early_transient(df, extend_steep=True)
    assert res.drop.index.equals(df.index)
    runs = res.runs.set_index("size")
    assert runs.loc["s", "rule"] == "default fraction" and runs.loc["m", "rule"] == "steep extension"
    kept = res.kept(df)
    for size, g in kept.groupby("size"):
        assert g["tokens"].min() >= runs.loc[size, "cut_tokens"]
    assert len(kept) == runs["n_kept"].sum()


def test_bad_arguments_give_one_line_errors():
    df = validate_curves(_run(_settled()))
    with pytest.raises(ValueError, match=r"fraction=1\.5 is invalid; use None"):
        early_transient(df, fraction=1.5)
    with pytest.raises(ValueError, match=r"lacks column\(s\) run"):
        early_transient(df.drop(columns="run"))


def test_local_slope():
    t = np.geomspace(1, 1e4, 50)
    assert local_slope(t, 2 * t ** -0.3) == pytest.approx(-0.3)
    assert np.isnan(local_slope(t[:2], t[:2] ** -0.3))


# ---------------------------------------------------------------- evidence on public curves (tests/data)
def _alpha(curves):
    return fit_envelope(RunCurves.from_table(curves, "flops"), "pure", 40, 1e-3).alpha


@pytest.fixture(scope="module")
def pythia():
    return validate_curves(pythia_curves())


def test_pythia_transient_dominates_without_a_rule(pythia):
    """Measured: envelope pure alpha_C 0.140 with every point, 0.102 with the default rule (0.079 at 2%)."""
    full, default = _alpha(pythia), _alpha(early_transient(pythia).kept(pythia))
    assert full > 1.25 * default
    assert 0.07 < default < 0.12


def test_pythia_default_cut_is_past_every_transient(pythia):
    """At 0.5% of the run every Pythia curve is still steeper than STEEP_SLOPE (loss ~9 -> 5 nats); at the default
    cut none is."""
    early = early_transient(pythia, fraction=0.005).runs
    assert early["steep_at_cut"].all() and len(early) == 20
    default = early_transient(pythia).runs
    assert not default["steep_at_cut"].any() and (default["rule"] == "default fraction").all()
    assert (default["slope_at_cut"] > -0.1).all()


def test_short_runs_are_flagged_and_extend_steep_removes_their_transient(pythia):
    """Pythia plus each run truncated at 1/4 and 1/16 (a budget ladder): a 10% share of the short runs readmits
    their transient (alpha 0.094 against 0.079 for the full runs cut at 2%); the default flags those runs as
    still steep (19 of 60), and extend_steep brings alpha back to 0.081."""
    ladder = with_short_runs(pythia)
    default = early_transient(ladder)
    assert default.runs["steep_at_cut"].sum() >= 10
    assert default.runs.loc[default.runs["steep_at_cut"], "run"].str.contains("/T").all()  # only short runs
    clean = _alpha(early_transient(pythia, fraction=0.02).kept(pythia))
    assert _alpha(default.kept(ladder)) / clean - 1 > 0.1
    extended = early_transient(ladder, extend_steep=True)
    assert not extended.runs["steep_at_cut"].any()
    assert abs(_alpha(extended.kept(ladder)) / clean - 1) < 0.05


def test_gemstone_default_sits_on_the_plateau():
    """Gemstones constant-lr curves: alpha 0.062 when the first (2%) point is kept, 0.056-0.058 for cuts at
    3-15%; the default rule lands on that plateau."""
    gem = validate_curves(gemstone_curves())
    default = _alpha(early_transient(gem).kept(gem))
    for f in (0.05, 0.15):
        assert default == pytest.approx(_alpha(early_transient(gem, fraction=f).kept(gem)), rel=0.04)
    assert _alpha(gem) > 1.05 * default
