"""Issue 13, items 2 and 3: tables that contradict themselves are refused with one line naming the
run, the row and the fix; legitimate tables (other FLOP accountings, no step column, published data)
pass; fits that cannot be made become a stated status, never a traceback."""
import numpy as np
import pandas as pd
import pytest

from analysis import stages
from analysis.fits.powerlaw import Approach3Fit, FitError, fit_approach3, fit_pure
from analysis.options import AnalysisOptions
from analysis.synthetic import synthetic_curves, synthetic_study
from analysis.curves.table import FLOPS_6N_RTOL, FLOPS_PER_TOKEN_RTOL, CurveTableError, validate_curves


@pytest.fixture(scope="module")
def table():
    """Two variants x 4 sizes x 6 points, rows in the order the CSV would have them."""
    parts = [synthetic_curves(np.random.default_rng(1), variant=v, alpha=a, n_points=6) for v, a in
             (("gpt2", 0.2), ("bert_causal", 0.25))]
    return pd.concat(parts, ignore_index=True)


def _row(df, variant, size, step):
    return int(df.index[(df["variant"] == variant) & (df["size"] == size) & (df["step"] == step)][0])


def _refused(df, *parts):
    with pytest.raises(CurveTableError) as err:
        validate_curves(df)
    text = str(err.value)
    assert "\n" not in text
    for p in parts:
        assert p in text, text
    return text


def test_the_synthetic_table_is_valid(table):
    assert len(validate_curves(table)) == len(table)


def test_one_point_with_huge_flops_inside_a_run(table):
    bad = table.copy()
    r = _row(bad, "gpt2", "m", 3)
    bad.loc[r, "flops"] = 1e30
    _refused(bad, "run 'gpt2/m/seed0'", f"row {r}:", "x the run's median", "fix the flops")


def test_compute_falling_while_tokens_rise(table):
    bad = table.astype({"step": float})
    r = _row(bad, "gpt2", "m", 3)
    bad.loc[r, ["flops", "flops_6n"]] = bad.loc[r - 1, ["flops", "flops_6n"]].to_numpy() * 0.99
    bad.loc[r, "tokens"] = bad.loc[r - 1, "tokens"] * 0.99
    bad.loc[r, "step"] = 2.5  # the evaluation came between steps 2 and 3 but claims fewer tokens than step 2
    _refused(bad, "run 'gpt2/m/seed0'", f"row {r - 1}:", "step does not grow with tokens", f"at row {r}")


def test_one_point_with_huge_flops_at_the_end_of_a_run(table):
    bad = table.copy()
    r = _row(bad, "gpt2", "m", 6)
    bad.loc[r, "flops"] = 1e30
    _refused(bad, "run 'gpt2/m/seed0'", f"row {r}:", "x the run's median",
             f"FLOPs per token are fixed (tolerance {FLOPS_PER_TOKEN_RTOL:.0%})")


def test_tokens_and_flops_swapped_in_one_run(table):
    bad = table.copy()
    run = (bad["variant"] == "bert_causal") & (bad["size"] == "l")
    bad.loc[run, ["tokens", "flops"]] = bad.loc[run, ["flops", "tokens"]].to_numpy()
    _refused(bad, "run 'bert_causal/l/seed0'", "flops_6n =", "swapped",
             f"within {FLOPS_6N_RTOL:.0%}")


def test_flops_6n_1000x_off(table):
    bad = table.copy()
    r = _row(bad, "gpt2", "s", 2)
    bad.loc[r, "flops_6n"] *= 1000
    _refused(bad, f"row {r}:", "1000 x 6 x params_nonembedding x tokens", "recompute the column")


def test_params_nonembedding_varying_within_a_run(table):
    bad = table.copy()
    r = _row(bad, "gpt2", "l", 4)
    bad.loc[r, "params_nonembedding"] += 1000
    _refused(bad, "run 'gpt2/l/seed0'", f"row {r}:", "params_nonembedding is", "at the run's first point",
             "fixed parameter counts")


def test_a_seed_of_one_half(table):
    bad = table.astype({"seed": float})
    bad.loc[5, "seed"] = 0.5
    _refused(bad, "column 'seed' has value 0.5 (row 5)", "use integers")


@pytest.mark.parametrize("col", ["params_total", "tokens"])
def test_huge_counts_do_not_wrap_to_negative_numbers(table, col):
    bad = table.copy()
    bad[col] = bad[col].astype(float)
    bad.loc[7, col] = 1e25
    text = _refused(bad, f"column {col!r} has value 1e+25 (row 7)", "beyond the 64-bit integer range")
    assert "-9.2" not in text


def test_params_nonembedding_above_params_total(table):
    bad = table.copy()
    bad[["params_total", "params_nonembedding"]] = bad[["params_nonembedding", "params_total"]].to_numpy()
    _refused(bad, "exceeds params_total", "swapped")


def test_step_going_backwards(table):
    bad = table.copy()
    r = _row(bad, "gpt2", "s", 4)
    bad.loc[r, "step"] = 1
    _refused(bad, "run 'gpt2/s/seed0'", "step does not grow with tokens")


def test_legitimate_tables_pass(table):
    # flops with embeddings and attention: FLOPs per token constant within a run but not 6N
    embed = table.assign(flops=table["flops"] * np.where(table["size"] == "s", 1.9, 1.3))
    validate_curves(embed)
    # flops_6n counting all parameters (Chinchilla's convention), no step column, shuffled rows
    total = table.assign(flops_6n=6.0 * table["params_total"] * table["tokens"]).drop(columns="step")
    validate_curves(total.sample(frac=1.0, random_state=0))
    # counts as floats (W&B exports): rounded, not truncated
    floats = table.assign(tokens=table["tokens"] * (1 + 1e-12), params_total=table["params_total"] - 1e-6)
    pd.testing.assert_frame_equal(validate_curves(floats), validate_curves(table))


def test_flops_6n_conventions_must_not_be_mixed(table):
    mixed = table.assign(flops_6n=np.where(table["variant"] == "gpt2", table["flops_6n"],
                                           6.0 * table["params_total"] * table["tokens"]))
    _refused(mixed, "flops_6n counts params_total here but params_nonembedding at row", "one convention")


# ---------------------------------------------------------------- item 2: fits that cannot be made
def _reversed(df):
    v = validate_curves(df)
    v["loss"] = v.groupby("run")["loss"].transform(lambda s: s.to_numpy()[::-1])
    return v.drop(columns="run")


def test_reversed_losses_give_stated_statuses_not_a_traceback():
    rev = _reversed(synthetic_study(np.random.default_rng(0)))
    with np.errstate(all="ignore"):
        tables = stages.analyse(rev, AnalysisOptions(n_boot=50), np.random.default_rng(0))
    fits = tables["fits"]
    assert set(fits["status"]) <= {"ok", "failed", "refused", "at_bound"}
    a3 = fits[fits["form"] == "approach3"]
    assert (a3["status"] == "failed").all()
    # final points only: one token budget per size cannot separate N from D (a stated reason, no traceback)
    assert a3["note"].str.contains("Approach 3 needs >= 6 points with 2\\+ distinct N and D").all()
    ok = fits[fits["status"] == "ok"]
    assert np.isfinite(ok[["alpha", "C_c"]].to_numpy(float)).all()


def test_allocation_of_a_vanished_term_does_not_divide_by_zero():
    a, G = Approach3Fit.allocation(1.0, 400.0, 0.0, 0.3, 0.3)
    assert a == 0.5 and G == np.inf
    a, G = Approach3Fit.allocation(1.0, 400.0, 410.0, 0.34, 0.28)
    assert a == pytest.approx(0.28 / 0.62) and G == pytest.approx((0.34 * 400 / (0.28 * 410)) ** (1 / 0.62))


def test_approach3_whose_data_term_vanishes_is_a_fit_error():
    rng = np.random.default_rng(0)
    N = np.repeat([1e6, 4e6, 1.6e7], 6)
    D = np.tile(np.geomspace(1e7, 1e9, 6), 3)
    L = (2 + 300 / N ** 0.3) * (D / 1e7) ** 0.01 * np.exp(rng.normal(0, 1e-3, N.size))  # rises with D
    with pytest.raises(FitError, match="degenerate: the loss does not fall with tokens D"):
        fit_approach3(N, D, L)


def test_a_flat_curve_is_a_fit_error_naming_alpha():
    x = np.geomspace(1e15, 1e18, 10)
    with pytest.raises(FitError, match=r"the loss barely changes with C \(fitted alpha = 1e-05\)"):
        fit_pure(x, 3.0 * (1e15 / x) ** 1e-5)


def test_losses_far_below_one_do_not_crash_approach3():
    df = synthetic_study(np.random.default_rng(0), n_variants=1)
    fits = stages.fit_stage(df.assign(loss=df["loss"] * 1e-300), AnalysisOptions(n_boot=5),
                            np.random.default_rng(0))["fits"]
    assert set(fits["status"]) <= {"ok", "failed"} and fits["note"].notna().all()


def test_flops_in_other_units_are_refused_for_one_run_or_the_whole_table(table):
    """One run's flops x 1e6 kept its FLOPs per token constant and moved gpt2's exponent from 0.089 to 0.008;
    the whole table x 1e6 passed too. Both contradict 6 N D."""
    run = table[(table["variant"] == "gpt2")]["size"].iloc[0]
    one = table.copy()
    rows = (one["variant"] == "gpt2") & (one["size"] == run)
    one.loc[rows, "flops"] *= 1e6
    _refused(one, "its flops are", "x flops_6n (6 N D)", "check the units of its flops column")
    whole = table.assign(flops=table["flops"] * 1e6)
    _refused(whole, "x flops_6n (6 N D)")
    # an accounting that is a few times 6ND (heads, attention) stays valid
    validate_curves(table.assign(flops=table["flops"] * 3))


def test_a_logged_learning_rate_column_is_read_as_the_schedule_not_as_runs(table):
    """A W&B export's `lr` is the rate at each step: every row became a run of its own ("not used: 56 of 64
    run(s): lr not chosen") and the frontier switched silently. Now it is lr_at_step, each run's peak its lr."""
    plain = validate_curves(table)
    logged = table.assign(lr=0.004 * (1.0 - table["step"] / (table["step"].max() + 1.0)))
    out = validate_curves(logged)
    assert out["run"].nunique() == plain["run"].nunique()
    assert out["lr_at_step"].nunique() > 4 and out.groupby("run")["lr"].nunique().max() == 1
    assert len(out.attrs["assumed"]) == 1 and "taken as the rate at each step (lr_at_step)" in out.attrs["assumed"][0]
    # a real sweep (one constant rate per run) is left alone
    sweep = table.assign(lr=np.where(table["seed"] % 2 == 0, 1e-3, 2e-3))
    assert validate_curves(sweep).attrs["assumed"] == []


def test_a_missing_budget_is_filled_from_its_run_or_refused(table):
    budgeted = table.assign(budget="C" + table["size"].astype(str))
    holed = budgeted.copy()
    holed.loc[holed.index[3], "budget"] = np.nan
    out = validate_curves(holed)
    assert out["run"].nunique() == validate_curves(budgeted)["run"].nunique()
    assert "filled with it" in out.attrs["assumed"][0]
    two = budgeted.copy()
    first = two.index[(two["variant"] == "gpt2") & (two["size"] == two["size"].iloc[0])]
    two.loc[first[:3], "budget"] = "other"
    two.loc[first[4], "budget"] = np.nan
    _refused(two, "column 'budget' is empty", "several budgets")
