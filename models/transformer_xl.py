"""Transformer-XL (Dai et al., 2019), a causal LM with segment-level recurrence.

Own PyTorch implementation (transformers 5 removed TransfoXL), nanoGPT style:

* relative sinusoidal position encodings: the score of query i and key j is
      (q_i + u)^T k_j  +  (q_i + v)^T W_r R_{i-j}
  ("AC" content term + "BD" position term), with two learned biases u, v per layer;
* segment-level recurrence: each layer keeps a *detached* memory of the last `mem_len`
  hidden states that entered it; the next segment's keys/values are computed over
  [memory, segment] and the causal mask lets query i see all memory and keys <= i;
* `training_loss` splits each (B, seq_len) batch into seq_len / seg_len consecutive
  segments and walks them left to right carrying the memory (the first segment starts
  with an empty memory); evaluation walks the segments the same way.

Differences from the paper, for stability at these small sizes: pre-LayerNorm blocks
(nanoGPT) instead of post-LN, GELU MLP, a final LayerNorm, the LM head tied to the token
embedding, no dropout, no adaptive softmax, no embedding scaling.

Size fields: seg_len (default 32), mem_len (default 64).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models import accounting, presets
from models.base import ArchModel
from models.registry import ConfigError, ModelContext, Size, Variant, register

# the shared ladder with d_ff = gpt2's - d/2: a relative-attention block has 5d^2 + 2 d d_ff weights
# (q, kv, W_r, o + MLP), so it keeps gpt2's 4d^2 + 2 d d_ff per block (models/presets.py)
PRESETS = presets.ladder(d_ff_offset=-0.5)
DEFAULTS = dict(seg_len=32, mem_len=64)


def sinusoid(n_pos: int, d: int, device=None) -> torch.Tensor:
    """Sinusoidal encodings of the relative distances 0 .. n_pos-1, (n_pos, d)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d))  # (d/2,)
    pos = torch.arange(n_pos, device=device, dtype=torch.float32)  # (n_pos,)
    angles = pos[:, None] * inv_freq[None, :]  # (n_pos, d/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (n_pos, d)


class RelMultiHeadAttention(nn.Module):
    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.n_head, self.head_dim = n_head, d // n_head
        self.q_proj = nn.Linear(d, d)  # queries: segment tokens only
        self.kv_proj = nn.Linear(d, 2 * d)  # keys, values: memory + segment
        self.r_proj = nn.Linear(d, d, bias=False)  # W_r: relative position encodings -> keys
        self.o_proj = nn.Linear(d, d)
        self.u = nn.Parameter(torch.zeros(n_head, self.head_dim))  # content bias
        self.v = nn.Parameter(torch.zeros(n_head, self.head_dim))  # position bias

    def forward(self, x: torch.Tensor, context: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
        # x: (B, S, C) normed segment; context: (B, K, C) normed [memory, segment], K = M + S
        # rel: (K, C) sinusoid of distances 0 .. K-1
        B, S, C = x.shape
        K = context.size(1)
        M = K - S
        H, D = self.n_head, self.head_dim

        q = self.q_proj(x).view(B, S, H, D).transpose(1, 2)  # (B, H, S, D)
        k, v = self.kv_proj(context).split(C, dim=-1)
        k = k.view(B, K, H, D).transpose(1, 2)  # (B, H, K, D)
        v = v.view(B, K, H, D).transpose(1, 2)  # (B, H, K, D)
        r = self.r_proj(rel).view(K, H, D).transpose(0, 1)  # (H, K, D), indexed by distance

        # content term (AC) and position term (BD)
        ac = (q + self.u[None, :, None, :]) @ k.transpose(-2, -1)  # (B, H, S, K) by key index
        bd = (q + self.v[None, :, None, :]) @ r.transpose(-2, -1)  # (B, H, S, K) by distance
        # BD by key index: query i (absolute position M + i) and key j are M + i - j apart
        i = torch.arange(S, device=x.device)[:, None]
        j = torch.arange(K, device=x.device)[None, :]
        distance = M + i - j  # (S, K); negative = future key
        bd = bd.gather(-1, distance.clamp(min=0).expand(B, H, S, K))  # (B, H, S, K)

        att = (ac + bd) * (1.0 / math.sqrt(D))
        att = att.masked_fill(distance < 0, float("-inf"))  # causal over memory + segment
        att = F.softmax(att, dim=-1)
        y = att @ v  # (B, H, S, D)
        y = y.transpose(1, 2).reshape(B, S, C)  # (B, S, C)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, d: int, d_ff: int):
        super().__init__()
        self.fc = nn.Linear(d, d_ff)
        self.proj = nn.Linear(d_ff, d)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))  # (B, S, C)


class Block(nn.Module):
    def __init__(self, d: int, n_head: int, d_ff: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = RelMultiHeadAttention(d, n_head)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = MLP(d, d_ff)

    def forward(self, h: torch.Tensor, mem: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
        # h: (B, S, C) segment hidden states, mem: (B, M, C) this layer's memory
        context = self.ln_1(torch.cat([mem, h], dim=1))  # (B, M + S, C)
        h = h + self.attn(context[:, mem.size(1):], context, rel)
        h = h + self.mlp(self.ln_2(h))
        return h  # (B, S, C)


class TransformerXL(ArchModel):
    objective = "causal"

    def __init__(self, size: Size, ctx: ModelContext):
        super().__init__(size, ctx)
        check(size, ctx)
        d = size.d_model
        self.seg_len = size.get("seg_len")
        self.mem_len = size.get("mem_len")
        self.wte = nn.Embedding(ctx.vocab_size, d)
        self.blocks = nn.ModuleList([Block(d, size.n_head, size.d_ff) for _ in range(size.n_layer)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, ctx.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("o_proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * size.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # -- recurrence ------------------------------------------------------------------------
    def init_mems(self, batch_size: int) -> list[torch.Tensor]:
        """Empty memories, one (B, 0, C) per layer."""
        w = self.wte.weight
        return [w.new_zeros(batch_size, 0, self.size.d_model) for _ in self.blocks]

    def forward_segment(self, idx: torch.Tensor, mems: list[torch.Tensor]):
        """Logits (B, S, V) of one segment (B, S) and the updated, detached memories."""
        h = self.wte(idx)  # (B, S, C)
        K = mems[0].size(1) + idx.size(1)
        rel = sinusoid(K, self.size.d_model, device=idx.device).to(h.dtype)  # (K, C)
        new_mems = []
        for block, mem in zip(self.blocks, mems):
            # memory = the last mem_len hidden states that entered this layer; no gradient
            new_mems.append(torch.cat([mem, h], dim=1)[:, -self.mem_len:].detach() if self.mem_len else mem)
            h = block(h, mem, rel)
        logits = self.lm_head(self.ln_f(h))  # (B, S, V)
        return logits, new_mems

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V), walking the seq_len / seg_len segments with memory."""
        B, T = input_ids.shape
        mems = self.init_mems(B)
        out = []
        for start in range(0, T, self.seg_len):
            logits, mems = self.forward_segment(input_ids[:, start:start + self.seg_len], mems)
            out.append(logits)
        return torch.cat(out, dim=1)  # (B, T, V)

    def training_loss(self, input_ids, generator=None):
        logits = self.logits(input_ids)  # (B, T, V)
        return F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), input_ids[:, 1:].reshape(-1)
        )  # next-token CE over the T-1 predicted positions (segment boundaries included)

    def embedding_parameters(self):
        return [self.wte.weight]


def check(size: Size, ctx: ModelContext) -> None:
    seg, mem = size.get("seg_len"), size.get("mem_len")
    if not isinstance(seg, int) or seg <= 0:
        raise ConfigError(f"transformer_xl: seg_len={seg!r} must be a positive integer")
    if not isinstance(mem, int) or mem < 0:
        raise ConfigError(f"transformer_xl: mem_len={mem!r} must be an integer >= 0")
    if ctx.seq_len % seg:
        raise ConfigError(
            f"transformer_xl: seq_len={ctx.seq_len} is not divisible by seg_len={seg}; "
            f"allowed seg_len: {[s for s in range(1, ctx.seq_len + 1) if ctx.seq_len % s == 0]}"
        )
    if size.d_model % 2:
        raise ConfigError(f"transformer_xl: d_model={size.d_model} must be even (sinusoidal encodings)")


register(Variant(
    name="transformer_xl",
    objective="causal",
    build=TransformerXL,
    presets=PRESETS,
    source_file=__file__,
    description="Transformer-XL (own implementation): relative positions, segment recurrence with memory",
    account=accounting.transformer_xl,
    size_fields=("seg_len", "mem_len"),
    defaults=DEFAULTS,
    check=check,
))
