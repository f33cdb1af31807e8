"""Shared pytest fixtures."""

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _private_metric_cache(tmp_path, monkeypatch):
    """Each test gets an empty metric cache, so no test passes on another's cached scores."""
    monkeypatch.setenv("SNNSE_CACHE_DIR", str(tmp_path / "metric-cache"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder of real test audio (``../shared/data`` beside the checkout)."""
    if not DATA_DIR.is_dir():  # the tests run on real audio; skipping them would prove nothing
        pytest.fail(f"shared test audio not found at {DATA_DIR} (the repository expects ../shared/data)")
    return DATA_DIR


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory, data_dir) -> Path:
    """A small demo corpus (voices en and fr, 6 prompts each) built from the real Debian packages.

    ``snnse data demo`` downloads the packages once into ``~/.cache/snnse/debs``.
    """
    from snnse.data.demo import build_demo

    out = tmp_path_factory.mktemp("demo") / "corpus"
    build_demo(out, languages=("en", "fr"), limit=6, shared=data_dir, progress=False)
    return out


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny untrained DPSNN checkpoint (modules may define their own ``ckpt``)."""
    import torch

    import snnse.models

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "m.pt"
    snnse.models.get("dpsnn", N=16, B=16, H=16).save(path)
    return path
