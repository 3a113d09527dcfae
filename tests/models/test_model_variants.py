"""Every variant: registered, builds, learns on real text, counts its parameters right,
evaluates deterministically."""
from __future__ import annotations

import pytest
import torch

from model_test_helpers import ALL, STUDY_CTX, build, eval_loss, train
from models import VARIANT_MODULES, get_variant, resolve_size, variant_names


def test_every_registered_variant_has_test_entries():
    """The tests run over the registry; each variant needs its small test shape and its hand count."""
    from model_test_helpers import SMALL

    registered = set(variant_names())
    assert registered == set(ALL)
    assert not registered - set(SMALL), f"add a test shape to SMALL for {sorted(registered - set(SMALL))}"
    assert not registered - set(HAND), f"add a hand parameter count to HAND for {sorted(registered - set(HAND))}"
    assert {get_variant(n).source_file.split("/")[-1][:-3] for n in registered} <= set(VARIANT_MODULES)
    objectives = {n: get_variant(n).objective for n in ALL}
    assert objectives == {
        "gpt2": "causal", "transformer_xl": "causal", "bert_causal": "causal", "reformer": "causal",
        "reformer_hf": "causal",
        "bert_mlm": "masked", "electra": "rtd",
    }


@pytest.mark.parametrize("name", ALL)
def test_presets_resolve_and_check(name):
    v = get_variant(name)
    assert {"xs", "s", "m", "l"} <= set(v.presets)
    for preset in v.presets:
        resolve_size(v, preset, STUDY_CTX)  # runs the variant's check


@pytest.mark.parametrize("name", ALL)
def test_thirty_steps_lower_the_loss(name, ctx, batches):
    model = build(name, ctx)
    before = eval_loss(model, batches)
    losses = train(model, batches, steps=30, lr=3e-3)
    after = eval_loss(model, batches)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert after < before - 0.1, (name, before, after)


@pytest.mark.parametrize("name", ALL)
def test_eval_loss_is_deterministic_given_the_generator(name, ctx, batches):
    model = build(name, ctx)
    model.eval()
    x = batches("eval", batch=4, seed=0)
    with torch.no_grad():
        a = model.eval_loss(x, torch.Generator().manual_seed(7))
        b = model.eval_loss(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ALL)
def test_unique_parameters_deduplicated(name, ctx):
    model = build(name, ctx)
    params = model.unique_parameters()
    assert len({id(p) for p in params}) == len(params)
    assert sum(p.numel() for p in params) == model.get_num_params(non_embedding=False)


# Hand counts for the `xs` preset at the study context (vocab 2048, context 128); every
# term written out so the accounting code is checked against arithmetic, not itself.
V, T = 2048, 128
HAND: dict = {
    # wte, wpe | 2 x (ln_1, c_attn, c_proj, ln_2, c_fc, mlp c_proj) | ln_f
    "gpt2": (V * 32 + T * 32,
             2 * (2 * 32 + (32 * 96 + 96) + (32 * 32 + 32) + 2 * 32 + (32 * 96 + 96) + (96 * 32 + 32)) + 2 * 32),
    # wte (tied head) | 2 x (ln_1, q, kv, r (no bias), o, u + v, ln_2, fc (d_ff 80), proj) | ln_f
    "transformer_xl": (V * 32,
                       2 * (2 * 32 + (32 * 32 + 32) + (32 * 64 + 64) + 32 * 32 + (32 * 32 + 32) + 2 * 2 * 16
                            + 2 * 32 + (32 * 80 + 80) + (80 * 32 + 32)) + 2 * 32),
    # word, position, token type | embedding LN, 2 x (q, k, v, o, LN, intermediate, output, LN),
    # head transform + LN + decoder bias (decoder weight tied); xs has d_ff = 96
    "bert_causal": (V * 32 + T * 32 + 1 * 32,
                    2 * 32 + 2 * (4 * (32 * 32 + 32) + 2 * 32 + (32 * 96 + 96) + (96 * 32 + 32) + 2 * 32)
                    + (32 * 32 + 32) + 2 * 32 + V),
    # rotary positions (RoFormer): no position table; the fixed T x head_dim (16) sinusoids count as embeddings
    "bert_mlm": (V * 32 + 1 * 32 + T * 16,
                 2 * 32 + 2 * (4 * (32 * 32 + 32) + 2 * 32 + (32 * 96 + 96) + (96 * 32 + 32) + 2 * 32)
                 + (32 * 32 + 32) + 2 * 32 + V),
    # d=32, d_ff=96: word, axial (8 x 8) + (16 x 24), untied head weight 2d x V | local layer
    # (LN, q k v o, ff LN, dense, out), lsh layer (LN, qk v o, ff), final LN over 2d, head bias V
    "reformer": (V * 32 + 8 * 8 + 16 * 24 + 2 * 32 * V,
                 (2 * 32 + 4 * 32 * 32 + 2 * 32 + (32 * 96 + 96) + (96 * 32 + 32))
                 + (2 * 32 + 3 * 32 * 32 + 2 * 32 + (32 * 96 + 96) + (96 * 32 + 32))
                 + 2 * 64 + V),
    # shared word, type, the two encoders' rotary sinusoids (T x head size: 16 discriminator, 8 generator) |
    # shared embedding LN; discriminator 2 x block (d_ff 96) + head (dense d x d, d -> 1); generator
    # (width 8, 1 head, d_ff 32): embeddings_project, 2 x block, predictions (8 -> 32 dense + LN),
    # LM head bias (weight tied)
    "electra": (V * 32 + 1 * 32 + T * 16 + T * 8,
                2 * 32
                + 2 * (4 * (32 * 32 + 32) + 2 * 32 + (32 * 96 + 96) + (96 * 32 + 32) + 2 * 32)
                + (32 * 32 + 32) + (32 + 1)
                + (32 * 8 + 8)
                + 2 * (4 * (8 * 8 + 8) + 2 * 8 + (8 * 32 + 32) + (32 * 8 + 8) + 2 * 8)
                + (8 * 32 + 32) + 2 * 32 + V),
}

HAND["reformer_hf"] = HAND["reformer"]  # the same model; only the LSH attention's computation differs


@pytest.mark.parametrize("name", ALL)
def test_parameter_count_matches_hand_count(name):
    v = get_variant(name)
    size = resolve_size(v, "xs", STUDY_CTX)
    model = v.build(size, STUDY_CTX)
    embeddings, nonemb = HAND[name]
    assert model.get_num_params(non_embedding=True) == nonemb
    assert model.get_num_params(non_embedding=False) == embeddings + nonemb
    acc = v.account(size, STUDY_CTX)
    assert (acc.params_total, acc.params_nonembedding) == (embeddings + nonemb, nonemb)


@pytest.mark.parametrize("name", ALL)
def test_initial_loss_is_on_the_chance_scale(name, ctx, batches):
    """chance_loss() gives the scale of each objective's loss at initialisation (ELECTRA's
    MLM + 50 x RTD starts near ln V + 50 ln 2, far above ln V)."""
    model = build(name, ctx)
    model.eval()
    with torch.no_grad():
        loss = model.eval_loss(batches("eval", batch=8, seed=0), torch.Generator().manual_seed(0)).item()
    assert 0.8 * model.chance_loss() < loss < 1.2 * model.chance_loss(), (loss, model.chance_loss())
