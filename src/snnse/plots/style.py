"""The shared look and plumbing of snnse's figures: palette, rc style, canvas, atomic PNG write.

Every writer renders with matplotlib's Agg canvas (:func:`_figure`: no pyplot, no window), writes
the PNG atomically (:func:`_save`: temporary file in the target folder, then :func:`os.replace`)
and returns its path. Colours come from the Okabe–Ito colour-blind-safe palette
(:data:`OKABE_ITO`); text sizes and line widths from :data:`_STYLE`. matplotlib is imported inside
the functions, so importing this module stays fast. :func:`_numpy` and :func:`_mono` turn arrays
or tensors into the numpy signals the figures draw.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from snnse.atomic import atomic_path

#: Okabe & Ito (2008) colour-blind-safe palette (black omitted).
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
DEFAULT_DPI = 300
_VALUE_FONT = 6.5
_STYLE = {"font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8,
          "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7.5, "figure.titlesize": 9.5,
          "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6, "xtick.major.size": 2.5,
          "ytick.major.size": 2.5, "axes.spines.top": False, "axes.spines.right": False}


def _figure(width: float, height: float):
    """A constrained-layout Figure on an Agg canvas (independent of pyplot's backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(w_pad=0.03, h_pad=0.03, hspace=0.02, wspace=0.02)
    return fig


def _save(fig, path: str | os.PathLike, dpi: int) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (temp file in the same folder + rename)."""
    if dpi < 150:
        raise ValueError(f"dpi must be >= 150 for print quality, got {dpi}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, facecolor="white")
    return Path(path)


def _numpy(x) -> np.ndarray:
    """A numpy array from an array-like or a (possibly GPU, possibly grad) torch tensor."""
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)


def _mono(x, name: str) -> np.ndarray:
    x = _numpy(x).astype(np.float64)
    x = x.reshape(-1) if x.ndim == 2 and 1 in x.shape else x
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: expected finite, non-empty mono audio [T] (or [1, T]), got shape {x.shape}")
    return x
