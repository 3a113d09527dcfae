"""BERT-style dynamic masking, shared by `bert_mlm` and ELECTRA's generator.

`mask_tokens` picks `mask_prob` (15%) of the non-special positions of a batch; of those, 80%
become `[MASK]`, 10% a random non-special token, 10% stay unchanged (Devlin et al., 2019).
Every random draw comes from the passed `torch.Generator`, so training masks are dynamic
(a new mask each step, as the generator advances) and an evaluation batch gets the same
mask every time the loop passes it a generator with the same seed.
"""
from __future__ import annotations

import torch

IGNORE_INDEX = -100  # label of positions that are not predicted (torch cross_entropy default)


def special_ids(ctx) -> list[int]:
    """Token ids that are never masked nor sampled as random replacements."""
    return sorted({ctx.bos_id, ctx.eos_id, ctx.pad_id, ctx.mask_id})


def mask_tokens(
    input_ids: torch.Tensor,  # (B, T) long
    ctx,
    generator: torch.Generator | None,
    mask_prob: float = 0.15,
    p_mask: float = 0.8,
    p_random: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (corrupted input ids (B, T), labels (B, T) with IGNORE_INDEX where not masked)."""
    device = input_ids.device
    specials = torch.tensor(special_ids(ctx), device=device)
    maskable = ~torch.isin(input_ids, specials)  # (B, T) bool

    # which positions are predicted: Bernoulli(mask_prob) over the maskable positions
    u = torch.rand(input_ids.shape, generator=generator, device=device)
    selected = (u < mask_prob) & maskable  # (B, T)
    if not selected.any() and maskable.any():
        # tiny batches: predict at least one token so the loss is defined
        first = maskable.flatten().nonzero()[0]
        selected.view(-1)[first] = True

    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))

    # what a selected position shows: [MASK] (80%), a random token (10%), itself (10%)
    action = torch.rand(input_ids.shape, generator=generator, device=device)
    to_mask = selected & (action < p_mask)
    to_random = selected & (action >= p_mask) & (action < p_mask + p_random)

    allowed = torch.ones(ctx.vocab_size, dtype=torch.bool, device=device)
    allowed[specials] = False
    allowed_ids = allowed.nonzero().squeeze(1)  # (V',) non-special ids
    pick = torch.randint(len(allowed_ids), input_ids.shape, generator=generator, device=device)
    random_tokens = allowed_ids[pick]  # (B, T)

    corrupted = input_ids.clone()
    corrupted[to_mask] = ctx.mask_id
    corrupted[to_random] = random_tokens[to_random]
    return corrupted, labels
