"""Parameter and FLOP accounting: the one place the project counts compute.

Conventions (used for every variant; the curve columns `flops`, `flops_6n`,
`params_total`, `params_nonembedding` all come from here):

* A matrix multiply of a (T x d_in) activation by a (d_in x d_out) weight costs
  2 * d_in * d_out FLOPs per token in the forward pass (multiply + add).
* Training costs 3x the forward pass (backward = 2x forward: gradients w.r.t. activations
  and w.r.t. weights). `TRAIN_MULTIPLIER = 3`. Work an implementation really repeats is
  charged on top: Reformer's reversible layers recompute their forward in the backward pass
  (`Accounting.recompute_flops_per_token`), so `flops` is what the hardware executes; MFU
  in benchmarks/train_throughput.py uses the model FLOPs 3 x forward.
* Attention score and value products: for each query token, QK^T costs 2 * n_keys * d_attn
  and AV another 2 * n_keys * d_attn, where n_keys is the number of keys the kernel really
  multiplies against: the full segment length T for dense causal attention (SDPA and the
  eager kernels compute the whole T x T matrix and mask it), T + mem_len for Transformer-XL,
  the chunk window for Reformer's local and LSH attention.
* Biases, layer norms, softmax, activations and the optimiser are not charged (they are
  O(d) per token, < 1% at these shapes); nor are sampling, sorting and gathers.
* The LM head is charged 2 * d * V per predicted token whether or not its weight is tied
  to the token embedding (tying saves parameters, not compute). Causal LMs run it on all T
  positions; the masked objectives (bert_mlm, ELECTRA's generator) run it on the masked
  positions only, charged at the expected fraction MLM_MASK_PROB = 0.15 of the tokens.
* Embedding lookups cost nothing.
* Costs computed once per batch rather than per sequence (Transformer-XL's projection of
  the relative-position encodings) are divided over STUDY_BATCH_SIZE = 8 sequences.

Per variant (details in each function's docstring):
* gpt2, bert_causal: dense blocks over T keys + head (BERT's head adds a d x d transform).
* bert_mlm: dense bidirectional blocks + head on 15% of positions.
* transformer_xl: queries over the segment, keys/values re-projected over memory + segment
  (K = min(k * seg_len, mem_len) + seg_len for segment k, averaged over the walk), the
  content, position and value products over K keys, W_r R once per segment and batch.
* reformer, reformer_hf: local layers over the chunk window, LSH layers over num_hashes
  windows (ours: each query's look-back of before * chunk + 1 sorted keys; HF's: the
  (1 + before) * chunk sorted-chunk window) + the hashing rotation, feed-forward, the
  2d -> V head; the layers' forward once more for the reversible recomputation.
* electra: discriminator encoder + head on all tokens, generator encoder (d/gen_divisor
  wide) + the d -> d_g projection on all tokens, generator head on the masked 15%.

Parameter counts: `params_total` counts every trainable tensor once (a tied LM head is the
token embedding, so it is counted once; ELECTRA's generator and discriminator share one
embedding module, counted once). `params_nonembedding` (Kaplan et al.'s N) subtracts the
token, position (learned tables, Reformer's axial factors) and token-type embedding
tables; nothing else. So:
* tied heads (gpt2, transformer_xl, BERT's decoder, ELECTRA's generator head): the weight
  is the embedding, not in N; an untied head's bias (BERT, ELECTRA: V entries) is in N;
* the vocabulary output projection's weight (V x d) is an embedding-sized table whether tied
  or not: tied (GPT-2, BERT, TXL, the ELECTRA generator) it *is* the token embedding; Reformer's
  *untied* 2d x V head weight is counted with the embeddings too, so that N measures the
  transformer body alike for every variant (left in, it would be 67.6k of Reformer's 74k N at
  d=16 and squeeze its scan below 1.5 decades). Its V-entry bias stays in N, like BERT's;
* ELECTRA's N is everything its one optimiser trains except the shared tables: the
  discriminator, the whole generator (incl. its d -> d_g projection and head transform)
  and the shared embedding LayerNorm; the discriminator alone is in `notes`.
`flops_6n` = 6 * params_nonembedding * tokens is the Kaplan approximation, kept beside the
accounted `flops` so the report can show how much 6N under- or over-charges each variant.

Checked against measurement (tests/models/test_model_flops.py, models/flop_measure.py):
the accounted training FLOPs of one step agree with the matmul/attention FLOPs counted by
a dispatch-mode counter within 10% for every variant.
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
    # forward FLOPs per token run again in the backward pass (Reformer's reversible layers
    # recompute their activations); charged once on top of TRAIN_MULTIPLIER x forward
    recompute_flops_per_token: float = 0.0

    @property
    def train_flops_per_token(self) -> float:
        return TRAIN_MULTIPLIER * self.forward_flops_per_token + self.recompute_flops_per_token

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


def bert_embeddings(size, ctx, heads: tuple = ()) -> int:
    """BERT/ELECTRA embedding tables: tokens, one token type and learned positions (seq_len x
    d); with `position: rotary` (RoFormer encoders) no position table but each encoder's fixed
    seq_len x head_dim sinusoid table (`heads`: the head sizes of the encoders; default this
    size's)."""
    if size.get("position", "absolute") == "rotary":
        return (ctx.vocab_size + 1) * size.d_model + sum(ctx.seq_len * h for h in (heads or (size.head_dim,)))
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
    """BERT masked LM (models/bert_mlm.py): bidirectional dense attention over T; the MLM
    head (transform d x d + tied decoder d x V) runs on the masked positions only, charged
    at the expected training masking fraction (size field `mask_prob`, default
    MLM_MASK_PROB). The pre-LN option (`norm: pre`) adds one final LayerNorm (2d)."""
    d, L, V, T = size.d_model, size.n_layer, ctx.vocab_size, ctx.seq_len
    mask_prob = float(size.get("mask_prob", MLM_MASK_PROB))
    final_norm = 2 * d if size.get("norm", "post") == "pre" else 0
    nonemb = bert_encoder_params(size) + final_norm + bert_lm_head_params(d, V)
    forward = L * dense_block_forward_flops(d, size.d_ff, n_keys=T) \
        + mask_prob * (matmul_flops(d, d) + matmul_flops(d, V))
    return Accounting(bert_embeddings(size, ctx) + nonemb, nonemb, forward,
                      notes=f"tied decoder (its bias in N); {size.get('norm', 'post')}-LN; "
                            f"head on the {mask_prob:g} masked positions")


def reformer(size, ctx, s: dict) -> Accounting:
    """Reformer with our leak-free causal LSH attention (models/reformer.py): as
    `reformer_hf`, except that each LSH round multiplies a query against its own look-back
    window in the bucket-sorted order, lsh_num_chunks_before * lsh_chunk_length + 1 keys
    (itself and the most recent keys of its bucket; other buckets' keys in the window are
    masked, not skipped), instead of HF's (1 + before) * chunk sorted-chunk window.
    `s`: the size's Reformer fields with derived defaults (models.reformer_hf.settings)."""
    keys = s["lsh_num_chunks_before"] * s["lsh_chunk_length"] + 1
    return _reformer(size, ctx, s, lsh_keys=keys, what=f"leak-free causal LSH over {keys} keys per round")


def reformer_hf(size, ctx, s: dict) -> Accounting:
    """Reformer with HF's causal LSH attention (models/reformer_hf.py): each LSH round
    multiplies each chunk of the bucket-sorted sequence against itself and the chunks
    before it, (1 + before + after) * lsh_chunk_length keys per query. `s` as for `reformer`."""
    keys = (1 + s["lsh_num_chunks_before"] + s["lsh_num_chunks_after"]) * s["lsh_chunk_length"]
    return _reformer(size, ctx, s, lsh_keys=keys, what=f"HF causal LSH over {keys} sorted-chunk keys per round")


def _reformer(size, ctx, s: dict, lsh_keys: int, what: str) -> Accounting:
    """Reformer (ReformerModelWithLMHead): reversible layers over two d-wide streams, local
    and LSH attention layers, untied 2d -> V LM head.

    Per token and layer: local attention Q, K, V, output 8d^2 (no biases) + products over
    the chunk window (1 + chunks_before + chunks_after) * local_chunk_length; LSH attention
    shared QK, V, output 6d^2 + hashing (a d -> num_hashes * num_buckets/2 random rotation,
    per head d_head wide: 2 d num_hashes num_buckets/2) + products over num_hashes rounds
    of `lsh_keys` keys; feed-forward 4 d d_ff. LM head 2 * 2d * V. The reversible layers
    recompute their forward in the backward pass: `recompute_flops_per_token` = the layers'
    forward without hashing (buckets are cached), so training costs 4x the layers' forward
    + 3x the head.

    Parameters: axial position embeddings (shape[0]*dim[0] + shape[1]*dim[1]), the token
    embedding and the untied 2d x V head weight are embeddings; the head's V bias is in N.
    """
    d, V, dff = size.d_model, ctx.vocab_size, size.d_ff
    (a0, a1), (e0, e1) = s["axial_pos_shape"], s["axial_pos_embds_dim"]
    embeddings = V * d + a0 * e0 + a1 * e1 + 2 * d * V  # token, axial positions, untied head weight
    ff_params = 2 * d + d * dff + dff + dff * d + d  # LayerNorm + two projections with biases
    ff_flops = matmul_flops(d, dff) + matmul_flops(dff, d)
    nonemb, layers_fwd, hashing = 0, 0.0, 0.0
    for kind in s["layers"]:
        if kind == "local":
            window = (1 + s["local_num_chunks_before"] + s["local_num_chunks_after"]) * s["local_chunk_length"]
            nonemb += 2 * d + 4 * d * d + ff_params
            layers_fwd += 4 * matmul_flops(d, d) + attention_core_flops(d, window) + ff_flops
        else:
            h = 2.0 * d * s["num_hashes"] * (s["num_buckets"] // 2)
            hashing += h
            nonemb += 2 * d + 3 * d * d + ff_params
            layers_fwd += 3 * matmul_flops(d, d) + h + s["num_hashes"] * attention_core_flops(d, lsh_keys) + ff_flops
    nonemb += 2 * (2 * d) + V  # final LayerNorm over 2d, the head's bias
    forward = layers_fwd + matmul_flops(2 * d, V)
    return Accounting(embeddings + nonemb, nonemb, forward,
                      notes=f"{what}; untied 2d x V head weight counted with the embeddings; "
                            "reversible layers recomputed in backward",
                      recompute_flops_per_token=layers_fwd - hashing)


def electra(size, ctx, generator: tuple[int, int, int]) -> Accounting:
    """ELECTRA (models/electra.py): discriminator (ElectraForPreTraining, width d) and
    generator (ElectraForMaskedLM, width d_g = d / gen_divisor, same depth) sharing one
    embedding module of width d (token, position, token-type tables + LayerNorm).

    Parameters: the shared tables count once, as embeddings; N = discriminator encoder +
    its head (d x d dense, d -> 1) + the generator's embeddings_project (d -> d_g), encoder
    and head (d_g -> d dense + LayerNorm, tied decoder's V bias) + the shared embedding
    LayerNorm, i.e. everything the one optimiser trains except the tables. The
    discriminator alone (the model kept after pre-training) is in `notes`.
    FLOPs per token: both encoders over all T tokens, the projection d -> d_g, the
    discriminator head on every position, the generator's head (d_g -> d, tied d -> V) on
    the MLM_MASK_PROB masked positions; sampling the replacements is not charged.
    `generator`: its (width, heads, d_ff), from models.electra.generator_shape (the variant hands
    its shapes to the accounting, so that this module imports no variant)."""
    d, L, V, T = size.d_model, size.n_layer, ctx.vocab_size, ctx.seq_len
    d_g, h_g, dff_g = generator
    mask_prob = float(size.get("mask_prob", MLM_MASK_PROB))
    tied = bool(size.get("tie_encoder", False))  # the generator runs the discriminator's encoder
    project = d_g != d  # HF adds embeddings_project d -> d_g only when the widths differ
    disc = L * dense_block_params(d, size.d_ff) + (d * d + d) + (d + 1)
    gen_encoder = 0 if tied else (d * d_g + d_g) * project + L * dense_block_params(d_g, dff_g)
    gen = gen_encoder + (d_g * d + d + 2 * d) + V
    nonemb = disc + gen + 2 * d  # + shared embedding LayerNorm
    forward = L * dense_block_forward_flops(d, size.d_ff, n_keys=T) + matmul_flops(d, d) + matmul_flops(d, 1) \
        + matmul_flops(d, d_g) * project + L * dense_block_forward_flops(d_g, dff_g, n_keys=T) \
        + mask_prob * (matmul_flops(d_g, d) + matmul_flops(d, V))
    heads = (size.head_dim,) if tied else (size.head_dim, d_g // h_g)
    return Accounting(bert_embeddings(size, ctx, heads=heads) + nonemb, nonemb, forward,
                      notes=f"generator width {d_g}{' (the discriminator encoder, tied)' if tied else ''}; "
                            f"discriminator-only N = {disc + 2 * d}; shared embeddings once")
