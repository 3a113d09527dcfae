"""Measure the FLOPs a model really executes, to check `models.accounting` against.

`MatmulFlopCounter` is a plain `TorchDispatchMode` that sees every aten op run on the
calling thread (forward, backward, and the recomputation inside Reformer's reversible
layers, where `torch.utils.flop_counter.FlopCounterMode` raises "Expected gradient
function to be set"). It charges the ops that carry >99% of a transformer's compute:

* mm, addmm, bmm, baddbmm (every nn.Linear, matmul and einsum lowers to these), with the
  formulas of `torch.utils.flop_counter` (2 FLOPs per multiply-add);
* CPU SDPA, `_scaled_dot_product_flash_attention_for_cpu` and its backward, which
  `FlopCounterMode` counts as 0 on CPU: 4*B*H*Tq*Tk*D forward (QK^T + AV over the full
  Tq x Tk matrix, as torch's own `sdpa_flop_count`) and torch's `sdpa_backward_flop_count`
  (2x forward) backward; the other SDPA backends use the formulas torch registers.

Elementwise ops, softmax, norms and the optimiser are not charged, as in the accounting.

    counter = measure_training_step(model, input_ids, generator)
    counter.total, counter.by_op
"""
from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import (
    addmm_flop,
    baddbmm_flop,
    bmm_flop,
    mm_flop,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

aten = torch.ops.aten


def _shape(x):
    return tuple(x.shape) if isinstance(x, torch.Tensor) else x


def _sdpa_cpu_fwd(args, kwargs, out):
    q, k, v = (_shape(a) for a in args[:3])
    return sdpa_flop_count(q, k, v)


def _sdpa_cpu_bwd(args, kwargs, out):
    grad_out, q, k, v = (_shape(a) for a in args[:4])
    return sdpa_backward_flop_count(grad_out, q, k, v)


def _sdpa_generic_fwd(args, kwargs, out):  # math/efficient/flash entry points: (q, k, v, ...)
    q, k, v = (_shape(a) for a in args[:3])
    return sdpa_flop_count(q, k, v)


def _sdpa_generic_bwd(args, kwargs, out):  # (grad_out, q, k, v, ...)
    grad_out, q, k, v = (_shape(a) for a in args[:4])
    return sdpa_backward_flop_count(grad_out, q, k, v)


def _mm(args, kwargs, out):
    return mm_flop(_shape(args[0]), _shape(args[1]))


def _addmm(args, kwargs, out):
    return addmm_flop(_shape(args[0]), _shape(args[1]), _shape(args[2]))


def _bmm(args, kwargs, out):
    return bmm_flop(_shape(args[0]), _shape(args[1]))


def _baddbmm(args, kwargs, out):
    return baddbmm_flop(_shape(args[0]), _shape(args[1]), _shape(args[2]))


FORMULAS = {
    aten.mm.default: _mm,
    aten.addmm.default: _addmm,
    aten.bmm.default: _bmm,
    aten.baddbmm.default: _baddbmm,
    aten._scaled_dot_product_flash_attention_for_cpu.default: _sdpa_cpu_fwd,
    aten._scaled_dot_product_flash_attention_for_cpu_backward.default: _sdpa_cpu_bwd,
    aten._scaled_dot_product_efficient_attention.default: _sdpa_generic_fwd,
    aten._scaled_dot_product_efficient_attention_backward.default: _sdpa_generic_bwd,
    aten._scaled_dot_product_flash_attention.default: _sdpa_generic_fwd,
    aten._scaled_dot_product_flash_attention_backward.default: _sdpa_generic_bwd,
}

# ops that would carry FLOPs this counter does not charge; seeing one is a bug to fix here
_UNCHARGED_HEAVY = {aten.convolution.default, aten.convolution_backward.default, aten._scaled_mm.default}


class MatmulFlopCounter(TorchDispatchMode):
    """Counts matmul and attention FLOPs of everything run inside `with MatmulFlopCounter():`."""

    def __init__(self):
        super().__init__()
        self.by_op: Counter = Counter()
        self.uncharged: Counter = Counter()

    @property
    def total(self) -> int:
        return int(sum(self.by_op.values()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = FORMULAS.get(func)
        if formula is not None:
            self.by_op[str(func.overloadpacket.__name__)] += int(formula(args, kwargs, out))
        elif func in _UNCHARGED_HEAVY:
            self.uncharged[str(func)] += 1
        return out


def measure_training_step(model, input_ids: torch.Tensor, generator: torch.Generator | None = None) -> MatmulFlopCounter:
    """FLOPs of one training step's forward + backward (no optimiser) of an ArchModel."""
    model.train()
    model.zero_grad(set_to_none=True)
    counter = MatmulFlopCounter()
    with counter:
        loss = model.training_loss(input_ids, generator)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter


def measure_forward(model, input_ids: torch.Tensor, generator: torch.Generator | None = None) -> MatmulFlopCounter:
    """FLOPs of one evaluation forward pass of an ArchModel."""
    model.eval()
    counter = MatmulFlopCounter()
    with torch.no_grad(), counter:
        model.eval_loss(input_ids, generator)
    return counter
