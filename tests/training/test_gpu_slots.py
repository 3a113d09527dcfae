"""GPU slots on a workstation (training/gpu_slots.py), on a fake machine of 4 devices (ARCHSCALE_GPU_SLOTS=4):
concurrent jobs hold distinct slots, a killed job frees its slot, CUDA_VISIBLE_DEVICES is set before CUDA."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training import gpu_slots
from training.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
JOB = """
import os, sys, time, logging
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from training import gpu_slots
slots = gpu_slots.take(int(sys.argv[1]), poll_s=0.05, log_every_s=0.2)
import torch  # after the slots, as the train script does: CUDA is not touched before
assert not torch.cuda.is_initialized()
print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
open(sys.argv[2], "w").write(os.environ["CUDA_VISIBLE_DEVICES"])
time.sleep(120)
"""


def _job(tmp_path, name, n=1):
    env = {**os.environ, gpu_slots.SLOTS_ENV: "4", gpu_slots.LOCK_DIR_ENV: str(tmp_path / "locks"),
           "PYTHONPATH": str(ROOT)}
    env.pop("SLURM_JOB_ID", None)
    out = tmp_path / f"{name}.out"
    proc = subprocess.Popen([sys.executable, "-c", JOB, str(n), str(out)], env=env, stderr=subprocess.PIPE, text=True)
    return proc, out


def _wait_for(path, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    return None


def test_four_jobs_hold_four_distinct_slots_and_a_killed_job_frees_its_slot(tmp_path):
    jobs = [_job(tmp_path, f"j{i}") for i in range(4)]
    try:
        held = [_wait_for(out) for _, out in jobs]
        assert sorted(held) == ["0", "1", "2", "3"]  # one device each, all different
        fifth, fifth_out = _job(tmp_path, "j4")
        time.sleep(1.0)
        assert not fifth_out.exists()  # no free slot: it waits
        victim, victim_out = jobs[2]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert _wait_for(fifth_out) == victim_out.read_text()  # the killed job's slot, freed with its process
        fifth.kill()
        _, err = fifth.communicate()
        assert "waiting for 1 free GPU slot(s) of 4" in err  # the wait said so in the log
    finally:
        for proc, _ in jobs:
            proc.kill()
            proc.wait()


def test_a_two_gpu_job_holds_two_slots(tmp_path):
    proc, out = _job(tmp_path, "pair", n=2)
    try:
        assert sorted(_wait_for(out).split(",")) == ["0", "1"]
    finally:
        proc.kill()
        proc.wait()


def test_more_gpus_than_the_machine_has_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv(gpu_slots.SLOTS_ENV, "1")
    monkeypatch.setenv(gpu_slots.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(InputError, match="needs 2 GPU\\(s\\) and this machine has 1"):
        gpu_slots.take(2)
    monkeypatch.setenv(gpu_slots.SLOTS_ENV, "0")
    with pytest.raises(InputError, match="on a machine without GPUs set training.gpus: 0"):
        gpu_slots.take(1)


def test_no_slot_is_taken_for_cpu_jobs_or_inside_slurm(monkeypatch, tmp_path):
    monkeypatch.setenv(gpu_slots.LOCK_DIR_ENV, str(tmp_path))
    assert gpu_slots.take(0) == []
    monkeypatch.delenv(gpu_slots.SLOTS_ENV, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    assert gpu_slots.take(4) == []  # SLURM placed the job on its devices


def test_hold_restores_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(gpu_slots.SLOTS_ENV, "2")
    monkeypatch.setenv(gpu_slots.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with gpu_slots.hold(1) as slots:
        assert os.environ["CUDA_VISIBLE_DEVICES"] == slots[0] == "0"
        with gpu_slots.hold(1) as other:
            assert other == ["1"]
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
