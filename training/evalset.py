"""The fixed evaluation set: one held-out yardstick per objective, identical for every run.

Every run of a study (any variant, size, seed or learning rate) is scored on the same
windows of the validation split and, for the objectives that corrupt their input, on the
same corruption, so that two eval losses of one objective differ only by the models:

* causal: the windows themselves (`input_ids`);
* masked (bert_mlm, and ELECTRA's generator beside its main loss): `MASK_PROB` = 15% of the
  non-special positions, drawn once with the constant `EVAL_SEED`, all shown as [MASK]
  (`mlm_input_ids`); the loss is the cross-entropy at those positions only (`mlm_labels`,
  IGNORE_INDEX elsewhere). Every selected position is shown as [MASK] (no 10% kept / 10%
  random as in training) so that no position can be answered by copying its input: the
  unigram loss at the masked positions is then exactly the best score without context;
* rtd (ELECTRA's discriminator): the same positions get a replacement token drawn once from
  the TRAINING split's unigram distribution over the non-special tokens (`rtd_input_ids`);
  labels are 1 where the token changed, 0 where it did not (a draw that hits the original
  token is original, as in ELECTRA), IGNORE_INDEX at special tokens, which are never
  replaced and so are not scored (`rtd_labels`). Because replacements follow token
  frequencies, a token's identity says nothing about whether it was replaced: the binary
  entropy of the replaced fraction (`base_rate_entropy`) is the best score without
  context, and uniform replacements (which a model spots by their rarity) are avoided.

Masks and replacements are drawn per position, in order, over the evaluated prefix of the
validation split (`n_tokens`, whole `seq_len` windows; a longer prefix extends a shorter one), so
the set is a pure function of (validation tokens, the training split's token counts, vocabulary,
special ids, seq_len, n_tokens): no
run seed enters. numpy only (the light collect job computes the baselines from it); the
training loop turns it into torch batches with `torch_batches`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from training.errors import InputError

EVAL_SEED = 20_250_611  # the one seed of every evaluation corruption (never a run's seed)
MASK_PROB = 0.15
IGNORE_INDEX = -100  # as models.masking.IGNORE_INDEX (torch's cross_entropy default)
FIELDS = ("input_ids", "mlm_input_ids", "mlm_labels", "rtd_input_ids", "rtd_labels")


@dataclass(frozen=True)
class EvalSet:
    """The fixed evaluation windows and their corruptions, each (n_windows, seq_len) int64."""

    input_ids: np.ndarray
    mlm_input_ids: np.ndarray
    mlm_labels: np.ndarray
    rtd_input_ids: np.ndarray
    rtd_labels: np.ndarray

    @property
    def masked(self) -> np.ndarray:
        """(n_windows, seq_len) bool: the positions the masked objective predicts."""
        return self.mlm_labels != IGNORE_INDEX

    def replaced_fraction(self) -> float:
        """Fraction of the scored (non-special) positions whose token was replaced."""
        scored = self.rtd_labels != IGNORE_INDEX
        return float(self.rtd_labels[scored].mean())

    def base_rate_entropy(self) -> float:
        """Binary entropy (nats) of the replaced fraction: the discriminator BCE of the best
        guess without context (the same probability at every position)."""
        r = self.replaced_fraction()
        return float(-(r * np.log(r) + (1 - r) * np.log1p(-r)))

    def masked_unigram_loss(self, train_counts: np.ndarray, special_ids: Sequence[int]) -> float:
        """Cross-entropy (nats) of the masked tokens under the training split's frequencies
        of the non-special tokens (add-one smoothed): a masked LM's score without context."""
        with np.errstate(divide="ignore"):  # log 0 = -inf at the special ids, never indexed
            logp = np.log(non_special_unigram(train_counts, special_ids))
        return float(-logp[self.input_ids[self.masked]].mean())


def token_counts(tokens, vocab_size: int) -> np.ndarray:
    """(vocab_size,) int64 occurrences of each id in `tokens` (the tokens stage stores the training
    split's as train_counts.npy, so no job counts a billion tokens)."""
    return np.bincount(np.asarray(tokens, dtype=np.int64), minlength=vocab_size)[:vocab_size]


def non_special_unigram(train_counts: np.ndarray, special_ids: Sequence[int]) -> np.ndarray:
    """(vocab_size,) token probabilities of the training split (from its token counts), add-one
    smoothed, 0 at the special ids (never masked, never a replacement)."""
    counts = np.asarray(train_counts, dtype=float) + 1.0
    counts[list(special_ids)] = 0.0
    return counts / counts.sum()


def _check(val_tokens, train_counts, vocab_size, special_ids, seq_len, n_tokens) -> int:
    """The number of whole windows evaluated; one-line errors for inputs that cannot work."""
    if seq_len < 2 or n_tokens < seq_len:
        raise InputError(f"evaluation needs n_tokens >= seq_len >= 2 (got n_tokens={n_tokens}, seq_len={seq_len})")
    n_windows = min(n_tokens, len(val_tokens)) // seq_len
    if n_windows < 2:
        raise InputError(
            f"validation split has {len(val_tokens)} tokens: fewer than 2 windows of seq_len={seq_len}; "
            "raise corpus.val_fraction or lower training.seq_len"
        )
    if len(train_counts) != vocab_size or not np.sum(train_counts):
        raise InputError(f"the training split's token counts ({len(train_counts)} ids, {int(np.sum(train_counts))} tokens) "
                         f"do not fit the vocabulary of {vocab_size}: the replacement distribution needs them")
    top = int(np.max(val_tokens[: n_windows * seq_len]))
    if top >= vocab_size or not all(0 <= s < vocab_size for s in special_ids):
        raise InputError(f"token id {top} or a special id {list(special_ids)} is outside the vocabulary 0..{vocab_size - 1}; "
                         "rebuild the tokens with the tokenizer that made them")
    return n_windows


def build(
    val_tokens,
    train_counts: np.ndarray,
    vocab_size: int,
    special_ids: Sequence[int],
    mask_id: int,
    seq_len: int,
    n_tokens: int,
) -> EvalSet:
    """The fixed evaluation set of the first `n_tokens` validation tokens (whole windows)."""
    n_windows = _check(val_tokens, train_counts, vocab_size, special_ids, seq_len, n_tokens)
    n = n_windows * seq_len
    val = np.asarray(val_tokens[:n], dtype=np.int64)
    # one draw per evaluated position, in order: a longer set extends a shorter one (the generator's stream
    # is sequential), so the prefix never depends on n_tokens, and only the evaluated prefix is read
    select_rng, replace_rng = (np.random.default_rng([EVAL_SEED, k]) for k in (0, 1))
    u_select = select_rng.random(n)
    u_replace = replace_rng.random(n)
    maskable = ~np.isin(val, np.asarray(list(special_ids), dtype=np.int64))
    selected = (u_select < MASK_PROB) & maskable
    cdf = np.cumsum(non_special_unigram(train_counts, special_ids))
    replacement = np.minimum(np.searchsorted(cdf, u_replace * cdf[-1], side="right"), vocab_size - 1)

    mlm_input = np.where(selected, mask_id, val)
    mlm_labels = np.where(selected, val, IGNORE_INDEX)
    rtd_input = np.where(selected, replacement, val)
    rtd_labels = np.where(maskable, (rtd_input != val).astype(np.int64), IGNORE_INDEX)

    shaped = (a.reshape(n_windows, seq_len).copy() for a in (val, mlm_input, mlm_labels, rtd_input, rtd_labels))
    return EvalSet(*shaped)


def context_special_ids(ctx) -> list[int]:
    """The special ids of a models.ModelContext (never masked, replaced or scored)."""
    return sorted({ctx.bos_id, ctx.eos_id, ctx.pad_id, ctx.mask_id})


def batches_for(val_tokens, train_counts, ctx, n_tokens: int, batch_size: int) -> "EvalBatches":
    """The fixed evaluation batches of a run with context `ctx` (a models.ModelContext)."""
    eval_set = build(val_tokens, train_counts, ctx.vocab_size, context_special_ids(ctx), ctx.mask_id,
                     ctx.seq_len, n_tokens)
    return torch_batches(eval_set, batch_size)


def torch_batches(eval_set: EvalSet, batch_size: int) -> "EvalBatches":
    """The set as consecutive batches of `batch_size` windows, ready for the training loop."""
    import torch  # the loop's side only: collect (no torch) uses `build` and the baselines

    if batch_size < 1:
        raise InputError(f"training.eval_batch_size={batch_size} must be a positive integer")
    n = len(eval_set.input_ids)
    fields = []
    for i in range(0, n, batch_size):
        fields.append({f: torch.from_numpy(getattr(eval_set, f)[i: i + batch_size].copy()) for f in FIELDS})
    return EvalBatches(fields)


class EvalBatches(list):
    """A list of the input-id batches (B, T) (what a causal model reads, and what code that
    only needs the windows, such as the causal-leak probe, indexes), carrying every batch's
    fixed corruptions in `.fields[i]` (a dict of FIELDS -> (B, T) tensors)."""

    def __init__(self, fields: list[dict]):
        super().__init__(f["input_ids"] for f in fields)
        self.fields = fields

    def head(self, n: int) -> "EvalBatches":
        """The first n batches (a prefix of the fixed set: an intermediate evaluation under eval_share)."""
        return EvalBatches(self.fields[:n])
