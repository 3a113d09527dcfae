"""Training jobs start longest first: each carries a Snakemake priority from its expected cost."""
import shutil

import yaml

from snakemake_helpers import snakemake, training_jobs


def _priorities(text: str) -> dict:
    return {k: job["priority"] for k, job in training_jobs(text).items()}


def test_training_jobs_are_prioritised_by_expected_cost(root, tmp_path):
    from study.config import load_study

    shutil.copy(root / "tests" / "smoke" / "config.yaml", tmp_path / "config.yaml")
    out = snakemake(root, tmp_path, "-n", "--forceall")
    prio = _priorities(out.stdout + out.stderr)
    study = load_study(yaml.safe_load((tmp_path / "config.yaml").read_text()),
                       root / "workflow" / "schemas" / "config.schema.yaml")
    assert len([k for k in prio if k[0] == "stable"]) == len(study["stables"])
    assert len([k for k in prio if k[0] == "cooldown"]) == len(study["runs"])
    assert all(p >= 1 for p in prio.values()), prio  # the directive is active on every training job

    for s in study["stables"]:  # a stable run (80% of its longest budget) outranks each of its cooldowns
        cooldowns = [p for (rule, key), p in prio.items() if rule == "cooldown" and key.startswith(s["lineage"] + "/")]
        assert cooldowns and prio[("stable", s["lineage"])] >= max(cooldowns)

    # more steps and more FLOPs never rank lower
    stables = [(s["stable_tokens"], s["train_flops"], prio[("stable", s["lineage"])]) for s in study["stables"]]
    for tok_a, fl_a, p_a in stables:
        for tok_b, fl_b, p_b in stables:
            if tok_a >= tok_b and fl_a >= fl_b:
                assert p_a >= p_b
    assert len({p for *_, p in stables}) > 1  # and the costs differ


def test_a_planned_config_sizes_its_jobs_with_the_plans_cost_model(root, tmp_path):
    """One cost model (study/plan.py) gives the plan's predicted times and the DAG's runtime and priority:
    a config with a `plan:` cost model (what `archscale plan` writes) gets exactly its predictions."""
    from study import plan
    from study.config import load_study

    cfg = yaml.safe_load((root / "tests" / "smoke" / "config.yaml").read_text())
    cfg["plan"] = {"cost": {v: {"c0": 2e-4, "c1": 1e-11} for v in cfg["variants"]}, "job_overhead_s": 50.0}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    jobs = training_jobs((lambda o: o.stdout + o.stderr)(snakemake(root, tmp_path, "-n", "--forceall")))
    study = load_study(cfg, root / "workflow" / "schemas" / "config.schema.yaml")
    cost = plan.config_cost_model(study["config"])
    assert cost.notes["source"] == "plan" and cost.job_overhead_s == 50.0
    predicted = {j["job"]: j["seconds"] for j in plan.study_jobs(study, cost)}
    assert len(jobs) == len(predicted)
    for (rule, key), job in jobs.items():
        seconds = predicted[key if rule != "stable" else f"{key}/stable"]
        assert seconds > 50.0
        assert job["priority"] == max(1, round(seconds)) and job["runtime"] == plan.runtime_minutes(seconds), key
        assert job["mem_mb"] > 1024 and job["gpu"] == 0
