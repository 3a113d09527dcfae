import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A small real-text dataset (first 3,000 KJV verses, 512-token BPE), prepared once."""
    from training.corpus import CorpusSpec
    from training.prepare import write_corpus, write_tokens

    base = tmp_path_factory.mktemp("data")
    write_corpus(CorpusSpec(max_units=3000, units_per_doc=20, val_fraction=0.1), base / "corpus")
    write_tokens(base / "corpus", 512, base / "tokens")
    return base / "tokens"
