"""Several GPUs through Snakemake, on a CPU: a study whose runs train on 2 processes (torch.distributed, gloo)
from 2 fake GPU slots ends with the curves of the same study on one process; the DAG asks SLURM for the GPUs
each run needs."""
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from snakemake_helpers import snakemake
from test_small_studies import TINY

pytestmark = pytest.mark.e2e


def _study(root, tmp_path, name, **training):
    work = tmp_path / name
    work.mkdir()
    cfg = {**TINY, "variants": {"gpt2": {"sizes": ["xs", "s", "m"]}},
           "training": {**TINY["training"], **training}, "budgets": {"kind": "tokens"}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    return work


def test_runs_on_two_processes_equal_runs_on_one(root, tmp_path):
    one = _study(root, tmp_path, "one")
    two = _study(root, tmp_path, "two", gpus=2)
    snakemake(root, one, "--until", "curves")
    # a machine of 2 (fake) GPUs: each run takes both slots and trains on 2 gloo processes
    out = snakemake(root, two, "--until", "curves", "--resources", "gpu=2",
                    env={"ARCHSCALE_GPU_SLOTS": "2", "ARCHSCALE_GPU_LOCK_DIR": str(tmp_path / "locks")})
    a = pd.read_csv(one / "results" / "analysis" / "curves.csv").sort_values(["run", "step"]).reset_index(drop=True)
    b = pd.read_csv(two / "results" / "analysis" / "curves.csv").sort_values(["run", "step"]).reset_index(drop=True)
    assert list(a["run"]) == list(b["run"]) and list(a["step"]) == list(b["step"])
    # The gradients agree to float32 noise (6.5e-7 relative for gpt2 m: two half-batch sums against one). Over
    # the steps AdamW's normalisation amplifies that noise where a parameter's gradient nearly cancels, so the
    # losses agree exactly at first and to within 0.02 nats (measured: 0.010 at most) by the end.
    first = b["step"] <= 2
    pd.testing.assert_series_equal(a["loss"][first], b["loss"][first], rtol=1e-5)
    assert (a["loss"] - b["loss"]).abs().max() < 0.02
    log = (two / "results" / "logs" / "train" / "gpt2" / "m" / "seed0_lr0.002" / "stable.log").read_text()
    assert "training on 2 processes" in log and "holding GPU slot(s) 0,1" in log
    assert "asks for 2 GPU(s) (training.gpus) and no CUDA device is visible to it: it trains on the CPU" in log
    assert "gpu=2" in out.stdout + out.stderr


def test_a_run_on_two_gpus_asks_slurm_for_two(root, tmp_path):
    """The DAG gives each training job the GPUs of its run (variants.<v>.gpus per size, else training.gpus), and
    the pinned SLURM executor plugin turns that resource into --gpus=N."""
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    work = _study(root, tmp_path, "dag", gpus=1)
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["variants"]["gpt2"]["gpus"] = {"m": 2}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake(root, work, "-n", "--until", "stable")
    text = out.stdout + out.stderr
    jobs = [block for block in text.split("rule stable:")[1:]]
    gpus = {b.split("wildcards: ")[1].split(",")[1].strip(): b.split("gpu=")[1].split(",")[0] for b in jobs}
    assert gpus == {"size=xs": "1", "size=s": "1", "size=m": "2"}
    job = SimpleNamespace(resources=SimpleNamespace(get=lambda k, d=None: {"gpu": 2}.get(k, d), gpu=2))
    assert set_gres_string(job).strip() == "--gpus=2"


def test_an_uneven_split_is_refused_in_one_line(root, tmp_path):
    work = _study(root, tmp_path, "uneven", gpus=3)
    out = snakemake(root, work, "-n", check=False)
    assert out.returncode != 0
    assert "global batch of 8 sequences does not split evenly over its 3 GPUs" in out.stderr
