"""Batches from the prepared tokens (training/shards.py: `open_tokens`).

Training batches are random windows whose offsets are a pure function of (seed, step), so
the data position of a run is just its step: resuming at step k reproduces exactly the
batches an uninterrupted run would have seen. Evaluation uses a fixed set of contiguous,
non-overlapping windows from the start of the validation tokens.
"""
from __future__ import annotations

import numpy as np
import torch

from training.errors import InputError


def train_batch(tokens, step: int, batch_size: int, seq_len: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(tokens) - seq_len + 1, size=batch_size)
    batch = np.stack([tokens[s : s + seq_len] for s in starts]).astype(np.int64)
    return torch.from_numpy(batch)  # (B, T)


def check_corpus_size(train_tokens: int, val_tokens: int, seq_len: int, budget: int, eval_tokens: int) -> None:
    """Fail before training when the corpus cannot supply the run: windows need seq_len
    tokens, and a budget far beyond the corpus (> 100 epochs) is almost surely a typo."""
    if train_tokens < 4 * seq_len:
        raise InputError(f"training split has {train_tokens} tokens, fewer than 4 windows of seq_len={seq_len}; use a larger corpus")
    if budget > 100 * train_tokens:
        raise InputError(
            f"training.tokens={budget} is over 100 epochs of the {train_tokens}-token training split; "
            "lower the budget or use a larger corpus"
        )
    if val_tokens < 2 * seq_len:
        raise InputError(f"validation split has {val_tokens} tokens, fewer than 2 windows of seq_len={seq_len}; raise corpus.val_fraction")
