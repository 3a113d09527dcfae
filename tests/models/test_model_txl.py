"""Transformer-XL: memory is detached and it helps on real text."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from model_test_helpers import build, train


def test_no_gradient_flows_into_memory(ctx, batches):
    model = build("transformer_xl", ctx)
    x = batches("train", batch=4, seed=0)
    seg1, seg2 = x[:, :32], x[:, 32:]
    captured = {}
    handle = model.wte.register_forward_hook(lambda mod, inp, out: captured.setdefault("emb1", out))
    _, mems = model.forward_segment(seg1, model.init_mems(4))
    handle.remove()
    assert all(not m.requires_grad and m.grad_fn is None for m in mems)
    assert all(m.shape == (4, 32, 32) for m in mems)  # mem_len states of width d per layer
    logits2, _ = model.forward_segment(seg2, mems)
    loss2 = F.cross_entropy(logits2[:, :-1].reshape(-1, ctx.vocab_size), seg2[:, 1:].reshape(-1))
    emb1 = captured["emb1"]
    assert emb1.requires_grad  # segment 1's embeddings are on a graph ...
    (grad,) = torch.autograd.grad(loss2, emb1, allow_unused=True)
    assert grad is None  # ... that segment 2's loss does not reach


def test_memory_lowers_the_loss_of_the_next_segment(ctx, batches):
    model = build("transformer_xl", ctx, d_model=64, n_head=4, n_layer=2, seg_len=32, mem_len=32)
    train(model, batches, steps=150, lr=3e-3, batch=16)
    model.eval()
    with_mem, without_mem = [], []  # CE per position of segment 2, (n_batches, B, 31) each
    with torch.no_grad():
        for i in range(4):
            x = batches("eval", batch=16, seed=100 + i)
            seg1, seg2 = x[:, :32], x[:, 32:]
            _, mems = model.forward_segment(seg1, model.init_mems(x.size(0)))
            for mem, out in ((mems, with_mem), (model.init_mems(x.size(0)), without_mem)):
                logits, _ = model.forward_segment(seg2, mem)
                out.append(F.cross_entropy(logits[:, :-1].transpose(1, 2), seg2[:, 1:], reduction="none"))
    with_mem, without_mem = torch.stack(with_mem), torch.stack(without_mem)
    whole = with_mem.mean().item(), without_mem.mean().item()
    first8 = with_mem[..., :8].mean().item(), without_mem[..., :8].mean().item()
    print(f"TXL segment-2 loss with / without memory: all {whole[0]:.3f} / {whole[1]:.3f}, "
          f"first 8 positions {first8[0]:.3f} / {first8[1]:.3f}")
    assert whole[0] < whole[1], whole
    assert first8[0] < first8[1] - 0.05, first8  # memory matters most where the segment has little context


def test_training_walks_segments_with_memory(ctx, batches):
    """training_loss == the next-token CE of the segment walk carrying memory."""
    model = build("transformer_xl", ctx)
    model.eval()
    x = batches("eval", batch=2, seed=0)
    with torch.no_grad():
        mems, parts = model.init_mems(2), []
        for s in range(0, x.size(1), 32):
            logits, mems = model.forward_segment(x[:, s:s + 32], mems)
            parts.append(logits)
        logits = torch.cat(parts, 1)
        expected = F.cross_entropy(logits[:, :-1].reshape(-1, ctx.vocab_size), x[:, 1:].reshape(-1))
        assert torch.allclose(model.training_loss(x), expected)
        no_mem = build("transformer_xl", ctx, mem_len=0)
        no_mem.load_state_dict(model.state_dict())
        no_mem.eval()
        assert not torch.allclose(no_mem.training_loss(x), expected)  # memory changes the result
