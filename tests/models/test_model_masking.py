"""BERT masking statistics (bert_mlm and ELECTRA's generator) and ELECTRA's sharing."""
from __future__ import annotations

import math

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
    assert abs(rate - model.mask_prob) < 0.01, rate  # the variant's training rate (bert_mlm 0.4, ELECTRA 0.15)
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


@pytest.mark.parametrize("position", ["absolute", "rotary"])
def test_electra_embeddings_stay_shared_after_optimiser_steps(position, ctx, batches):
    model = build("electra", ctx, position=position)
    word = model.disc_encoder.embeddings.word_embeddings.weight
    before = word.detach().clone()
    train(model, batches, steps=3)
    assert model.gen_encoder.embeddings is model.disc_encoder.embeddings
    assert model.gen_encoder.embeddings.word_embeddings.weight is word
    assert model.gen_head.decoder.weight is word  # the generator's LM head is the shared table
    assert not torch.equal(before, word.detach())  # it was trained
    assert sum(p is word for p in model.unique_parameters()) == 1


@pytest.mark.parametrize("position", ["absolute", "rotary"])
def test_electra_replacements_carry_no_gradient(position, ctx, batches):
    model = build("electra", ctx, position=position)
    mlm, rtd = model._losses(batches("train", batch=8, seed=0), torch.Generator().manual_seed(0))
    rtd.backward()
    gen_only = list(model.gen_encoder.encoder.parameters()) + list(model.gen_head.parameters())
    assert all(p.grad is None for p in gen_only if p is not model.word_embeddings())  # RTD does not train the generator
    assert any(p.grad is not None for p in model.disc_encoder.encoder.parameters())


def _fixed_batch(x, ctx, seed=0):
    """A fixed-evaluation batch like training/evalset.py's: 15% all-[MASK], unigram-ish replacements."""
    g = torch.Generator().manual_seed(seed)
    specials = torch.tensor(special_ids(ctx))
    selected = (torch.rand(x.shape, generator=g) < 0.15) & ~torch.isin(x, specials)
    replacement = torch.randint(4, ctx.vocab_size, x.shape, generator=g)
    rtd = torch.where(selected, replacement, x)
    labels = torch.where(torch.isin(x, specials), IGNORE_INDEX, (rtd != x).long())
    return {"input_ids": x, "mlm_input_ids": torch.where(selected, ctx.mask_id, x),
            "mlm_labels": torch.where(selected, x, IGNORE_INDEX), "rtd_input_ids": rtd, "rtd_labels": labels}


@pytest.mark.parametrize("fields", [dict(position="rotary"), dict(position="absolute", norm="post"),
                                    dict(position="absolute", norm="pre")])
def test_bert_mlm_fixed_eval_is_the_cross_entropy_at_the_fixed_mask(fields, ctx, batches):
    model = build("bert_mlm", ctx, mask_prob=0.4, **fields).eval()
    batch = _fixed_batch(batches("eval", batch=4, seed=1), ctx)
    with torch.no_grad():
        loss = model.fixed_eval_losses(batch)["loss"]
        positions = {} if model.rotary else {"position_ids": torch.arange(ctx.seq_len).expand(4, -1)}
        logits = model.hf(input_ids=batch["mlm_input_ids"], **positions).logits  # (B, T, V) full head
    selected = batch["mlm_labels"] != IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(logits[selected], batch["mlm_labels"][selected])
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)


def test_bert_mlm_training_masking_rate_is_a_size_field(ctx, token_stream):
    x = token_stream["train"][: 200 * 64].view(200, 64)
    maskable = ~torch.isin(x, torch.tensor(special_ids(ctx)))
    for rate in (0.15, 0.4):
        model = build("bert_mlm", ctx, mask_prob=rate, p_mask=1.0)
        corrupted, labels = model.mask(x, torch.Generator().manual_seed(0))
        selected = labels != IGNORE_INDEX
        assert abs(selected.sum().item() / maskable.sum().item() - rate) < 0.01
        assert (corrupted[selected] == ctx.mask_id).all()  # p_mask = 1: every selected position is [MASK]


@pytest.mark.parametrize("position", ["absolute", "rotary"])
def test_electra_fixed_eval_scores_the_discriminator_and_reports_the_generator(position, ctx, batches):
    model = build("electra", ctx, position=position).eval()
    batch = _fixed_batch(batches("eval", batch=4, seed=2), ctx)
    with torch.no_grad():
        out = model.fixed_eval_losses(batch)
        logits = model.discriminator_logits(batch["rtd_input_ids"])
    scored = batch["rtd_labels"] != IGNORE_INDEX
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[scored], batch["rtd_labels"][scored].float())
    torch.testing.assert_close(out["loss"], expected)
    assert 0.5 < out["loss"].item() < 0.9  # an untrained discriminator says ~1/2: BCE ~ ln 2
    assert abs(out["generator_mlm_loss"].item() - math.log(ctx.vocab_size)) < 0.5


def test_electra_discriminator_sees_samples_at_replace_prob(ctx, token_stream, monkeypatch):
    """mask_prob sets the generator's mask; replace_prob the share of positions the discriminator sees replaced."""
    model = build("electra", ctx, position="rotary", mask_prob=0.4, replace_prob=0.1)
    x = token_stream["train"][: 64 * 64].view(64, 64)
    seen = {}
    original = model.discriminator_logits

    def spy(fake):
        seen["fake"] = fake
        return original(fake)

    monkeypatch.setattr(model, "discriminator_logits", spy)
    with torch.no_grad():
        model._losses(x, torch.Generator().manual_seed(0))
    maskable = ~torch.isin(x, torch.tensor(special_ids(ctx)))
    changed = (seen["fake"] != x).sum().item() / maskable.sum().item()
    assert 0.07 < changed <= 0.11, changed  # ~10% (a sample that hits the original counts as original)


def test_electra_tied_encoder_is_one_encoder_trained_by_both_losses(ctx, batches):
    model = build("electra", ctx, position="rotary", gen_divisor=1, tie_encoder=True)
    assert model.gen_encoder is model.disc_encoder
    mlm, _ = model._losses(batches("train", batch=8, seed=0), torch.Generator().manual_seed(0))
    mlm.backward()  # the generator's MLM alone reaches the (shared) encoder
    assert all(p.grad is not None for p in model.disc_encoder.encoder.parameters() if p.requires_grad)
