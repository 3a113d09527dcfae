import json

import numpy as np
import pytest

from training.corpus import CorpusSpec, build_corpus, kjv_units, load_units
from training.errors import InputError
from training.prepare import write_corpus, write_tokens
from training.tokenizer import load_tokens, read_meta


def test_kjv_is_real_text_without_verse_references():
    units = kjv_units()
    assert len(units) == 24408
    assert units[0].startswith("In the beginning God created")
    assert not any(u[:1].isdigit() and ":" in u[:8] for u in units)


def test_corpus_and_tokens_are_byte_identical_across_runs(tmp_path):
    spec = CorpusSpec(max_units=1500, units_per_doc=15, val_fraction=0.1)
    for name in ("a", "b"):
        write_corpus(spec, tmp_path / name / "corpus")
        write_tokens(tmp_path / name / "corpus", 400, tmp_path / name / "tokens")
    for rel in ("corpus/train.jsonl", "corpus/val.jsonl", "corpus/corpus.json",
                "tokens/tokenizer.json", "tokens/train.npy", "tokens/val.npy", "tokens/meta.json"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    meta = read_meta(tmp_path / "a" / "tokens" / "meta.json")
    assert meta["vocab_size"] == 400 and meta["dtype"] == "uint16"
    assert meta["n_docs_train"] + meta["n_docs_val"] == 100
    assert len(meta["corpus_sha256"]) == 64


def test_split_is_document_level_seeded_and_disjoint():
    spec = CorpusSpec(max_units=3000, units_per_doc=30, val_fraction=0.2, split_seed=1)
    train, val = build_corpus(spec)
    assert len(val) == 20 and len(train) == 80
    assert not set(train) & set(val)
    assert build_corpus(spec) == (train, val)
    other = build_corpus(CorpusSpec(max_units=3000, units_per_doc=30, val_fraction=0.2, split_seed=2))
    assert other[1] != val


def test_local_files_source(tmp_path):
    (tmp_path / "a.txt").write_text("First paragraph here.\n\nSecond one.\n")
    (tmp_path / "b.txt").write_text("Third paragraph.")
    units = load_units(CorpusSpec(source="files", files=str(tmp_path / "*.txt")))
    assert units == ["First paragraph here.", "Second one.", "Third paragraph."]
    with pytest.raises(InputError, match="matches no file"):
        load_units(CorpusSpec(source="files", files=str(tmp_path / "*.md")))


def test_huggingface_datasets_source_on_a_local_dataset_file(tmp_path):
    rows = [{"text": u, "id": i} for i, u in enumerate(kjv_units()[:50])]
    path = tmp_path / "verses.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = CorpusSpec(source="hf", hf_name="json", hf_data_files=str(path), units_per_doc=10)
    assert load_units(spec) == [r["text"] for r in rows]
    train, val = build_corpus(spec)
    assert len(train) + len(val) == 5
    with pytest.raises(InputError, match="no column 'body'"):
        load_units(CorpusSpec(source="hf", hf_name="json", hf_data_files=str(path), hf_text_column="body"))


def test_corrupt_or_mismatched_token_files_are_refused(small_data, tmp_path):
    meta = read_meta(small_data / "meta.json")
    assert load_tokens(small_data / "train.npy", meta, "train").max() < meta["vocab_size"]
    bad = tmp_path / "train.npy"
    bad.write_bytes((small_data / "train.npy").read_bytes()[:-100])
    with pytest.raises(InputError, match="corrupt|checksum"):
        load_tokens(bad, meta, "train")
    np.save(bad, np.full(100, meta["vocab_size"] + 5, dtype=np.uint16))
    with pytest.raises(InputError, match="does not match its tokenizer"):
        load_tokens(bad, {**meta, "train_sha256": None}, "train")
