"""config/gpu.yaml, the study sized for GPUs: it validates, and its DAG builds here (no GPU, no network, no
data) with >= 5 budgets spanning >= 100x of compute and >= 3 sizes per budget for every variant."""
import collections
import math

import yaml

from snakemake_helpers import snakemake, training_jobs
from study.config import load_study

SCHEMA = "workflow/schemas/config.schema.yaml"


def test_the_gpu_study_resolves_with_its_budgets_and_sizes(root):
    study = load_study(yaml.safe_load((root / "config" / "gpu.yaml").read_text()), root / SCHEMA)
    assert set(study["variants"]) == {"gpt2", "transformer_xl", "bert_causal", "reformer", "bert_mlm", "electra"}
    per = collections.defaultdict(lambda: collections.defaultdict(set))
    for r in study["runs"]:
        per[r["variant"]][r["budget_level"]].add(r["size"])
    for variant, levels in per.items():
        assert len(levels) >= 5 and max(levels) / min(levels) >= 100, variant
        assert all(len(sizes) >= 3 for sizes in levels.values()), variant
    n = {r["params_nonembedding"] for r in study["runs"]}
    assert min(n) < 2e6 and max(n) > 1e8  # the GPU ladder, ~1M to ~150M trained here
    # batch and rate by size (the OLMo rule): the largest size's batch is >= 10x the smallest's
    batch = {r["size"]: r["train_config"]["batch_size"] for r in study["runs"] if r["variant"] == "gpt2"}
    assert batch["g150m"] >= 10 * batch["g1m"] and all(b % 8 == 0 for b in batch.values())
    assert study["config"]["training"]["seq_len"] == 1024
    # the GPU-hours the config's comments state: 2.17e19 FLOPs, 17.4 h at 35% of 989 TFLOP/s
    flops = sum(r["train_flops"] for r in study["runs"]) + sum(s["train_flops"] for s in study["stables"])
    assert math.isclose(flops, 2.17e19, rel_tol=0.01)


def test_its_dag_builds_without_a_gpu_or_the_data(root, tmp_path):
    out = snakemake(root, tmp_path, "-n", config=root / "config" / "gpu.yaml")
    text = out.stdout + out.stderr
    counts = {line.split()[0]: int(line.split()[1]) for line in text.splitlines()
              if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert counts["stable"] == 41 and counts["cooldown"] == 90 and counts["tokens"] == 1 and counts["report"] == 1
    assert "gpu=1" in text
    # its jobs' time limits and priorities come from the plan's cost model: H100 peak x the planning MFU
    from study import plan

    study = load_study(yaml.safe_load((root / "config" / "gpu.yaml").read_text()), root / SCHEMA)
    cost = plan.config_cost_model(study["config"])
    assert cost.notes["device"].startswith("NVIDIA H100") and cost.notes["mfu"] == plan.DEFAULT_MFU
    predicted = {j["job"]: j["seconds"] for j in plan.study_jobs(study, cost)}
    jobs = training_jobs(text)
    assert len(jobs) == len(predicted) == 131
    for (rule, key), job in jobs.items():
        seconds = predicted[key if rule != "stable" else f"{key}/stable"]
        assert job["runtime"] == plan.runtime_minutes(seconds) and job["priority"] == max(1, round(seconds)), key
        assert job["gpu"] == 1 and job["mem_mb"] > 4096
    # the GPU-hours it states (17.4 h) are the cost model's, and its jobs' time limits are 3x that plus a floor
    assert math.isclose(sum(predicted.values()) / 3600, 17.4 + 131 * cost.job_overhead_s / 3600, rel_tol=0.05)
