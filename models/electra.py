"""ELECTRA (Clark et al., 2020): replaced-token detection with a small MLM generator.

* generator: `transformers.ElectraForMaskedLM`, 1/`gen_divisor` (default 1/4) of the
  discriminator's width, same depth, BERT 15% (80/10/10) masking (models/masking.py);
* discriminator: `transformers.ElectraForPreTraining` at the full size;
* shared embeddings, as in the paper: the generator *uses the discriminator's embedding
  module* (token, position and token-type tables and their LayerNorm; one set of tensors,
  so they stay shared after every optimiser step), projected to the generator's width by
  its `embeddings_project`; the generator's LM head is tied to the shared token table;
* the replacements are sampled from the generator's softmax at the masked positions
  without gradient (torch.multinomial with the passed generator); the discriminator labels
  a position "replaced" iff its token differs from the original (a sample that hits the
  original token counts as original);
* loss = generator MLM cross-entropy (masked positions) + rtd_weight (50) x discriminator
  BCE over all positions; one optimiser over `unique_parameters()` (shared tensors once).

The generator's MLM head runs on the masked positions only (as BERT's `gather_indexes`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

from models import accounting
from models.base import ArchModel
from models.masking import IGNORE_INDEX, mask_tokens
from models.registry import ConfigError, ModelContext, Size, Variant, register

PRESETS = {
    # same discriminator shapes as gpt2's presets; non-embedding params of discriminator +
    # generator (vocab 2048, context 128) in comments
    "xs": dict(d_model=32, n_layer=2, n_head=2, d_ff=96),  # 27k (d_ff 3d: the 1.5-decade span)
    "s": dict(d_model=64, n_layer=2, n_head=4),     # 115k
    "m": dict(d_model=96, n_layer=3, n_head=4),     # 374k
    "l": dict(d_model=128, n_layer=4, n_head=4),    # 871k
    "xl": dict(d_model=192, n_layer=6, n_head=6),   # 2.8M
}
DEFAULTS = dict(gen_divisor=4, rtd_weight=50.0)
MASK_PROB = 0.15


def generator_shape(size: Size) -> tuple[int, int, int]:
    """(width, heads, d_ff) of the generator: width d / gen_divisor, the discriminator's
    head size where it fits (else one head), d_ff 4x its width."""
    d_g = size.d_model // size.get("gen_divisor")
    heads = max(1, d_g // size.head_dim)
    return d_g, heads, 4 * d_g


def check(size: Size, ctx: ModelContext) -> None:
    div = size.get("gen_divisor")
    if not isinstance(div, int) or div < 1 or size.d_model % div:
        raise ConfigError(f"electra: gen_divisor={div!r} must be a positive integer dividing d_model={size.d_model}")
    d_g, heads, _ = generator_shape(size)
    if d_g % heads:
        raise ConfigError(f"electra: generator width {d_g} is not divisible by its {heads} heads")
    if not float(size.get("rtd_weight")) > 0:
        raise ConfigError(f"electra: rtd_weight={size.get('rtd_weight')!r} must be > 0")


def electra_config(ctx: ModelContext, embedding_size, hidden, n_layer, heads, d_ff) -> ElectraConfig:
    config = ElectraConfig(
        vocab_size=ctx.vocab_size,
        embedding_size=embedding_size,
        hidden_size=hidden,
        num_hidden_layers=n_layer,
        num_attention_heads=heads,
        intermediate_size=d_ff,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=ctx.seq_len,
        type_vocab_size=1,
        pad_token_id=ctx.pad_id,
        tie_word_embeddings=True,
    )
    config._attn_implementation = "sdpa"
    return config


class Electra(ArchModel):
    objective = "rtd"

    def __init__(self, size: Size, ctx: ModelContext):
        super().__init__(size, ctx)
        check(size, ctx)
        d = size.d_model
        d_g, h_g, dff_g = generator_shape(size)
        self.rtd_weight = float(size.get("rtd_weight"))
        self.discriminator = ElectraForPreTraining(electra_config(ctx, d, d, size.n_layer, size.n_head, size.d_ff))
        self.generator = ElectraForMaskedLM(electra_config(ctx, d, d_g, size.n_layer, h_g, dff_g))
        # share the embedding module; tie the generator's LM head to the shared token table
        self.generator.electra.embeddings = self.discriminator.electra.embeddings
        self.generator.generator_lm_head.weight = self.discriminator.electra.embeddings.word_embeddings.weight

    def mask(self, input_ids, generator):
        """The generator's input and labels: (corrupted ids (B, T), labels (B, T))."""
        return mask_tokens(input_ids, self.ctx, generator, mask_prob=MASK_PROB)

    def _losses(self, input_ids, generator):
        """(generator MLM loss, discriminator RTD loss)."""
        corrupted, labels = self.mask(input_ids, generator)  # (B, T) x2
        predicted = labels != IGNORE_INDEX  # (B, T) bool

        # generator: MLM on the masked positions
        g = self.generator
        hidden = g.electra(input_ids=corrupted).last_hidden_state  # (B, T, d_g)
        gen_logits = g.generator_lm_head(g.generator_predictions(hidden[predicted]))  # (n, V)
        mlm = F.cross_entropy(gen_logits, labels[predicted])

        # replacements sampled from the generator, no gradient
        with torch.no_grad():
            probs = F.softmax(gen_logits.float(), dim=-1)  # (n, V)
            sampled = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (n,)
        fake = input_ids.clone()
        fake[predicted] = sampled
        is_replaced = (fake != input_ids).float()  # (B, T)

        # discriminator: which tokens were replaced
        disc_logits = self.discriminator(input_ids=fake).logits  # (B, T)
        rtd = F.binary_cross_entropy_with_logits(disc_logits, is_replaced)
        return mlm, rtd

    def training_loss(self, input_ids, generator=None):
        mlm, rtd = self._losses(input_ids, generator)
        return mlm + self.rtd_weight * rtd

    def chance_loss(self) -> float:
        """Uniform generator (ln V) + rtd_weight x a discriminator that says 1/2 (ln 2)."""
        return math.log(self.ctx.vocab_size) + self.rtd_weight * math.log(2.0)

    def embedding_parameters(self):
        e = self.discriminator.electra.embeddings
        return [e.word_embeddings.weight, e.position_embeddings.weight, e.token_type_embeddings.weight]


register(Variant(
    name="electra",
    objective="rtd",
    build=Electra,
    presets=PRESETS,
    source_file=__file__,
    description="ELECTRA: ElectraForMaskedLM generator (1/4 width) + ElectraForPreTraining discriminator, "
                "shared embeddings, loss = MLM + 50 x RTD",
    account=accounting.electra,
    uses=("masking.py",),
    size_fields=tuple(DEFAULTS),
    defaults=DEFAULTS,
    check=check,
))
