"""Reformer with leak-free causal LSH attention (variant `reformer`).

The model is Hugging Face's `ReformerModelWithLMHead` exactly as in `reformer_hf`
(models/reformer_hf.py: reversible layers, axial positions, chunked local attention layers
alternating with LSH layers, untied 2d -> V head, the same sizes and parameters), with every
LSH self-attention module replaced by our own `CausalLSHSelfAttention`. Why our own: HF's
causal LSH attention sorts the sequence by bucket and attends within fixed chunks of the
sorted order, so which past keys a query sees depends on how *future* tokens hashed (they
shift the chunk boundaries): changing late tokens changes early logits (`reformer_hf`'s
`causal_leak` reads 0.07-0.31 after training).

`CausalLSHSelfAttention`, per head and hashing round (Kitaev et al., 2020, Sec. 2-3):
* shared query-key: one projection gives the queries, the keys are the same vectors
  normalised to unit length; values from their own projection;
* angular LSH: bucket = argmax([xR, -xR]) of a random rotation R (head_dim x n_buckets/2),
  one rotation per round and head, no gradient through the hash;
* attention: a query at position i attends to the keys of its own bucket at positions
  <= i, at most the `lsh_num_chunks_before * lsh_chunk_length` most recent of them (the
  window Reformer's chunks give); attending to itself only when nothing else is there
  (its score is set to -1e5, as Reformer does);
* rounds are combined by log-sum-exp: out = sum_r softmax_r(lse_r) * out_r, i.e. softmax
  attention over the union of the rounds' keys (a key found in two rounds counts twice).

Implementation: the positions are sorted by (bucket, position), so a query's admissible keys
are the run of its bucket just before it in sorted order; the sorted sequence is cut into
chunks of `lsh_chunk_length`, each chunk attends to itself and the `lsh_num_chunks_before`
chunks before it (zero padding before the first), and a mask keeps a key iff it is in the
query's bucket and 0 <= (query's sorted index - key's) <= before * chunk. Every key inside
that distance and bucket is in the query's window whatever the chunk boundaries are, and
which same-bucket keys lie within the distance depends only on the buckets of positions
<= i: masked entries get weight exactly 0, so logits at positions < t are bit-identical when
tokens >= t change. Compute is Reformer's: per round, (1 + before) * chunk keys per query.

Hash rotations come from an explicit generator, never from torch's global RNG: in training
a new draw per step from the generator the loop passes; in evaluation from the size field
`hash_seed`, so evaluation and the leak probe are deterministic. The reversible backward
pass reuses the forward's buckets (HF passes them back), so it needs no rotations.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers.models.reformer.modeling_reformer import LSHSelfAttention, LSHSelfAttentionOutput

from models import accounting
from models.reformer_hf import DEFAULTS, PRESETS, ReformerHF, check, settings
from models.registry import ModelContext, Size, Variant, register

SELF_SCORE = -1e5  # a query's score for itself: used only when its bucket has no earlier key
MASKED = -1e9  # score of an inadmissible key: exp() underflows to exactly 0 in fp32 and bf16


def angular_buckets(vectors: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Angular LSH buckets (B, H, R, T) of vectors (B, H, T, D) under rotations (H, D, R, n_buckets/2)."""
    rotated = torch.einsum("bhtd,hdrk->bhrtk", vectors.detach(), rotations.to(vectors.dtype))  # (B, H, R, T, nb/2)
    return torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)  # (B, H, R, T)


def _look_back(x: torch.Tensor, w: int, fill) -> torch.Tensor:
    """(B, H, R, T, *rest) -> (B, H, R, T, w + 1, *rest): for each sorted index s the entries
    at s - w .. s (slot w - k holds s - k; `fill` before the start)."""
    lead, rest = x.shape[:3], x.shape[4:]
    padded = torch.cat([x.new_full((*lead, w, *rest), fill), x], dim=3)  # (B, H, R, w + T, *rest)
    return padded.unfold(3, w + 1, 1).movedim(-1, 4)  # (B, H, R, T, w + 1, *rest): a strided view, no copy


def causal_bucket_attention(qk: torch.Tensor, v: torch.Tensor, buckets: torch.Tensor, window: int):
    """Causal attention within hash buckets, per round: a query attends to the keys of its
    bucket at or before its position, at most `window` of them besides itself.

    qk, v: (B, H, T, D) shared query-key and value vectors; buckets: (B, H, R, T).
    Returns the per-round outputs (B, H, R, T, D) and log-sum-exps (B, H, R, T), in the
    original position order."""
    B, H, R, T = buckets.shape
    D = qk.size(-1)
    positions = torch.arange(T, device=qk.device)
    order = (buckets * T + positions).argsort(dim=-1)  # (B, H, R, T): by bucket, then position (unique keys)
    undo = order.argsort(dim=-1)  # (B, H, R, T)
    gather = order.unsqueeze(-1).expand(B, H, R, T, D)
    sq = qk.unsqueeze(2).expand(B, H, R, T, D).gather(3, gather)  # (B, H, R, T, D) sorted queries
    sv = v.unsqueeze(2).expand(B, H, R, T, D).gather(3, gather)  # (B, H, R, T, D)
    sk = sq / sq.norm(dim=-1, keepdim=True).clamp_min(1e-6)  # unit-length keys
    sb = buckets.gather(3, order)  # (B, H, R, T) sorted buckets

    # slot j of query s holds sorted index s - (window - j): its bucket's run in sorted order
    # is its own earlier keys, so slot j <-> the (window - j)-th most recent key of its bucket,
    # whatever the future tokens hashed to (they only change what the masked slots hold)
    k_w = _look_back(sk, window, 0.0)  # (B, H, R, T, W, D), W = window + 1
    v_w = _look_back(sv, window, 0.0)  # (B, H, R, T, W, D)
    allowed = _look_back(sb, window, -1) == sb.unsqueeze(-1)  # (B, H, R, T, W): same bucket (padding: none)
    dots = torch.matmul(k_w, sq.unsqueeze(-1)).squeeze(-1)  # (B, H, R, T, W)
    dots = torch.where(allowed, dots, torch.full_like(dots, MASKED))
    dots[..., window] = SELF_SCORE  # the query itself (always in its bucket)
    lse = torch.logsumexp(dots, dim=-1, keepdim=True)  # (B, H, R, T, 1)
    out = torch.matmul(torch.exp(dots - lse).unsqueeze(-2), v_w).squeeze(-2)  # (B, H, R, T, D)

    out = out.gather(3, undo.unsqueeze(-1).expand(B, H, R, T, D))  # original order
    lse = lse.squeeze(-1).gather(3, undo)
    return out, lse


class CausalLSHSelfAttention(nn.Module):
    """Drop-in for HF's `LSHSelfAttention` (same parameters and call signature) that is
    exactly causal; see the module docstring. `rotations` (H, D, R, n_buckets/2) must be
    set before a forward pass that hashes (the model does it per step)."""

    def __init__(self, hf_attention: LSHSelfAttention):
        super().__init__()
        cfg = hf_attention.config
        self.n_head, self.head_dim = hf_attention.num_attention_heads, hf_attention.attention_head_size
        self.num_hashes, self.num_buckets = hf_attention.num_hashes, hf_attention.num_buckets
        self.window = cfg.lsh_num_chunks_before * cfg.lsh_attn_chunk_length  # earlier same-bucket keys seen
        self.query_key = hf_attention.query_key  # (d -> H*D), no bias: the same parameters as HF's
        self.value = hf_attention.value
        self.rotations: torch.Tensor | None = None

    def rotation_shape(self) -> tuple[int, int, int, int]:
        return self.n_head, self.head_dim, self.num_hashes, self.num_buckets // 2

    def forward(self, hidden_states, attention_mask=None, num_hashes=None, buckets=None, past_buckets_states=None,
                use_cache=False, output_attentions=False, **kwargs):
        if attention_mask is not None or use_cache or past_buckets_states is not None:
            raise NotImplementedError("CausalLSHSelfAttention trains and scores full windows: no padding mask, no cache")
        B, T, _ = hidden_states.shape
        H, D, R = self.n_head, self.head_dim, self.num_hashes
        qk = self.query_key(hidden_states).view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        v = self.value(hidden_states).view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        if buckets is None:  # forward pass; the reversible backward passes the forward's buckets
            if self.rotations is None:
                raise RuntimeError("CausalLSHSelfAttention: set the hash rotations before the forward pass")
            buckets = angular_buckets(qk, self.rotations)  # (B, H, R, T)
        buckets = buckets.view(B, H, R, T)
        out, lse = causal_bucket_attention(qk, v, buckets, self.window)  # (B,H,R,T,D), (B,H,R,T)
        weights = torch.softmax(lse, dim=2).unsqueeze(-1)  # (B, H, R, T, 1): rounds combined by log-sum-exp
        out = (out * weights).sum(dim=2)  # (B, H, T, D)
        out = out.transpose(1, 2).reshape(B, T, H * D)  # (B, T, C)
        return LSHSelfAttentionOutput(hidden_states=out, attention_probs=(), buckets=buckets)


class Reformer(ReformerHF):
    """`reformer_hf`'s model with `CausalLSHSelfAttention` in every LSH layer."""

    def __init__(self, size, ctx):
        super().__init__(size, ctx)
        self.hf.config.use_cache = False  # no incremental-decoding cache: we score whole windows
        self.lsh = []
        for layer in self.hf.reformer.encoder.layers:
            attention = layer.attention.self_attention
            if isinstance(attention, LSHSelfAttention):
                layer.attention.self_attention = CausalLSHSelfAttention(attention)
                self.lsh.append(layer.attention.self_attention)

    def _hashed(self, seed: int, fn):
        """Run fn() with every LSH layer's rotations drawn from a generator seeded with `seed`."""
        device = self.hf.lm_head.decoder.weight.device
        gen = torch.Generator(device=device).manual_seed(seed)
        for attention in self.lsh:
            attention.rotations = torch.randn(attention.rotation_shape(), generator=gen, device=device)
        try:
            return fn()
        finally:
            for attention in self.lsh:
                attention.rotations = None


def account(size: Size, ctx: ModelContext):
    """Parameters and FLOPs (models/accounting.py), handed its resolved Reformer fields."""
    return accounting.reformer(size, ctx, settings(size, ctx))


register(Variant(
    name="reformer",
    objective="causal",
    build=Reformer,
    presets=PRESETS,
    source_file=__file__,
    description="Reformer (transformers.ReformerModelWithLMHead) with our own leak-free causal LSH attention "
                "(shared QK, angular LSH, same-bucket keys at or before the query, rounds by log-sum-exp)",
    account=account,
    size_fields=tuple(DEFAULTS),
    defaults=DEFAULTS,
    check=check,
    uses=("reformer_hf.py",),
))
