import pytest

from analysis_testlib import DATA


@pytest.fixture
def reference_dir():
    """tests/data: public reference data shipped with the repository (never skipped)."""
    assert DATA.is_dir(), f"{DATA} is missing: it is part of the repository"
    return DATA
