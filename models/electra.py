"""ELECTRA (Clark et al., 2020): replaced-token detection with a small MLM generator.

* generator: a masked LM 1/`gen_divisor` (default 1/4) of the discriminator's width, same
  depth, BERT masking (80/10/10) of `mask_prob` of the tokens (models/masking.py);
* discriminator: the full-size encoder with ELECTRA's head (dense, GELU, dense -> 1);
* shared embeddings, as in the paper: the generator *uses the discriminator's embedding
  module* (token and token-type tables, the position table where there is one, and their
  LayerNorm; one set of tensors, so they stay shared after every optimiser step), projected
  to the generator's width by its `embeddings_project`; the generator's LM head is tied to
  the shared token table;
* the replacements are sampled from the generator's softmax at the masked positions
  without gradient (torch.multinomial with the passed generator); the discriminator labels
  a position "replaced" iff its token differs from the original (a sample that hits the
  original token counts as original);
* loss = generator MLM cross-entropy (masked positions) + rtd_weight (50) x discriminator
  BCE over all positions; one optimiser over `unique_parameters()` (shared tensors once).

Evaluation (`fixed_eval_losses`, objective `rtd`): the discriminator's BCE on the fixed
corrupted held-out set of training/evalset.py (replacements drawn once from the training
unigram, so only context tells them apart; its base-rate entropy is the score without
context), with the generator's cross-entropy on the fixed 15% mask reported beside it.

Size field `position` picks the encoders: "absolute" = `transformers.ElectraForPreTraining`
+ `ElectraForMaskedLM` (learned absolute positions), "rotary" = `transformers.RoFormerModel`
+ ELECTRA's `ElectraDiscriminatorPredictions` head and `RoFormerForMaskedLM` (the same
blocks, heads and sharing, with rotary position embeddings instead of a position table).
The generator's MLM head runs on the masked positions only (as BERT's `gather_indexes`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining, RoFormerForMaskedLM,
                          RoFormerModel)
from transformers.models.electra.modeling_electra import ElectraDiscriminatorPredictions

from models import accounting, presets
from models.base import ArchModel
from models.bert_mlm import roformer_config
from models.masking import IGNORE_INDEX, mask_tokens
from models.registry import ConfigError, ModelContext, Size, Variant, register

# the shared size ladder (models/presets.py)
PRESETS = presets.ladder()
# The recipe from config/sweeps/electra_recipe.csv: rotary encoders (RoFormer, as bert_mlm), the generator trained
# on a 30% mask and the discriminator shown its samples at 15% of the positions (the evaluation's rate, so its
# prior stays calibrated); with absolute positions or one mask rate for both the discriminator stays at the
# base rate at these budgets.
DEFAULTS = dict(gen_divisor=4, rtd_weight=50.0, mask_prob=0.3, replace_prob=0.15, position="rotary", init_std=0.02,
                tie_encoder=False)
POSITIONS = ("absolute", "rotary")


def generator_shape(size: Size) -> tuple[int, int, int]:
    """(width, heads, d_ff) of the generator: width d / gen_divisor, the discriminator's
    head size where it fits (else one head), d_ff 4x its width; with `tie_encoder` the
    discriminator's own shape (it is the same encoder)."""
    if size.get("tie_encoder"):
        return size.d_model, size.n_head, size.d_ff
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
    if size.get("tie_encoder") and div != 1:
        raise ConfigError(f"electra: tie_encoder=true shares the discriminator's encoder with the generator, "
                          f"so it needs gen_divisor=1 (got {div})")
    if not float(size.get("rtd_weight")) > 0:
        raise ConfigError(f"electra: rtd_weight={size.get('rtd_weight')!r} must be > 0")
    if size.get("position") not in POSITIONS:
        raise ConfigError(f"electra: position={size.get('position')!r}; allowed: {', '.join(POSITIONS)}")
    p = size.get("mask_prob")
    if not isinstance(p, (int, float)) or not 0 < p < 1:
        raise ConfigError(f"electra: mask_prob={p!r} must be a number in (0, 1), e.g. 0.15")
    r = size.get("replace_prob")
    if r is not None and (not isinstance(r, (int, float)) or not 0 < r <= p):
        raise ConfigError(f"electra: replace_prob={r!r} must be a number in (0, mask_prob={p}] or null (= mask_prob)")


def electra_config(ctx: ModelContext, embedding_size, hidden, n_layer, heads, d_ff, init_std=0.02) -> ElectraConfig:
    config = ElectraConfig(
        initializer_range=init_std,
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
        self.rtd_weight = float(size.get("rtd_weight"))
        self.mask_prob = float(size.get("mask_prob"))
        replace = size.get("replace_prob")
        self.replace_share = 1.0 if replace is None else float(replace) / self.mask_prob
        if size.get("position") == "rotary":
            self._build_rotary(size, ctx)
        else:
            self._build_absolute(size, ctx)
        if size.get("tie_encoder"):  # one encoder for both (Clark et al., Sec. 3.2: all weights tied)
            self.gen_encoder = self.disc_encoder
        # the generator's LM head is tied to the shared token table
        self.gen_head.decoder.weight = self.word_embeddings()

    def _build_absolute(self, size: Size, ctx: ModelContext) -> None:
        """HF's ELECTRA classes: learned absolute positions in the shared embedding module."""
        d = size.d_model
        d_g, h_g, dff_g = generator_shape(size)
        init = float(size.get("init_std"))
        disc = ElectraForPreTraining(electra_config(ctx, d, d, size.n_layer, size.n_head, size.d_ff, init))
        gen = ElectraForMaskedLM(electra_config(ctx, d, d_g, size.n_layer, h_g, dff_g, init))
        gen.electra.embeddings = disc.electra.embeddings  # share the embedding module
        self.disc_encoder, self.disc_head = disc.electra, disc.discriminator_predictions
        self.gen_encoder = gen.electra
        self.gen_head = GeneratorHead(gen.generator_predictions, gen.generator_lm_head)

    def _build_rotary(self, size: Size, ctx: ModelContext) -> None:
        """The same two networks on RoFormer encoders (BERT blocks with rotary positions, no
        position table): `RoFormerModel` + ELECTRA's discriminator head, `RoFormerForMaskedLM`
        (width d_g, embedding width d: its `embeddings_project` and d_g -> d head transform
        are ELECTRA's generator's) sharing the discriminator's embedding module."""
        d = size.d_model
        d_g, h_g, dff_g = generator_shape(size)
        init = float(size.get("init_std"))
        self.disc_encoder = RoFormerModel(roformer_config(ctx, d, d, size.n_layer, size.n_head, size.d_ff, init))
        self.disc_head = ElectraDiscriminatorPredictions(electra_config(ctx, d, d, size.n_layer, size.n_head, size.d_ff))
        for linear in (self.disc_head.dense, self.disc_head.dense_prediction):  # HF's init of a Linear
            nn.init.normal_(linear.weight, std=init)
            nn.init.zeros_(linear.bias)
        gen = RoFormerForMaskedLM(roformer_config(ctx, d, d_g, size.n_layer, h_g, dff_g, init))
        gen.roformer.embeddings = self.disc_encoder.embeddings  # share the embedding module
        self.gen_encoder, self.gen_head = gen.roformer, gen.cls.predictions

    def word_embeddings(self) -> nn.Parameter:
        return self.disc_encoder.embeddings.word_embeddings.weight

    def mask(self, input_ids, generator):
        """The generator's input and labels: (corrupted ids (B, T), labels (B, T))."""
        return mask_tokens(input_ids, self.ctx, generator, mask_prob=self.mask_prob)

    def discriminator_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) logits that each token was replaced."""
        return self.disc_head(self.disc_encoder(input_ids=input_ids).last_hidden_state)

    def generator_logits(self, corrupted: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
        """(n, V) generator logits at the n positions where `predicted` (B, T) is True."""
        hidden = self.gen_encoder(input_ids=corrupted).last_hidden_state  # (B, T, d_g)
        return self.gen_head(hidden[predicted])  # head on the masked positions only

    def _losses(self, input_ids, generator):
        """(generator MLM loss, discriminator RTD loss)."""
        corrupted, labels = self.mask(input_ids, generator)  # (B, T) x2
        predicted = labels != IGNORE_INDEX  # (B, T) bool

        # generator: MLM on the masked positions
        gen_logits = self.generator_logits(corrupted, predicted)  # (n, V)
        mlm = F.cross_entropy(gen_logits, labels[predicted])

        # replacements sampled from the generator, no gradient
        with torch.no_grad():
            probs = F.softmax(gen_logits.float(), dim=-1)  # (n, V)
            sampled = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (n,)
            # the discriminator sees samples at a replace_prob / mask_prob share of the masked positions
            # (all of them when replace_prob = mask_prob, ELECTRA's own setting), the originals elsewhere
            keep = torch.rand(sampled.shape, generator=generator, device=sampled.device) < self.replace_share
        fake = input_ids.clone()
        fake[predicted] = torch.where(keep, sampled, input_ids[predicted])
        is_replaced = (fake != input_ids).float()  # (B, T)

        # discriminator: which tokens were replaced
        rtd = F.binary_cross_entropy_with_logits(self.discriminator_logits(fake), is_replaced)
        return mlm, rtd

    def training_loss(self, input_ids, generator=None):
        mlm, rtd = self._losses(input_ids, generator)
        return mlm + self.rtd_weight * rtd

    def fixed_eval_losses(self, batch):
        """The discriminator's BCE on the fixed corrupted set (replacements from the training
        unigram at 15% of positions; specials not scored), i.e. objective `rtd`'s eval loss,
        and the generator's cross-entropy on the fixed 15% mask (bert_mlm's yardstick)."""
        labels = batch["rtd_labels"]  # (B, T): 1 replaced, 0 original, IGNORE_INDEX not scored
        scored = labels != IGNORE_INDEX
        logits = self.discriminator_logits(batch["rtd_input_ids"])  # (B, T)
        bce = F.binary_cross_entropy_with_logits(logits[scored], labels[scored].to(logits.dtype))
        predicted = batch["mlm_labels"] != IGNORE_INDEX
        gen_logits = self.generator_logits(batch["mlm_input_ids"], predicted)
        return {"loss": bce, "generator_mlm_loss": F.cross_entropy(gen_logits, batch["mlm_labels"][predicted])}

    def chance_loss(self) -> float:
        """Uniform generator (ln V) + rtd_weight x a discriminator that says 1/2 (ln 2)."""
        return math.log(self.ctx.vocab_size) + self.rtd_weight * math.log(2.0)

    def embedding_parameters(self):
        e = self.disc_encoder.embeddings
        if self.size.get("position") == "rotary":  # fixed sinusoid tables of the two encoders' rotary positions
            tables = [e.word_embeddings.weight, e.token_type_embeddings.weight,
                      self.disc_encoder.encoder.embed_positions.weight, self.gen_encoder.encoder.embed_positions.weight]
            return list({id(t): t for t in tables}.values())  # one table when the encoder is shared
        return [e.word_embeddings.weight, e.position_embeddings.weight, e.token_type_embeddings.weight]


class GeneratorHead(nn.Module):
    """ELECTRA's generator head as one module (`decoder` = the LM head): transform d_g -> d, then d -> V."""

    def __init__(self, predictions: nn.Module, lm_head: nn.Linear):
        super().__init__()
        self.predictions, self.decoder = predictions, lm_head

    def forward(self, hidden):
        return self.decoder(self.predictions(hidden))  # (n, V)


def account(size: Size, ctx: ModelContext):
    """Parameters and FLOPs (models/accounting.py), handed the generator's shape."""
    return accounting.electra(size, ctx, generator_shape(size))


register(Variant(
    name="electra",
    objective="rtd",
    build=Electra,
    presets=PRESETS,
    source_file=__file__,
    description="ELECTRA: ElectraForMaskedLM generator (1/4 width) + ElectraForPreTraining discriminator, "
                "shared embeddings, loss = MLM + 50 x RTD",
    account=account,
    uses=("masking.py", "bert_mlm.py", "bert_causal.py"),
    size_fields=tuple(DEFAULTS),
    defaults=DEFAULTS,
    check=check,
))
