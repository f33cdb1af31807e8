"""Metric bar charts: :func:`metric_bars` draws noisy vs enhanced means with 95 % CIs from the
summary of ``snnse evaluate``, one panel per scale (:data:`METRIC_GROUPS`), systems in
:data:`SYSTEM_COLORS`; the value labels are placed once the figure is laid out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from .style import _STYLE, _VALUE_FONT, DEFAULT_DPI, OKABE_ITO, _figure, _save

#: Colours of the systems in :func:`metric_bars` (other systems take the remaining palette).
SYSTEM_COLORS = {"noisy": "#E69F00", "enhanced": "#0072B2", "clean": "#009E73"}

#: Metric panels of :func:`metric_bars`: (panel title, y-axis label, metric keys, display names).
METRIC_GROUPS = (
    ("Signal-to-noise ratio", "dB", ("sisnr", "sisnri", "segsnr"), ("SI-SNR", "SI-SNRi", "SegSNR")),
    ("Quality (MOS)", "MOS (1–5)",
     ("pesq_wb", "pesq_nb", "csig", "cbak", "covl", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"),
     ("PESQ\nWB", "PESQ\nNB", "CSIG", "CBAK", "COVL", "DNSMOS\nSIG", "DNSMOS\nBAK", "DNSMOS\nOVRL")),
    ("Intelligibility", "score (0–1)", ("stoi", "estoi"), ("STOI", "ESTOI")),
)


def _stat(entry) -> tuple[float, float, float, int | None] | None:
    """(mean, ci_lo, ci_hi, n) of one summary entry; None when the mean is missing or not finite."""
    entry = {"mean": entry} if isinstance(entry, (int, float)) else entry
    try:
        mean = float(entry["mean"])
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
    if not np.isfinite(mean):
        return None
    try:  # a missing or malformed interval only drops the error bar
        lo, hi = sorted(float(c) for c in entry.get("ci95"))
        lo, hi = (lo, hi) if np.isfinite(lo) and np.isfinite(hi) else (mean, mean)
    except (TypeError, ValueError):
        lo = hi = mean
    n = entry.get("n")
    return mean, min(lo, mean), max(hi, mean), n if isinstance(n, int) else None


def metric_bars(summary: Mapping, path: str | os.PathLike = "metrics.png", title: str | None = None,
                dpi: int = DEFAULT_DPI) -> Path:
    """Grouped bar chart of evaluation metrics: noisy vs enhanced, means with 95 % CIs.

    Metrics are grouped into panels by scale (:data:`METRIC_GROUPS`: dB, MOS, intelligibility;
    unknown metrics go to an "Other" panel); panels without metrics are skipped. Each bar shows
    the mean with its ``ci95`` interval as an error bar and the mean printed above it (below
    for negative values; vertical when too wide for the bars). MOS bars start at 1, the bottom
    of the scale. Systems are drawn in the order noisy, enhanced, then any others; either may be
    absent. The legend gives each system's number of files (largest ``n`` over its metrics).

    Args:
        summary: ``snnse evaluate`` summary: ``{"systems": {system: {metric: {"mean", "std",
            "ci95": [lo, hi], "n"}}}, ...}``.
        path: PNG file to write (atomically).
        title: Figure title, or None.
        dpi: Resolution of the PNG (>= 150).

    Returns:
        The written path.

    Raises:
        ValueError: If the summary has no systems or no finite metric means.
    """
    import matplotlib

    systems = summary.get("systems") if isinstance(summary, Mapping) else None
    if not isinstance(systems, Mapping) or not systems:
        raise ValueError("summary has no 'systems' (expected the summary.json of snnse evaluate)")
    order = [s for s in ("noisy", "enhanced") if s in systems] + \
        sorted(s for s in systems if s not in ("noisy", "enhanced"))
    stats = {s: {m: st for m, e in systems[s].items() if (st := _stat(e)) is not None}
             for s in order if isinstance(systems[s], Mapping)}
    order = [s for s in order if stats.get(s)]
    if not order:
        raise ValueError("summary has no metric means to plot")
    present, known = {m for s in order for m in stats[s]}, {k for g in METRIC_GROUPS for k in g[2]}
    groups = [(t, u, [(k, d) for k, d in zip(keys, names) if k in present]) for t, u, keys, names in METRIC_GROUPS]
    groups.append(("Other", "value", [(k, k) for k in sorted(present - known)]))
    groups = [g for g in groups if g[2]]
    spare = iter(c for c in OKABE_ITO if c not in SYSTEM_COLORS.values())
    colors = {s: SYSTEM_COLORS.get(s) or next(spare, "#777777") for s in order}
    width = 0.8 / len(order)
    widths = [len(items) * (0.4 + 0.22 * len(order)) + 0.65 for _, _, items in groups]
    with matplotlib.rc_context(_STYLE):
        fig = _figure(min(7.2, max(3.2, sum(widths) + 0.2)), 2.75 + (0.2 if title else 0.0))
        axes = fig.subplots(1, len(groups), squeeze=False, width_ratios=widths)[0]
        handles, texts = {}, []
        for ax, (gtitle, unit, items) in zip(axes, groups):
            base = 1.0 if unit.startswith("MOS") else 0.0
            lows, highs = [base], [base]
            for j, s in enumerate(order):
                for i, (key, _) in enumerate(items):
                    if (st := stats[s].get(key)) is None:
                        continue
                    mean, lo, hi, _ = st
                    x = i + (j - (len(order) - 1) / 2) * width
                    handles[s] = ax.bar(x, mean - base, width * 0.92, bottom=base, color=colors[s],
                                        edgecolor="white", linewidth=0.4, zorder=2)
                    if hi > lo:
                        ax.errorbar(x, mean, yerr=[[mean - lo], [hi - mean]], fmt="none", ecolor="#222222",
                                    elinewidth=0.7, capsize=1.8, capthick=0.7, zorder=3)
                    up = mean >= base
                    label = (f"{mean:.1f}" if unit == "dB" else f"{mean:.2f}").replace("-", "\u2212")
                    texts.append((ax, ax.text(x, hi if up else lo, label, ha="center", va="bottom" if up else "top",
                                              fontsize=_VALUE_FONT, zorder=4,
                                              transform=ax.transData + _offset(fig, 2 if up else -2))))
                    lows, highs = lows + [lo], highs + [hi]
            ticks = {"MOS": [1, 2, 3, 4, 5], "score": [0, 0.25, 0.5, 0.75, 1.0]}.get(unit.split()[0])
            ax.set_ylim(min(lows), max(highs) if ticks is None else ticks[-1])  # _place_values adds room
            if ticks is not None:
                ax.set_yticks(ticks)
            else:
                ax.axhline(0, color="#444444", linewidth=0.6, zorder=1)
            ax.set_xticks(np.arange(len(items)), [d for _, d in items])
            ax.set(xlim=(-0.55, len(items) - 0.45), ylabel=unit)
            ax.tick_params(axis="x", length=0)
            ax.set_title(gtitle, pad=3)
            ax.grid(axis="y", color="#dddddd", linewidth=0.5, zorder=0)
            ax.set_axisbelow(True)
        names = [s.capitalize() + (f" (n = {max(ns)})" if (ns := [st[3] for st in stats[s].values()
                                                                   if st[3] is not None]) else "") for s in order]
        fig.legend([handles[s] for s in order], names, loc="outside lower center", ncols=len(order),
                   frameon=False, handlelength=1.2, columnspacing=1.5)
        if title:
            fig.suptitle(title)
        _place_values(fig, axes, texts, width * 0.92)
        return _save(fig, path, dpi)


def _offset(fig, dy_pt: float):
    """A transform shifting vertically by ``dy_pt`` points."""
    from matplotlib.transforms import ScaledTranslation

    return ScaledTranslation(0, dy_pt / 72, fig.dpi_scale_trans)


def _place_values(fig, axes, texts, bar_width: float) -> None:
    """Once laid out: shrink x tick labels that touch, turn all values vertical if one is wider
    than a bar, and extend each panel's y-limits so that every value lies inside it."""
    fig.draw_without_rendering()
    for ax in axes:
        boxes = sorted((t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()), key=lambda b: b.x0)
        if any(b.x0 - a.x1 < 2 for a, b in zip(boxes, boxes[1:])):
            for other in axes:
                other.tick_params(axis="x", labelsize=6)
            fig.draw_without_rendering()
            break
    bar_px = min(abs(ax.transData.transform([(bar_width, 0)])[0, 0] - ax.transData.transform([(0, 0)])[0, 0])
                 for ax in axes)
    if any(t.get_window_extent().width > 0.95 * bar_px for _, t in texts):
        for _, t in texts:  # all vertical, for consistency
            t.set_rotation(90)
    for _ in range(2):  # twice: the layout moves the axes a little after the first change
        fig.draw_without_rendering()
        for ax in axes:
            lo, hi = cur_lo, cur_hi = ax.get_ylim()
            inv = ax.transData.inverted()
            for t in (t for a, t in texts if a is ax):
                bb = t.get_window_extent()
                (_, y0), (_, y1) = inv.transform([(bb.x0, bb.y0), (bb.x1, bb.y1)])
                lo, hi = min(lo, y0), max(hi, y1)
            margin = 0.04 * (hi - lo)
            ax.set_ylim(lo - margin if lo < cur_lo else cur_lo, hi + margin if hi > cur_hi else cur_hi)
