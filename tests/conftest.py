"""Shared pytest fixtures."""

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder of real test audio (``../shared/data`` beside the checkout)."""
    if not DATA_DIR.is_dir():  # the tests run on real audio; skipping them would prove nothing
        pytest.fail(f"shared test audio not found at {DATA_DIR} (the repository expects ../shared/data)")
    return DATA_DIR
