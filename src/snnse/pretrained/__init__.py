"""Bundled pretrained models and their model cards.

Each bundled model is two files in this folder: ``NAME.pt``, a self-describing checkpoint written
by :meth:`snnse.models.Enhancer.save` (loaded with ``weights_only=True``, so it never runs code),
and ``NAME.md``, its model card (training data and licences, the exact command, configuration,
seed and step count, the metrics of ``snnse evaluate`` on the demo test split next to the noisy
input and ``noisereduce``, and the figures of ``snnse profile``).

``snnse.load("dpsnn-demo")`` loads a bundled model by name; ``snnse models`` lists them. A path
that exists always wins over a bundled name, so a local file called ``dpsnn-demo`` still loads.

:data:`CATALOGUE` lists the names snnse knows of; :func:`bundled` those whose weights are present
in this installation (a source checkout without trained weights has none).
"""

from __future__ import annotations

import os
from pathlib import Path

#: where the weights live (``SNNSE_PRETRAINED_DIR`` overrides it, e.g. for tests)
FOLDER = Path(__file__).resolve().parent

#: name -> one-line description (architecture, configuration, training data)
CATALOGUE: dict[str, str] = {
    "dpsnn-demo": "DPSNN, README configuration (5 ms latency, 2.5 ms hop), trained on the snnse demo corpus",
    "spiking-s4-demo": "Spiking-S4, paper configuration (32 ms latency, 8 ms hop), trained on the snnse demo corpus",
}

#: the model ``snnse enhance`` uses when no ``--model`` is given
DEFAULT = "dpsnn-demo"


def folder() -> Path:
    """The folder holding the bundled weights and cards."""
    return Path(os.environ.get("SNNSE_PRETRAINED_DIR", FOLDER))


def bundled() -> list[str]:
    """Names of the bundled models whose weights are installed."""
    return [name for name in CATALOGUE if (folder() / f"{name}.pt").is_file()]


def path(name: str) -> Path:
    """The checkpoint of a bundled model.

    Raises:
        KeyError: ``name`` is not a bundled model name.
        FileNotFoundError: A known name whose weights are not in this installation.
    """
    if name not in CATALOGUE:
        raise KeyError(f"unknown pretrained model {name!r}; bundled: {', '.join(CATALOGUE)}")
    p = folder() / f"{name}.pt"
    if not p.is_file():
        raise FileNotFoundError(f"pretrained model {name!r} is not installed (expected {p})")
    return p


def card(name: str) -> str:
    """The model card (Markdown) of a bundled model; ``""`` if it has none."""
    path(name)  # validates the name
    p = folder() / f"{name}.md"
    return p.read_text(encoding="utf-8") if p.is_file() else ""


def is_name(spec: str | os.PathLike) -> bool:
    """True if ``spec`` should be read as a bundled name (it names no existing file)."""
    return isinstance(spec, str) and spec in CATALOGUE and not Path(spec).exists()


__all__ = ["CATALOGUE", "DEFAULT", "FOLDER", "bundled", "card", "folder", "is_name", "path"]
