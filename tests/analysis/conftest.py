import pytest

from analysis_testlib import REFERENCE


@pytest.fixture
def reference_dir():
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data folder {REFERENCE} is absent (only CI and the project machines have it)")
    return REFERENCE
