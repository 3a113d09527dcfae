"""GPU slots on one machine: each training job takes free devices before CUDA is initialised.

Snakemake's local executor counts a `gpu` resource but assigns no device, so with
`snakemake --cores 32 --resources gpu=8` eight training jobs would all train on GPU 0. A job
therefore takes its devices itself: one file lock per device index in a per-machine lock folder,
taken without blocking (`fcntl.flock`), and `CUDA_VISIBLE_DEVICES` set to the indices it holds
before torch touches CUDA. The lock belongs to the open file of the process, so a job that dies
(SIGKILL included) frees its slot at once. A job that finds too few free slots waits, with one log
line per minute.

Inside a SLURM job no slot is taken: SLURM places the job on its devices itself. The number of devices comes from the machine (`CUDA_VISIBLE_DEVICES` if set, else
`nvidia-smi -L`), or from `ARCHSCALE_GPU_SLOTS` (also how the tests fake a machine of N devices).
No torch import here: it must run before CUDA is initialised.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

from training.errors import InputError

log = logging.getLogger(__name__)

SLOTS_ENV = "ARCHSCALE_GPU_SLOTS"  # device count override (tests: a fake machine)
LOCK_DIR_ENV = "ARCHSCALE_GPU_LOCK_DIR"  # the per-machine lock folder (default: in the system's temp folder)


def device_indices() -> list[str]:
    """The device indices this machine offers jobs: ARCHSCALE_GPU_SLOTS=N gives 0..N-1; else the entries of
    CUDA_VISIBLE_DEVICES when set; else the GPUs `nvidia-smi -L` lists; none without a driver."""
    if os.environ.get(SLOTS_ENV):
        return [str(i) for i in range(int(os.environ[SLOTS_ENV]))]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def lock_dir() -> Path:
    path = Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"archscale-gpu-slots-{os.getuid()}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def placed_by_scheduler() -> bool:
    """A SLURM job's devices are chosen by SLURM (its gres binding sets CUDA_VISIBLE_DEVICES for the job)."""
    return bool(os.environ.get("SLURM_JOB_ID")) and not os.environ.get(SLOTS_ENV)


def _try_take(indices: list[str], n: int, folder: Path) -> list[tuple[str, object]]:
    held = []
    for index in indices:
        f = open(folder / f"gpu{index}.lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        held.append((index, f))
        if len(held) == n:
            break
    if len(held) < n:
        for _, f in held:
            f.close()  # closing the file releases its lock
        return []
    return held


class Slots(list):
    """The device indices a process holds; the open lock files keep them (closing them, or the process
    ending, frees them)."""

    def __init__(self, held=()):
        super().__init__(index for index, _ in held)
        self._files = [f for _, f in held]

    def release(self) -> None:
        for f in self._files:
            f.close()
        self._files = []


def take(n: int, poll_s: float = 1.0, log_every_s: float = 60.0, what: str = "training job") -> Slots:
    """Take `n` free device slots, waiting while there are not enough, and set CUDA_VISIBLE_DEVICES to them.
    Returns the Slots held (empty when n is 0 or a scheduler placed the job); keep it for as long as the
    devices are used."""
    if n <= 0 or placed_by_scheduler():
        return Slots()
    indices = device_indices()
    if len(indices) < n:
        raise InputError(f"the {what} needs {n} GPU(s) and this machine has {len(indices)} "
                         f"({'set ' + SLOTS_ENV if not indices else 'lower training.gpus'}); on a machine without "
                         "GPUs set training.gpus: 0")
    folder = lock_dir()
    start, last_log = time.monotonic(), -log_every_s
    while not (held := _try_take(indices, n, folder)):
        waited = time.monotonic() - start
        if waited - last_log >= log_every_s:
            log.info("waiting for %d free GPU slot(s) of %d (%s); %.0f s so far", n, len(indices), folder, waited)
            last_log = waited
        time.sleep(poll_s)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(index for index, _ in held)
    log.info("holding GPU slot(s) %s", os.environ["CUDA_VISIBLE_DEVICES"])
    return Slots(held)


@contextlib.contextmanager
def hold(n: int, **kwargs):
    """`take` for the duration of a with-block; CUDA_VISIBLE_DEVICES is restored after."""
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    slots = take(n, **kwargs)
    try:
        yield slots
    finally:
        slots.release()
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before
