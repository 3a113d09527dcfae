"""Global batch, peak learning rate and warm-up as documented functions of model size.

Over the 300x range of a GPU size scan no published ladder keeps the batch or the rate fixed: a fixed
small batch leaves a GPU idle at the small sizes, and a fixed rate favours whichever variant tolerates
it, which is the comparison the study makes. `training.scale_by_size` gives the rule:

* `fixed` (the default, and the CPU study's): every size trains with `training.batch_size` sequences
  and the variant's rate (`variants.<v>.lr`, else `training.lr`), as before;
* `power`: a power law in the non-embedding parameters N around a reference point, by default the
  OLMo ladder's (allenai/OLMo `scripts/ladder.py`): a global batch of
  160 x (N / 108M)^(2/3) sequences of 2,048 tokens, i.e. 327,680 x (N / 108M)^(2/3) tokens, and a
  peak rate of 0.0047 x (N / 108M)^(-1/3). The batch is given in tokens so that it transfers across
  context lengths, rounded to whole sequences (and to a multiple of `batch_multiple` sequences, e.g.
  micro-batch x devices), at least one;
* `table`: `{size: {batch_size: sequences, lr: rate}}` for each size, as a published table gives them.

A size's `lr_grid` (a sweep) still wins over the rule's rate. The warm-up is `training.warmup_steps`
global batches when set (so that it scales with the batch: the same number of optimiser steps at
every size), else `training.wsd.warmup_tokens` as before. `check_phases` is the config check that
every run gets at least `training.min_phase_steps` optimiser steps of warm-up, stable phase and
cooldown.
"""
from __future__ import annotations

from dataclasses import dataclass

from training.errors import InputError

RULES = ("fixed", "power", "table")
OLMO_REFERENCE = {"reference_params": 108e6, "batch_tokens": 160 * 2048, "batch_exponent": 2 / 3,
                  "lr": 0.0047, "lr_exponent": -1 / 3}


@dataclass(frozen=True)
class SizeHparams:
    batch_size: int  # global batch, sequences
    lr: float  # peak rate
    warmup_tokens: int | None  # None: the schedule's own (cosine: warmup_fraction)

    def as_dict(self) -> dict:
        return {"batch_size": self.batch_size, "lr": self.lr, "warmup_tokens": self.warmup_tokens}


def size_hparams(tcfg: dict, variant_entry: dict, size: str, params_nonembedding: int) -> SizeHparams:
    """The batch, rate and warm-up of one size under the study's rule (`tcfg` is the config's training
    block, `variant_entry` the variant's block)."""
    rule = tcfg.get("scale_by_size") or {"rule": "fixed"}
    kind = rule.get("rule", "fixed")
    seq_len = tcfg["seq_len"]
    if kind == "fixed":
        batch, lr = tcfg["batch_size"], variant_entry.get("lr", tcfg["lr"])
    elif kind == "power":
        ref = {**OLMO_REFERENCE, **{k: v for k, v in rule.items() if k in OLMO_REFERENCE and v is not None}}
        x = params_nonembedding / ref["reference_params"]
        multiple = int(rule.get("batch_multiple") or 1)
        sequences = ref["batch_tokens"] * x ** ref["batch_exponent"] / seq_len
        batch = max(multiple, int(round(sequences / multiple)) * multiple)
        lr = ref["lr"] * x ** ref["lr_exponent"]
    elif kind == "table":
        row = (rule.get("table") or {}).get(size)
        if not row:
            raise InputError(f"training.scale_by_size.table has no entry for size {size!r}; give its batch_size and lr")
        batch, lr = int(row["batch_size"]), float(row["lr"])
    else:
        raise InputError(f"training.scale_by_size.rule={kind!r} is not allowed; allowed: {', '.join(RULES)}")
    steps = tcfg.get("warmup_steps")
    warmup = steps * batch * seq_len if steps is not None else (tcfg.get("wsd") or {}).get("warmup_tokens")
    return SizeHparams(batch_size=int(batch), lr=float(lr), warmup_tokens=warmup)


def phase_steps(cfg) -> dict:
    """Optimiser steps of a run's warm-up, stable phase and cooldown (a training.loop.TrainConfig)."""
    if cfg.schedule == "wsd":
        return {"warm-up": cfg.warmup_steps, "stable phase": cfg.cooldown_start - cfg.warmup_steps,
                "cooldown": cfg.total_steps - cfg.cooldown_start}
    return {"warm-up": cfg.warmup_steps, "decay": cfg.total_steps - cfg.warmup_steps}


def check_phases(cfg, run_id: str, minimum: int) -> None:
    """One line naming the run and the phase when a phase has fewer than `minimum` steps."""
    for phase, steps in phase_steps(cfg).items():
        if steps < minimum and not (phase == "warm-up" and steps == 0):  # no warm-up at all is a choice
            raise InputError(
                f"{run_id}: its {phase} has {steps} optimiser step(s) (batch {cfg.batch_size} x {cfg.seq_len}, "
                f"{cfg.tokens} tokens, warm-up {cfg.warmup_steps} steps), fewer than training.min_phase_steps="
                f"{minimum}: raise the budget, shorten the warm-up or lower the batch")
