"""BERT as a causal LM: `transformers.BertLMHeadModel` with `is_decoder=True`.

A post-LN BERT encoder with a causal self-attention mask, learned absolute positions
(max_position_embeddings = seq_len), one token type, and BERT's LM head (dense + GELU +
LayerNorm transform, then a decoder tied to the token embedding with its own bias).
Randomly initialised from a config, SDPA attention, no dropout.
"""
from __future__ import annotations

from transformers import BertConfig, BertLMHeadModel

from models import accounting, presets
from models.base import ArchModel
from models.registry import ModelContext, Size, Variant, register

# the shared size ladder (models/presets.py)
PRESETS = presets.ladder()


def bert_config(size: Size, ctx: ModelContext, **kw) -> BertConfig:
    """The BertConfig of a size (shared by bert_causal and bert_mlm)."""
    config = BertConfig(
        vocab_size=ctx.vocab_size,
        hidden_size=size.d_model,
        num_hidden_layers=size.n_layer,
        num_attention_heads=size.n_head,
        intermediate_size=size.d_ff,
        hidden_act="gelu",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=ctx.seq_len,
        type_vocab_size=1,
        pad_token_id=ctx.pad_id,
        bos_token_id=ctx.bos_id,
        eos_token_id=ctx.eos_id,
        tie_word_embeddings=True,
        **kw,
    )
    config._attn_implementation = "sdpa"
    return config


def bert_embedding_tables(bert) -> list:
    """The embedding tables of a `BertModel`: word, position, token type (the tied head is the word table)."""
    e = bert.embeddings
    return [e.word_embeddings.weight, e.position_embeddings.weight, e.token_type_embeddings.weight]


class BertCausal(ArchModel):
    objective = "causal"

    def __init__(self, size: Size, ctx: ModelContext):
        super().__init__(size, ctx)
        self.hf = BertLMHeadModel(bert_config(size, ctx, is_decoder=True))

    def logits(self, input_ids):
        return self.hf(input_ids=input_ids).logits  # (B, T, V)

    def training_loss(self, input_ids, generator=None):
        return self.hf(input_ids=input_ids, labels=input_ids).loss  # shifted inside HF

    def embedding_parameters(self):
        return bert_embedding_tables(self.hf.bert)


register(Variant(
    name="bert_causal",
    objective="causal",
    build=BertCausal,
    presets=PRESETS,
    source_file=__file__,
    description="BERT decoder (transformers.BertLMHeadModel, is_decoder=True, tied head)",
    account=accounting.bert_causal,
))
