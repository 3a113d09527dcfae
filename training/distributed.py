"""Runs on several GPUs (or, for the tests, several CPU processes) through torch.distributed.

A training job whose run needs N devices (`training.gpus`, or a variant's `gpus` for some sizes) starts
N processes with torchrun (`launch`) inside its one Snakemake job: on a workstation on the N GPU
slots the job holds (training/gpu_slots.py), under SLURM on the N GPUs of its allocation. Each
process (`main`) is one rank: NCCL on CUDA, gloo on CPU. The training loop (training/loop.py) then
wraps the model in DistributedDataParallel, gives every rank its rows of each global batch (the
batch is a function of (seed, step), so the ranks' shares together are the single-process batch
and the trajectory matches one process at the same global batch), averages the gradients once per
step, and lets rank 0 alone write curves, records and checkpoints (with every rank's generator
state). A checkpoint, a preemption signal and a stop are collective, so every rank takes the same
branch; a killed rank takes the group down (torchrun), and the rerun resumes from the last
checkpoint as a single-process run does.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

from training.errors import InputError

KINDS = ("run", "stable", "cooldown")


class RunFailed(RuntimeError):
    """A multi-process run ended with a failed rank (its message names the log)."""


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int


def init_from_env() -> Dist:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)."""
    import torch
    import torch.distributed as tdist

    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    tdist.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local)


def command(n: int, spec_path: str) -> list[str]:
    """The torchrun command that trains the run described in `spec_path` on n processes of this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
            "-m", "training.distributed", spec_path]


def launch(n: int, kind: str, kwargs: dict, spec_path, stream=None) -> int:
    """Run `training.loop.<kind>(**kwargs)` on n processes (torchrun); the processes' output goes to `stream`.
    Returns torchrun's exit status (non-zero when any rank failed or was preempted)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}; allowed: {', '.join(KINDS)}")
    with open(spec_path, "w") as f:
        json.dump({"kind": kind, "kwargs": kwargs}, f, default=str)
    env = {**os.environ, "OMP_NUM_THREADS": str(kwargs.get("threads", 1))}
    out = stream if stream is not None and hasattr(stream, "fileno") else None
    return subprocess.run(command(n, str(spec_path)), env=env, stdout=out, stderr=out).returncode


def train(kind: str, kwargs: dict, dist: Dist | None) -> dict:
    """One rank's share of a run: training.loop.run / run_stable / run_cooldown with `dist`."""
    from training import loop

    kwargs = dict(kwargs)
    kwargs["cfg"] = loop.TrainConfig(**kwargs["cfg"])
    if kwargs.get("stable_cfg"):
        kwargs["stable_cfg"] = loop.TrainConfig(**kwargs["stable_cfg"])
    fn = {"run": loop.run, "stable": loop.run_stable, "cooldown": loop.run_cooldown}[kind]
    return fn(**kwargs, dist=dist)


def main(argv=None) -> int:
    import logging

    import torch.distributed as tdist

    from training.loop import Preempted

    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(open(argv[0]).read())
    dist = init_from_env()
    logging.basicConfig(level=logging.INFO if dist.rank == 0 else logging.WARNING, stream=sys.stderr,
                        format=f"%(asctime)s rank{dist.rank} %(levelname)s %(name)s: %(message)s")
    try:
        info = train(spec["kind"], spec["kwargs"], dist)
        if dist.rank == 0:
            logging.getLogger(__name__).info("run finished on %d processes: status=%s steps=%s", dist.world,
                                             info["status"], info["steps_done"])
        return 0
    except (InputError, Preempted) as e:
        print(f"archscale: rank {dist.rank}: {e}", file=sys.stderr)
        return 3 if isinstance(e, Preempted) else 2
    finally:
        if tdist.is_initialized():
            tdist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
