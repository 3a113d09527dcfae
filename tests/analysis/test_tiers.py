"""Tiers use seed replicates only: runs of one size at different budgets are not replicates."""
import numpy as np
import pandas as pd
import pytest
from analysis_testlib import make_run, pythia_curves

from analysis.comparison import comparisons as compare
from analysis.options import AnalysisOptions
from analysis.curves.table import validate_curves
from analysis.curves.transient import early_transient

OPTS = AnalysisOptions(n_boot=0)
SIZES = {"s": 1e6, "m": 2e6, "l": 4e6}
BEST = {"s": 3.40, "m": 3.21, "l": 3.08}  # each size 0.13-0.19 nats better than the one below (largest budget)
BUDGETS = (1e6, 2e6, 4e6, 8e6, 1.6e7)


def _budget_ladder(seeds=(0,), se=None, budget_spread=0.2, seed_sd=0.0, rng=None):
    """Each size at 5 token budgets; the longest budget reaches BEST, each halving costs budget_spread/4 nats."""
    rows = []
    for size, n in SIZES.items():
        for k, budget in enumerate(BUDGETS):
            for seed in seeds:
                final = BEST[size] + budget_spread * (len(BUDGETS) - 1 - k) / 4
                final += seed_sd * rng.standard_normal() if seed_sd else 0.0
                tok = np.geomspace(budget / 100, budget, 12)
                loss = final * (tok / budget) ** -0.05
                extra = {"run": f"{size}/b{int(budget)}/seed{seed}"}
                if se is not None:
                    extra["eval_loss_se"] = se
                rows.append(make_run("v", size, n, tok, loss, seed=seed, **extra))
    return validate_curves(pd.concat(rows, ignore_index=True))


def test_budgets_are_not_replicates():
    """One seed per (size, budget): the old code pooled the 5 budgets of a size as replicates (spread 0.2 nats)
    and merged sizes; without replicates the floor is the stated default and every size is its own tier."""
    t = compare.tiers(_budget_ladder(), OPTS)
    assert t["size"].tolist() == ["s", "m", "l"] and t["tier"].tolist() == [0, 1, 2]
    assert (t["floor_source"] == "default").all() and t["floor"].iloc[1] == OPTS.noise_floor_default
    assert (t["n_runs"] == 5).all() and (t["n_replicates"] == 1).all()
    assert t["best_loss"].tolist() == pytest.approx(list(BEST.values()))
    assert t["config"].str.contains("final_tokens=1.6e\\+07").all()
    assert t["improvement"].iloc[1:].tolist() == pytest.approx([0.19, 0.13])


def test_without_replicates_the_floor_comes_from_eval_loss_se():
    t = compare.tiers(_budget_ladder(se=0.002), OPTS)
    assert (t["floor_source"] == "eval_loss_se").all() and t["tier"].tolist() == [0, 1, 2]
    assert t["floor"].iloc[1] == pytest.approx(2 * np.sqrt(2) * 0.002)


def test_budget_column_defines_the_config():
    df = _budget_ladder()
    df["budget_tokens"] = df.groupby("run")["tokens"].transform("max")
    df["schedule"] = "cosine"
    t = compare.tiers(df, OPTS)
    assert t["config"].str.contains("budget_tokens=16000000").all()
    assert t["config"].str.contains("schedule=cosine").all() and not t["config"].str.contains("final_tokens").any()
    assert t["tier"].tolist() == [0, 1, 2]


def test_seed_replicates_within_a_budget_set_the_floor():
    """3 seeds at each (size, budget): the pooled SD comes from seeds within a budget (SD 0.05 by construction),
    never from the 0.2-nat spread across budgets."""
    rng = np.random.default_rng(0)
    df = _budget_ladder(seeds=(0, 1, 2), seed_sd=0.05, rng=rng)
    t = compare.tiers(df, OPTS)
    runs = compare.run_configs(df)
    within = runs.groupby(["size", "config"])["best_loss"].agg(["var", "size"])
    sp = np.sqrt(np.sum((within["size"] - 1) * within["var"]) / np.sum(within["size"] - 1))
    assert 0.03 < sp < 0.07
    assert (t["floor_source"] == "seeds").all() and (t["n_replicates"] == 3).all()
    assert t["floor"].iloc[1] == pytest.approx(2 * sp * np.sqrt(2 / 3))
    assert t["tier"].tolist() == [0, 1, 2]  # 0.13-0.19 nats apart vs a floor of ~0.08


def test_same_seed_twice_is_not_a_replicate():
    """Two runs with the same identity and the same seed (a re-run) are not seed replicates."""
    a = make_run("v", "s", 1e6, [1e5, 1e6], [3.5, 3.4], seed=0, run="s/a")
    b = make_run("v", "s", 1e6, [1e5, 1e6], [3.6, 3.5], seed=0, run="s/b")
    c = make_run("v", "m", 2e6, [1e5, 1e6], [3.5, 3.445], seed=0, run="m/a")
    t = compare.tiers(validate_curves(pd.concat([a, b, c], ignore_index=True)), OPTS)
    assert (t["floor_source"] == "default").all()
    assert t.set_index("size").loc["s", "best_loss"] == pytest.approx(3.45)  # mean of the two runs
    assert t["tier"].tolist() == [0, 0]  # 0.005 nats is within the 0.01 default floor


def test_pythia_sizes_are_separate_tiers_with_a_seed_floor():
    """Pythia 14m/70m/160m with 4-9 seeds each (tests/data): floor from seed replicates, sizes far apart."""
    df = validate_curves(pythia_curves())
    df = early_transient(df).kept(df)
    t = compare.tiers(df, OPTS)
    assert t["size"].tolist() == ["14m", "70m", "160m"] and t["tier"].tolist() == [0, 1, 2]
    assert (t["floor_source"] == "seeds").all()
    assert t["n_replicates"].tolist() == [9, 6, 5]
    assert (t["floor"].iloc[1:] < 0.3 * t["improvement"].iloc[1:]).all()
