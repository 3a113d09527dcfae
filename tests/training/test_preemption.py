"""Preemption: SIGTERM or SIGUSR1 (what SLURM sends before it stops a job) makes a run write a checkpoint
after its current step and exit non-zero; rerun, it resumes there and ends on the curve of an
uninterrupted run (CPU, same threads)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from training.loop import TIMING_COLUMNS, TrainConfig, run, run_cooldown, run_stable

ROOT = Path(__file__).resolve().parents[2]
CFG = dict(tokens=64 * 8 * 40, seq_len=64, batch_size=8, eval_points=6, eval_tokens=2048, eval_batch_size=8,
           lr=3e-3, checkpoint_every=1000)
WSD = dict(CFG, schedule="wsd", warmup_tokens=64 * 8 * 4, cooldown_fraction=0.5)

# a run in a child process whose steps are slowed and reported, so that the test can signal it mid-run
DRIVER = """
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from training import loop
step = loop.train_step
def slow(s):
    ok = step(s)
    tmp = Path(sys.argv[1] + ".tmp")
    tmp.write_text(str(s.step))
    tmp.replace(sys.argv[1])  # atomic: the test never reads a half-written marker
    time.sleep(0.05)
    return ok
loop.train_step = slow
kind, args = sys.argv[2], json.loads(sys.argv[3])
cfg = loop.TrainConfig(**args["cfg"])
try:
    if kind == "run":
        loop.run("gpt2", "xs", {}, cfg, args["data"], args["out"])
    else:
        loop.run_cooldown("gpt2", "xs", {}, cfg, args["stable"], args["data"], args["out"])
except loop.Preempted as e:
    print("preempted:", e, file=sys.stderr)
    sys.exit(3)
"""


def _preempt(tmp_path, kind, args, at_step, sig):
    marker = tmp_path / f"{kind}.step"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(marker), kind, json.dumps(args)], env=env,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        text = marker.read_text() if marker.exists() else ""
        if text and int(text) >= at_step:
            proc.send_signal(sig)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _same_curve(a_dir, b_dir):
    a = pd.read_csv(a_dir / "curve.csv").drop(columns=list(TIMING_COLUMNS))
    b = pd.read_csv(b_dir / "curve.csv").drop(columns=list(TIMING_COLUMNS))
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_checkpoints_and_the_rerun_resumes_on_the_same_curve(small_data, tmp_path, sig):
    out = tmp_path / "run"
    rc, err = _preempt(tmp_path, "run", {"cfg": CFG, "data": str(small_data), "out": str(out)}, 13, sig)
    assert rc == 3 and f"{signal.Signals(sig).name} at step" in err and "checkpoint written" in err
    steps = sorted(int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("step-*.json"))
    assert steps and 13 <= steps[-1] < 40 and steps[-1] % 1000  # written at the signal, not by the step count
    assert not (out / "run.json").exists()
    import torch

    torch.set_num_threads(1)  # as the child trained
    info = run("gpt2", "xs", {}, TrainConfig(**CFG), small_data, out)
    assert info["resumed"] and info["status"] == "ok"
    run("gpt2", "xs", {}, TrainConfig(**CFG), small_data, tmp_path / "ref")
    _same_curve(out, tmp_path / "ref")


def test_a_preempted_cooldown_resumes_from_its_own_checkpoint(small_data, tmp_path):
    import torch

    torch.set_num_threads(1)
    cfg = TrainConfig(**WSD)
    stable = tmp_path / "stable"
    run_stable("gpt2", "xs", {}, TrainConfig(**{**WSD, "tokens": cfg.cooldown_start * cfg.tokens_per_step}),
               small_data, stable, [cfg.cooldown_start * cfg.tokens_per_step])
    out = tmp_path / "cool"
    args = {"cfg": WSD, "data": str(small_data), "out": str(out), "stable": str(stable / "checkpoints")}
    rc, err = _preempt(tmp_path, "cooldown", args, cfg.cooldown_start + 5, signal.SIGTERM)
    assert rc == 3, err
    own = sorted(int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("step-*.json"))
    assert own and own[-1] > cfg.cooldown_start  # inside the cooldown
    info = run_cooldown("gpt2", "xs", {}, cfg, stable / "checkpoints", small_data, out)
    assert info["resumed"] and info["branched_from_step"] == cfg.cooldown_start
    assert not (out / "checkpoints").exists()  # cleared once the cooldown finished
    run("gpt2", "xs", {}, cfg, small_data, tmp_path / "ref")
    a = pd.read_csv(out / "curve.csv").set_index("step")
    b = pd.read_csv(tmp_path / "ref" / "curve.csv").set_index("step")
    assert a.loc[cfg.total_steps, "eval_loss"] == b.loc[cfg.total_steps, "eval_loss"]


def test_a_corrupt_branch_checkpoint_retrains_the_stable_phase_at_the_stable_runs_evaluation_steps(small_data, tmp_path):
    """The cooldown's fallback retrained the stable phase evaluating at its own budget's steps, so the curve (and
    the envelope and fits on it) moved; now the stable run's steps, so the curve is the one the branch gives."""
    import dataclasses

    import torch

    torch.set_num_threads(1)
    cfg = TrainConfig(**dict(WSD, tokens=64 * 8 * 40, eval_points=8))
    stable_cfg = TrainConfig(**{**dataclasses.asdict(cfg), "tokens": cfg.cooldown_start * cfg.tokens_per_step,
                                "stable_only": True})
    stable = tmp_path / "stable"
    run_stable("gpt2", "xs", {}, stable_cfg, small_data, stable, [cfg.cooldown_start * cfg.tokens_per_step])
    good = run_cooldown("gpt2", "xs", {}, cfg, stable / "checkpoints", small_data, tmp_path / "good",
                        stable_cfg=stable_cfg)
    for f in (stable / "checkpoints").glob("step-*.safetensors"):
        f.write_bytes(b"corrupt")  # every stable checkpoint: the cooldown must train the stable phase again
    bad = run_cooldown("gpt2", "xs", {}, cfg, stable / "checkpoints", small_data, tmp_path / "bad", stable_cfg=stable_cfg)
    assert good["branched_from_step"] == cfg.cooldown_start and bad["branched_from_step"] == 0
    a = pd.read_csv(tmp_path / "good" / "curve.csv").drop(columns=list(TIMING_COLUMNS))
    b = pd.read_csv(tmp_path / "bad" / "curve.csv").drop(columns=list(TIMING_COLUMNS))
    assert list(a["step"]) == list(b["step"]) == list(pd.read_csv(stable / "curve.csv")["step"]) + list(
        a["step"][a["phase"] == "cooldown"])
    pd.testing.assert_frame_equal(a, b)
