"""The training loop: a run is one (variant, size, seed, learning rate, token budget).

AdamW with decoupled weight decay on matrices only; the learning rate is a pure function of
the step, so resuming needs no scheduler object. Two schedules (`TrainConfig.schedule`):

* cosine: linear warmup over `warmup_fraction` of the run's steps, cosine decay to
  `min_lr_ratio` x peak at the last step; each budget is a run from scratch (`run`).
* wsd (warmup-stable-decay): linear warmup over `warmup_tokens` (the same for every budget),
  a constant rate, then a cooldown over the last `cooldown_fraction` of the budget. Before its
  cooldown a budget's trajectory does not depend on the budget, so one *stable* run per
  lineage (variant, size, seed, lr) trains at the constant rate and keeps a checkpoint where
  each budget's cooldown starts (`run_stable`); each budget's *cooldown* job branches from it
  (`run_cooldown`). A budget added later needs only its cooldown (from the nearest earlier
  checkpoint, catching up at the constant rate), or an extension of the stable run, which
  resumes from its last checkpoint.

Batches are a pure function of (seed, step) and the RNG states travel in checkpoints, so a
cooldown branched from a checkpoint equals the same schedule trained in one go (on CPU with
the same threads). Checkpoints carry the hash of what determines the trajectory
(`trajectory_key`); a checkpoint of another configuration is never resumed.

Evaluation runs on a fixed held-out token set at `eval_points` log-spaced steps plus the
last step (stable runs also at every branch step, cooldowns at quarters of the cooldown).
Outputs (written atomically): `curve.csv` (one row per evaluation) and `run.json`. A run
whose loss turns non-finite or exceeds `diverge_factor` x the objective's chance-level loss
(see `ArchModel.chance_loss`) stops with status `diverged` and the step; its curve is kept.
A stable run given a `stop_check` (the study's optional early-stop rule) may end at the check
with status `stopped`; its budgets that branch later are then recorded by `skip_cooldown`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

import models
from models.registry import ModelContext, resolve_size
from training import checkpoint, evalset
from archscale.files import write_json, write_text
from training.data import check_corpus_size, train_batch
from training.device import autocast, device_name, peak_flops, pick_device, to_device
from training.errors import InputError
from training.logger import make_logger
from training.shards import epochs, open_tokens

log = logging.getLogger(__name__)

SCHEDULES = ("cosine", "wsd")
COOLDOWN_SHAPES = ("1-sqrt", "linear", "cosine")
CURVE_COLUMNS = [
    "step", "tokens", "flops_6n", "flops", "params_total", "params_nonembedding",
    "train_loss", "eval_loss", "eval_loss_se", "lr", "elapsed_s", "warmup_tokens", "phase",
    "eval_windows", "tokens_per_s", "mfu",
]
# settings of how a run executes, not what it computes: left out of the study's params (changing them reruns
# nothing); the train script takes them from the config as it runs
EXECUTION_FIELDS = ("micro_batch", "checkpoint_minutes")
# columns that measure the machine, not the run: they differ between an interrupted run and an uninterrupted one
TIMING_COLUMNS = ("elapsed_s", "tokens_per_s", "mfu")
TRAJECTORY_FIELDS = ("seq_len", "batch_size", "lr", "weight_decay", "beta1", "beta2", "grad_clip", "seed",
                     "schedule", "warmup_tokens", "eval_tokens", "eval_batch_size")
TRAINING_CODE = ("loop.py", "data.py", "checkpoint.py", "device.py", "shards.py")
# the signals a scheduler sends before it stops a job (SLURM: preemption, the time limit, `--signal`)
PREEMPT_SIGNALS = ("SIGTERM", "SIGUSR1")
# Fault injection for the tests: a loss made NaN at this optimiser step, of every run or of one variant
# ("<variant>:<step>"); never set in a study.
FAULT_NAN_STEP_ENV = "ARCHSCALE_FAULT_NAN_STEP"


@dataclass(frozen=True)
class TrainConfig:
    tokens: int = 1_000_000
    seq_len: int = 128
    batch_size: int = 8
    lr: float = 2e-3
    warmup_fraction: float = 0.02
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_points: int = 20
    eval_tokens: int = 32768
    eval_batch_size: int = 32
    device: str = "auto"
    compile: bool | str = "auto"  # "auto": on CUDA (eager elsewhere, and eager after one warning if it fails)
    checkpoint_every: int = 100
    checkpoint_minutes: float = 30.0  # also checkpoint when this much wall time passed since the last one
    # intermediate evaluations use at most this share of the training compute since the previous one
    # (a prefix of the evaluation set, >= 2 batches); None: the whole set every time. The final point is whole.
    eval_share: float | None = None
    micro_batch: int | str | None = None  # sequences per forward/backward (gradients accumulate); None: the batch;
    # "auto": on CUDA the largest power-of-two fraction of the batch that fits, elsewhere the batch
    diverge_factor: float = 2.0
    seed: int = 0
    # schedule: "cosine" (warmup, cosine decay to min_lr_ratio over the whole run) or "wsd"
    # (warmup over warmup_tokens, constant, then a cooldown over the last cooldown_fraction of the run)
    schedule: str = "cosine"
    warmup_tokens: int | None = None  # wsd: warmup length in tokens, the same for every budget
    cooldown_fraction: float = 0.2
    cooldown_shape: str = "1-sqrt"
    final_lr_ratio: float = 0.0  # wsd: the cooldown ends at this fraction of the peak
    stable_only: bool = False  # wsd: no cooldown (a stable run: constant rate after the warmup to the end)

    def __post_init__(self):
        for name in ("tokens", "seq_len", "batch_size", "eval_points", "eval_tokens", "eval_batch_size", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise InputError(f"training.{name}={v!r} must be a positive integer")
        if not self.lr > 0:
            raise InputError(f"learning rate {self.lr!r} must be positive")
        if not 0 <= self.warmup_fraction < 1:
            raise InputError(f"training.warmup_fraction={self.warmup_fraction} must be in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise InputError(f"training.schedule={self.schedule!r} is not allowed; allowed: {', '.join(SCHEDULES)}")
        if self.cooldown_shape not in COOLDOWN_SHAPES:
            raise InputError(f"training.wsd.cooldown_shape={self.cooldown_shape!r} is not allowed; "
                             f"allowed: {', '.join(COOLDOWN_SHAPES)}")
        if not 0 < self.cooldown_fraction <= 1:
            raise InputError(f"training.wsd.cooldown_fraction={self.cooldown_fraction} must be in (0, 1]")
        if self.warmup_tokens is not None and (not isinstance(self.warmup_tokens, int) or self.warmup_tokens < 0):
            raise InputError(f"training.wsd.warmup_tokens={self.warmup_tokens!r} must be a non-negative integer")
        if self.compile not in (True, False, "auto"):
            raise InputError(f"training.compile={self.compile!r} is not allowed; allowed: auto, true, false")
        if self.micro_batch not in (None, "auto") and (not isinstance(self.micro_batch, int) or self.micro_batch < 1):
            raise InputError(f"training.micro_batch={self.micro_batch!r} must be a positive integer, auto or null")
        if self.eval_share is not None and not 0 < self.eval_share <= 1:
            raise InputError(f"training.eval_share={self.eval_share} must be in (0, 1] or null")
        if not self.checkpoint_minutes > 0:
            raise InputError(f"training.checkpoint_minutes={self.checkpoint_minutes} must be positive")
        if self.tokens < self.batch_size * self.seq_len:
            raise InputError(
                f"training.tokens={self.tokens} is less than one batch ({self.batch_size} x {self.seq_len}); raise the budget"
            )

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "TrainConfig":
        """From the config's `training` block (its `wsd` sub-block flattened), plus overrides."""
        names = {f.name for f in dataclasses.fields(cls)}
        flat = {**d, **(d.get("wsd") or {}), **overrides}
        return cls(**{k: v for k, v in flat.items() if k in names})

    @property
    def total_steps(self) -> int:
        return self.tokens // (self.batch_size * self.seq_len)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def warmup_steps(self) -> int:
        if self.schedule == "wsd" and self.warmup_tokens is not None:
            return self.warmup_tokens // self.tokens_per_step
        return int(round(self.warmup_fraction * self.total_steps))

    @property
    def cooldown_start(self) -> int:
        """wsd: the last step at the constant rate (the stable phase's end, where cooldowns branch)."""
        if self.schedule != "wsd" or self.stable_only:
            return self.total_steps
        return max(self.warmup_steps, self.total_steps - int(round(self.cooldown_fraction * self.total_steps)))

    def lr_at(self, step: int) -> float:
        """Learning rate for optimiser step `step` (1-based)."""
        if step <= self.warmup_steps:
            return self.lr * step / max(1, self.warmup_steps)
        if self.schedule == "wsd":
            if step <= self.cooldown_start:
                return self.lr
            p = (step - self.cooldown_start) / max(1, self.total_steps - self.cooldown_start)  # (0, 1]
            decay = {"1-sqrt": 1 - math.sqrt(p), "linear": 1 - p, "cosine": 0.5 * (1 + math.cos(math.pi * p))}
            return self.lr * (self.final_lr_ratio + (1 - self.final_lr_ratio) * decay[self.cooldown_shape])
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    def eval_steps(self) -> list[int]:
        pts = np.unique(np.round(np.logspace(0, math.log10(self.total_steps), self.eval_points)).astype(int))
        return sorted(set(pts.tolist()) | {self.total_steps})


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    params = model.unique_parameters()
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True,  # one kernel per step, CPU and CUDA
    )


class Metric(tuple):
    """(mean over the evaluation batches, standard error across them), with `.batches`: the per-batch values
    (every run is scored on the same batches, so two runs' per-batch values pair up)."""

    def __new__(cls, mean: float, se: float, batches=()):
        m = super().__new__(cls, (mean, se))
        m.batches = list(batches)
        return m


@torch.no_grad()
def eval_metrics(model, batches, device) -> dict[str, Metric]:
    """Every loss the model reports on the fixed evaluation set (training/evalset.py), as
    {name: (mean over batches, standard error across batches)}; "loss" is the objective's
    eval loss, ELECTRA adds "generator_mlm_loss". No randomness: the masks and replacements
    are fixed in the set, identical for every run and seed."""
    model.eval()
    per_batch: dict[str, list[float]] = {}
    for fields in batches.fields:
        with autocast(device):
            out = model.fixed_eval_losses({k: to_device(v, device) for k, v in fields.items()})
        for name, value in out.items():
            per_batch.setdefault(name, []).append(float(value))
    model.train()
    result = {}
    for name, values in per_batch.items():
        values = np.asarray(values)
        se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
        result[name] = Metric(float(values.mean()), se, values.tolist())
    return result


def evaluate(model, batches, device, seed: int | None = None) -> Metric:
    """Mean eval loss over the fixed evaluation batches and its standard error across
    batches. `seed` is not used (the evaluation set is fixed for every run and seed); it
    stays for existing callers."""
    return eval_metrics(model, batches, device)["loss"]


@dataclass
class Session:
    """One training process: the model, its optimiser and data, and the run's progress so far."""
    variant: str
    size_name: str
    size: object
    spec: object
    account: object
    cfg: TrainConfig
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    loss_fn: object
    train_tokens: object  # training.shards.ShardSet
    evals: list
    meta: dict
    key: str
    threads: int
    step: int = 0
    rows: list = dataclasses.field(default_factory=list)
    acc: list = dataclasses.field(default_factory=lambda: [0.0, 0])
    t0: float = 0.0
    status: str = "ok"
    diverged_step: int | None = None
    resumed: bool = False
    logger: object = None  # training.logger: mirrors each curve row (None: nothing)
    peak_flops: tuple = (float("nan"), "unknown")  # the device's dense peak FLOP/s and where it came from
    micro_batch: int = 0  # sequences per forward/backward
    train_s: float = 0.0  # seconds spent in training steps (not evaluating or checkpointing), all sessions
    since_row: list = dataclasses.field(default_factory=lambda: [0, 0.0])  # [steps, train seconds] since the last row
    last_ckpt: float = 0.0
    rank: int = 0  # torch.distributed (training/distributed.py): this process's rank of `world`
    world: int = 1
    ddp: object = None  # the DistributedDataParallel wrapper when world > 1
    last_batches: list | None = None  # per-batch eval losses of the last row when it scored the whole set

    @property
    def writes(self) -> bool:
        """Rank 0 writes curves, records and checkpoints; the other ranks train and evaluate alike."""
        return self.rank == 0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def trajectory_key(variant: str, size, cfg: TrainConfig, meta: dict, spec) -> str:
    """sha256 of what determines a run's trajectory up to its cooldown: the variant's code and shape,
    the data, the optimiser and schedule settings (cosine: the whole schedule, which depends on the
    budget; wsd: everything but the budget) and the training code."""
    import hashlib
    import json

    fields = {f: getattr(cfg, f) for f in TRAJECTORY_FIELDS}
    if cfg.schedule == "cosine":
        fields.update(tokens=cfg.tokens, warmup_fraction=cfg.warmup_fraction, min_lr_ratio=cfg.min_lr_ratio)
    h = hashlib.sha256(json.dumps({"variant": variant, "size": size.as_dict(), "cfg": fields,
                                   "data": [meta.get("tokenizer_sha256"), meta.get("train_sha256"), meta.get("val_sha256")],
                                  "model": spec.source_hash()},
                                  sort_keys=True, default=str).encode())
    for name in TRAINING_CODE:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:20]


def setup(variant: str, size_name: str, size_overrides: dict, cfg: TrainConfig, data_dir, threads: int = 1,
          dist=None) -> Session:
    """Build the model, optimiser, data and evaluation set of a run (nothing trained yet). With `dist` (a
    training.distributed.Dist: this process is one rank of a torchrun group) the model trains under
    DistributedDataParallel on the rank's device, each rank on its share of every global batch."""
    data_dir = Path(data_dir)
    torch.set_num_threads(threads)
    data = open_tokens(data_dir)
    meta = data.meta
    spec = models.get_variant(variant)
    ctx = ModelContext(
        vocab_size=meta["vocab_size"], seq_len=cfg.seq_len,
        bos_id=meta["bos_id"], eos_id=meta["eos_id"], pad_id=meta["pad_id"], mask_id=meta["mask_id"],
    )
    size = resolve_size(spec, size_name, ctx, **size_overrides)
    check_corpus_size(len(data.train), len(data.val), cfg.seq_len, cfg.tokens, cfg.eval_tokens)
    device = pick_device(cfg.device)
    if dist is not None and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if dist is not None and cfg.batch_size % dist.world:
        raise InputError(f"{variant}/{size_name}: the global batch of {cfg.batch_size} sequences does not split evenly "
                         f"over {dist.world} processes; make the batch a multiple of training.gpus")
    torch.manual_seed(cfg.seed)
    model = spec.build(size, ctx).to(device)
    account = spec.account(size, ctx)
    if account.params_total != model.get_num_params(non_embedding=False):
        raise RuntimeError(f"{variant}: accounted params {account.params_total} != model's {model.get_num_params(False)}")
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    ddp = None
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    s = Session(
        variant=variant, size_name=size_name, size=size, spec=spec, account=account, cfg=cfg, device=device,
        model=model, optimizer=make_optimizer(model, cfg),
        # rank r draws its masks from its own stream (rank 0's is the single-process run's)
        generator=torch.Generator(device=device).manual_seed(cfg.seed + 1_000_003 * rank),
        loss_fn=compiled_loss(ddp if ddp is not None else model.training_loss, device, cfg.compile),
        train_tokens=data.train, evals=evalset.batches_for(data.val, data.train_counts, ctx, cfg.eval_tokens, cfg.eval_batch_size),
        meta=meta, key=trajectory_key(variant, size, cfg, meta, spec), threads=threads, t0=time.perf_counter(),
        peak_flops=peak_flops(device), last_ckpt=time.perf_counter(), rank=rank, world=world, ddp=ddp,
    )
    s.micro_batch = resolve_micro_batch(s)
    return s


def resolve_micro_batch(s: Session) -> int:
    """Sequences per forward/backward: the config's number (at most the batch), the whole batch, or ("auto" on
    CUDA) the largest of batch, batch/2, ... whose forward and backward fit, found on the run's first batch
    (the generator and the gradients are restored, so the trajectory does not depend on the probe)."""
    m, batch = s.cfg.micro_batch, s.cfg.batch_size // s.world  # sequences per process
    if isinstance(m, int):
        return min(m, batch)
    if m != "auto" or s.device.type != "cuda":
        return batch
    x = train_batch(s.train_tokens, 1, batch, s.cfg.seq_len, s.cfg.seed)
    state = s.generator.get_state()
    size = batch
    while True:
        try:
            with autocast(s.device):
                s.loss_fn(to_device(x[:size], s.device), s.generator).backward()
            torch.cuda.synchronize(s.device)
            break
        except torch.OutOfMemoryError:
            s.optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            if size == 1:
                raise InputError(f"{s.variant}/{s.size_name}: one sequence of {s.cfg.seq_len} tokens does not fit on "
                                 f"{device_name(s.device)}; lower training.seq_len or the size") from None
            size = max(1, size // 2)
    s.optimizer.zero_grad(set_to_none=True)
    s.generator.set_state(state)
    log.info("micro-batch %d of %d sequences (%d accumulation steps)", size, batch, -(-batch // size))
    return size


def compiled_loss(eager, device: torch.device, setting):
    """`eager` (the model's training loss, or its DDP wrapper, which calls it), through torch.compile where
    `setting` asks for it ("auto": on CUDA). A compile that fails logs one warning line and the run goes on
    eagerly."""
    if not (setting is True or (setting == "auto" and device.type == "cuda")):
        return eager
    compiled, failed = torch.compile(eager), []

    def loss(*args):
        if failed:
            return eager(*args)
        try:
            return compiled(*args)
        except torch.OutOfMemoryError:
            raise
        except Exception as e:  # a backend or graph-break failure: eager still works
            failed.append(e)
            log.warning("torch.compile failed (%s: %s); training eagerly", type(e).__name__, str(e).splitlines()[0][:200])
            return eager(*args)

    return loss


def resume(s: Session, ckpt_dir, max_step: int | None = None) -> bool:
    """Restore the newest intact checkpoint of this trajectory at or before max_step; False if none."""
    found = checkpoint.load_latest(ckpt_dir, key=s.key, max_step=max_step)
    if found is None:
        return False
    tensors, state = found
    if f"rng.generator.rank{s.rank}" in tensors:  # a checkpoint of a multi-process run: this rank's stream
        tensors = {**tensors, "rng.generator": tensors[f"rng.generator.rank{s.rank}"]}
    checkpoint.restore_tensors(tensors, s.model, s.optimizer, s.generator)
    s.step, s.rows, s.acc = state["step"], state["rows"], state["acc"]
    s.t0 = time.perf_counter() - state["elapsed_s"]
    s.train_s = state.get("train_s", 0.0)
    s.resumed = True
    log.info("resumed from checkpoint at step %d", s.step)
    return True


def save_checkpoint(s: Session, ckpt_dir, pinned=(), keep: int | None = 2) -> None:
    """Rank 0 writes the checkpoint (every rank's generator state in it); a collective when world > 1."""
    tensors = checkpoint.collect_tensors(s.model, s.optimizer, s.generator)
    if s.world > 1:
        import torch.distributed as tdist

        states = [None] * s.world
        tdist.all_gather_object(states, s.generator.get_state())
        tensors.update({f"rng.generator.rank{r}": st for r, st in enumerate(states)})
    if s.writes:
        checkpoint.save(ckpt_dir, s.step, tensors,
                        {"rows": s.rows, "elapsed_s": s.elapsed, "acc": s.acc, "key": s.key, "train_s": s.train_s},
                        keep=keep, pinned=pinned)
    _barrier(s)
    s.last_ckpt = time.perf_counter()


def _barrier(s: Session) -> None:
    if s.world > 1:
        import torch.distributed as tdist

        tdist.barrier()


def _fault_here(s: Session) -> bool:
    """Test fault injection: ARCHSCALE_FAULT_NAN_STEP = "<step>" (every run) or "<variant>:<step>"."""
    value = os.environ.get(FAULT_NAN_STEP_ENV)
    if not value:
        return False
    variant, _, step = value.rpartition(":")
    return step == str(s.step) and variant in ("", s.variant)


def train_step(s: Session) -> bool:
    """One optimiser step at the scheduled rate; False (and status 'diverged') if the loss blew up.

    The global batch (B, T) is split into micro-batches of `s.micro_batch` sequences whose gradients
    accumulate: each micro-batch's mean loss is weighted by its share of the batch, so the step equals one
    pass over the whole batch (exactly for the causal objectives, whose loss is a mean over every token;
    tests/training/test_gpu_step.py states the tolerances)."""
    t0 = time.perf_counter()
    s.step += 1
    lr = s.cfg.lr_at(s.step)
    for group in s.optimizer.param_groups:
        group["lr"] = lr
    batch = train_batch(s.train_tokens, s.step, s.cfg.batch_size, s.cfg.seq_len, s.cfg.seed)  # (B, T) on the CPU
    if s.world > 1:  # this rank's rows of the global batch: (B / world, T)
        share = s.cfg.batch_size // s.world
        batch = batch[s.rank * share: (s.rank + 1) * share]
    s.optimizer.zero_grad(set_to_none=True)
    total = torch.zeros((), device=s.device)
    chunks = batch.split(s.micro_batch)  # (b, T) each
    for k, chunk in enumerate(chunks):
        # DDP averages the gradients over the ranks once, after the last micro-batch
        sync = contextlib.nullcontext() if s.ddp is None or k == len(chunks) - 1 else s.ddp.no_sync()
        with sync:
            with autocast(s.device):
                loss = s.loss_fn(to_device(chunk, s.device), s.generator)
            if _fault_here(s):
                loss = loss * float("nan")
            share = len(chunk) / len(batch)
            (loss * share).backward()
        total += loss.detach().float() * share
    value = float(_mean_over_ranks(s, total))  # one device sync per step
    if not math.isfinite(value) or value > s.cfg.diverge_factor * s.model.chance_loss():
        s.status, s.diverged_step = "diverged", s.step
        log.warning("run diverged at step %d (loss %s, threshold %.2f)", s.step, value,
                    s.cfg.diverge_factor * s.model.chance_loss())
        return False
    if s.cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(s.model.unique_parameters(), s.cfg.grad_clip)
    s.optimizer.step()
    s.acc = [s.acc[0] + value, s.acc[1] + 1]
    seconds = time.perf_counter() - t0
    s.train_s += seconds
    s.since_row = [s.since_row[0] + 1, s.since_row[1] + seconds]
    return True


def _mean_over_ranks(s: Session, value: torch.Tensor) -> torch.Tensor:
    if s.world > 1:
        import torch.distributed as tdist

        tdist.all_reduce(value, op=tdist.ReduceOp.SUM)
        value = value / s.world
    return value


def _any_rank(s: Session, flag: bool) -> bool:
    """Whether any rank says yes (every rank must take the same branch: checkpoints and stops are collective)."""
    if s.world == 1:
        return flag
    import torch.distributed as tdist

    t = torch.tensor([float(flag)], device=s.device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return bool(t.item())


def eval_windows(s: Session, final: bool) -> int:
    """Evaluation batches for this row: all at the run's last step or without `eval_share`; else the prefix
    whose forward compute (1/3 of training's per token) stays within eval_share of the training compute
    since the previous row, at least 2 batches (for a standard error)."""
    n = len(s.evals)
    if final or s.cfg.eval_share is None:
        return n
    tokens = s.since_row[0] * s.cfg.tokens_per_step
    per_batch = s.cfg.eval_batch_size * s.cfg.seq_len
    return int(min(n, max(2, math.floor(s.cfg.eval_share * 3 * tokens / per_batch))))


def eval_row(s: Session, phase: str, final: bool = True) -> dict:
    """Evaluate now and append the curve row (train loss averaged since the previous row; tokens/s and MFU
    of the training steps since the previous row)."""
    k = eval_windows(s, final)
    evals = s.evals if k == len(s.evals) else s.evals.head(k)
    metric = evaluate(s.model, evals, s.device, s.cfg.seed)
    eval_loss, eval_se = metric
    s.last_batches = getattr(metric, "batches", None) if k == len(s.evals) else None
    tokens = s.step * s.cfg.tokens_per_step
    steps, seconds = s.since_row
    tps = steps * s.cfg.tokens_per_step / seconds if seconds > 0 else float("nan")
    row = {"step": s.step, "tokens": tokens, "flops_6n": s.account.flops_6n(tokens), "flops": s.account.flops(tokens),
           "params_total": s.account.params_total, "params_nonembedding": s.account.params_nonembedding,
           "train_loss": s.acc[0] / s.acc[1] if s.acc[1] else float("nan"), "eval_loss": eval_loss,
           "eval_loss_se": eval_se, "lr": s.cfg.lr_at(s.step), "elapsed_s": round(s.elapsed, 3),
           "warmup_tokens": s.cfg.warmup_steps * s.cfg.tokens_per_step, "phase": phase,
           "eval_windows": sum(len(b) for b in evals), "tokens_per_s": round(tps, 1),
           "mfu": round(mfu(s, tps), 6)}
    s.rows.append(row)
    s.acc, s.since_row = [0.0, 0], [0, 0.0]
    if s.logger is not None:
        s.logger.log(s.step, {f"{phase}/eval_loss": eval_loss, "eval_loss": eval_loss, "train_loss": row["train_loss"],
                              "lr": row["lr"], "tokens_per_s": tps, "mfu": row["mfu"]})
    return row


def mfu(s: Session, tokens_per_s: float) -> float:
    """Model FLOPs utilisation: accounted training FLOPs per second over the device's dense peak."""
    return s.account.train_flops_per_token * tokens_per_s / s.peak_flops[0]


class Preempted(RuntimeError):
    """A run stopped by SIGTERM/SIGUSR1 after writing a checkpoint: rerun it and it resumes there."""


@contextlib.contextmanager
def preemptible():
    """Within: SIGTERM and SIGUSR1 only set a flag (yields a list that gets the signal's name), so that the
    training loop can finish its step, write a checkpoint and stop (train_until raises Preempted)."""
    received: list = []
    import threading

    if threading.current_thread() is not threading.main_thread():  # signals can only be caught on the main thread
        yield received
        return
    handler = lambda signum, frame: received.append(signal.Signals(signum).name)
    old = {name: signal.signal(getattr(signal, name), handler) for name in PREEMPT_SIGNALS}
    try:
        yield received
    finally:
        for name, h in old.items():
            signal.signal(getattr(signal, name), h)


def train_until(s: Session, stop_step: int, eval_at, phase, ckpt_dir=None, pinned=()) -> None:
    """Train to stop_step (or divergence), evaluating at eval_at and checkpointing every
    checkpoint_every steps or checkpoint_minutes, and at the pinned steps (which are kept). On SIGTERM or
    SIGUSR1 it writes a checkpoint after the current step and raises Preempted."""
    tps = s.cfg.tokens_per_step
    phase_of = phase if callable(phase) else (lambda step: phase)
    bar = tqdm(total=stop_step * tps, initial=s.step * tps, unit="tok", unit_scale=True, file=sys.stderr,
               mininterval=10, ascii=True, desc=f"{s.variant}/{s.size_name}", disable=not s.writes)
    with preemptible() as signals:
        _train_until(s, stop_step, eval_at, phase_of, ckpt_dir, pinned, bar, signals)
    bar.close()


def _train_until(s, stop_step, eval_at, phase_of, ckpt_dir, pinned, bar, signals) -> None:
    tps = s.cfg.tokens_per_step
    while s.step < stop_step and s.status == "ok":
        if not train_step(s):
            break
        if _any_rank(s, bool(signals)):
            if ckpt_dir is not None:
                save_checkpoint(s, ckpt_dir, pinned)
            raise Preempted(f"{(signals or ['a signal to another rank'])[0]} at step {s.step}: " + (f"checkpoint written to {ckpt_dir}; rerun to resume"
                                                                  if ckpt_dir is not None else "no checkpoint folder"))
        bar.update(tps)
        if s.step in eval_at:
            row = eval_row(s, phase_of(s.step), final=s.step == s.cfg.total_steps)
            bar.set_postfix(eval_loss=f"{row['eval_loss']:.3f}", mfu=f"{row['mfu']:.2f}", refresh=False)
        due = s.step % s.cfg.checkpoint_every == 0 or _any_rank(s, time.perf_counter() - s.last_ckpt > 60 * s.cfg.checkpoint_minutes)
        if ckpt_dir is not None and (s.step in pinned or (due and s.step < stop_step)):
            save_checkpoint(s, ckpt_dir, pinned)


def write_outputs(s: Session, out_dir, extra_info: dict | None = None) -> dict:
    """curve.csv and run.json of the session, atomically; returns the run info."""
    leak = s.model.causal_leak(s.evals[0][:2].to(s.device)) if s.status == "ok" else None
    cfg = s.cfg
    info = {
        "variant": s.variant, "objective": s.spec.objective, "size": s.size_name, "size_config": s.size.as_dict(),
        "seed": cfg.seed, "lr": cfg.lr, "train_config": dataclasses.asdict(cfg), "schedule": cfg.schedule,
        "status": s.status, "diverged_step": s.diverged_step, "steps_done": s.step,
        "params_total": s.account.params_total, "params_nonembedding": s.account.params_nonembedding,
        "train_flops_per_token": s.account.train_flops_per_token, "accounting_notes": s.account.notes,
        "causal_leak": leak, "resumed": s.resumed, "trajectory_key": s.key,
        "device": device_name(s.device), "device_type": s.device.type, "threads": s.threads,
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "python": platform.python_version(), "corpus_sha256": s.meta["corpus_sha256"],
        "tokenizer_sha256": s.meta["tokenizer_sha256"], "model_source_sha256": s.spec.source_hash(),
        "train_split_tokens": len(s.train_tokens), "micro_batch_size": s.micro_batch,
        "tokens_per_s": round(s.step * cfg.tokens_per_step / s.train_s, 1) if s.train_s else None,
        "mfu": round(mfu(s, s.step * cfg.tokens_per_step / s.train_s), 6) if s.train_s else None,
        "peak_flops": s.peak_flops[0], "peak_flops_source": s.peak_flops[1],
        "epochs": round(epochs(s.step * cfg.tokens_per_step, len(s.train_tokens)), 4),
        # the final row's per-batch eval losses (the same batches for every run: paired comparisons)
        "final_eval_losses": ([round(x, 6) for x in s.last_batches]
                              if s.last_batches and s.rows and s.rows[-1]["step"] == s.step else None),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "elapsed_s": round(s.elapsed, 3),
        **(extra_info or {}),
    }
    if s.world > 1:
        info["processes"] = s.world
    if s.logger is not None:
        s.logger.close()
    if s.writes:
        buf = io.StringIO()
        pd.DataFrame(s.rows, columns=CURVE_COLUMNS).to_csv(buf, index=False)
        write_text(Path(out_dir) / "curve.csv", buf.getvalue())
        write_json(Path(out_dir) / "run.json", info)
    _barrier(s)
    return info


def _drop_foreign(s: Session, ckpt_dir, key: str) -> None:
    if s.writes:
        checkpoint.drop_foreign(ckpt_dir, key)
    _barrier(s)


def _clear(s: Session, ckpt_dir) -> None:
    if s.writes:
        checkpoint.clear(ckpt_dir)


def run(variant: str, size_name: str, size_overrides: dict, cfg: TrainConfig, data_dir, out_dir, ckpt_dir=None,
        threads: int = 1, extra_info: dict | None = None, logger: str = "none", dist=None) -> dict:
    """Train one run from scratch (or its own checkpoint) to cfg.tokens; write curve.csv and run.json."""
    out_dir = Path(out_dir)
    ckpt_dir = Path(ckpt_dir) if ckpt_dir else out_dir / "checkpoints"
    s = setup(variant, size_name, size_overrides, cfg, data_dir, threads, dist)
    s.logger = make_logger(logger, out_dir) if s.writes else None
    _drop_foreign(s, ckpt_dir, s.key)
    resume(s, ckpt_dir)
    phase = "cosine" if cfg.schedule == "cosine" else (lambda step: "stable" if step <= cfg.cooldown_start else "cooldown")
    train_until(s, cfg.total_steps, set(cfg.eval_steps()), phase, ckpt_dir)
    info = write_outputs(s, out_dir, extra_info)
    _clear(s, ckpt_dir)
    return info


def run_stable(variant: str, size_name: str, size_overrides: dict, cfg: TrainConfig, data_dir, out_dir,
               branch_tokens=(), ckpt_dir=None, threads: int = 1, extra_info: dict | None = None,
               logger: str = "none", stop_check=None, dist=None) -> dict:
    """The stable phase of a wsd lineage, to cfg.tokens (its last budget's cooldown start), keeping a
    checkpoint at every branch in `branch_tokens` (where a budget's cooldown starts) and at the end.
    Resumes from its own newest checkpoint of the same trajectory, so extending it to a later
    branch continues where it ended. Its outputs do not depend on `branch_tokens`.

    `stop_check` (optional): (tokens, decide). Once the run has trained `tokens` (rounded up to a whole
    step), `decide(rows, tokens_seen)` gets the curve rows so far and returns a dict with a truthy "stop"
    to end the run there: status `stopped`, the curve up to that step, the dict in run.json as
    `early_stop`. The check sees the same rows whether the run trains past it or resumes past it, so the
    outputs stay a function of the configuration; a checkpoint is kept there, so that a later run
    without the check resumes from it."""
    out_dir = Path(out_dir)
    ckpt_dir = Path(ckpt_dir) if ckpt_dir else out_dir / "checkpoints"
    stable = dataclasses.replace(cfg, stable_only=True)
    stop = stable.total_steps
    pinned = {int(b) // cfg.tokens_per_step for b in branch_tokens if int(b) // cfg.tokens_per_step <= stop} | {stop}
    check = min(stop, -(-int(stop_check[0]) // cfg.tokens_per_step)) if stop_check else None
    pinned |= {check} if check else set()
    if stop_check and dist is not None:
        raise InputError("the early-stop rule runs in one process; train this size on one GPU (training.gpus: 1)")
    s = setup(variant, size_name, size_overrides, stable, data_dir, threads, dist)
    s.logger = make_logger(logger, out_dir) if s.writes else None
    _drop_foreign(s, ckpt_dir, s.key)
    resume(s, ckpt_dir, max_step=stop)
    evals = set(stable.eval_steps())
    verdict = None
    if check:
        train_until(s, check, evals, "stable", ckpt_dir, pinned=pinned)
        if s.status == "ok":
            seen = [r for r in s.rows if r["step"] <= check]
            verdict = stop_check[1](seen, check * cfg.tokens_per_step)
            if verdict.get("stop"):
                s.rows, s.step, s.status = seen, check, "stopped"
                log.info("stopped early at step %d: %s", check, verdict.get("reason", ""))
    if s.status == "ok":
        train_until(s, stop, evals, "stable", ckpt_dir, pinned=pinned)
    extra = {**(extra_info or {}), **({"early_stop": {**verdict, "tokens": check * cfg.tokens_per_step}}
                                      if verdict is not None else {})}
    return write_outputs(s, out_dir, extra)


def skip_cooldown(stable_dir, out_dir, cfg: TrainConfig, extra_info: dict | None = None) -> dict:
    """The record of a budget (`cfg`) whose stable run stopped early (status `stopped`) before this budget's
    cooldown would have branched off: its curve is the stable run's rows (no cooldown was trained), its
    run.json the stable run's with this budget's train_config and branch, and `extra_info` (run_id,
    budget, the prediction that stopped it)."""
    stable_dir = Path(stable_dir)
    info = {**json.loads((stable_dir / "run.json").read_text()), "train_config": dataclasses.asdict(cfg),
            "branch_tokens": cfg.cooldown_start * cfg.tokens_per_step, **(extra_info or {}), "elapsed_s": 0.0}
    write_text(Path(out_dir) / "curve.csv", (stable_dir / "curve.csv").read_text())
    write_json(Path(out_dir) / "run.json", info)
    return info


def run_cooldown(variant: str, size_name: str, size_overrides: dict, cfg: TrainConfig, stable_ckpt_dir, data_dir, out_dir,
                 threads: int = 1, extra_info: dict | None = None, logger: str = "none", dist=None,
                 stable_cfg: TrainConfig | None = None) -> dict:
    """One budget of a wsd lineage: branch from the stable run's checkpoint at this budget's cooldown
    start (or catch up at the constant rate from the nearest earlier one, or from scratch), cool down
    to cfg.tokens. The curve holds the stable rows up to the branch and the cooldown's rows. `stable_cfg`
    (the stable run's config): a stable phase trained here again (its checkpoint missing or corrupt) is
    evaluated at the stable run's own steps, so its rows, and the envelope built on them, stay the same."""
    s = setup(variant, size_name, size_overrides, cfg, data_dir, threads, dist)
    s.logger = make_logger(logger, out_dir) if s.writes else None
    branch = cfg.cooldown_start
    # the cooldown's own checkpoints (a preempted cooldown resumes there): its key adds the budget's schedule
    own, stable_key = Path(out_dir) / "checkpoints", s.key
    cooldown_key = f"{s.key}-{cooldown_suffix(cfg)}"
    _drop_foreign(s, own, cooldown_key)
    s.key = cooldown_key
    if resume(s, own):
        start = None
    else:
        s.key = stable_key
        if not resume(s, stable_ckpt_dir, max_step=branch):
            log.warning("no stable checkpoint at or before step %d in %s: training the stable phase from scratch",
                        branch, stable_ckpt_dir)
        start = s.step
    if start is None:  # resumed inside its own cooldown
        start = json.loads((own / "branched_from.json").read_text())["step"] if (own / "branched_from.json").exists() else branch
        return _cool_down(s, cfg, branch, start, own, out_dir, extra_info)
    if s.step < branch:  # a budget added later: train on at the constant rate from the nearest checkpoint
        stable_evals = set(cfg.eval_steps()) | {branch}
        if stable_cfg is not None:  # the stable run's evaluation steps up to its end, this budget's beyond it
            stable_evals = ({k for k in stable_cfg.eval_steps() if k <= stable_cfg.total_steps}
                            | {k for k in stable_evals if k > stable_cfg.total_steps} | {branch})
        train_until(s, branch, {k for k in stable_evals if k <= branch}, "stable")
        if _any_rank(s, s.status == "ok"):  # leave the branch for later budgets too (adds a file, deletes none)
            save_checkpoint(s, stable_ckpt_dir, keep=None)
    s.rows = [r for r in s.rows if r["step"] <= branch]
    if not s.rows or s.rows[-1]["step"] != branch:
        eval_row(s, "stable")
    s.key = cooldown_key
    if s.writes:
        own.mkdir(parents=True, exist_ok=True)
        write_json(own / "branched_from.json", {"step": start})
    return _cool_down(s, cfg, branch, start, own, out_dir, extra_info)


def cooldown_suffix(cfg: TrainConfig) -> str:
    """What a cooldown's trajectory adds to its stable run's: where it branches and how it decays."""
    import hashlib

    fields = [cfg.tokens, cfg.cooldown_fraction, cfg.cooldown_shape, cfg.final_lr_ratio]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:8]


def _cool_down(s: Session, cfg: TrainConfig, branch: int, start: int, own: Path, out_dir, extra_info) -> dict:
    n = cfg.total_steps - branch
    cool_evals = {branch + max(1, round(n * q)) for q in (0.25, 0.5, 0.75)} | {cfg.total_steps}
    train_until(s, cfg.total_steps, cool_evals, "cooldown", own)
    info = write_outputs(s, out_dir, {**(extra_info or {}), "branch_tokens": branch * cfg.tokens_per_step,
                                      "branched_from_step": start})
    if s.writes:
        (own / "branched_from.json").unlink(missing_ok=True)
    _clear(s, own)
    return info
