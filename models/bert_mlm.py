"""The masked LM variant `bert_mlm`: BERT's encoder and MLM head, BERT-style dynamic masking.

Default recipe (found by experiment: config/sweeps/bert_mlm_recipe.yaml and its .csv):
`transformers.RoFormerForMaskedLM`, i.e. BERT's post-LN blocks, embedding LayerNorm and
MLM head (transform + decoder tied to the token table) with rotary position embeddings in
place of BERT's learned absolute position table, trained with 40% masking (80/10/10).
Why: with BERT's absolute positions (`BertForMaskedLM`, post-LN, or the pre-LN
`RobertaPreLayerNormForMaskedLM`) no learning rate (1e-3..4e-3), masking rate (15-40%),
position-table init or init scale left the unigram loss within 1M tokens (5.78-5.91 nats
vs 5.88 at size s; 5.71 after 3M): a masked position sees nothing of itself, so every bit
of context must come through attention to its neighbours, which absolute positions make
slow to learn (a causal LM gets the previous token for free in its residual stream).
Rotary positions make "attend to the next / previous token" a rotation the attention can
express from the start: 4.12-4.17 at s in 1M tokens, 3.48 at l (RoFormer: Su et al.,
2021). 40% masking beat 15% and 30% (Wettig et al., 2023, find the same).

Options (size fields): `position` ("rotary" default; "absolute" = BERT's table),
`norm` ("post"; "pre" = `RobertaPreLayerNormForMaskedLM`, absolute positions only),
`mask_prob` (training masking rate, default 0.4), `p_mask` (share of masked positions
shown as [MASK], default 0.8; the rest half random, half kept), `init_std` (normal init
scale, default BERT's 0.02), `pos_init` ("normal", or "sinusoid" for the absolute table).

Training draws a new mask every step from the passed generator (dynamic masking, as
RoBERTa). Evaluation in the training loop is on the fixed 15% all-[MASK] set of
training/evalset.py whatever `mask_prob` the run trains with (`fixed_eval_losses`), so runs
with different masking rates are measured on one yardstick. The loss is the cross-entropy
over the masked positions only (nats per masked token; models/base.py). As in the original
BERT pre-training code (`gather_indexes`), the MLM head is applied to the masked positions
only: the encoder runs on all T tokens, the head on the masked ones.
The pre-LN classes count positions from pad_id + 1 (RoBERTa); we pass positions 0..T-1,
as BERT, and keep the position table's row `pad_id` trainable like the others.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import (BertForMaskedLM, RobertaPreLayerNormConfig, RobertaPreLayerNormForMaskedLM, RoFormerConfig,
                          RoFormerForMaskedLM)

from models import accounting, presets
from models.base import ArchModel
from models.bert_causal import bert_config, bert_embedding_tables
from models.masking import IGNORE_INDEX, mask_tokens
from models.registry import ConfigError, ModelContext, Size, Variant, register

# the shared size ladder (models/presets.py)
PRESETS = presets.ladder()
DEFAULTS = dict(position="rotary", norm="post", mask_prob=0.4, p_mask=0.8, init_std=0.02, pos_init="normal")
POSITIONS = ("rotary", "absolute")
NORMS = ("post", "pre")


def check(size: Size, ctx: ModelContext) -> None:
    if size.get("norm") not in NORMS:
        raise ConfigError(f"bert_mlm: norm={size.get('norm')!r}; allowed: {', '.join(NORMS)}")
    p = size.get("mask_prob")
    if not isinstance(p, (int, float)) or not 0 < p < 1:
        raise ConfigError(f"bert_mlm: mask_prob={p!r} must be a number in (0, 1), e.g. 0.15")
    if size.get("position") not in POSITIONS:
        raise ConfigError(f"bert_mlm: position={size.get('position')!r}; allowed: {', '.join(POSITIONS)}")
    if size.get("position") == "rotary" and (size.get("norm") == "pre" or size.get("pos_init") != "normal"):
        raise ConfigError("bert_mlm: norm=pre and pos_init=sinusoid need position=absolute (RoFormer is post-LN, "
                          "without a position table)")
    if size.get("pos_init") not in ("normal", "sinusoid"):
        raise ConfigError(f"bert_mlm: pos_init={size.get('pos_init')!r}; allowed: normal, sinusoid")
    if not 0 <= size.get("p_mask") <= 1 or not float(size.get("init_std")) > 0:
        raise ConfigError(f"bert_mlm: p_mask={size.get('p_mask')!r} must be in [0, 1] and "
                          f"init_std={size.get('init_std')!r} positive")


def prelayernorm_config(size: Size, ctx: ModelContext) -> RobertaPreLayerNormConfig:
    """The pre-LN config with the same fields as `bert_config` (shapes, no dropout, SDPA)."""
    base = bert_config(size, ctx, is_decoder=False, initializer_range=float(size.get("init_std"))).to_dict()
    keep = {k: v for k, v in base.items() if k in RobertaPreLayerNormConfig().to_dict()}
    config = RobertaPreLayerNormConfig(**keep)
    config._attn_implementation = "sdpa"
    return config


def roformer_config(ctx: ModelContext, embedding_size: int, hidden: int, n_layer: int, heads: int, d_ff: int,
                    init_std: float = 0.02) -> RoFormerConfig:
    """A RoFormer (BERT blocks with rotary positions) config: no dropout, one token type,
    tied decoder, eager attention (RoFormer's only kernel)."""
    config = RoFormerConfig(
        vocab_size=ctx.vocab_size, embedding_size=embedding_size, hidden_size=hidden, num_hidden_layers=n_layer,
        num_attention_heads=heads, intermediate_size=d_ff, hidden_act="gelu", hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, max_position_embeddings=ctx.seq_len, type_vocab_size=1,
        pad_token_id=ctx.pad_id, initializer_range=init_std, tie_word_embeddings=True,
    )
    config._attn_implementation = "eager"
    return config


def sinusoid_table(n_pos: int, d: int) -> torch.Tensor:
    """(n_pos, d) sinusoidal position encodings (Vaswani et al.), scaled to unit RMS."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))  # (d/2,)
    angles = torch.arange(n_pos, dtype=torch.float32)[:, None] * inv_freq[None, :]  # (n_pos, d/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1) * 2 ** 0.5  # (n_pos, d)


def build_masked_lm(size: Size, ctx: ModelContext):
    """(HF model, its encoder, its MLM head) for the size's `position` and `norm`."""
    init = float(size.get("init_std"))
    if size.get("position") == "rotary":
        hf = RoFormerForMaskedLM(roformer_config(ctx, size.d_model, size.d_model, size.n_layer, size.n_head,
                                                 size.d_ff, init))
        return hf, hf.roformer, hf.cls
    if size.get("norm") == "pre":
        hf = RobertaPreLayerNormForMaskedLM(prelayernorm_config(size, ctx))
        hf.roberta_prelayernorm.embeddings.position_embeddings.padding_idx = None  # positions 0..T-1, all trainable
        return hf, hf.roberta_prelayernorm, hf.lm_head
    hf = BertForMaskedLM(bert_config(size, ctx, is_decoder=False, initializer_range=init))
    return hf, hf.bert, hf.cls


class BertMLM(ArchModel):
    objective = "masked"

    def __init__(self, size: Size, ctx: ModelContext):
        super().__init__(size, ctx)
        check(size, ctx)
        self.mask_prob, self.p_mask = float(size.get("mask_prob")), float(size.get("p_mask"))
        self.rotary = size.get("position") == "rotary"
        self.hf, self.encoder, self.head = build_masked_lm(size, ctx)
        self.register_buffer("positions", torch.arange(ctx.seq_len), persistent=False)
        if size.get("pos_init") == "sinusoid":
            table = self.encoder.embeddings.position_embeddings.weight
            with torch.no_grad():
                table.copy_(sinusoid_table(ctx.seq_len, size.d_model) * table.std())

    def mask(self, input_ids, generator):
        """(corrupted ids (B, T), labels (B, T)) at the training masking rate; see models/masking.py."""
        return mask_tokens(input_ids, self.ctx, generator, mask_prob=self.mask_prob, p_mask=self.p_mask,
                           p_random=(1 - self.p_mask) / 2)

    def masked_loss(self, corrupted: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy at the positions whose label is not IGNORE_INDEX."""
        if self.rotary:  # positions enter through the rotary embedding inside attention
            hidden = self.encoder(input_ids=corrupted).last_hidden_state  # (B, T, C)
        else:
            position_ids = self.positions[: corrupted.size(1)].expand_as(corrupted)  # (B, T)
            hidden = self.encoder(input_ids=corrupted, position_ids=position_ids).last_hidden_state  # (B, T, C)
        predicted = labels != IGNORE_INDEX  # (B, T) bool
        logits = self.head(hidden[predicted])  # (n_masked, V): head on masked positions only
        return F.cross_entropy(logits, labels[predicted])

    def training_loss(self, input_ids, generator=None):
        return self.masked_loss(*self.mask(input_ids, generator))

    def fixed_eval_losses(self, batch):
        return {"loss": self.masked_loss(batch["mlm_input_ids"], batch["mlm_labels"])}

    def embedding_parameters(self):
        if self.rotary:  # no position table; the rotary sinusoids are a fixed table
            e = self.encoder.embeddings
            return [e.word_embeddings.weight, e.token_type_embeddings.weight, self.encoder.encoder.embed_positions.weight]
        return bert_embedding_tables(self.encoder)


register(Variant(
    name="bert_mlm",
    objective="masked",
    build=BertMLM,
    presets=PRESETS,
    source_file=__file__,
    description="BERT masked LM with rotary positions (transformers.RoFormerForMaskedLM; options: BertForMaskedLM, "
                "RobertaPreLayerNormForMaskedLM), 40% dynamic masking, evaluated on the fixed 15% mask",
    account=accounting.bert_mlm,
    uses=("bert_causal.py", "masking.py"),
    size_fields=tuple(DEFAULTS),
    defaults=DEFAULTS,
    check=check,
))
