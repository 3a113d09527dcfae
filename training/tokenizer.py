"""Byte-level BPE trained with Hugging Face `tokenizers` on the training split, and the
token arrays the training loop reads.

Special tokens come first in the vocabulary: <|endoftext|> (0, separates documents; also
bos/eos), [PAD] (1), [MASK] (2, for the masked objectives). Arrays are uint16 when the
vocabulary fits, else uint32. Same documents and vocab size -> byte-identical outputs.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from training.errors import InputError

SPECIAL_TOKENS = ("<|endoftext|>", "[PAD]", "[MASK]")


def train_tokenizer(docs: list[str], vocab_size: int) -> Tokenizer:
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise InputError(f"tokenizer.vocab_size={vocab_size} is below the byte alphabet; use >= {256 + len(SPECIAL_TOKENS)}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    return tok


def special_ids(tok: Tokenizer) -> dict[str, int]:
    ids = {name: tok.token_to_id(t) for name, t in zip(("eos_id", "pad_id", "mask_id"), SPECIAL_TOKENS)}
    ids["bos_id"] = ids["eos_id"]
    return ids


def token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32


def encode_documents(tok: Tokenizer, docs: list[str]) -> np.ndarray:
    """Concatenate documents, each followed by <|endoftext|>."""
    eos = tok.token_to_id(SPECIAL_TOKENS[0])
    encoded = tok.encode_batch(docs)
    total = sum(len(e.ids) + 1 for e in encoded)
    out = np.empty(total, dtype=token_dtype(tok.get_vocab_size()))
    i = 0
    for e in encoded:
        n = len(e.ids)
        out[i : i + n] = e.ids
        out[i + n] = eos
        i += n + 1
    return out


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_tokenizer(path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:
        raise InputError(f"cannot read tokenizer {path}: {str(e).splitlines()[0]}; rerun the tokenizer rule") from None


def load_tokens(path, meta: dict, split: str) -> np.ndarray:
    """Memory-map a token file and check it matches the tokenizer it claims to come from."""
    path = Path(path)
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise InputError(f"token file {path} is unreadable or corrupt ({e}); delete it and rerun the tokenizer rule") from None
    expected = meta.get(f"{split}_sha256")
    if expected and file_sha256(path) != expected:
        raise InputError(f"token file {path} does not match its meta.json checksum; rerun the tokenizer rule")
    if arr.ndim != 1 or arr.dtype != np.dtype(token_dtype(meta["vocab_size"])):
        raise InputError(f"token file {path} has shape {arr.shape} and dtype {arr.dtype}; expected 1-D {np.dtype(token_dtype(meta['vocab_size']))}")
    if len(arr) and int(arr.max()) >= meta["vocab_size"]:
        raise InputError(f"token file {path} holds id {int(arr.max())} >= vocab_size {meta['vocab_size']}: it does not match its tokenizer")
    return arr


def read_meta(path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {path} ({e}); rerun the tokenizer rule") from None
