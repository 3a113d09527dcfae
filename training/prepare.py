"""Data preparation as two streaming stages that write their outputs (atomically).

`write_tokenizer`: a BPE trained on a bounded sample of the training split (`train_bytes` of text), or
a given tokenizer with its missing special tokens added -> tokenizer.json, tokenizer_info.json.

`write_tokens`: the corpus as a stream of documents, in chunks of CHUNK_BYTES of text, encoded by
`workers` processes (the Rust tokenizer in each, single-threaded: on 2 cores two processes encode
faster than one process with two tokenizer threads, benchmarks/prepare_scale.py), split per
document (training/corpus.py) and appended to the splits' token shards (training/shards.py) ->
shards/, meta.json (the index). Memory stays bounded by a few chunks whatever the corpus size.

Resumable: whenever a shard is finished, `shards/progress.json` records how many documents are done,
the shards so far and the partial shards' lengths; a killed preparation rerun with the same inputs
truncates the partial shards to that record and goes on from the next document. Same inputs ->
byte-identical outputs, whether or not the preparation was interrupted.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from archscale.files import atomic_path, write_json
from training.corpus import CorpusSpec, Splitter, always_trains, held_out_score, iter_documents
from training.errors import InputError
from training.shards import BLOCK_TOKENS, ShardWriter
from training.tokenizer import (encode_batch, file_sha256, load_given_tokenizer, load_tokenizer, special_ids,
                                token_dtype, train_tokenizer, trained_info, vocab_size)

log = logging.getLogger(__name__)

FORMAT = "archscale-shards-1"
CHUNK_BYTES = 1 << 22  # text per encoded chunk (also the granularity of resuming)
SHARD_TOKENS = 100_000_000  # tokens per shard (200 MB at uint16)
TRAIN_BYTES = 100_000_000  # text the BPE trains on (the first documents of the training split)
# the corpus fingerprint (meta.json corpus_sha256) sums the documents' doc_fingerprint modulo this: it names the
# documents and their order, and does not depend on how they were chunked or whether the preparation resumed
FINGERPRINT_MOD = 1 << 256


# ---------------------------------------------------------------- tokenizer stage

def _bounded_sample(spec: CorpusSpec, limit: int, seen: dict) -> Iterator[str]:
    """The first training documents up to `limit` bytes of text (counted in `seen`)."""
    for doc in iter_documents(spec):
        if seen["bytes"] >= limit:
            return
        if always_trains(doc, spec):
            seen["bytes"] += len(doc.encode("utf-8"))
            seen["docs"] += 1
            yield doc


def write_tokenizer(spec: CorpusSpec, tok_cfg: dict, out_dir) -> dict:
    """tokenizer.json and tokenizer_info.json (roles, special ids, vocabulary size, what was added)."""
    out_dir = Path(out_dir)
    if tok_cfg.get("file") and tok_cfg.get("pretrained"):
        raise InputError("give tokenizer.file or tokenizer.pretrained, not both")
    if tok_cfg.get("file") or tok_cfg.get("pretrained"):
        tok, info = load_given_tokenizer(tok_cfg.get("file"), tok_cfg.get("pretrained"))
        hub = tok_cfg.get("pretrained") and not Path(tok_cfg["pretrained"]).is_dir()
        if hub and tok_cfg.get("vocab_size") and vocab_size(tok) != tok_cfg["vocab_size"]:
            raise InputError(f"tokenizer.pretrained={tok_cfg['pretrained']!r} has {vocab_size(tok)} tokens with the "
                             f"added ones, the config says tokenizer.vocab_size={tok_cfg['vocab_size']}: set "
                             f"tokenizer.vocab_size: {vocab_size(tok)} (the DAG's FLOP accounting uses it)")
    else:
        seen = {"bytes": 0, "docs": 0}
        limit = int(tok_cfg.get("train_bytes") or TRAIN_BYTES)
        tok = train_tokenizer(_bounded_sample(spec, limit, seen), int(tok_cfg.get("vocab_size", 2048)))
        info = {**trained_info(tok), "requested_vocab_size": int(tok_cfg.get("vocab_size", 2048)),
                "train_docs": seen["docs"], "train_bytes": seen["bytes"]}
        if not seen["docs"]:
            raise InputError("the corpus has no training document to train the tokenizer on; check corpus.source")
    with atomic_path(out_dir / "tokenizer.json") as tmp:
        tok.save(str(tmp))
    info = {**info, "vocab_size": vocab_size(tok), **special_ids(tok, info),
            "tokenizer_sha256": file_sha256(out_dir / "tokenizer.json")}
    write_json(out_dir / "tokenizer_info.json", info)
    return info


# ---------------------------------------------------------------- tokens stage

def iter_chunks(docs: Iterable[str], chunk_bytes: int, start: int = 0) -> Iterator[tuple[int, list[str]]]:
    """(number of the chunk's first document, consecutive documents): at least `chunk_bytes` characters of
    them per chunk (the last may be less), documents numbered from `start`."""
    chunk, size = [], 0
    for doc in docs:
        chunk.append(doc)
        size += len(doc)
        if size >= chunk_bytes:
            yield start, chunk
            start, chunk, size = start + len(chunk), [], 0
    if chunk:
        yield start, chunk


_WORKER: dict = {}


def _init_worker(tokenizer_path: str, eos_id: int, dtype: str, seed: int) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process, one thread: the pool is the parallelism
    _WORKER.update(tok=load_tokenizer(tokenizer_path), eos_id=eos_id, dtype=np.dtype(dtype), seed=seed)


def doc_fingerprint(index: int, doc: str) -> int:
    """A document's contribution to the corpus fingerprint: the sha256 of its position and text, as an integer."""
    return int.from_bytes(hashlib.sha256(index.to_bytes(8, "little") + doc.encode("utf-8")).digest(), "little")


def _encode_chunk(start: int, docs: list[str]):
    """(ids, lengths, split scores, fingerprint) of the chunk of documents numbered from `start`."""
    ids, lengths = encode_batch(_WORKER["tok"], docs, _WORKER["eos_id"], _WORKER["dtype"])
    scores = np.array([held_out_score(d, _WORKER["seed"]) for d in docs])
    return ids, lengths, scores, sum(doc_fingerprint(start + i, d) for i, d in enumerate(docs)) % FINGERPRINT_MOD


def _encoded(chunks: Iterator[tuple[int, list[str]]], workers: int, init_args: tuple) -> Iterator[tuple]:
    """The (first document's number, documents) chunks encoded in order, by `workers` processes (at most
    2 x workers chunks in flight), or in this process when workers is 1."""
    if workers <= 1:
        _init_worker(*init_args)
        yield from itertools.starmap(_encode_chunk, chunks)
        return
    with multiprocessing.get_context("fork").Pool(workers, _init_worker, init_args) as pool:
        pending: collections.deque = collections.deque()
        for chunk in chunks:
            pending.append(pool.apply_async(_encode_chunk, chunk))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _progress_key(spec: CorpusSpec, info: dict, shard_tokens: int, block_tokens: int) -> str:
    fields = {"format": FORMAT, "corpus": dataclasses.asdict(spec), "tokenizer": info["tokenizer_sha256"],
              "shard_tokens": shard_tokens, "block_tokens": block_tokens, "chunk_bytes": CHUNK_BYTES}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


def _load_progress(folder: Path, key: str) -> dict | None:
    """The progress record of an interrupted preparation of the same inputs, or None (and a clean folder)."""
    path = folder / "progress.json"
    try:
        state = json.loads(path.read_text())
        if state.get("key") == key:
            return state
    except (OSError, ValueError):
        pass
    if folder.exists():  # another preparation's leftovers: start afresh
        for p in folder.iterdir():
            if p.suffix in (".bin", ".partial", ".json", ".npy"):
                p.unlink()
    return None


def write_tokens(spec: CorpusSpec, tokenizer_dir, out_dir, shard_tokens: int = SHARD_TOKENS, workers: int = 1,
                 block_tokens: int = BLOCK_TOKENS, progress: bool = True) -> dict:
    """Stream the corpus into token shards under out_dir/shards and write the index out_dir/meta.json."""
    tokenizer_dir, out_dir = Path(tokenizer_dir), Path(out_dir)
    info = json.loads((tokenizer_dir / "tokenizer_info.json").read_text())
    vocab, dtype = info["vocab_size"], token_dtype(info["vocab_size"])
    folder = out_dir / "shards"
    key = _progress_key(spec, info, shard_tokens, block_tokens)
    state = _load_progress(folder, key) or {}
    writers = {split: ShardWriter(folder, split, dtype, shard_tokens, block_tokens, state=state.get("writers", {}).get(split))
               for split in ("train", "val")}
    counts = np.asarray(state.get("counts", np.zeros(vocab, np.int64)), dtype=np.int64)
    docs_done, n_docs = state.get("docs", 0), state.get("n_docs", {"train": 0, "val": 0})
    fingerprint = int(state.get("fingerprint", 0))
    splitter = Splitter(spec, val_so_far=sum(s["tokens"] for s in writers["val"].shards) + writers["val"].count)
    if docs_done:
        log.info("resuming an interrupted preparation at document %d (%d train and %d val shards done)",
                 docs_done, len(writers["train"].shards), len(writers["val"].shards))

    def save_progress():
        write_json(folder / "progress.json", {
            "key": key, "docs": docs_done, "n_docs": n_docs, "fingerprint": str(fingerprint), "counts": counts.tolist(),
            "writers": {split: w.state() for split, w in writers.items()}})

    done_tokens = sum(w.count + sum(s["tokens"] for s in w.shards) for w in writers.values())
    bar = tqdm(total=None, initial=done_tokens, unit="tok", unit_scale=True, file=sys.stderr, mininterval=10,
               ascii=True, desc="tokens", disable=not progress)
    t0 = time.perf_counter()
    chunks = iter_chunks(itertools.islice(iter_documents(spec), docs_done, None), CHUNK_BYTES, docs_done)
    init = (str(tokenizer_dir / "tokenizer.json"), info["eos_id"], np.dtype(dtype).name, spec.split_seed)
    new_tokens = 0
    for ids, lengths, scores, part in _encoded(chunks, workers, init):
        held = np.fromiter((splitter.held_out(s, int(n)) for s, n in zip(scores, lengths)), dtype=bool, count=len(lengths))
        mask = np.repeat(held, lengths)
        train_ids = ids[~mask]
        finished = writers["train"].write(train_ids) + writers["val"].write(ids[mask])
        counts += np.bincount(train_ids, minlength=vocab)[:vocab]
        docs_done += len(lengths)
        n_docs["val"] += int(held.sum())
        n_docs["train"] += int(len(held) - held.sum())
        fingerprint = (fingerprint + part) % FINGERPRINT_MOD
        new_tokens += len(ids)
        bar.update(len(ids))
        bar.set_postfix(docs=docs_done, refresh=False)
        if finished:
            save_progress()
    bar.close()
    elapsed = time.perf_counter() - t0
    if not n_docs["val"] or not n_docs["train"]:
        raise InputError(f"the corpus split into {n_docs['train']} training and {n_docs['val']} held-out documents; "
                         "both need some: raise corpus.val_fraction or use a larger corpus (lower units_per_doc)")
    entries = {split: w.close() for split, w in writers.items()}
    with atomic_path(folder / "train_counts.npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, counts, allow_pickle=False)
    meta = {
        **info, "format": FORMAT, "dtype": np.dtype(dtype).name,
        "corpus_sha256": hashlib.sha256(str(fingerprint).encode()).hexdigest(),
        "n_docs_train": n_docs["train"], "n_docs_val": n_docs["val"],
        "n_tokens_train": entries["train"]["n_tokens"], "n_tokens_val": entries["val"]["n_tokens"],
        "train_sha256": entries["train"]["sha256"], "val_sha256": entries["val"]["sha256"],
        "train_counts": {"file": "train_counts.npy", "sha256": file_sha256(folder / "train_counts.npy")},
        "splits": entries,
    }
    write_json(out_dir / "meta.json", meta)
    (folder / "progress.json").unlink(missing_ok=True)
    log.info("prepared %d tokens (%d train, %d val) from %d documents in %.1f s: %.0f tokens/s with %d worker(s)",
             new_tokens, meta["n_tokens_train"], meta["n_tokens_val"], docs_done, elapsed,
             new_tokens / max(elapsed, 1e-9), workers)
    return meta


def prepare(spec: CorpusSpec, tok_cfg: dict, out_dir, **kwargs) -> dict:
    """Both stages into one folder (tests, sweeps, benchmarks): tokenizer, then shards and meta.json."""
    write_tokenizer(spec, tok_cfg, out_dir)
    return write_tokens(spec, out_dir, out_dir, **kwargs)
