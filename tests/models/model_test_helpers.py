"""Small shapes and a training helper for the model tests."""
from __future__ import annotations

import torch

from models import ModelContext, get_variant, resolve_size, variant_names

# a small size per variant (fast on one CPU thread; SEQ_LEN = 64 context from conftest)
SMALL = {
    "gpt2": dict(d_model=32, n_layer=2, n_head=2),
    "transformer_xl": dict(d_model=32, n_layer=2, n_head=2, seg_len=32, mem_len=32),
    "bert_causal": dict(d_model=32, n_layer=2, n_head=2),
    "bert_mlm": dict(d_model=32, n_layer=2, n_head=2),
    "reformer": dict(d_model=32, n_layer=2, n_head=2, lsh_chunk_length=16, local_chunk_length=16),  # 4 chunks
    "reformer_hf": dict(d_model=32, n_layer=2, n_head=2, lsh_chunk_length=16, local_chunk_length=16),
    "electra": dict(d_model=32, n_layer=2, n_head=2),
}
# every registered variant is tested: a new variant without an entry in SMALL fails its tests
# (KeyError in `build`) and test_every_registered_variant_has_test_entries names it
ALL = tuple(variant_names())
CAUSAL = tuple(n for n in ALL if get_variant(n).objective == "causal")

# the default study's context (params / FLOPs are quoted for it)
STUDY_CTX = ModelContext(vocab_size=2048, seq_len=128, pad_id=0, bos_id=1, eos_id=2, mask_id=3)


def build(name: str, ctx: ModelContext, seed: int = 0, **fields):
    variant = get_variant(name)
    size = resolve_size(variant, "custom", ctx, **{**SMALL[name], **fields})
    torch.manual_seed(seed)
    return variant.build(size, ctx)


def train(model, batches, steps: int, lr: float = 2e-3, batch: int = 8, seed: int = 0):
    """AdamW steps on fresh training batches; returns the losses."""
    model.train()
    opt = torch.optim.AdamW(model.unique_parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(steps):
        x = batches("train", batch=batch, seed=10_000 * seed + step)
        loss = model.training_loss(x, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def eval_loss(model, batches, n_batches: int = 2, batch: int = 8) -> float:
    model.eval()
    total = 0.0
    for i in range(n_batches):
        x = batches("eval", batch=batch, seed=i)
        total += model.eval_loss(x, torch.Generator().manual_seed(1234 + i)).item()
    model.train()
    return total / n_batches
