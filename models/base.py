"""The interface every variant implements, so the training loop never branches on variant.

An `ArchModel` turns a batch of token ids (B, T) into a scalar training loss and a scalar
evaluation loss. What "loss" means depends on `objective`:
- causal: mean next-token cross-entropy (nats/token) over the T-1 predicted positions;
- masked: cross-entropy over the masked positions only (nats per masked token);
- rtd (ELECTRA): generator MLM loss + rtd_weight x replaced-token-detection BCE.
Randomness the objective needs (masks, sampled replacements) comes from the passed
`torch.Generator`, so evaluation is reproducible by passing a fixed-seed generator.

The training loop scores every run on one fixed evaluation set (training/evalset.py):
`fixed_eval_losses(batch)` gets a dict of (B, T) tensors (EVAL_FIELDS) holding the windows and
their fixed corruptions, and returns {"loss": the objective's eval loss, ...extras}:
- causal: next-token CE of `input_ids` (via `eval_loss`);
- masked: CE at the fixed masked positions of `mlm_input_ids` (`mlm_labels`);
- rtd: the discriminator's BCE on the fixed corrupted set (`rtd_input_ids`, `rtd_labels`),
  with the generator's CE on the masked set as the extra `generator_mlm_loss`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from models.registry import ModelContext, Size

# the fields of one fixed evaluation batch (training/evalset.py builds them), each (B, T) long
EVAL_FIELDS = ("input_ids", "mlm_input_ids", "mlm_labels", "rtd_input_ids", "rtd_labels")


class ArchModel(nn.Module):
    objective: str = "causal"

    def __init__(self, size: Size, ctx: ModelContext):
        super().__init__()
        self.size = size
        self.ctx = ctx

    # -- the two calls the training loop makes -------------------------------------------
    def training_loss(self, input_ids: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The training loss: what a wrapper that calls the module (DistributedDataParallel) computes."""
        return self.training_loss(input_ids, generator)

    def eval_loss(self, input_ids: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Loss on a held-out batch; by default the training loss without dropout/grad."""
        return self.training_loss(input_ids, generator)

    def fixed_eval_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Losses on one batch of the fixed evaluation set (EVAL_FIELDS -> (B, T) tensors):
        {"loss": scalar} plus any extra scalars the objective reports. Causal LMs score the
        plain windows; masked and rtd objectives override this to read the fixed corruptions."""
        return {"loss": self.eval_loss(batch["input_ids"])}

    # -- bookkeeping -------------------------------------------------------------------------
    def embedding_parameters(self) -> list[nn.Parameter]:
        """Token and position embedding tables (and an untied LM head's weight is NOT one)."""
        raise NotImplementedError

    def unique_parameters(self) -> list[nn.Parameter]:
        """Parameters de-duplicated by identity (tied weights counted once)."""
        seen, out = set(), []
        for p in self.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        return out

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameter count with tied weights counted once; non_embedding drops the
        token/position embedding tables (Kaplan et al.'s N)."""
        n = sum(p.numel() for p in self.unique_parameters())
        if non_embedding:
            n -= sum(p.numel() for p in {id(p): p for p in self.embedding_parameters()}.values())
        return n

    def causal_leak(self, input_ids: torch.Tensor) -> float | None:
        """Max |change| of logits at positions <= t when tokens after t change (causal
        variants that cannot guarantee causality measure it; others return None)."""
        return None

    def chance_loss(self) -> float:
        """The loss of a uniform guess under this objective, i.e. the scale of
        `training_loss` at initialisation: ln(vocab_size) for causal and masked LMs;
        objectives that add terms override it (ELECTRA: ln V + rtd_weight * ln 2).
        A divergence threshold should be a multiple of this, not of ln(vocab_size)."""
        return math.log(self.ctx.vocab_size)
