"""Accounted training FLOPs (models/accounting.py) agree with measured ones within 10%."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from model_test_helpers import ALL, STUDY_CTX
from models import get_variant, resolve_size
from models.flop_measure import measure_training_step

BATCH = 8
aten = torch.ops.aten


def _build(name, preset):
    v = get_variant(name)
    size = resolve_size(v, preset, STUDY_CTX)
    torch.manual_seed(0)
    return v, size, v.build(size, STUDY_CTX)


def _batch():
    return torch.randint(4, STUDY_CTX.vocab_size, (BATCH, STUDY_CTX.seq_len), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("preset", ["s", "l"])
@pytest.mark.parametrize("name", ALL)
def test_accounted_training_flops_match_measured(name, preset):
    v, size, model = _build(name, preset)
    x = _batch()
    measured = measure_training_step(model, x, torch.Generator().manual_seed(0))
    assert not measured.uncharged
    accounted = v.account(size, STUDY_CTX).flops(x.numel())
    ratio = measured.total / accounted
    print(f"{name:15s} {preset}: measured / accounted = {ratio:.3f}")
    assert 0.9 <= ratio <= 1.1, (name, preset, ratio, dict(measured.by_op))


def _flash_cpu(q, k, v, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(q, k, v)


def _flash_cpu_backward(grad_out, q, k, v, *args, out_shape=None, **kwargs):
    return sdpa_backward_flop_count(grad_out, q, k, v)


@pytest.mark.parametrize("name", ["gpt2", "bert_causal", "transformer_xl"])
def test_counter_agrees_with_torch_flop_counter(name):
    """Where FlopCounterMode works (not Reformer's reversible layers), it counts what ours does."""
    _, _, model = _build(name, "s")
    x = _batch()
    ours = measure_training_step(model, x).total
    mapping = {
        aten._scaled_dot_product_flash_attention_for_cpu: _flash_cpu,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _flash_cpu_backward,
    }
    model.train()
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        model.training_loss(x).backward()
    assert counter.get_total_flops() == ours


def test_reversible_recompute_is_measured_and_accounted():
    v, size, model = _build("reformer", "s")
    acc = v.account(size, STUDY_CTX)
    assert acc.recompute_flops_per_token > 0
    assert acc.train_flops_per_token == pytest.approx(3 * acc.forward_flops_per_token + acc.recompute_flops_per_token)
