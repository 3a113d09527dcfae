"""BERT masked LM: `transformers.BertForMaskedLM` (post-LN, as BERT) or
`transformers.RobertaPreLayerNormForMaskedLM` (pre-LN) with BERT-style masking.

Training draws a new mask every step from the passed generator (dynamic masking, as
RoBERTa) at the size field `mask_prob` (of the non-special tokens; 80/10/10 [MASK] / random /
kept). Evaluation in the training loop is on the fixed 15% mask of training/evalset.py,
whatever `mask_prob` the run trains with (`fixed_eval_losses`), so runs with different
masking rates are measured on one yardstick. The loss is the cross-entropy over the masked
positions only (nats per masked token; models/base.py). As in the original BERT
pre-training code (`gather_indexes`), the MLM head is applied to the masked positions only:
the encoder runs on all T tokens, the head (transform + tied decoder) on the masked ones.

Size fields: `norm` ("post": BERT's post-LN blocks; "pre": pre-LN blocks with a final
LayerNorm, the RoBERTa-PreLayerNorm classes) and `mask_prob` (training masking rate).
The pre-LN classes count positions from pad_id + 1 (RoBERTa); we pass positions 0..T-1,
as BERT, and keep the position table's row `pad_id` trainable like the others.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import (BertForMaskedLM, RobertaPreLayerNormConfig, RobertaPreLayerNormForMaskedLM, RoFormerConfig,
                          RoFormerForMaskedLM)

from models import accounting
from models.base import ArchModel
from models.bert_causal import bert_config, bert_embedding_tables
from models.masking import IGNORE_INDEX, mask_tokens
from models.registry import ConfigError, ModelContext, Size, Variant, register

PRESETS = {
    # gpt2's shapes (xs with d_ff = 3d); non-embedding params (vocab 2048, context 128) in comments
    "xs": dict(d_model=32, n_layer=2, n_head=2, d_ff=96),  # 24k (d_ff 3d: the 1.5-decade span)
    "s": dict(d_model=64, n_layer=2, n_head=4),     # 106k
    "m": dict(d_model=96, n_layer=3, n_head=4),     # 348k
    "l": dict(d_model=128, n_layer=4, n_head=4),    # 812k
    "xl": dict(d_model=192, n_layer=6, n_head=6),   # 2.7M
}
DEFAULTS = dict(norm="post", mask_prob=0.15, p_mask=0.8, pos_init="normal", init_std=0.02, position="absolute")
NORMS = ("post", "pre")


def check(size: Size, ctx: ModelContext) -> None:
    if size.get("norm") not in NORMS:
        raise ConfigError(f"bert_mlm: norm={size.get('norm')!r}; allowed: {', '.join(NORMS)}")
    p = size.get("mask_prob")
    if not isinstance(p, (int, float)) or not 0 < p < 1:
        raise ConfigError(f"bert_mlm: mask_prob={p!r} must be a number in (0, 1), e.g. 0.15")


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


class BertMLM(ArchModel):
    objective = "masked"

    def __init__(self, size: Size, ctx: ModelContext):
        super().__init__(size, ctx)
        check(size, ctx)
        self.mask_prob = float(size.get("mask_prob"))
        if size.get("position") == "rotary":
            self.hf = RoFormerForMaskedLM(roformer_config(ctx, size.d_model, size.d_model, size.n_layer, size.n_head,
                                                          size.d_ff, float(size.get("init_std"))))
            self.encoder, self.head = self.hf.roformer, self.hf.cls
        elif size.get("norm") == "pre":
            self.hf = RobertaPreLayerNormForMaskedLM(prelayernorm_config(size, ctx))
            self.encoder, self.head = self.hf.roberta_prelayernorm, self.hf.lm_head
            self.encoder.embeddings.position_embeddings.padding_idx = None  # positions 0..T-1, all trainable
        else:
            self.hf = BertForMaskedLM(bert_config(size, ctx, is_decoder=False, initializer_range=float(size.get("init_std"))))
            self.encoder, self.head = self.hf.bert, self.hf.cls
        self.register_buffer("positions", torch.arange(ctx.seq_len), persistent=False)
        self.p_mask = float(size.get("p_mask"))
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
        T = corrupted.size(1)
        position_ids = self.positions[:T].expand_as(corrupted)  # (B, T)
        if self.size.get("position") == "rotary":
            hidden = self.encoder(input_ids=corrupted).last_hidden_state
        else:
            hidden = self.encoder(input_ids=corrupted, position_ids=position_ids).last_hidden_state  # (B, T, C)
        predicted = labels != IGNORE_INDEX  # (B, T) bool
        logits = self.head(hidden[predicted])  # (n_masked, V): head on masked positions only
        return F.cross_entropy(logits, labels[predicted])

    def training_loss(self, input_ids, generator=None):
        return self.masked_loss(*self.mask(input_ids, generator))

    def fixed_eval_losses(self, batch):
        return {"loss": self.masked_loss(batch["mlm_input_ids"], batch["mlm_labels"])}

    def embedding_parameters(self):
        if self.size.get("position") == "rotary":  # no position table; the rotary sinusoids are fixed
            e = self.encoder.embeddings
            return [e.word_embeddings.weight, e.token_type_embeddings.weight, self.encoder.encoder.embed_positions.weight]
        return bert_embedding_tables(self.encoder)


register(Variant(
    name="bert_mlm",
    objective="masked",
    build=BertMLM,
    presets=PRESETS,
    source_file=__file__,
    description="BERT masked LM (transformers.BertForMaskedLM post-LN or RobertaPreLayerNormForMaskedLM pre-LN), "
                "dynamic BERT masking, evaluated on the fixed 15% mask",
    account=accounting.bert_mlm,
    uses=("bert_causal.py", "masking.py"),
    size_fields=tuple(DEFAULTS),
    defaults=DEFAULTS,
    check=check,
))
