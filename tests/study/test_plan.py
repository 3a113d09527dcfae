"""archscale plan: the cost model, the scheduling simulation and the proposed study config."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import yaml

from study import plan, plan_cli
from study.config import validate_config

SCHEMA = plan_cli.SCHEMA
VARIANTS = ("gpt2", "bert_causal")
COST = plan.CostModel({"gpt2": (1.2e-5, 1.5e-11), "bert_causal": (1.3e-5, 1.3e-11)}, job_overhead_s=5.0)


def test_the_cost_model_recovers_a_synthetic_cost_law():
    rng = np.random.default_rng(0)
    f = np.geomspace(2e5, 8e6, 7)
    rows = [{"variant": v, "size": f"s{i}", "flops_per_token": x, "sec_per_token": (c0 + c1 * x) * np.exp(rng.normal(0, 0.01))}
            for v, (c0, c1) in COST.coef.items() for i, x in enumerate(f)]
    fitted = plan.fit_cost_model(pd.DataFrame(rows))
    for v, (c0, c1) in COST.coef.items():
        assert fitted.coef[v][0] == pytest.approx(c0, rel=0.05)
        assert fitted.coef[v][1] == pytest.approx(c1, rel=0.05)
    assert fitted.job_seconds("gpt2", 1e6, 1e6) == pytest.approx(5.0 + fitted.sec_per_token("gpt2", 1e6) * 1e6)


def test_probed_sizes_keep_their_own_speed_and_the_line_serves_beyond_them():
    line = (1e-5, 1e-11)
    probed = [(1e6, 4e-5), (4e6, 9e-5)]  # the line would say 2e-5 and 5e-5
    cost = plan.CostModel({"gpt2": line}, measured={"gpt2": probed})
    assert cost.sec_per_token("gpt2", 1e6) == pytest.approx(4e-5)
    assert cost.sec_per_token("gpt2", 4e6) == pytest.approx(9e-5)
    assert cost.sec_per_token("gpt2", 2e6) == pytest.approx(6e-5)  # log-log midway: sqrt(4e-5 x 9e-5)
    assert cost.sec_per_token("gpt2", 8e6) == pytest.approx(1e-5 + 8e-5)  # beyond the probes: the line
    # a plan's block carries them into the one cost model the DAG and the report use
    cfg = {"variants": {"gpt2": {}}, "training": {"gpus": 0, "threads": 1},
           "plan": {"cost": {"gpt2": {"c0": line[0], "c1": line[1]}}, "speeds": {"gpt2": [list(p) for p in probed]}}}
    assert plan.config_cost_model(cfg).sec_per_token("gpt2", 1e6) == pytest.approx(4e-5)
    # a fitted model keeps the probes it was fitted on
    speeds = pd.DataFrame([{"variant": "gpt2", "size": s, "flops_per_token": f, "sec_per_token": t}
                           for s, (f, t) in zip(("a", "b"), probed)])
    assert plan.fit_cost_model(speeds).sec_per_token("gpt2", 1e6) == pytest.approx(4e-5)


def test_the_probe_runs_as_many_processes_at_once_as_the_study_runs_jobs(tmp_path):
    from models.registry import ModelContext

    import models

    ctx = ModelContext(vocab_size=256, seq_len=32, pad_id=1, mask_id=2)
    spec = models.get_variant("gpt2")
    entries = []
    for name in ("xxxs", "xxs", "xs"):
        size = models.resolve_size(spec, name, ctx)
        entries.append({"variant": "gpt2", "size": name, "size_config": size.as_dict(),
                        "flops_per_token": spec.account(size, ctx).train_flops_per_token})
    speeds = plan.measure_speeds(entries, ctx, 4, 1, tmp_path, concurrency=2)
    (a0, a1), (b0, b1) = speeds.attrs["windows"]
    assert max(a0, b0) < min(a1, b1)  # the two probing processes overlapped in time
    assert (speeds["sec_per_token"] > 0).all() and list(speeds["size"]) == ["xxxs", "xxs", "xs"]
    assert len(list(tmp_path.glob("speeds-*-x2.json"))) == 1  # cached apart from a lone probe's speeds
    again = plan.measure_speeds(entries, ctx, 4, 1, tmp_path, concurrency=2)
    assert again.attrs["windows"] == [] and again["sec_per_token"].tolist() == speeds["sec_per_token"].tolist()


def test_the_schedule_runs_cooldowns_after_their_stable_run_on_the_free_slots():
    jobs = [{"job": "a/stable", "lineage": "a", "kind": "stable", "seconds": 10.0},
            {"job": "b/stable", "lineage": "b", "kind": "stable", "seconds": 4.0},
            {"job": "a/C1", "lineage": "a", "kind": "cooldown", "seconds": 3.0},
            {"job": "b/C1", "lineage": "b", "kind": "cooldown", "seconds": 5.0}]
    assert plan.simulate_wall(jobs, slots=1) == 22.0
    assert plan.simulate_wall(jobs, slots=2) == 13.0  # b's cooldown runs while a's stable run goes on


def test_sizes_are_picked_around_the_expected_optimum():
    ladder = [("a", 1e3), ("b", 3e3), ("c", 1e4), ("d", 3e4), ("e", 1e5)]
    assert plan.pick_sizes(ladder, 1e4, 3) == ["b", "c", "d"]
    assert plan.pick_sizes(ladder, 1.2e3, 3) == ["a", "b", "c"]
    assert plan.pick_sizes(ladder, 1.8e3, 3) == ["a", "b", "c", "d"]  # a toss-up between a and b
    assert plan.pick_sizes(ladder, 2e5, 3) == ["c", "d", "e"]  # the ladder ends: the best it can do
    # between two sizes: the nearer one (d, 1.4x away) sits in the middle, not at the edge as the three
    # nearest (b 5x, c 2.2x, d 1.4x -> c, d and b or e) could leave it
    assert plan.pick_sizes(ladder, 2.4e4, 3) == ["c", "d", "e"]
    # nearly midway between c and d (1.7x and 1.8x): either may win, so both get neighbours (4 sizes)
    assert plan.pick_sizes(ladder, 1.7e4, 3) == ["b", "c", "d", "e"]
    assert plan.pick_sizes([("a", 4.8e3), ("b", 7.2e3), ("c", 2.2e4), ("d", 5.6e4)], 1.53e4, 3) == ["b", "c", "d"]
    assert plan.pick_sizes(ladder, 8e3, 4) == ["a", "b", "c", "d"] and plan.pick_sizes(ladder, 1.2e4, 4) == ["b", "c", "d", "e"]


@pytest.fixture(scope="module")
def base():
    cfg = yaml.safe_load((SCHEMA.parents[2] / "config" / "config.yaml").read_text())
    cfg["variants"] = {v: {"sizes": []} for v in VARIANTS}
    return cfg


def test_a_plan_fits_its_budget_and_is_a_valid_study(base):
    ladders = plan_cli.ladders_of(VARIANTS, _ctx(base))
    prior = plan_cli.read_prior(None, VARIANTS)
    small, p_small = plan.plan_grid(base, SCHEMA, ladders, prior, 8 * 60, 2, COST)
    large, p_large = plan.plan_grid(base, SCHEMA, ladders, prior, 16 * 60, 2, COST)
    assert p_small["wall_s"] <= 8 * 60 and p_large["wall_s"] <= 16 * 60
    assert p_small["wall_s"] > 0.9 * 8 * 60  # bisection uses the time it is given
    top = lambda c: c["budgets"]["levels"][-1]
    assert top(large) > top(small)
    for cfg in (small, large):
        validate_config(cfg, SCHEMA)
        for v in VARIANTS:
            levels = cfg["variants"][v]["budgets"]["levels"]
            assert len(levels) == 3 and all(len(e["sizes"]) >= 3 for e in levels)
            ratios = [b["level"] / a["level"] for a, b in zip(levels, levels[1:])]  # 2x, or closer above a floor
            assert all(plan.MIN_RATIO * 0.98 <= r <= 2.02 for r in ratios) and ratios[0] == pytest.approx(ratios[1], rel=0.02)


def test_archscale_plan_writes_a_config_the_schema_accepts(base, tmp_path, monkeypatch, capsys):
    def speeds(entries, ctx, batch_size, threads, cache_dir, concurrency):
        assert concurrency == 2  # --cores 2, one thread a job: the probe runs two at once, as the study will
        return pd.DataFrame([{**e, "sec_per_token": COST.sec_per_token(e["variant"], e["flops_per_token"])}
                             for e in entries])

    monkeypatch.setattr(plan, "measure_speeds", speeds)
    monkeypatch.setattr(plan_cli, "measure_job_overhead", lambda: 5.0)
    out = tmp_path / "plan.yaml"
    assert plan_cli.main(["--minutes", "10", "--out", str(out), "--variants", *VARIANTS]) == 0
    cfg = validate_config(yaml.safe_load(out.read_text()), SCHEMA)
    assert set(cfg["variants"]) == set(VARIANTS)
    base_cfg = yaml.safe_load((plan_cli.ROOT / "config" / "config.yaml").read_text())
    assert all(cfg["variants"][v]["lr"] == base_cfg["variants"][v]["lr"] for v in VARIANTS)  # the base's lr kept
    assert cfg["plan"]["predicted_wall_s"] <= 600 and set(cfg["plan"]["cost"]) == set(VARIANTS)
    assert set(cfg["plan"]["speeds"]) == set(VARIANTS) and cfg["plan"]["probe_concurrency"] == 2
    printed = capsys.readouterr().out
    assert "predicted wall time:" in printed and "budgets (accounted FLOPs) [sizes]" in printed
    assert "expected bracketed: " in printed and "expected_unbracketed" in cfg["plan"]


def _ctx(cfg):
    from models.registry import ModelContext

    return ModelContext(vocab_size=cfg["tokenizer"]["vocab_size"], seq_len=cfg["training"]["seq_len"], pad_id=1, mask_id=2)


def test_a_first_guess_too_small_for_the_step_minimum_makes_the_bisection_look_higher(base):
    """A grid whose budgets give some size fewer than min_steps is too small, never too large."""
    ladders = plan_cli.ladders_of(VARIANTS, _ctx(base))
    prior = plan_cli.read_prior(None, VARIANTS)
    cfg, pred = plan.plan_grid(base, SCHEMA, ladders, prior, 8 * 60, 2, COST, lo=1e9, hi=2e12)  # first mid 4.5e10
    assert pred["wall_s"] <= 8 * 60 and cfg["budgets"]["levels"][0] > 4.5e10 / 4


def test_a_budget_too_short_for_every_floor_lowers_them_and_says_which_budgets_may_not_bracket(base):
    """Every floor at 3x what the default prior gives: 8 minutes cannot afford the grid that brackets all.
    The plan lowers the floors of the costliest variants by the largest factor that fits, names the budgets
    now below their floor, and says how long the grid with every floor would take; with that time, none is."""
    ladders = plan_cli.ladders_of(VARIANTS, _ctx(base))
    prior = {v: dataclasses.replace(p, lowest_level=3 * plan.bracket_floor(ladders[v], p))
             for v, p in plan_cli.read_prior(None, VARIANTS).items()}
    cfg, pred = plan.plan_grid(base, SCHEMA, ladders, prior, 8 * 60, 2, COST)
    assert pred["wall_s"] <= 8 * 60 and pred["floors_wall_s"] > 8 * 60
    assert pred["floor_scale"] and all(0.001 < x < 1 for x in pred["floor_scale"].values())
    assert set(pred["expected_unbracketed"]) <= set(pred["floor_scale"])  # only the lowered variants' budgets
    below = pred["expected_unbracketed"]
    assert below and all(set(x) <= {e["level"] for e in cfg["variants"][v]["budgets"]["levels"]} for v, x in below.items())
    for v, levels in below.items():
        assert all(x < plan.bracket_floor(ladders[v], prior[v]) for x in levels)
    full, p_full = plan.plan_grid(base, SCHEMA, ladders, prior, p_full_s := pred["floors_wall_s"] * 1.05, 2, COST)
    assert p_full["floor_scale"] == {} and p_full["expected_unbracketed"] == {} and p_full["wall_s"] <= p_full_s


def test_each_variant_gets_sizes_around_its_own_optimum_and_levels_it_can_bracket():
    ladder = [("a", 1e3), ("b", 3e3), ("c", 1e4), ("d", 3e4), ("e", 1e5)]
    priors = {"small": plan.Prior(1e4 / 1e12 ** 0.5, 0.5), "large": plan.Prior(3e4 / 1e12 ** 0.5, 0.5),
              "late": plan.Prior(3e3 / 1e14 ** 0.5, 0.5)}  # at 1e12 'late' expects 300 params: below its ladder
    base = {"variants": {v: {} for v in priors}, "budgets": {"kind": "isoflop"}}
    cfg = plan.grid_config(base, {v: ladder for v in priors}, priors, 1e12, 3, 2.0, 3)
    levels = lambda v: cfg["variants"][v]["budgets"]["levels"]
    assert levels("small")[-1] == {"level": 1e12, "sizes": ["b", "c", "d"]}
    assert levels("large")[-1] == {"level": 1e12, "sizes": ["c", "d", "e"]}
    # 'late' starts where its prior optimum reaches the ladder's second size, b, and its levels sit closer
    # than 2x (1.2x) instead of climbing 4x above it
    assert levels("late")[0] == {"level": 1e14, "sizes": ["a", "b", "c"]}
    assert [e["level"] for e in levels("late")] == [1e14, 1.2e14, 1.44e14]
    assert cfg["budgets"]["levels"] == [2.5e11, 5e11, 1e12]


def test_priors_pool_one_exponent_and_put_each_variant_through_its_own_optima():
    C = np.array([1e11, 1e12, 1e13])
    pts = pd.DataFrame([{"variant": v, "compute": c, "n_opt": k * c ** 0.6} for v, k in (("a", 1e-3), ("b", 4e-3))
                        for c in C] + [{"variant": "c", "compute": 1e12, "n_opt": 2e4}])
    priors = plan.fit_priors(pts, ["a", "b", "c", "d"])
    assert priors["a"].exponent == pytest.approx(0.6) and priors["c"].exponent == pytest.approx(0.6)
    assert priors["a"].coefficient == pytest.approx(1e-3) and priors["b"].coefficient == pytest.approx(4e-3)
    assert priors["c"].n_opt(1e12) == pytest.approx(2e4)  # one optimum: the pooled exponent through it
    assert priors["d"].coefficient == pytest.approx(np.median([priors[v].coefficient for v in "abc"]))
    assert priors["a"].lowest_level == 0.0
    flat = plan.fit_priors(pts.assign(n_opt=2e4), ["a"])  # optima that do not move: the exponent's lower bound
    assert flat["a"].exponent == plan.EXPONENT_RANGE[0]


def test_a_prior_is_read_from_a_studys_analysis_folder(tmp_path):
    fit = tmp_path / "fit" / "gpt2" / "flops"
    fit.mkdir(parents=True)
    pd.DataFrame({"variant": ["gpt2"] * 3, "compute": [1e12, 2e12, 3e11], "best_size": ["xs", "xxs", "xxxs"],
                  "sizes": ["xxs xs xsm", "xxs xs xsm", "xxxs xxs xs"],
                  "status": ["ok", "unbracketed", "unbracketed"], "bracketed": [True, False, False],
                  "N_opt": [2.5e4, np.nan, np.nan]}
                 ).to_csv(fit / "isoflop.csv", index=False)
    (tmp_path / "frontier").mkdir()
    pd.DataFrame({"variant": ["gpt2"] * 3, "size": ["xs", "xxs", "xxxs"], "params_nonembedding": [21312, 5536, 2784]}
                 ).to_csv(tmp_path / "frontier" / "final_points.csv", index=False)
    pts = plan_cli.prior_points(tmp_path)
    assert pts["n_opt"].tolist() == [2.5e4, 5536, 2784]  # bracketed: the parabola's N_opt; else the best size's N
    assert pts["at_smallest"].tolist() == [False, False, True]  # only the ladder's smallest size is a floor
    with pytest.raises(FileNotFoundError, match="isoflop.csv"):
        plan_cli.prior_points(tmp_path / "frontier")


def test_a_variant_whose_optimum_left_the_ladders_bottom_late_is_planned_above_that():
    pts = pd.DataFrame({"variant": ["r"] * 4, "compute": [2.4e12, 3.4e12, 4.8e12, 6.8e12],
                        "n_opt": [4.8e3, 2.2e4, 2.2e4, 2.3e4], "at_smallest": [True, False, False, False]})
    prior = plan.fit_priors(pts, ["r"])["r"]
    assert prior.lowest_level == 3.4e12
    assert prior.n_opt(4.8e12) == pytest.approx(2.2e4, rel=0.1)  # the bound at 2.4e12 is no optimum
    ladder = [("a", 4.8e3), ("b", 7.2e3), ("c", 2.2e4), ("d", 5.6e4)]
    assert plan.variant_levels(ladder, prior, 1e12, 3, 2.0) == [3.4e12, 4.08e12, 4.9e12]
    assert plan.variant_levels(ladder, prior, 4e13, 3, 2.0) == [1e13, 2e13, 4e13]  # far above: 2x apart
    # an optimum at the smallest size *above* the others (it moves down with compute) sets no floor
    down = pts.assign(at_smallest=[False, False, False, True], n_opt=[2.2e4, 2.0e4, 1.8e4, 4.8e3])
    assert plan.fit_priors(down, ["r"])["r"].lowest_level == 0.0
    # one study found the smallest size best at 3.4e12, another a larger one there: a toss-up, so the
    # floor is the next free optimum above it (the disagreement is what left a single-seed budget unbracketed)
    mixed = pd.concat([pts, pd.DataFrame({"variant": ["r"], "compute": [3.4e12], "n_opt": [4.8e3],
                                          "at_smallest": [True]})], ignore_index=True)
    assert plan.fit_priors(mixed, ["r"])["r"].lowest_level == 4.8e12


def test_a_prior_interpolates_its_measured_optima_and_is_not_carried_below_them():
    pts = pd.DataFrame({"variant": ["e"] * 3, "compute": [3e11, 7e11, 1.4e12], "n_opt": [2.7e4, 2.0e4, 8.5e3],
                        "at_smallest": [False] * 3})
    prior = plan.fit_priors(pts, ["e"])["e"]
    assert prior.n_opt(7e11) == pytest.approx(2.0e4) and 8.5e3 < prior.n_opt(1e12) < 2.0e4  # between, not the law
    assert prior.n_opt(2.8e12) > prior.n_opt(1.4e12)  # beyond the last optimum: the pooled law, upward
    ladder = [("a", 3e3), ("b", 8e3), ("c", 2.5e4), ("d", 6e4)]
    assert plan.variant_levels(ladder, prior, 4e11, 3, 2.0)[0] == 3e11  # not below its lowest measured optimum


def test_the_training_package_never_imports_the_study_package():
    """Study design (study/: config resolution, planning) sits above training: training/ never imports it, so
    the training rules' code hash (workflow/rules/common.smk TRAIN_CODE) can leave it out, and editing the
    planner never retrains a finished study."""
    import subprocess
    import sys

    modules = sorted(f"training.{p.stem}" for p in (plan_cli.ROOT / "training").glob("*.py") if p.stem != "__init__")
    code = (f"import sys, models, {', '.join(modules)}\n"
            "print(sorted(m for m in sys.modules if m == 'study' or m.startswith('study.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=plan_cli.ROOT)
    assert out.stdout.strip() == "[]", out.stdout
    for path in (plan_cli.ROOT / "training").glob("*.py"):
        text = path.read_text()
        assert "from study" not in text and "import study" not in text, path
    common = (plan_cli.ROOT / "workflow" / "rules" / "common.smk").read_text()
    train_code = next(line for line in common.splitlines() if line.startswith("TRAIN_CODE"))
    assert "study" not in train_code


def test_a_gpu_plan_fills_its_gpu_hours_and_writes_a_valid_config(tmp_path, capsys):
    """archscale plan --gpus 8 --hours 3 --device h100: a config that validates (and resolves: every budget has its
    sizes), GPU-hours that add up to within 10% of 8 x 3, and per job its hours, memory and micro-batch."""
    from study.config import load_study

    out = tmp_path / "gpu.yaml"
    assert plan_cli.main(["--gpus", "8", "--hours", "3", "--device", "h100", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    cfg = yaml.safe_load(out.read_text())
    study = load_study(cfg, SCHEMA)
    assert cfg["plan"]["device"] == "NVIDIA H100 80GB HBM3" and cfg["plan"]["mfu"] == 0.35
    total = float(printed.split("total: ")[1].split(" GPU-hours")[0])
    assert abs(total - 24) <= 2.4, printed[-600:]
    job_hours = [float(line.split()[1]) for line in printed.splitlines() if line.strip().endswith(tuple("0123456789"))
                 and " GPU-h " in line and "micro-batch" in line]
    assert len(job_hours) == len(study["runs"]) + len(study["stables"])
    assert abs(sum(job_hours) - total) < 0.05 * total
    for variant, entry in cfg["variants"].items():
        levels = entry["budgets"]["levels"]
        assert len(levels) == 5 and levels[-1]["level"] / levels[0]["level"] >= 80  # ~100x over five budgets
        assert all(len(e["sizes"]) >= 3 for e in levels) and all(s.startswith("g") for e in levels for s in e["sizes"])
    assert "5 of 5 bracketed" in printed


def test_gpu_memory_and_the_micro_batch_that_fits():
    shape = dict(params_total=124_000_000, seq_len=1024, d_model=768, n_layer=12, n_head=12)
    gb = plan.gpu_memory_gb(micro_batch=8, **shape)
    assert 10 < gb < 30  # GPT-2 124M, 8 x 1024 in bf16: ~2 GB of states, ~16 GB of activations
    micro, used = plan.fitting_micro_batch(512, 80, **shape)
    assert used <= 80 and plan.gpu_memory_gb(micro_batch=2 * micro, **shape) > 80 and 512 % micro == 0


def test_a_gpu_plan_needs_a_device_it_knows(tmp_path, capsys):
    assert plan_cli.main(["--gpus", "8", "--hours", "3", "--device", "tpu9", "--out", str(tmp_path / "x.yaml")]) == 2
    assert "unknown device 'tpu9'" in capsys.readouterr().err
    assert plan_cli.main(["--gpus", "8", "--out", str(tmp_path / "x.yaml")]) == 2
    assert "give --minutes (a CPU study) or --gpus with --hours" in capsys.readouterr().err
