"""Spike rasters: :func:`spike_raster` draws one panel per recorded layer of a model, with its
firing rate (:func:`firing_rates`, :func:`format_rate`) and the units shown chosen by
:func:`select_units`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from .style import _STYLE, _VALUE_FONT, DEFAULT_DPI, OKABE_ITO, _figure, _numpy, _save


def select_units(n_units: int, max_neurons: int) -> np.ndarray:
    """The units shown in a raster: all when ``n_units <= max_neurons``, else ``max_neurons``
    indices evenly spaced from 0 to ``n_units − 1`` inclusive (``round(linspace(...))``)."""
    if max_neurons < 1:
        raise ValueError(f"max_neurons must be >= 1, got {max_neurons}")
    even = np.unique(np.round(np.linspace(0, n_units - 1, min(n_units, max_neurons))).astype(int))
    return np.arange(n_units) if n_units <= max_neurons else even


def firing_rates(record: Mapping[str, object]) -> dict[str, float]:
    """Fraction of nonzero entries of each recorded layer, over all items, frames and units."""
    return {name: float(np.count_nonzero(a) / a.size) if (a := _numpy(v)).size else 0.0
            for name, v in record.items()}


def format_rate(rate: float) -> str:
    """A firing rate in percent: one decimal, or two significant digits below 0.1 % (not 0.0)."""
    p = 100 * rate
    return f"{p:.1f}" if p >= 0.1 or p == 0 else f"{p:.2g}"


def spike_raster(record: Mapping[str, object], hop: int, sample_rate: int,
                 path: str | os.PathLike = "raster.png", max_neurons: int = 64,
                 title: str | None = None, item: int = 0, rate_bars: bool = True,
                 dpi: int = DEFAULT_DPI) -> tuple[Path, dict[str, float]]:
    """Plot one spike-raster panel per recorded layer, stacked on a shared time axis.

    Each panel shows batch item ``item`` of one layer as a vertical tick at every nonzero entry
    (frame ``k`` at ``k · hop / sample_rate`` seconds), for the units chosen by
    :func:`select_units` (evenly spaced, first and last unit always included; the y-axis ticks
    give their indices). Graded layers (values other than 0/1, e.g. the DPSNN readout) are
    shown the same way, as events where nonzero, and marked "graded". Each panel's title gives
    the layer's firing rate: the fraction of nonzero entries over *all* items, frames and units
    of the layer (:func:`firing_rates`), not just the units shown. With ``rate_bars`` a side
    bar chart compares the layers' rates.

    Args:
        record: Layer name → activity ``[B, frames, units]`` (or ``[frames, units]``), e.g.
            ``model(x, return_aux=True)[1]["record"]``; panels follow its order.
        hop: Frame hop in samples (``model.hop``).
        sample_rate: Sample rate in Hz (``model.sample_rate``).
        path: PNG file to write (atomically).
        max_neurons: Most units drawn per layer.
        title: Figure title, or None.
        item: Batch item drawn.
        rate_bars: Add the side bar chart of per-layer rates.
        dpi: Resolution of the PNG (>= 150).

    Returns:
        ``(path, rates)`` with ``rates`` layer name → firing rate in [0, 1].

    Raises:
        ValueError: If the record is empty or a layer is not 2-D/3-D, or ``item`` is out of range.
    """
    import matplotlib

    if not record:
        raise ValueError("spike_raster: empty record (no recorded layers)")
    layers = []
    for name, v in record.items():
        a = _numpy(v)
        a = a[None] if a.ndim == 2 else a
        if a.ndim != 3:
            raise ValueError(f"spike_raster: layer {name!r} has shape {a.shape}, expected [B, frames, units]")
        if not 0 <= item < a.shape[0]:
            raise ValueError(f"spike_raster: item {item} out of range for layer {name!r} (batch {a.shape[0]})")
        layers.append((str(name), a))
    rates = firing_rates(record)
    frame_s = hop / sample_rate
    n_frames = max(a.shape[1] for _, a in layers)
    n = len(layers)
    colors = [OKABE_ITO[i % len(OKABE_ITO)] for i in range(n)]
    panel_h = min(0.95 if max_neurons <= 32 else 1.15, 8.5 / n)  # at most ~9 in tall
    with matplotlib.rc_context(_STYLE):
        fig = _figure(7.0, 0.55 + panel_h * n + (0.2 if title else 0.0))
        gs = fig.add_gridspec(n, 2 if rate_bars else 1, width_ratios=[5.2, 1] if rate_bars else None)
        axes = []
        for i, ((name, a), color) in enumerate(zip(layers, colors)):
            ax = fig.add_subplot(gs[i, 0], sharex=axes[0] if axes else None)
            axes.append(ax)
            units = select_units(a.shape[2], max_neurons)
            frames, rows = np.nonzero(a[item][:, units])
            rows_h_pt = panel_h * 0.8 * 72 / max(len(units), 1)
            ax.plot(frames * frame_s, rows, linestyle="none", marker="|", color=color,
                    markersize=max(1.0, min(6.0, 0.9 * rows_h_pt)), markeredgewidth=0.55,
                    rasterized=True)
            kind = "graded, nonzero shown" if np.any((a != 0) & (a != 1)) else "spikes"
            shown = f"{len(units)} of {a.shape[2]} units" if len(units) < a.shape[2] else f"{a.shape[2]} units"
            ax.set_title(f"{name} — {format_rate(rates[name])} %   ({kind}; {shown})", loc="left", pad=2.5)
            ticks = [0, len(units) - 1] if len(units) > 1 else [0]
            ax.set_yticks(ticks, [str(units[t]) for t in ticks])
            ax.set(ylim=(-0.5, len(units) - 0.5), xlim=(0, n_frames * frame_s))
            ax.set_ylabel("unit", labelpad=1)
            ax.tick_params(labelbottom=i == n - 1)
        axes[-1].set_xlabel("Time (s)")
        if rate_bars:
            bx = fig.add_subplot(gs[:, 1])
            pct = [100 * rates[name] for name, _ in layers]
            bx.barh(np.arange(n), pct, color=colors, height=0.55)
            bx.set_yticks(np.arange(n), [name for name, _ in layers])
            bx.set_ylim(n - 0.5, -0.5)
            top = max(max(pct), 1e-9)
            for y, p in enumerate(pct):
                bx.text(p + top * 0.04, y, format_rate(p / 100), va="center", ha="left", fontsize=_VALUE_FONT)
            bx.set(xlabel="Firing rate (%)", xlim=(0, top * 1.45))
            bx.set_title("Rate per layer", loc="left", pad=2.5)
        if title:
            fig.suptitle(title)
        return _save(fig, path, dpi), rates
