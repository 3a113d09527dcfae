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
    from training.prepare import prepare

    base = tmp_path_factory.mktemp("data")
    prepare(CorpusSpec(max_units=3000, units_per_doc=20, val_fraction=0.1), {"vocab_size": 512}, base / "tokens",
            progress=False)
    return base / "tokens"


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory) -> Path:
    """The smoke study (tests/smoke/config.yaml) run locally end to end, once per session;
    the smoke tests and the SLURM test (which compares its tables with it) share it."""
    import shutil

    from snakemake_helpers import snakemake

    work = tmp_path_factory.mktemp("smoke")
    shutil.copy(ROOT / "tests" / "smoke" / "config.yaml", work / "config.yaml")
    snakemake(ROOT, work)
    return work
