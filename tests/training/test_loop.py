import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from training import checkpoint
from training.errors import InputError
from training.loop import CURVE_COLUMNS, FAULT_NAN_STEP_ENV, TIMING_COLUMNS, TrainConfig, run

SMALL = dict(tokens=64 * 8 * 40, seq_len=64, batch_size=8, eval_points=6, eval_tokens=2048,
             eval_batch_size=8, lr=3e-3, checkpoint_every=10)


def test_learning_rate_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(tokens=128 * 8 * 1000, warmup_fraction=0.02, lr=1e-3, min_lr_ratio=0.1)
    assert cfg.total_steps == 1000 and cfg.warmup_steps == 20
    lrs = [cfg.lr_at(s) for s in range(1, 1001)]
    assert lrs[0] == pytest.approx(1e-3 / 20)
    assert max(lrs) == pytest.approx(1e-3) and lrs.index(max(lrs)) == 19
    assert all(a >= b for a, b in zip(lrs[19:], lrs[20:]))
    assert lrs[-1] == pytest.approx(1e-4)


def test_eval_steps_are_log_spaced_and_end_at_the_last_step():
    steps = TrainConfig(tokens=128 * 8 * 976, eval_points=20).eval_steps()
    assert steps[0] == 1 and steps[-1] == 976
    assert 15 <= len(steps) <= 21
    ratios = np.diff(np.log(steps[5:]))
    assert ratios.std() < 0.1


@pytest.mark.parametrize("bad, msg", [
    (dict(tokens=0), "training.tokens=0"),
    (dict(tokens=100, batch_size=8, seq_len=128), "less than one batch"),
    (dict(lr=-1.0), "must be positive"),
])
def test_bad_training_config(bad, msg):
    with pytest.raises(InputError, match=msg):
        TrainConfig(**bad)


def test_training_run_writes_a_finite_falling_curve(small_data, tmp_path):
    info = run("gpt2", "xs", {}, TrainConfig(**SMALL), small_data, tmp_path)
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert list(curve.columns) == CURVE_COLUMNS
    assert np.isfinite(curve[["train_loss", "eval_loss", "flops", "flops_6n"]].to_numpy()).all()
    assert curve["eval_loss"].iloc[-1] < curve["eval_loss"].iloc[0] - 0.5
    assert curve["eval_loss"].iloc[-1] < math.log(512)
    n = info["params_nonembedding"]
    assert (curve["flops_6n"] == 6 * n * curve["tokens"]).all()
    assert (curve["flops"] > curve["flops_6n"]).all()  # head and attention are charged on top
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["status"] == "ok" and saved["objective"] == "causal" and saved["device"].startswith("cpu")
    assert saved["corpus_sha256"] and saved["torch"].startswith("2.13")
    assert not (tmp_path / "checkpoints").exists()


def test_nan_loss_marks_the_run_diverged_and_keeps_its_curve(small_data, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_NAN_STEP_ENV, "25")
    info = run("gpt2", "xs", {}, TrainConfig(**SMALL), small_data, tmp_path)
    assert info["status"] == "diverged" and info["diverged_step"] == 25
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert curve["step"].max() < 25 and len(curve) >= 3


def _cli(small_data, out, **extra):
    sets = [f"--set={k}={json.dumps(v)}" for k, v in {**SMALL, **extra}.items()]
    return [sys.executable, "-m", "training", "--variant", "gpt2", "--size", "xs", "--data", str(small_data),
            "--out", str(out), *sets]


def test_sigkill_at_random_steps_then_resume_matches_an_uninterrupted_run(small_data, tmp_path, root):
    """Kill the training process (SIGKILL) right after checkpoints at seeded random points;
    the resumed run's curve equals the uninterrupted one exactly (CPU, same threads)."""
    ref = tmp_path / "ref"
    subprocess.run(_cli(small_data, ref, checkpoint_every=5), check=True, cwd=root, capture_output=True)
    rng = np.random.default_rng(7)
    out = tmp_path / "killed"
    kills = 0
    for target in sorted(rng.choice(np.arange(1, 7), size=3, replace=False) * 5):
        proc = subprocess.Popen(_cli(small_data, out, checkpoint_every=5), cwd=root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            steps = [int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("step-*.json")]
            if steps and max(steps) >= target:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.02)
        proc.wait()
        assert not (out / "curve.csv").exists()
    assert kills >= 2
    done = subprocess.run(_cli(small_data, out, checkpoint_every=5), cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["resumed"] is True
    a = pd.read_csv(ref / "curve.csv").drop(columns=list(TIMING_COLUMNS))
    b = pd.read_csv(out / "curve.csv").drop(columns=list(TIMING_COLUMNS))
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_corrupt_checkpoint_falls_back_to_the_previous_good_one(small_data, tmp_path, caplog):
    import torch

    from models.registry import ModelContext
    from training.loop import make_optimizer
    import models

    ctx = ModelContext(vocab_size=512, seq_len=64)
    model = models.get_variant("gpt2").build(models.resolve_size("gpt2", "xs"), ctx)
    opt = make_optimizer(model, TrainConfig(**SMALL))
    gen = torch.Generator().manual_seed(0)
    for step in (10, 20):
        checkpoint.save(tmp_path, step, checkpoint.collect_tensors(model, opt, gen), {"rows": [], "elapsed_s": 0, "acc": [0, 0]})
    newest = tmp_path / "step-00000020.safetensors"
    data = bytearray(newest.read_bytes())
    data[-10] ^= 0xFF
    newest.write_bytes(bytes(data))
    tensors, state = checkpoint.load_latest(tmp_path)
    assert state["step"] == 10
    assert "corrupt" in caplog.text
    (tmp_path / "step-00000010.json").write_text("{not json")
    assert checkpoint.load_latest(tmp_path) is None


def test_wsd_schedule_warms_up_holds_then_cools_down_with_1_minus_sqrt():
    cfg = TrainConfig(tokens=128 * 8 * 100, schedule="wsd", warmup_tokens=128 * 8 * 5, lr=1e-3,
                      cooldown_fraction=0.2, final_lr_ratio=0.0)
    assert cfg.warmup_steps == 5 and cfg.cooldown_start == 80
    lrs = [cfg.lr_at(s) for s in range(1, 101)]
    assert lrs[4] == pytest.approx(1e-3) and set(lrs[4:80]) == {1e-3}
    assert lrs[89] == pytest.approx(1e-3 * (1 - math.sqrt(0.5)))
    assert lrs[-1] == pytest.approx(0.0)
    # the warmup is a number of tokens, not a fraction: a longer budget warms up over the same steps
    assert TrainConfig(tokens=128 * 8 * 400, schedule="wsd", warmup_tokens=128 * 8 * 5).warmup_steps == 5


def test_bad_schedule_names_the_key():
    with pytest.raises(InputError, match="training.schedule='step'"):
        TrainConfig(schedule="step")
    with pytest.raises(InputError, match="cooldown_shape"):
        TrainConfig(schedule="wsd", cooldown_shape="exp")


WSD = dict(SMALL, schedule="wsd", warmup_tokens=64 * 8 * 4, cooldown_fraction=0.25, checkpoint_every=7)


def test_a_cooldown_branched_from_the_stable_run_equals_the_schedule_trained_in_one_go(small_data, tmp_path):
    """wsd: stable run -> checkpoint at each budget's cooldown start -> cooldown job. The branched
    run's curve equals one uninterrupted wsd run of that budget (CPU, same threads)."""
    from training.loop import run_cooldown, run_stable

    budgets = [64 * 8 * 24, 64 * 8 * 40]
    cfgs = [TrainConfig(**{**WSD, "tokens": b}) for b in budgets]
    branches = [c.cooldown_start * c.tokens_per_step for c in cfgs]
    assert branches == [64 * 8 * 18, 64 * 8 * 30]
    stable = tmp_path / "stable"
    info = run_stable("gpt2", "xs", {}, TrainConfig(**{**WSD, "tokens": branches[-1]}), small_data, stable, branches)
    assert info["steps_done"] == 30
    kept = sorted(int(p.stem.split("-")[1]) for p in (stable / "checkpoints").glob("step-*.json"))
    assert {18, 30} <= set(kept)  # every branch checkpoint is kept
    for cfg in cfgs:
        out = tmp_path / f"cool{cfg.tokens}"
        run_cooldown("gpt2", "xs", {}, cfg, stable / "checkpoints", small_data, out)
        ref = tmp_path / f"ref{cfg.tokens}"
        run("gpt2", "xs", {}, cfg, small_data, ref)
        a = pd.read_csv(out / "curve.csv").set_index("step")
        b = pd.read_csv(ref / "curve.csv").set_index("step")
        last = cfg.total_steps
        assert a.index[-1] == b.index[-1] == last
        assert a.loc[last, "eval_loss"] == b.loc[last, "eval_loss"]  # bit-identical final point
        assert (a["phase"].loc[: cfg.cooldown_start] == "stable").all() and a["phase"].iloc[-1] == "cooldown"
        assert a["lr"].iloc[-1] == 0.0


def test_a_budget_beyond_the_stable_run_trains_on_from_its_last_checkpoint(small_data, tmp_path):
    """A budget added after the stable run ended beyond its end: its cooldown resumes from the stable
    run's last checkpoint, trains the missing stable steps and leaves a checkpoint at its branch for
    later budgets; the result equals the schedule trained in one go."""
    from training.loop import run_cooldown, run_stable

    stable = tmp_path / "stable"
    run_stable("gpt2", "xs", {}, TrainConfig(**{**WSD, "tokens": 64 * 8 * 12}), small_data, stable)
    later = TrainConfig(**{**WSD, "tokens": 64 * 8 * 32})  # branches at step 24, beyond the stable run's 12
    info = run_cooldown("gpt2", "xs", {}, later, stable / "checkpoints", small_data, tmp_path / "cool")
    assert info["branched_from_step"] == 12 and info["steps_done"] == 32
    assert (stable / "checkpoints" / "step-00000024.json").is_file()
    assert (stable / "checkpoints" / "step-00000012.json").is_file()  # nothing of the stable run deleted
    run("gpt2", "xs", {}, later, small_data, tmp_path / "ref")
    a = pd.read_csv(tmp_path / "cool" / "curve.csv").set_index("step")
    b = pd.read_csv(tmp_path / "ref" / "curve.csv").set_index("step")
    assert a.loc[32, "eval_loss"] == b.loc[32, "eval_loss"]


def test_extending_a_stable_run_resumes_from_its_last_checkpoint(small_data, tmp_path):
    from training.loop import run_stable

    short, long = TrainConfig(**{**WSD, "tokens": 64 * 8 * 12}), TrainConfig(**{**WSD, "tokens": 64 * 8 * 20})
    out = tmp_path / "stable"
    first = run_stable("gpt2", "xs", {}, short, small_data, out)
    assert first["resumed"] is False and first["steps_done"] == 12
    longer = run_stable("gpt2", "xs", {}, long, small_data, out)
    assert longer["resumed"] is True and longer["steps_done"] == 20
    direct = run_stable("gpt2", "xs", {}, long, small_data, tmp_path / "direct")
    a = pd.read_csv(out / "curve.csv").drop(columns=list(TIMING_COLUMNS)).set_index("step")
    b = pd.read_csv(tmp_path / "direct" / "curve.csv").drop(columns=list(TIMING_COLUMNS)).set_index("step")
    assert a.loc[20, "eval_loss"] == b.loc[20, "eval_loss"]
    assert direct["resumed"] is False


def test_a_checkpoint_of_another_config_is_never_resumed(small_data, tmp_path, caplog):
    """Kill-then-change: a checkpoint written under one config must not be resumed under another
    (the curve would mix two schedules, or a changed width would fail to load)."""
    from training.loop import run_stable

    out = tmp_path / "stable"
    cfg = TrainConfig(**{**WSD, "tokens": 64 * 8 * 12})
    run_stable("gpt2", "xs", {}, cfg, small_data, out)
    changed = run_stable("gpt2", "xs", {"d_model": 48}, cfg, small_data, out)
    assert changed["resumed"] is False
    assert "belong to another configuration" in caplog.text
    cosine = TrainConfig(**{**SMALL, "checkpoint_every": 5})
    ckpt = tmp_path / "ckpt"
    from training.loop import save_checkpoint, setup

    s = setup("gpt2", "xs", {}, cosine, small_data)
    s.step = 5
    save_checkpoint(s, ckpt)
    info = run("gpt2", "xs", {}, TrainConfig(**{**SMALL, "tokens": SMALL["tokens"] * 2}), small_data, tmp_path / "r",
               ckpt_dir=ckpt)
    assert info["resumed"] is False  # a changed budget changes a cosine schedule: never resumed


def test_the_tensorboard_logger_mirrors_the_curve_under_the_run_folder(small_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run("gpt2", "xs", {}, TrainConfig(**SMALL), small_data, tmp_path, logger="tensorboard")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    logged = [e.value for e in events.Scalars("eval_loss")]
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert logged == pytest.approx(curve["eval_loss"].tolist(), rel=1e-6)
    with pytest.raises(InputError, match="training.logger='wandb'"):
        run("gpt2", "xs", {}, TrainConfig(**SMALL), small_data, tmp_path / "x", logger="wandb")


def test_a_stable_run_stopped_early_keeps_its_rows_up_to_the_check_and_resumes_from_there(small_data, tmp_path):
    """run_stable's stop_check: asked once at the check with the rows so far; a truthy stop ends the run
    there (status stopped, curve up to the check, the verdict in run.json) and keeps a checkpoint at the
    check, from which the same run without the check resumes and ends as if never stopped. A budget
    branching later is recorded by skip_cooldown with the stable rows and status stopped."""
    from training.loop import run_stable, skip_cooldown

    cfg = TrainConfig(**{**WSD, "tokens": 64 * 8 * 30})
    asked = []

    def stop(rows, tokens):
        asked.append((len(rows), tokens))
        return {"stop": True, "reason": "test"}

    out = tmp_path / "stable"
    info = run_stable("gpt2", "xs", {}, cfg, small_data, out, [64 * 8 * 18], stop_check=(64 * 8 * 9 + 1, stop))
    assert asked and asked[0][1] == 64 * 8 * 10  # rounded up to a whole step
    assert info["status"] == "stopped" and info["steps_done"] == 10
    assert info["early_stop"] == {"stop": True, "reason": "test", "tokens": 64 * 8 * 10}
    curve = pd.read_csv(out / "curve.csv")
    assert curve["step"].max() <= 10 and len(curve) == asked[0][0]
    assert (out / "checkpoints" / "step-00000010.json").is_file()
    later = TrainConfig(**{**WSD, "tokens": 64 * 8 * 40})
    rec = skip_cooldown(out, tmp_path / "D1", later, {"run_id": "x/D1", "budget": "D1"})
    assert rec["status"] == "stopped" and rec["budget"] == "D1"
    assert rec["train_config"]["tokens"] == later.tokens and rec["branch_tokens"] == 64 * 8 * 30  # its own budget
    assert pd.read_csv(tmp_path / "D1" / "curve.csv").equals(curve)
    go_on = run_stable("gpt2", "xs", {}, cfg, small_data, out, [64 * 8 * 18])
    assert go_on["status"] == "ok" and go_on["resumed"] is True and go_on["steps_done"] == 30
    direct = run_stable("gpt2", "xs", {}, cfg, small_data, tmp_path / "direct", [64 * 8 * 18],
                        stop_check=(64 * 8 * 9, lambda rows, tokens: {"stop": False, "reason": "on the frontier"}))
    assert direct["status"] == "ok" and direct["early_stop"]["stop"] is False
    a = pd.read_csv(out / "curve.csv").drop(columns=list(TIMING_COLUMNS))
    b = pd.read_csv(tmp_path / "direct" / "curve.csv").drop(columns=list(TIMING_COLUMNS))
    pd.testing.assert_frame_equal(a, b)
