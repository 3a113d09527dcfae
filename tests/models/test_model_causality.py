"""Causal variants: logits at positions <= t do not depend on tokens after t (exactly), and
Reformer's LSH leak is measured, not hidden."""
from __future__ import annotations

import pytest
import torch

from model_test_helpers import CAUSAL, build, train


def _perturb_after(x: torch.Tensor, t: int, vocab: int) -> torch.Tensor:
    y = x.clone()
    y[:, t + 1:] = (x[:, t + 1:] * 7 + 11) % vocab  # every later token changes
    assert (y[:, t + 1:] != x[:, t + 1:]).all()
    return y


@pytest.mark.parametrize("name", CAUSAL)
def test_future_tokens_do_not_change_past_logits(name, ctx, batches):
    fields = {"attn_layers": ("local",)} if name == "reformer" else {}  # LSH leaks: next test
    model = build(name, ctx, **fields)
    train(model, batches, steps=3)  # move off the initialisation
    model.eval()
    x = batches("eval", batch=4, seed=3)
    for t in (5, 31, 40):  # inside the first segment / chunk, at a boundary, in the second
        y = _perturb_after(x, t, ctx.vocab_size)
        with torch.no_grad():
            a, b = model.logits(x), model.logits(y)
        assert torch.equal(a[:, : t + 1], b[:, : t + 1]), (name, t, (a[:, : t + 1] - b[:, : t + 1]).abs().max())
        assert not torch.equal(a[:, t + 1:], b[:, t + 1:])  # the later logits do change


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_leak_probe(name, ctx, batches):
    x = batches("eval", batch=4, seed=4)
    if name != "reformer":
        assert build(name, ctx).causal_leak(x) is None  # exactly causal by construction
        return
    assert build(name, ctx, attn_layers=("local",)).causal_leak(x) == 0.0
    leak = build(name, ctx, attn_layers=("lsh",)).causal_leak(x)
    print(f"reformer lsh-only leak at init: {leak:.2e}")
    assert leak > 0.0  # causal LSH attention sees future tokens through the bucket sort
    default = build(name, ctx)  # local + lsh
    assert default.causal_leak(x) > 0.0
    assert default.causal_leak(x) == default.causal_leak(x)  # fixed evaluation hash seed


def test_reformer_leaves_global_rng_alone(ctx, batches):
    model = build("reformer", ctx)
    x = batches("train", batch=4, seed=0)
    state = torch.get_rng_state()
    model.train()
    model.training_loss(x, torch.Generator().manual_seed(0)).backward()
    with torch.no_grad():
        model.eval()
        model.eval_loss(x)
        model.causal_leak(x)
    assert torch.equal(state, torch.get_rng_state())


def test_reformer_training_hashes_follow_the_generator(ctx, batches):
    model = build("reformer", ctx, attn_layers=("lsh",))
    model.train()
    x = batches("train", batch=4, seed=0)
    with torch.no_grad():
        a = model.training_loss(x, torch.Generator().manual_seed(1))
        b = model.training_loss(x, torch.Generator().manual_seed(1))
        c = model.training_loss(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # a different hash per generator state
