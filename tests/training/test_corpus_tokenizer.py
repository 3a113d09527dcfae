"""The data stage: streaming sources, the per-document split, trained and given tokenizers, token shards
and their index, resumable preparation."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from training.corpus import (CorpusSpec, held_out_score, iter_documents, kjv_units, load_units, make_documents,
                             split_documents)
from training.data import train_batch
from training.errors import InputError
from training.evalset import token_counts
from training.prepare import prepare, write_tokenizer, write_tokens
from training.shards import ShardSet, ShardWriter, open_tokens
from training.tokenizer import encode_documents, load_tokenizer, read_meta, train_tokenizer

SMALL = CorpusSpec(max_units=1500, units_per_doc=15, val_fraction=0.1)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_kjv_is_real_text_without_verse_references():
    units = kjv_units()
    assert len(units) == 24408
    assert units[0].startswith("In the beginning God created")
    assert not any(u[:1].isdigit() and ":" in u[:8] for u in units)


def test_preparation_is_byte_identical_across_runs(tmp_path):
    for name in ("a", "b"):
        prepare(SMALL, {"vocab_size": 400}, tmp_path / name, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b and "meta.json" in a and "shards/train_000000.bin" in a and "shards/val_000000.bin" in a
    assert "shards/progress.json" not in a  # removed once the preparation finished
    meta = read_meta(tmp_path / "a" / "meta.json")
    assert meta["vocab_size"] == 400 and meta["dtype"] == "uint16"
    assert meta["n_docs_train"] + meta["n_docs_val"] == 100
    assert len(meta["corpus_sha256"]) == 64


def test_split_is_per_document_by_hash_deterministic_and_order_free():
    spec = CorpusSpec(max_units=3000, units_per_doc=30, val_fraction=0.2, split_seed=1)
    docs = list(iter_documents(spec))
    train, val = split_documents(docs, spec)
    assert len(train) + len(val) == 100 and 8 <= len(val) <= 35  # ~20%: each document on its own
    assert not set(train) & set(val)
    assert split_documents(docs, spec) == (train, val)
    # no permutation of the corpus: a document's side does not depend on the others or their order
    shuffled = docs[:]
    random.Random(0).shuffle(shuffled)
    assert set(split_documents(shuffled, spec)[1]) == set(val)
    assert all((held_out_score(d, 1) < 0.2) == (d in val) for d in docs)
    other = split_documents(docs, CorpusSpec(max_units=3000, units_per_doc=30, val_fraction=0.2, split_seed=2))
    assert set(other[1]) != set(val)


def test_val_tokens_caps_the_held_out_split(tmp_path):
    capped = CorpusSpec(max_units=3000, units_per_doc=10, val_fraction=0.2, val_tokens=2000)
    meta = prepare(capped, {"vocab_size": 300}, tmp_path / "capped", progress=False)
    full = prepare(CorpusSpec(max_units=3000, units_per_doc=10, val_fraction=0.2), {"vocab_size": 300},
                   tmp_path / "full", progress=False)
    assert 2000 <= meta["n_tokens_val"] < 2000 + 1000  # stops at the first document past the cap
    assert full["n_tokens_val"] > 5 * meta["n_tokens_val"]
    assert meta["n_tokens_train"] + meta["n_tokens_val"] == full["n_tokens_train"] + full["n_tokens_val"]
    # the held-out split is the uncapped one's first documents
    assert np.array_equal(np.asarray(open_tokens(tmp_path / "capped").val),
                          np.asarray(open_tokens(tmp_path / "full").val)[: meta["n_tokens_val"]])


def test_local_files_source_is_read_by_paragraph(tmp_path):
    (tmp_path / "a.txt").write_text("First paragraph\nhere.\n\n\nSecond one.\n")
    (tmp_path / "b.txt").write_text("Third paragraph.")
    units = load_units(CorpusSpec(source="files", files=str(tmp_path / "*.txt")))
    assert units == ["First paragraph\nhere.", "Second one.", "Third paragraph."]
    with pytest.raises(InputError, match="matches no file"):
        load_units(CorpusSpec(source="files", files=str(tmp_path / "*.md")))


@pytest.mark.parametrize("streaming", [True, False])
def test_huggingface_datasets_source_on_a_local_dataset_file(tmp_path, streaming):
    rows = [{"text": u, "id": i} for i, u in enumerate(kjv_units()[:50])]
    path = tmp_path / "verses.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = CorpusSpec(source="hf", hf_name="json", hf_data_files=str(path), units_per_doc=10, hf_streaming=streaming)
    assert load_units(spec) == [r["text"] for r in rows]
    assert len(list(iter_documents(spec))) == 5
    with pytest.raises(InputError, match="no column 'body'"):
        load_units(CorpusSpec(source="hf", hf_name="json", hf_data_files=str(path), hf_text_column="body",
                              hf_streaming=streaming))


def test_shards_and_index_round_trip_across_shard_sizes(tmp_path):
    one = prepare(SMALL, {"vocab_size": 400}, tmp_path / "one", progress=False)
    many = prepare(SMALL, {"vocab_size": 400}, tmp_path / "many", shard_tokens=1000, block_tokens=256, progress=False)
    a, b = open_tokens(tmp_path / "one"), open_tokens(tmp_path / "many")
    assert len(one["splits"]["train"]["shards"]) == 1 and len(many["splits"]["train"]["shards"]) > 20
    assert [s["tokens"] for s in many["splits"]["train"]["shards"][:-1]] == [1000] * (len(many["splits"]["train"]["shards"]) - 1)
    assert np.array_equal(np.asarray(a.train), np.asarray(b.train)) and np.array_equal(np.asarray(a.val), np.asarray(b.val))
    assert one["train_sha256"] != many["train_sha256"]  # the identity names the shards, not only the stream
    # the shards hold exactly the training documents' encoding, each document followed by eos
    tok = load_tokenizer(tmp_path / "one" / "tokenizer.json")
    train_docs, _ = split_documents(list(iter_documents(SMALL)), SMALL)
    assert np.array_equal(np.asarray(a.train), encode_documents(tok, train_docs))
    assert np.array_equal(a.train_counts, token_counts(np.asarray(a.train), a.vocab_size))
    # slices across shard boundaries are the same array
    full = np.asarray(a.train)
    for lo, hi in [(990, 1010), (0, 3500), (2999, 3001), (len(full) - 5, len(full)), (5, 5)]:
        assert np.array_equal(b.train[lo:hi], full[lo:hi]), (lo, hi)


def test_training_batches_are_the_same_across_shard_boundaries_and_after_resume(tmp_path):
    prepare(SMALL, {"vocab_size": 400}, tmp_path / "one", progress=False)
    prepare(SMALL, {"vocab_size": 400}, tmp_path / "many", shard_tokens=500, block_tokens=128, progress=False)
    a, b = open_tokens(tmp_path / "one").train, open_tokens(tmp_path / "many").train
    crossed = 0
    for step in range(1, 200):
        x, y = train_batch(a, step, 8, 64, seed=3), train_batch(b, step, 8, 64, seed=3)
        assert torch.equal(x, y)
        starts = np.random.default_rng([3, step]).integers(0, len(a) - 64 + 1, size=8)
        crossed += int(((starts // 500) != ((starts + 63) // 500)).sum())
    assert crossed > 50  # many windows straddle two shards
    # a resumed run asks for step k again: the same batch, from a freshly opened set
    again = open_tokens(tmp_path / "many").train
    assert torch.equal(train_batch(again, 150, 8, 64, seed=3), train_batch(a, 150, 8, 64, seed=3))


def test_truncated_missing_or_corrupt_shards_are_named_in_one_line(tmp_path):
    prepare(SMALL, {"vocab_size": 400}, tmp_path, shard_tokens=2000, block_tokens=1000, progress=False)
    shard = tmp_path / "shards" / "train_000003.bin"
    good = shard.read_bytes()
    shard.write_bytes(good[:-10])
    with pytest.raises(InputError, match=r"train_000003\.bin has \d+ bytes, its index says 4000") as err:
        open_tokens(tmp_path)
    assert "\n" not in str(err.value) and "rerun the tokens rule" in str(err.value)
    corrupt = bytearray(good)
    corrupt[2501] ^= 0x01  # one bit in the middle: every shard's first and last block are checked
    shard.write_bytes(bytes(corrupt))
    with pytest.raises(InputError, match=r"train_000003\.bin is corrupt \(block 1 "):
        open_tokens(tmp_path)
    shard.unlink()
    with pytest.raises(InputError, match=r"train_000003\.bin is missing"):
        open_tokens(tmp_path)
    shard.write_bytes(good)
    open_tokens(tmp_path)


def test_a_large_set_is_verified_by_sampled_blocks_only(tmp_path, monkeypatch):
    tokens = np.tile(np.arange(300, dtype=np.uint16), 2000)
    w = ShardWriter(tmp_path / "shards", "train", np.uint16, shard_tokens=100_000, block_tokens=1000)
    w.write(tokens)
    entry = w.close()
    read = []
    import training.shards as shards

    real = shards.block_digest
    monkeypatch.setattr(shards, "block_digest", lambda data: read.append(len(data)) or real(data))
    s = ShardSet.open(tmp_path, entry, np.uint16, 300, "train", sample_blocks=5, rng=np.random.default_rng(0))
    assert len(s) == len(tokens) and np.array_equal(np.asarray(s), tokens)
    assert len(read) == 2 * len(entry["shards"]) + 5  # each shard's first and last block, and 5 more
    with pytest.raises(InputError, match="holds id 299 >= vocab_size 200"):
        ShardSet.open(tmp_path, entry, np.uint16, 200, "train", sample_blocks=5)


def test_a_killed_preparation_resumes_at_its_last_finished_shard(tmp_path):
    """Kill the tokens stage (SIGKILL) after its first shards, rerun it: it resumes (the log says so) and ends
    with exactly the files of an uninterrupted preparation."""
    spec = CorpusSpec(max_units=6000, units_per_doc=5, val_fraction=0.1)
    write_tokenizer(spec, {"vocab_size": 400}, tmp_path / "ref")
    write_tokenizer(spec, {"vocab_size": 400}, tmp_path / "run")
    write_tokens(spec, tmp_path / "ref", tmp_path / "ref", shard_tokens=3000, block_tokens=512, progress=False)
    code = ("import sys, time, training.prepare as p, training.shards as s\n"
            "write = s.ShardWriter.write\n"
            "def slow(self, t):\n    time.sleep(0.02)\n    return write(self, t)\n"
            "s.ShardWriter.write = slow\n"
            "p.CHUNK_BYTES = 2000\n"
            "from training.corpus import CorpusSpec\n"
            f"p.write_tokens(CorpusSpec(max_units=6000, units_per_doc=5, val_fraction=0.1), {str(tmp_path / 'run')!r}, "
            f"{str(tmp_path / 'run')!r}, shard_tokens=3000, block_tokens=512, progress=False)\n")
    env = {**os.environ, "PYTHONPATH": str(os.getcwd())}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    progress = tmp_path / "run" / "shards" / "progress.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if progress.exists() and len(json.loads(progress.read_text())["writers"]["train"]["shards"]) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the preparation ended before it could be killed"
    assert not (tmp_path / "run" / "meta.json").exists()
    state = json.loads(progress.read_text())
    assert 0 < state["docs"] < 1200
    import logging

    import training.prepare as p

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("training.prepare")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    old, p.CHUNK_BYTES = p.CHUNK_BYTES, 2000  # the interrupted run's chunking (part of the resume key)
    try:
        write_tokens(spec, tmp_path / "run", tmp_path / "run", shard_tokens=3000, block_tokens=512, progress=False)
    finally:
        p.CHUNK_BYTES = old
        logger.removeHandler(handler)
    resumed = [r.getMessage() for r in records if "resuming" in r.getMessage()]
    assert resumed and f"at document {state['docs']}" in resumed[0]
    # the same files as the uninterrupted preparation (made with other chunks: chunking changes nothing)
    assert _files(tmp_path / "run") == _files(tmp_path / "ref")


def _given_tokenizer_file(tmp_path):
    """A BPE without [PAD] and [MASK] (a tokenizer of someone else's, as a tokenizer.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=350, special_tokens=["<s>", "</s>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(make_documents(kjv_units()[:2000], 10), trainer=trainer)
    path = tmp_path / "given" / "tokenizer.json"
    path.parent.mkdir()
    tok.save(str(path))
    return path, tok


def test_a_given_tokenizer_file_is_used_and_its_added_tokens_recorded(tmp_path):
    path, tok = _given_tokenizer_file(tmp_path)
    meta = prepare(SMALL, {"file": str(path)}, tmp_path / "out", progress=False)
    assert meta["kind"] == "file" and meta["added_tokens"] == ["[PAD]", "[MASK]"]
    assert meta["special_tokens"] == {"eos": "</s>", "pad": "[PAD]", "mask": "[MASK]"}
    assert meta["eos_id"] == tok.token_to_id("</s>") and meta["vocab_size"] == 352
    assert (meta["pad_id"], meta["mask_id"]) == (350, 351)
    data = open_tokens(tmp_path / "out")
    train_docs, _ = split_documents(list(iter_documents(SMALL)), SMALL)
    expected = np.concatenate([np.append(tok.encode(d).ids, meta["eos_id"]) for d in train_docs])
    assert np.array_equal(np.asarray(data.train), expected)  # the given merges, not a trained BPE's


def test_a_published_tokenizer_loads_through_transformers_from_a_local_folder(tmp_path):
    """The `pretrained` path is AutoTokenizer.from_pretrained (a hub name on a machine with network); here a
    folder saved by transformers stands in for the hub, with its declared eos and pad tokens."""
    from transformers import PreTrainedTokenizerFast

    path, tok = _given_tokenizer_file(tmp_path)
    folder = tmp_path / "published"
    PreTrainedTokenizerFast(tokenizer_file=str(path), eos_token="</s>", pad_token="<s>").save_pretrained(folder)
    info = write_tokenizer(SMALL, {"pretrained": str(folder)}, tmp_path / "out")
    assert info["kind"] == "pretrained" and info["added_tokens"] == ["[MASK]"]
    assert info["special_tokens"] == {"eos": "</s>", "pad": "<s>", "mask": "[MASK]"}
    with pytest.raises(InputError, match="cannot load tokenizer.pretrained='no/such-tokenizer'"):
        write_tokenizer(SMALL, {"pretrained": "no/such-tokenizer"}, tmp_path / "out2")


def test_the_trained_tokenizer_sees_a_bounded_sample(tmp_path):
    info = write_tokenizer(SMALL, {"vocab_size": 400, "train_bytes": 20_000}, tmp_path)
    assert 20_000 <= info["train_bytes"] < 20_000 + 5_000 and info["train_docs"] < 20
    full = write_tokenizer(SMALL, {"vocab_size": 400}, tmp_path / "full")
    assert full["train_docs"] > 80


def test_trained_tokenizer_has_the_special_tokens_first():
    tok = train_tokenizer(make_documents(kjv_units()[:500], 10), 300)
    assert [tok.token_to_id(t) for t in ("<|endoftext|>", "[PAD]", "[MASK]")] == [0, 1, 2]
