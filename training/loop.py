"""The training loop: one run = one (variant, size, seed, learning rate).

AdamW with decoupled weight decay on matrices only; the learning rate is a pure function
of the step (linear warmup over `warmup_fraction` of the run's steps, then cosine decay to
`min_lr_ratio` x peak at the last step), so resuming needs no scheduler object. Warmup rule:
every size of a scan trains the same number of steps and so warms up over the same
`warmup_fraction` (default 2%, ~20 steps for 1M tokens): short enough that small models are
not held back, long enough to keep the largest stable.

Evaluation runs at `eval_points` log-spaced steps plus the last step, on a fixed
held-out token set; for masked objectives the masks come from a generator seeded per eval
batch, so every evaluation of every run sees the same masks.

Outputs (written atomically by `run`): `curve.csv` (one row per evaluation) and `run.json`.
A run whose loss turns non-finite or exceeds `diverge_factor` x the objective's chance-level
loss (ln(vocab) for causal and masked LMs; see `ArchModel.chance_loss`) stops with
status `diverged` and the step; its curve up to then is kept.
"""
from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import platform
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
from training.atomic import write_json, write_text
from training.data import check_corpus_size, eval_batches, train_batch
from training.device import autocast, device_name, pick_device, to_device
from training.errors import InputError
from training.tokenizer import load_tokens, read_meta

log = logging.getLogger(__name__)

SCHEDULES = ("cosine", "wsd")
COOLDOWN_SHAPES = ("1-sqrt", "linear", "cosine")
CURVE_COLUMNS = [
    "step", "tokens", "flops_6n", "flops", "params_total", "params_nonembedding",
    "train_loss", "eval_loss", "eval_loss_se", "lr", "elapsed_s", "warmup_tokens",
]


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
    compile: bool = False
    checkpoint_every: int = 100
    diverge_factor: float = 2.0
    seed: int = 0
    # schedule: "cosine" (warmup, cosine decay to min_lr_ratio over the whole run) or "wsd"
    # (warmup over warmup_tokens, constant, then a cooldown over the last cooldown_fraction of the run)
    schedule: str = "cosine"
    warmup_tokens: int | None = None  # wsd: warmup length in tokens, the same for every budget
    cooldown_fraction: float = 0.2
    cooldown_shape: str = "1-sqrt"
    final_lr_ratio: float = 0.0  # wsd: the cooldown ends at this fraction of the peak

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
            return min(self.total_steps, self.warmup_tokens // self.tokens_per_step)
        return int(round(self.warmup_fraction * self.total_steps))

    @property
    def cooldown_start(self) -> int:
        """wsd: the last step at the constant rate (the stable phase's end, where cooldowns branch)."""
        if self.schedule != "wsd":
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


@torch.no_grad()
def eval_metrics(model, batches, device) -> dict[str, tuple[float, float]]:
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
        result[name] = (float(values.mean()), se)
    return result


def evaluate(model, batches, device, seed: int | None = None) -> tuple[float, float]:
    """Mean eval loss over the fixed evaluation batches and its standard error across
    batches. `seed` is not used (the evaluation set is fixed for every run and seed); it
    stays for existing callers."""
    return eval_metrics(model, batches, device)["loss"]


def run(
    variant: str,
    size_name: str,
    size_overrides: dict,
    cfg: TrainConfig,
    data_dir,
    out_dir,
    ckpt_dir=None,
    threads: int = 1,
    extra_info: dict | None = None,
    fault_nan_step: int | None = None,
) -> dict:
    """Train one run, write `curve.csv` and `run.json` into out_dir, return the run info."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    ckpt_dir = Path(ckpt_dir) if ckpt_dir else out_dir / "checkpoints"
    torch.set_num_threads(threads)
    meta = read_meta(data_dir / "meta.json")
    spec = models.get_variant(variant)
    ctx = ModelContext(
        vocab_size=meta["vocab_size"], seq_len=cfg.seq_len,
        bos_id=meta["bos_id"], eos_id=meta["eos_id"], pad_id=meta["pad_id"], mask_id=meta["mask_id"],
    )
    size = resolve_size(spec, size_name, ctx, **size_overrides)
    train_tokens = load_tokens(data_dir / "train.npy", meta, "train")
    val_tokens = load_tokens(data_dir / "val.npy", meta, "val")
    check_corpus_size(len(train_tokens), len(val_tokens), cfg.seq_len, cfg.tokens, cfg.eval_tokens)

    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = spec.build(size, ctx).to(device)
    account = spec.account(size, ctx)
    if account.params_total != model.get_num_params(non_embedding=False):
        raise RuntimeError(f"{variant}: accounted params {account.params_total} != model's {model.get_num_params(False)}")
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    loss_fn = torch.compile(model.training_loss) if cfg.compile else model.training_loss
    evals = evalset.batches_for(val_tokens, train_tokens, ctx, cfg.eval_tokens, cfg.eval_batch_size)
    eval_at = set(cfg.eval_steps())
    tokens_per_step = cfg.batch_size * cfg.seq_len

    step, rows, elapsed0, acc = 0, [], 0.0, [0.0, 0]
    status, diverged_step = "ok", None
    resumed = checkpoint.load_latest(ckpt_dir)
    if resumed is not None:
        tensors, state = resumed
        checkpoint.restore_tensors(tensors, model, optimizer, generator)
        step, rows, elapsed0, acc = state["step"], state["rows"], state["elapsed_s"], state["acc"]
        log.info("resumed from checkpoint at step %d", step)

    threshold = cfg.diverge_factor * model.chance_loss()
    bar = tqdm(total=cfg.total_steps * tokens_per_step, initial=step * tokens_per_step, unit="tok", unit_scale=True,
               file=sys.stderr, mininterval=10, ascii=True, desc=f"{variant}/{size_name}")
    t0 = time.perf_counter() - elapsed0
    model.train()
    while step < cfg.total_steps:
        step += 1
        lr = cfg.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = to_device(train_batch(train_tokens, step, cfg.batch_size, cfg.seq_len, cfg.seed), device)
        with autocast(device):
            loss = loss_fn(batch, generator)
        if fault_nan_step is not None and step == fault_nan_step:
            loss = loss * float("nan")
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value) or loss_value > threshold:
            status, diverged_step = "diverged", step
            log.warning("run diverged at step %d (loss %s, threshold %.2f)", step, loss_value, threshold)
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.unique_parameters(), cfg.grad_clip)
        optimizer.step()
        acc = [acc[0] + loss_value, acc[1] + 1]
        bar.update(tokens_per_step)
        if step in eval_at:
            eval_loss, eval_se = evaluate(model, evals, device, cfg.seed)
            tokens = step * tokens_per_step
            rows.append({
                "step": step, "tokens": tokens, "flops_6n": account.flops_6n(tokens), "flops": account.flops(tokens),
                "params_total": account.params_total, "params_nonembedding": account.params_nonembedding,
                "train_loss": acc[0] / acc[1], "eval_loss": eval_loss, "eval_loss_se": eval_se, "lr": lr,
                "elapsed_s": round(time.perf_counter() - t0, 3), "warmup_tokens": cfg.warmup_steps * tokens_per_step,
            })
            acc = [0.0, 0]
            bar.set_postfix(eval_loss=f"{eval_loss:.3f}", refresh=False)
        if step % cfg.checkpoint_every == 0 and step < cfg.total_steps:
            checkpoint.save(ckpt_dir, step, checkpoint.collect_tensors(model, optimizer, generator),
                            {"rows": rows, "elapsed_s": time.perf_counter() - t0, "acc": acc})
    bar.close()

    leak = model.causal_leak(evals[0][:2].to(device)) if status == "ok" else None
    info = {
        "variant": variant, "objective": spec.objective, "size": size_name, "size_config": size.as_dict(),
        "seed": cfg.seed, "lr": cfg.lr, "train_config": dataclasses.asdict(cfg),
        "status": status, "diverged_step": diverged_step, "steps_done": step,
        "params_total": account.params_total, "params_nonembedding": account.params_nonembedding,
        "train_flops_per_token": account.train_flops_per_token, "accounting_notes": account.notes,
        "causal_leak": leak, "resumed": resumed is not None,
        "device": device_name(device), "device_type": device.type, "threads": threads,
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "python": platform.python_version(), "corpus_sha256": meta["corpus_sha256"],
        "tokenizer_sha256": meta["tokenizer_sha256"], "model_source_sha256": spec.source_hash(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "elapsed_s": round(time.perf_counter() - t0, 3),
        **(extra_info or {}),
    }
    buf = io.StringIO()
    pd.DataFrame(rows, columns=CURVE_COLUMNS).to_csv(buf, index=False)
    write_text(out_dir / "curve.csv", buf.getvalue())
    write_json(out_dir / "run.json", info)
    checkpoint.clear(ckpt_dir)
    return info
