"""BERT masking statistics (bert_mlm and ELECTRA's generator) and ELECTRA's sharing."""
from __future__ import annotations

import pytest
import torch

from model_test_helpers import build, train
from models.masking import IGNORE_INDEX, special_ids


@pytest.mark.parametrize("name", ["bert_mlm", "electra"])
def test_masking_statistics(name, ctx, token_stream):
    model = build(name, ctx)
    x = token_stream["train"][: 400 * 64].view(400, 64)  # 25.6k real tokens with [EOS] specials
    specials = torch.tensor(special_ids(ctx))
    assert torch.isin(x, specials).any()
    corrupted, labels = model.mask(x, torch.Generator().manual_seed(0))
    selected = labels != IGNORE_INDEX
    maskable = ~torch.isin(x, specials)
    assert not (selected & ~maskable).any()  # special tokens are never masked
    assert torch.equal(labels[selected], x[selected])
    rate = selected.sum().item() / maskable.sum().item()
    assert abs(rate - 0.15) < 0.01, rate
    n = selected.sum().item()
    as_mask = (corrupted[selected] == ctx.mask_id).sum().item() / n
    unchanged = (corrupted[selected] == x[selected]).sum().item() / n
    random = 1 - as_mask - unchanged
    assert abs(as_mask - 0.8) < 0.03 and abs(random - 0.1) < 0.02 and abs(unchanged - 0.1) < 0.02, \
        (as_mask, random, unchanged)
    assert not torch.isin(corrupted[selected & (corrupted != ctx.mask_id)], specials).any()  # random ones
    assert torch.equal(corrupted[~selected], x[~selected])


@pytest.mark.parametrize("name", ["bert_mlm", "electra"])
def test_masks_are_dynamic_in_training_and_fixed_given_the_seed(name, ctx, batches):
    model = build(name, ctx)
    x = batches("train", batch=8, seed=0)
    g = torch.Generator().manual_seed(5)
    first, second = model.mask(x, g)[1], model.mask(x, g)[1]
    assert not torch.equal(first, second)  # the generator advances: a new mask each step
    again = model.mask(x, torch.Generator().manual_seed(5))[1]
    assert torch.equal(first, again)


def test_electra_embeddings_stay_shared_after_optimiser_steps(ctx, batches):
    model = build("electra", ctx)
    gen, disc = model.generator, model.discriminator
    word = disc.electra.embeddings.word_embeddings.weight
    before = word.detach().clone()
    train(model, batches, steps=3)
    assert gen.electra.embeddings is disc.electra.embeddings
    assert gen.electra.embeddings.word_embeddings.weight is word
    assert gen.generator_lm_head.weight is word
    assert torch.equal(gen.generator_lm_head.weight, disc.electra.embeddings.word_embeddings.weight)
    assert not torch.equal(before, word.detach())  # it was trained
    assert sum(p is word for p in model.unique_parameters()) == 1


def test_electra_replacements_carry_no_gradient(ctx, batches):
    model = build("electra", ctx)
    mlm, rtd = model._losses(batches("train", batch=8, seed=0), torch.Generator().manual_seed(0))
    rtd.backward()
    gen_encoder = list(model.generator.electra.encoder.parameters()) + list(model.generator.generator_predictions.parameters())
    assert all(p.grad is None for p in gen_encoder)  # RTD does not train the generator
    assert any(p.grad is not None for p in model.discriminator.electra.encoder.parameters())
