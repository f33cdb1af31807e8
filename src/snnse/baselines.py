"""Classical (non-learned) enhancement baselines, scored next to the models by ``snnse evaluate``.

* ``noisereduce``: spectral gating from the ``noisereduce`` package (Sainburg 2020), with its
  defaults (non-stationary gating, ``prop_decrease=1.0``), what a Python user would otherwise
  reach for. It runs on the whole file (it is not causal), so it is an offline reference, not a
  streaming competitor.

Each baseline is a function ``f(noisy [T] float64, sample_rate) -> enhanced [T] float64``.

References:
    T. Sainburg, "timsainb/noisereduce: v1.0", Zenodo, 2020, doi:10.5281/zenodo.3243139.
    T. Sainburg, M. Thielk, T. Q. Gentner, "Finding, visualizing, and quantifying latent
    structure across diverse animal vocal repertoires", PLoS Comput. Biol. 2020.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def noisereduce_gate(noisy: np.ndarray, sample_rate: int) -> np.ndarray:
    """Spectral gating with ``noisereduce.reduce_noise`` defaults (non-stationary)."""
    try:
        import noisereduce
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise RuntimeError("the noisereduce baseline needs the 'noisereduce' package") from err
    x = np.asarray(noisy, dtype=np.float64)
    y = noisereduce.reduce_noise(y=x, sr=int(sample_rate), stationary=False, n_jobs=1)
    y = np.asarray(y, dtype=np.float64)[:len(x)]
    return np.pad(y, (0, len(x) - len(y)))


BASELINES: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {"noisereduce": noisereduce_gate}


def get(name: str) -> Callable[[np.ndarray, int], np.ndarray]:
    """A baseline by name; ``ValueError`` names the known ones."""
    try:
        return BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; available: {', '.join(BASELINES)}") from None
