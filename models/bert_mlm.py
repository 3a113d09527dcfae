"""BERT masked LM: `transformers.BertForMaskedLM` with BERT's 15% (80/10/10) masking.

Training draws a new mask every step from the passed generator (dynamic masking, as
RoBERTa); evaluation is deterministic given the fixed-seed generator the loop passes for
each evaluation batch. The loss is the cross-entropy over the masked positions only
(nats per masked token; models/base.py). As in the original BERT pre-training code
(`gather_indexes`), the MLM head is applied to the masked positions only: the encoder runs
on all T tokens, the head (transform + tied decoder) on ~15% of them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import BertForMaskedLM

from models import accounting
from models.base import ArchModel
from models.bert_causal import bert_config, bert_embedding_tables
from models.masking import IGNORE_INDEX, mask_tokens
from models.registry import ModelContext, Size, Variant, register

PRESETS = {
    # gpt2's shapes (xs with d_ff = 3d); non-embedding params (vocab 2048, context 128) in comments
    "xs": dict(d_model=32, n_layer=2, n_head=2, d_ff=96),  # 24k (d_ff 3d: the 1.5-decade span)
    "s": dict(d_model=64, n_layer=2, n_head=4),     # 106k
    "m": dict(d_model=96, n_layer=3, n_head=4),     # 348k
    "l": dict(d_model=128, n_layer=4, n_head=4),    # 812k
    "xl": dict(d_model=192, n_layer=6, n_head=6),   # 2.7M
}
MASK_PROB = 0.15


class BertMLM(ArchModel):
    objective = "masked"

    def __init__(self, size: Size, ctx: ModelContext):
        super().__init__(size, ctx)
        self.hf = BertForMaskedLM(bert_config(size, ctx, is_decoder=False))

    def mask(self, input_ids, generator):
        """(corrupted ids (B, T), labels (B, T)); see models/masking.py."""
        return mask_tokens(input_ids, self.ctx, generator, mask_prob=MASK_PROB)

    def training_loss(self, input_ids, generator=None):
        corrupted, labels = self.mask(input_ids, generator)  # (B, T), (B, T)
        hidden = self.hf.bert(input_ids=corrupted).last_hidden_state  # (B, T, C)
        predicted = labels != IGNORE_INDEX  # (B, T) bool
        logits = self.hf.cls(hidden[predicted])  # (n_masked, V): head on masked positions only
        return F.cross_entropy(logits, labels[predicted])

    def embedding_parameters(self):
        return bert_embedding_tables(self.hf.bert)


register(Variant(
    name="bert_mlm",
    objective="masked",
    build=BertMLM,
    presets=PRESETS,
    source_file=__file__,
    description="BERT masked LM (transformers.BertForMaskedLM, 15% masking 80/10/10, dynamic masks)",
    account=accounting.bert_mlm,
    uses=("bert_causal.py", "masking.py"),
))
