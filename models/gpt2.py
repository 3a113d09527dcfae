"""GPT-2 (causal LM) from Hugging Face `transformers`, randomly initialised from a config."""
from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from models import accounting, presets
from models.base import ArchModel
from models.registry import ModelContext, Size, Variant, register

# the shared size ladder (models/presets.py)
PRESETS = presets.ladder()


class GPT2(ArchModel):
    objective = "causal"

    def __init__(self, size: Size, ctx: ModelContext):
        super().__init__(size, ctx)
        config = GPT2Config(
            vocab_size=ctx.vocab_size,
            n_positions=ctx.seq_len,
            n_embd=size.d_model,
            n_layer=size.n_layer,
            n_head=size.n_head,
            n_inner=size.d_ff,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            bos_token_id=ctx.bos_id,
            eos_token_id=ctx.eos_id,
            pad_token_id=ctx.pad_id,
            tie_word_embeddings=True,
        )
        config._attn_implementation = "sdpa"
        self.hf = GPT2LMHeadModel(config)

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=input_ids).logits  # (B, T, V)

    def training_loss(self, input_ids, generator=None):
        return self.hf(input_ids=input_ids, labels=input_ids).loss  # shifted inside HF

    def embedding_parameters(self):
        return [self.hf.transformer.wte.weight, self.hf.transformer.wpe.weight]


register(Variant(
    name="gpt2",
    objective="causal",
    build=GPT2,
    presets=PRESETS,
    source_file=__file__,
    description="GPT-2 decoder (transformers.GPT2LMHeadModel, SDPA attention, tied head)",
    account=accounting.gpt2,
))
