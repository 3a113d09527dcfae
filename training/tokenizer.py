"""The study's tokenizer: a byte-level BPE trained with Hugging Face `tokenizers` on a bounded sample
of the training split, or a given one (a `tokenizer.json` file, or a published tokenizer by name or
folder through `transformers.AutoTokenizer.from_pretrained`).

Every objective needs three special tokens, by role: `eos` (<|endoftext|>: separates documents;
also bos), `pad` and `mask` (the masked objectives). A trained BPE has them first in its vocabulary
(ids 0, 1, 2). A given tokenizer keeps its own where it declares or contains one (GPT-2's
<|endoftext|>, a Llama's </s>); what it lacks is added after its vocabulary, and `info["added_tokens"]`
(meta.json) says which. Token arrays are uint16 when the vocabulary fits, else uint32.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Iterable

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from training.errors import InputError

SPECIAL_TOKENS = ("<|endoftext|>", "[PAD]", "[MASK]")
ROLES = ("eos", "pad", "mask")  # the role of each of SPECIAL_TOKENS, in order
# names a given tokenizer may already use for a role (looked up when it declares none)
ROLE_CANDIDATES = {
    "eos": ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eot_id|>"),
    "pad": ("[PAD]", "<pad>", "<|pad|>", "<|padding|>"),
    "mask": ("[MASK]", "<mask>", "<|mask|>"),
}


def _one_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def train_tokenizer(docs: Iterable[str], vocab_size: int) -> Tokenizer:
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
    tok.train_from_iterator(docs, trainer=trainer)
    return tok


def trained_info(tok: Tokenizer) -> dict:
    """The roles of a tokenizer made by `train_tokenizer` (its special tokens come first)."""
    return {"kind": "trained", "special_tokens": dict(zip(ROLES, SPECIAL_TOKENS)), "added_tokens": []}


def load_given_tokenizer(file: str | None = None, pretrained: str | None = None) -> tuple[Tokenizer, dict]:
    """A given tokenizer with every role filled: (tokenizer, info). `pretrained` is a hub name or a local
    folder (transformers.AutoTokenizer, which knows the tokenizer's declared eos/pad/mask tokens); `file`
    a tokenizer.json. A role the tokenizer has no token for gets SPECIAL_TOKENS' name, added as a special
    token after its vocabulary (listed in info["added_tokens"])."""
    declared: dict[str, str | None] = {}
    if pretrained:
        try:
            from transformers import AutoTokenizer

            hf = AutoTokenizer.from_pretrained(pretrained)
        except Exception as e:  # the hub (no network here) or a folder without a tokenizer
            raise InputError(f"cannot load tokenizer.pretrained={pretrained!r}: {_one_line(e)}; give a hub name "
                             "reachable from this machine, a local folder, or tokenizer.file") from None
        if not getattr(hf, "is_fast", False):
            raise InputError(f"tokenizer.pretrained={pretrained!r} has no fast (Rust) tokenizer; give its tokenizer.json "
                             "as tokenizer.file")
        tok = Tokenizer.from_str(hf.backend_tokenizer.to_str())
        declared = {"eos": hf.eos_token, "pad": hf.pad_token, "mask": hf.mask_token}
        kind, source = "pretrained", pretrained
    else:
        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as e:
            raise InputError(f"cannot read tokenizer.file={file!r}: {_one_line(e)}; give a tokenizers tokenizer.json") from None
        kind, source = "file", str(file)
    vocab = tok.get_vocab(with_added_tokens=True)
    roles, added = {}, []
    for role, default in zip(ROLES, SPECIAL_TOKENS):
        name = declared.get(role)
        if not (name and name in vocab):
            name = next((c for c in ROLE_CANDIDATES[role] if c in vocab), None)
        if name is None:
            name = default
            tok.add_special_tokens([AddedToken(default, special=True, normalized=False)])
            added.append(default)
            vocab = tok.get_vocab(with_added_tokens=True)
        roles[role] = name
    return tok, {"kind": kind, "source": source, "special_tokens": roles, "added_tokens": added}


def special_ids(tok: Tokenizer, info: dict | None = None) -> dict[str, int]:
    roles = (info or trained_info(tok))["special_tokens"]
    ids = {f"{role}_id": tok.token_to_id(roles[role]) for role in ROLES}
    ids["bos_id"] = ids["eos_id"]
    return ids


def vocab_size(tok: Tokenizer) -> int:
    return tok.get_vocab_size(with_added_tokens=True)


def token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32


def encode_batch(tok: Tokenizer, docs: list[str], eos_id: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(ids, lengths): the documents' ids, each document followed by `eos_id`, concatenated, and each
    document's length in tokens (its eos included). The tokenizer's own post-processing (a BOS some
    tokenizers add) is left out: documents are separated by eos alone."""
    enc = tok.encode_batch_fast(docs, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) + 1 for e in enc), dtype=np.int64, count=len(enc))
    ids = np.fromiter(itertools.chain.from_iterable(itertools.chain(e.ids, (eos_id,)) for e in enc),
                      dtype=dtype, count=int(lengths.sum()))
    return ids, lengths


def encode_documents(tok: Tokenizer, docs: list[str], info: dict | None = None) -> np.ndarray:
    """Concatenate documents, each followed by the eos token (small corpora; preparation streams)."""
    return encode_batch(tok, docs, special_ids(tok, info)["eos_id"], token_dtype(vocab_size(tok)))[0]


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def load_tokenizer(path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:
        raise InputError(f"cannot read tokenizer {path}: {_one_line(e)}; rerun the tokenizer rule") from None


def read_meta(path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {path} ({e}); rerun the tokens rule") from None
