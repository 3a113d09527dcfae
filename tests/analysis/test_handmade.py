"""Hand-made tables with known answers: envelope ownership, bracketing, tiers, lr choice, crossovers."""
import numpy as np
import pandas as pd
import pytest
from analysis_testlib import make_run

from analysis import stages
from analysis.comparison.comparisons import NO_CROSSOVER
from analysis.options import AnalysisOptions
from analysis.synthetic import synthetic_curves
from analysis.curves.table import select_best_lr

OPTS = AnalysisOptions(n_boot=0, drop_fraction=0.0)  # hand-made curves: keep every point
TOK = [1e5, 1e6, 1e7, 1e8]


def three_runs(variant="h"):
    # flops = 6 * params * tokens; s: 6e11..6e14, m: 6e12..6e15, l: 6e13..6e16
    return pd.concat([
        make_run(variant, "s", 1e6, TOK, [5.0, 4.0, 3.5, 3.3]),
        make_run(variant, "m", 1e7, TOK, [6.0, 4.2, 3.2, 2.8]),
        make_run(variant, "l", 1e8, TOK, [7.0, 4.5, 3.0, 2.5]),
    ], ignore_index=True)


def test_envelope_points_and_ownership():
    fr = stages.frontier_stage(three_runs(), OPTS)
    pts = fr["frontier_points"]
    got = list(zip(pts["size"], np.round(pts["compute"] / 6, 0), pts["loss"]))
    assert got == [("s", 1e11, 5.0), ("s", 1e12, 4.0), ("s", 1e13, 3.5), ("m", 1e14, 3.2), ("m", 1e15, 2.8),
                   ("l", 1e16, 2.5)]
    owners = fr["frontier_owners"]
    assert owners["size"].tolist() == ["s", "m", "l"]
    assert owners["n_grid"].sum() == OPTS.grid_points
    # s and m cross between 6e13 and 6e14 (log-log interpolation): m owns from there on
    boundary = owners["c_start"].iloc[1]
    assert 6e13 < boundary < 6e14
    grid = fr["frontier_grid"]
    assert grid["compute"].iloc[0] == pytest.approx(6e11) and grid["compute"].iloc[-1] == pytest.approx(6e16)
    assert (np.diff(np.log(grid["compute"])) > 0).all()


def test_not_bracketed_and_bracketed():
    s = stages.frontier_stage(three_runs(), OPTS)["frontier_summary"].iloc[0]
    assert not s["bracketed"] and s["top_owner_size"] == "l" and "not bracketed" in s["note"]
    xl = make_run("h", "xl", 1e9, [1e4, 1e5, 1e6, 1e7], [9.0, 6.0, 4.0, 2.6])  # 6e13..6e16, loses to l at top
    s = stages.frontier_stage(pd.concat([three_runs(), xl]), OPTS)["frontier_summary"].iloc[0]
    assert s["bracketed"] and s["top_owner_size"] == "l" and s["largest_size"] == "xl" and s["note"] == ""


def test_interpolation_never_extrapolates():
    # run b's range ends at 6e14; beyond it only run c exists, even though b is much lower there
    a = make_run("x", "a", 1e6, TOK, [5.0, 4.0, 3.5, 3.3])
    c = make_run("x", "c", 1e8, TOK, [9.0, 8.0, 7.0, 6.0])
    grid = stages.frontier_stage(pd.concat([a, c]), OPTS)["frontier_grid"]
    beyond = grid[grid["compute"] > 6e14 * 1.0001]
    assert (beyond["size"] == "c").all() and len(beyond) > 0


def test_drop_fraction_and_warmup():
    df = three_runs().assign(warmup_tokens=2e5)
    runs = stages.frontier_stage(df, AnalysisOptions(n_boot=0, drop_fraction=0.05))["runs"]
    assert runs["n_kept"].tolist() == [2, 2, 2]  # tokens >= 5e6 kept, 1e5 also before warmup
    runs = stages.frontier_stage(df, AnalysisOptions(n_boot=0, drop_fraction=0.0, drop_warmup=True))["runs"]
    assert runs["n_kept"].tolist() == [3, 3, 3]
    runs = stages.frontier_stage(df, AnalysisOptions(n_boot=0, drop_fraction=0.0, drop_warmup=False))["runs"]
    assert runs["n_kept"].tolist() == [4, 4, 4]


def _tier_table(se=None, seeds=True):
    rows = []
    best = {"a": (3.00, 3.02), "b": (2.99, 3.01), "c": (2.80, 2.82)}
    for i, (size, losses) in enumerate(best.items()):
        for seed, lo in enumerate(losses if seeds else losses[:1]):
            extra = {} if se is None else {"eval_loss_se": se}
            rows.append(make_run("t", size, 1e6 * 2 ** i, TOK, [lo + 1.0, lo + 0.5, lo + 0.1, lo], seed=seed,
                                 **extra))
    return pd.concat(rows, ignore_index=True)


def test_tiers_from_seed_replicates():
    t = stages.compare_stage(_tier_table(), {"fits": pd.DataFrame(columns=["status", "form"])},
                             OPTS, np.random.default_rng(0))["tiers"]
    assert t["size"].tolist() == ["a", "b", "c"]
    assert t["tier"].tolist() == [0, 0, 1]
    assert (t["floor_source"] == "seeds").all()
    sp = np.sqrt(0.02 ** 2 / 2)  # pooled SD: every size has two seeds 0.02 apart
    assert t["floor"].iloc[1] == pytest.approx(2 * sp * np.sqrt(1 / 2 + 1 / 2))
    assert t["improvement"].iloc[1] == pytest.approx(0.01) and t["improvement"].iloc[2] == pytest.approx(0.19)  # vs b, the tier's best


def test_tiers_from_eval_se_and_default():
    stage = lambda df: stages.compare_stage(df, {"fits": pd.DataFrame(columns=["status", "form"])}, OPTS,
                                            np.random.default_rng(0))["tiers"]
    t = stage(_tier_table(se=0.001, seeds=False))  # floor 2*sqrt(2)*0.001 = 0.0028 < a->b gain 0.01
    assert (t["floor_source"] == "eval_loss_se").all() and t["tier"].tolist() == [0, 1, 2]
    assert t["floor"].iloc[1] == pytest.approx(2 * np.sqrt(2) * 0.001)
    t = stage(_tier_table(seeds=False))  # default floor 0.01 nats: a->b gain exactly 0.01 is not more
    assert (t["floor_source"] == "default").all() and t["tier"].tolist() == [0, 0, 1]
    assert t["floor"].iloc[1] == OPTS.noise_floor_default


def test_lr_selection_and_diverged_runs():
    rows = []
    for size, p in (("s", 1e6), ("m", 1e7)):
        for lr, base in ((1e-3, 3.0), (3e-3, 2.9), (1e-2, 2.5)):
            for seed in (0, 1):
                status = "diverged" if lr == 1e-2 and seed == 1 else "ok"
                rows.append(make_run("v", size, p, TOK, [base + 1, base + .5, base + .1, base + seed * .01],
                                     seed=seed, lr=lr, status=status))
    df = pd.concat(rows, ignore_index=True)
    kept, choice = select_best_lr(df)
    chosen = choice[choice["chosen"]]
    assert chosen["lr"].tolist() == [3e-3, 3e-3]  # 1e-2 has a diverged seed, so it is not eligible
    assert choice.loc[choice["lr"] == 1e-2, "n_diverged"].tolist() == [1, 1]
    assert set(kept["lr"]) == {3e-3} and kept["run"].str.endswith("_lr0.003").all()
    runs = stages.frontier_stage(df, OPTS)["runs"]
    assert set(runs.loc[runs["status"] == "diverged", "reason"]) == {"diverged"}
    assert runs["used"].sum() == 4
    assert set(runs.loc[~runs["used"] & (runs["status"] == "ok"), "reason"]) == {"lr not chosen"}


def _pair_curves(**b):
    rng = np.random.default_rng(7)
    kw = dict(E=0.0, run_sd=0.0005, eval_sd=0.0005, kappa=0.1)
    a = synthetic_curves(rng, variant="a", alpha=0.05, C_c=1e16 * 3.0 ** 20, **kw)
    return pd.concat([a, synthetic_curves(rng, variant="b", **{**kw, **b})], ignore_index=True)


def test_builtin_crossover_and_multiplier():
    opts = AnalysisOptions(n_boot=200, n_boot_approach3=0)
    # b: steeper, crosses a at C = 1e16 where both are 3.0
    df = _pair_curves(alpha=0.1, C_c=1e16 * 3.0 ** 10)
    tabs = stages.analyse(df, opts, np.random.default_rng(0))
    x = tabs["crossovers"].set_index("form").loc["pure"]
    assert x["crossover_verdict"] == "crossover"
    assert x["crossover_c"] == pytest.approx(1e16, rel=0.3)
    assert x["crossover_lo"] < 1e16 < x["crossover_hi"]
    pair = tabs["pairs"].set_index("form").loc["pure"]
    assert pair["verdict"] == "steeper" and pair["steeper_variant"] == "b" and not pair["cross_objective"]
    # b: same exponent, needs 2x the compute for the same loss everywhere -> never crosses
    df = _pair_curves(alpha=0.05, C_c=2 * 1e16 * 3.0 ** 20)
    x = stages.analyse(df, opts, np.random.default_rng(0))["crossovers"].set_index("form").loc["pure"]
    assert x["crossover_verdict"] == NO_CROSSOVER and np.isnan(x["crossover_c"])
    assert x["multiplier"] == pytest.approx(2.0, rel=0.1)
    assert x["multiplier_lo"] < 2.0 < x["multiplier_hi"]
    assert x["c_at"] == pytest.approx(np.sqrt(x["range_lo"] * x["range_hi"]))


def test_cross_objective_pairs_flagged_but_no_levels():
    df = _pair_curves(alpha=0.1, C_c=1e16 * 3.0 ** 10)
    df.loc[df["variant"] == "b", "objective"] = "masked"
    tabs = stages.analyse(df, AnalysisOptions(n_boot=50, n_boot_approach3=0), np.random.default_rng(0))
    assert tabs["pairs"]["cross_objective"].all()
    assert len(tabs["crossovers"]) == 0
