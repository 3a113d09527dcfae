"""Parameter and FLOP accounting: the one place the project counts compute.

Conventions (used for every variant; the curve columns `flops`, `flops_6n`,
`params_total`, `params_nonembedding` all come from here):

* A matrix multiply of a (T x d_in) activation by a (d_in x d_out) weight costs
  2 * d_in * d_out FLOPs per token in the forward pass (multiply + add).
* Training costs 3x the forward pass (backward = 2x forward: gradients w.r.t. activations
  and w.r.t. weights). `TRAIN_MULTIPLIER = 3`.
* Attention score and value products: for each query token, QK^T costs 2 * n_keys * d_attn
  and AV another 2 * n_keys * d_attn, where n_keys is the number of keys the kernel really
  multiplies against: the full segment length T for dense causal attention (SDPA and the
  eager kernels compute the whole T x T matrix and mask it), T + mem_len for Transformer-XL,
  the chunk window for Reformer's local and LSH attention.
* Biases, layer norms, softmax, activations and the optimiser are not charged (they are
  O(d) per token, < 1% at these shapes).
* The LM head is charged 2 * d * V per predicted token whether or not its weight is tied
  to the token embedding (tying saves parameters, not compute).
* Embedding lookups cost nothing.

Parameter counts: `params_total` counts every trainable tensor once (a tied LM head is the
token embedding, so it is counted once); `params_nonembedding` (Kaplan et al.'s N)
subtracts the token and position embedding tables. An *untied* LM head (Reformer's
2*d -> V head, a separate output projection) is not an embedding table and stays in N.
`flops_6n` = 6 * params_nonembedding * tokens is the Kaplan approximation, kept beside the
accounted `flops` so the report can show how much 6N under- or over-charges each variant.
"""
from __future__ import annotations

from dataclasses import dataclass

TRAIN_MULTIPLIER = 3
STUDY_BATCH_SIZE = 8  # batch of the default study; only for costs shared by a whole batch


@dataclass(frozen=True)
class Accounting:
    params_total: int
    params_nonembedding: int
    forward_flops_per_token: float  # accounted forward FLOPs per training token
    notes: str = ""

    @property
    def train_flops_per_token(self) -> float:
        return TRAIN_MULTIPLIER * self.forward_flops_per_token

    def flops(self, tokens: int) -> float:
        """Accounted training FLOPs after `tokens` training tokens."""
        return self.train_flops_per_token * tokens

    def flops_6n(self, tokens: int) -> float:
        return 6.0 * self.params_nonembedding * tokens


# -- building blocks ---------------------------------------------------------------------------

def matmul_flops(d_in: int, d_out: int) -> float:
    """Forward FLOPs per token of one dense projection."""
    return 2.0 * d_in * d_out


def attention_core_flops(d_attn: int, n_keys: float) -> float:
    """Forward FLOPs per query token of QK^T plus AV over n_keys keys."""
    return 4.0 * n_keys * d_attn


def dense_block_params(d: int, d_ff: int, bias: bool = True) -> int:
    """Parameters of one pre/post-LN transformer block: QKV + output projection, the two MLP
    projections, and two layer norms (weight + bias)."""
    weights = 4 * d * d + 2 * d * d_ff
    biases = (3 * d + d + d_ff + d) if bias else 0
    norms = 2 * 2 * d
    return weights + biases + norms


def dense_block_forward_flops(d: int, d_ff: int, n_keys: float) -> float:
    """Forward FLOPs per token of one dense block: projections + attention products."""
    return matmul_flops(d, 3 * d) + matmul_flops(d, d) + matmul_flops(d, d_ff) + matmul_flops(d_ff, d) \
        + attention_core_flops(d, n_keys)


# -- variants ----------------------------------------------------------------------------------

def gpt2(size, ctx) -> Accounting:
    """GPT-2: learned positions (n_positions = seq_len), tied LM head, final layer norm."""
    d, L, V, T = size.d_model, size.n_layer, ctx.vocab_size, ctx.seq_len
    embeddings = V * d + T * d
    nonemb = L * dense_block_params(d, size.d_ff) + 2 * d  # + final LN
    forward = L * dense_block_forward_flops(d, size.d_ff, n_keys=T) + matmul_flops(d, V)
    return Accounting(embeddings + nonemb, nonemb, forward, notes="tied head; dense causal attention over T")


def txl_segment_keys(seq_len: int, seg_len: int, mem_len: int) -> list[int]:
    """Keys per query of each segment of a Transformer-XL sequence walk: memory + segment,
    where segment k starts with min(k * seg_len, mem_len) remembered states."""
    return [min(k * seg_len, mem_len) + seg_len for k in range(seq_len // seg_len)]


def transformer_xl(size, ctx, batch_size: int = STUDY_BATCH_SIZE) -> Accounting:
    """Transformer-XL (models/transformer_xl.py): pre-LN blocks with relative attention,
    memory of mem_len states per layer, tied head, no position embedding table.

    Per layer and segment token: queries 2d^2; keys/values 4d^2 * K/S (recomputed over the
    K = memory + segment states, S = seg_len); the relative-position projection W_r over the
    K distances, 2d^2 * K/S; output projection 2d^2; MLP 4 d d_ff; attention products over
    the K keys: content QK^T, position (q+v)R^T and AV, 2 K d each. K is averaged over the
    seq_len / seg_len segments of the walk (the first segment has no memory). The
    relative-position projection W_r R of the K distance encodings is computed once per
    segment for the whole batch: 2d^2 * K / (S * batch_size) per token."""
    d, L, V, T, dff = size.d_model, size.n_layer, ctx.vocab_size, ctx.seq_len, size.d_ff
    S, M = size.get("seg_len"), size.get("mem_len")
    keys = txl_segment_keys(T, S, M)
    K = sum(keys) / len(keys)  # mean keys per query
    embeddings = V * d
    block = (5 * d * d + 2 * d * dff) + (5 * d + dff) + 2 * d + 2 * 2 * d  # weights, biases, u/v, norms
    nonemb = L * block + 2 * d
    per_layer = (matmul_flops(d, d) + matmul_flops(d, 2 * d) * K / S + matmul_flops(d, d) * K / (S * batch_size)
                 + matmul_flops(d, d) + matmul_flops(d, dff) + matmul_flops(dff, d)
                 + attention_core_flops(d, K) + 2.0 * K * d)
    forward = L * per_layer + matmul_flops(d, V)
    return Accounting(embeddings + nonemb, nonemb, forward,
                      notes=f"tied head; relative attention over mean {K:g} keys (memory {M} + segment {S})")


def bert_embeddings(size, ctx) -> int:
    """BERT/ELECTRA embedding tables: tokens, learned positions (seq_len), one token type."""
    return (ctx.vocab_size + ctx.seq_len + 1) * size.d_model


def bert_encoder_params(size) -> int:
    """Post-LN BERT encoder: L dense blocks (biases, two norms each) + the embedding LayerNorm."""
    return size.n_layer * dense_block_params(size.d_model, size.d_ff) + 2 * size.d_model


def bert_lm_head_params(d: int, V: int) -> int:
    """BERT's LM head without its tied decoder weight: transform dense (d*d + d), LayerNorm
    (2d), decoder bias (V)."""
    return d * d + d + 2 * d + V


def bert_causal(size, ctx) -> Accounting:
    """BERT with a causal mask (BertLMHeadModel): dense attention over T, LM head (transform
    d x d + tied decoder d x V) on every position."""
    d, L, V, T = size.d_model, size.n_layer, ctx.vocab_size, ctx.seq_len
    nonemb = bert_encoder_params(size) + bert_lm_head_params(d, V)
    forward = L * dense_block_forward_flops(d, size.d_ff, n_keys=T) + matmul_flops(d, d) + matmul_flops(d, V)
    return Accounting(bert_embeddings(size, ctx) + nonemb, nonemb, forward,
                      notes="tied decoder (its bias in N); dense causal attention over T")


MLM_MASK_PROB = 0.15  # fraction of tokens BERT-style masking predicts (models/masking.py)


def bert_mlm(size, ctx) -> Accounting:
    """BERT masked LM (BertForMaskedLM): bidirectional dense attention over T; the MLM head
    (transform d x d + tied decoder d x V) runs on the masked positions only, charged at
    the expected fraction MLM_MASK_PROB of the training tokens."""
    d, L, V, T = size.d_model, size.n_layer, ctx.vocab_size, ctx.seq_len
    nonemb = bert_encoder_params(size) + bert_lm_head_params(d, V)
    forward = L * dense_block_forward_flops(d, size.d_ff, n_keys=T) \
        + MLM_MASK_PROB * (matmul_flops(d, d) + matmul_flops(d, V))
    return Accounting(bert_embeddings(size, ctx) + nonemb, nonemb, forward,
                      notes="tied decoder (its bias in N); head on the 15% masked positions")
