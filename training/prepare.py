"""Corpus and tokenizer stages as functions that write their outputs (atomically).

`write_corpus`: documents -> train.jsonl / val.jsonl / corpus.json (sha256, counts).
`write_tokens`: train a BPE tokenizer on train.jsonl -> tokenizer.json, train.npy, val.npy,
meta.json. Same inputs -> byte-identical outputs.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from training.atomic import atomic_path, write_json, write_text
from training.corpus import CorpusSpec, build_corpus, corpus_sha256
from training.errors import InputError
from training.tokenizer import encode_documents, file_sha256, special_ids, train_tokenizer


def write_corpus(spec: CorpusSpec, out_dir) -> dict:
    out_dir = Path(out_dir)
    train, val = build_corpus(spec)
    for name, docs in (("train", train), ("val", val)):
        write_text(out_dir / f"{name}.jsonl", "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    info = {
        "source": spec.source, "corpus_sha256": corpus_sha256(train + val),
        "n_docs_train": len(train), "n_docs_val": len(val),
        "n_chars_train": sum(map(len, train)), "n_chars_val": sum(map(len, val)),
    }
    write_json(out_dir / "corpus.json", info)
    return info


def read_docs(path) -> list[str]:
    try:
        return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read documents from {path} ({e}); rerun the corpus rule") from None


def _save_npy(path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def write_tokens(corpus_dir, vocab_size: int, out_dir) -> dict:
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    train, val = read_docs(corpus_dir / "train.jsonl"), read_docs(corpus_dir / "val.jsonl")
    corpus = json.loads((corpus_dir / "corpus.json").read_text())
    tok = train_tokenizer(train, vocab_size)
    with atomic_path(out_dir / "tokenizer.json") as tmp:
        tok.save(str(tmp))
    meta = {
        "vocab_size": tok.get_vocab_size(), "requested_vocab_size": vocab_size, **special_ids(tok),
        "corpus_sha256": corpus["corpus_sha256"], "tokenizer_sha256": file_sha256(out_dir / "tokenizer.json"),
        "n_docs_train": len(train), "n_docs_val": len(val),
    }
    for name, docs in (("train", train), ("val", val)):
        arr = encode_documents(tok, docs)
        _save_npy(out_dir / f"{name}.npy", arr)
        meta[f"n_tokens_{name}"] = int(len(arr))
        meta[f"{name}_sha256"] = file_sha256(out_dir / f"{name}.npy")
        meta["dtype"] = str(arr.dtype)
    write_json(out_dir / "meta.json", meta)
    return meta
