"""Publication-quality figures (PNG): spectrograms, spike rasters and metric bar charts.

* :func:`spectrograms` — noisy / enhanced / clean log-magnitude spectrograms on one colour scale.
* :func:`spike_raster` — per-layer spike rasters of a model's recorded activity, with firing rates.
* :func:`metric_bars` — noisy vs enhanced means with 95 % CIs from ``snnse evaluate``'s summary.

Every writer renders with matplotlib's Agg canvas (no pyplot, no window), writes the PNG
atomically (temporary file in the target folder, then :func:`os.replace`) and returns its path.
Colours come from the Okabe–Ito colour-blind-safe palette; spectrograms use ``magma``.
matplotlib is imported inside the functions, so ``import snnse.plots`` stays fast. The
``snnse plot`` subcommand (``spectrogram``, ``raster``, ``metrics``) is defined here too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from snnse.cliutil import UsageError
from snnse.atomic import atomic_path

#: Okabe & Ito (2008) colour-blind-safe palette (black omitted).
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
#: Colours of the systems in :func:`metric_bars` (other systems take the remaining palette).
SYSTEM_COLORS = {"noisy": "#E69F00", "enhanced": "#0072B2", "clean": "#009E73"}
DEFAULT_DPI = 300
_VALUE_FONT = 6.5
_STYLE = {"font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8,
          "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7.5, "figure.titlesize": 9.5,
          "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6, "xtick.major.size": 2.5,
          "ytick.major.size": 2.5, "axes.spines.top": False, "axes.spines.right": False}

#: Metric panels of :func:`metric_bars`: (panel title, y-axis label, metric keys, display names).
METRIC_GROUPS = (
    ("Signal-to-noise ratio", "dB", ("sisnr", "sisnri", "segsnr"), ("SI-SNR", "SI-SNRi", "SegSNR")),
    ("Quality (MOS)", "MOS (1–5)",
     ("pesq_wb", "pesq_nb", "csig", "cbak", "covl", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"),
     ("PESQ\nWB", "PESQ\nNB", "CSIG", "CBAK", "COVL", "DNSMOS\nSIG", "DNSMOS\nBAK", "DNSMOS\nOVRL")),
    ("Intelligibility", "score (0–1)", ("stoi", "estoi"), ("STOI", "ESTOI")),
)


# ------------------------------------------------------------------ shared helpers

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


# ------------------------------------------------------------------ spectrograms

def log_spectrogram(x, sample_rate: int, window_s: float = 0.032, hop_s: float = 0.008
                    ) -> tuple[np.ndarray, float, float]:
    """Magnitude spectrogram in dB relative to full scale (a full-scale sine reads 0 dB).

    Hann window of about ``window_s`` (rounded to a power of two in samples), hop ``hop_s``,
    frames centred on ``k · hop`` (the signal is zero-padded by half a window at both ends).

    Returns:
        ``(S_db [bins, frames], hop_seconds, bin_hz)``.
    """
    x = _mono(x, "signal")
    n_fft = int(2 ** round(np.log2(window_s * sample_rate)))
    hop = max(1, int(round(hop_s * sample_rate)))
    win = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    xp = np.pad(x, (n_fft // 2, n_fft // 2))
    if len(xp) < n_fft:
        xp = np.pad(xp, (0, n_fft - len(xp)))
    frames = np.lib.stride_tricks.sliding_window_view(xp, n_fft)[::hop]
    mag = np.abs(np.fft.rfft(frames * win, axis=-1)).T / (win.sum() / 2)
    return 20 * np.log10(mag + 1e-10), hop / sample_rate, sample_rate / n_fft


def spectrograms(noisy=None, enhanced=None, clean=None, sample_rate: int = 16000,
                 path: str | os.PathLike = "spectrograms.png", title: str | None = None,
                 dynamic_range_db: float = 80.0, dpi: int = DEFAULT_DPI) -> Path:
    """Plot noisy / enhanced / clean log-magnitude spectrograms stacked on a shared time axis.

    Panels appear in the order Noisy, Enhanced, Clean for the signals given (at least one). All
    share one colour scale: from the loudest bin of any panel down ``dynamic_range_db`` dB, with
    one colour bar. When ``clean`` is given, the Noisy and Enhanced titles show their SI-SNR
    against it (lengths cut to the shorter signal).

    Args:
        noisy: Mono signal ``[T]`` (numpy array or tensor), or None.
        enhanced: Mono signal, or None.
        clean: Mono signal, or None.
        sample_rate: Sample rate of all signals in Hz.
        path: PNG file to write (atomically); parent folders are created.
        title: Figure title, or None.
        dynamic_range_db: Colour-scale range below the maximum, in dB.
        dpi: Resolution of the PNG (>= 150).

    Returns:
        The written path.

    Raises:
        ValueError: If no signal is given, or a signal is not mono, empty or non-finite.
    """
    from snnse.metrics.quality import si_snr
    import matplotlib

    sigs = [(n, _mono(s, n.lower())) for n, s in (("Noisy", noisy), ("Enhanced", enhanced), ("Clean", clean))
            if s is not None]
    if not sigs:
        raise ValueError("spectrograms: give at least one of noisy, enhanced, clean")
    ref = dict(sigs).get("Clean")
    specs = [(n, s, *log_spectrogram(s, sample_rate)) for n, s in sigs]
    vmax = float(np.ceil(max(S.max() for _, _, S, _, _ in specs) / 5.0) * 5.0)
    vmin = vmax - float(dynamic_range_db)
    duration = max(len(s) for _, s in sigs) / sample_rate
    with matplotlib.rc_context(_STYLE):
        fig = _figure(7.0, 0.45 + 1.55 * (n := len(specs)) + (0.2 if title else 0.0))
        axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
        for ax, (name, sig, S, hop_s, bin_hz) in zip(axes, specs):
            extent = (-hop_s / 2, (S.shape[1] - 0.5) * hop_s, -bin_hz / 2000, (S.shape[0] - 0.5) * bin_hz / 1000)
            im = ax.imshow(S, origin="lower", aspect="auto", extent=extent, cmap="magma",
                           vmin=vmin, vmax=vmax, interpolation="antialiased", rasterized=True)
            snr = f"  (SI-SNR {si_snr(ref, sig):.1f} dB)" if ref is not None and name != "Clean" else ""
            ax.set_title(name + snr.replace("-", "\u2212").replace("SI\u2212SNR", "SI-SNR"), loc="left", pad=3)
            ax.set(ylabel="Frequency (kHz)", ylim=(0, sample_rate / 2000), xlim=(0, duration))
            ax.spines[["top", "right"]].set_visible(True)
        axes[-1].set_xlabel("Time (s)")
        cb = fig.colorbar(im, ax=list(axes), location="right", shrink=1.0, aspect=28 * n ** 0.5, pad=0.015)
        cb.set_label("Magnitude (dB FS)")
        cb.outline.set_linewidth(0.6)
        if title:
            fig.suptitle(title)
        return _save(fig, path, dpi)


# ------------------------------------------------------------------ spike raster

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


# ------------------------------------------------------------------ metric bars

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


# ------------------------------------------------------------------ command line

def add_parser(sub) -> None:
    """Register ``snnse plot`` with its ``spectrogram``, ``raster`` and ``metrics`` figures."""
    p = sub.add_parser("plot", help="draw figures (spectrograms, spike rasters, metric bars) as PNG",
                       description="Draw publication-quality PNG figures.")
    psub = p.add_subparsers(dest="plot_command", metavar="FIGURE")

    def common(q, func) -> None:
        q.add_argument("-o", "--output", required=True, metavar="OUT.png", help="PNG file to write")
        q.add_argument("--title", default=None, help="figure title")
        q.add_argument("--dpi", type=int, default=DEFAULT_DPI, help=f"resolution (default {DEFAULT_DPI}, >= 150)")
        q.set_defaults(plot_func=func)

    q = psub.add_parser("spectrogram", help="noisy / enhanced / clean spectrograms",
                        description="Stacked log-magnitude spectrograms on one colour scale; with "
                                    "--clean, the titles give each signal's SI-SNR against it.")
    q.add_argument("--noisy", required=True, metavar="F", help="noisy audio file")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--enhanced", metavar="F", help="enhanced audio file")
    g.add_argument("--model", metavar="CKPT", help="model checkpoint: enhance --noisy with it first")
    q.add_argument("--clean", metavar="F", help="clean reference audio file")
    q.add_argument("--downmix", action="store_true", help="average multi-channel files to mono")
    q.add_argument("--device", default="cpu", help="torch device for --model (default cpu)")
    common(q, _cmd_spectrogram)

    q = psub.add_parser("raster", help="spike raster of a model's layers on one file",
                        description="Run a TRAINED model checkpoint on (the start of) an audio file "
                                    "and draw each layer's spikes with its firing rate. An untrained "
                                    "model (snnse create) barely fires, so its raster is nearly empty.")
    q.add_argument("--model", required=True, metavar="CKPT", help="model checkpoint (trained)")
    q.add_argument("--audio", required=True, metavar="F", help="audio file")
    q.add_argument("--max-neurons", type=int, default=64, metavar="N",
                   help="most units drawn per layer, evenly spaced (default 64)")
    q.add_argument("--seconds", type=float, default=2.0, metavar="S",
                   help="use the first S seconds of the audio (default 2)")
    q.add_argument("--downmix", action="store_true", help="average a multi-channel file to mono")
    q.add_argument("--device", default="cpu", help="torch device (default cpu)")
    common(q, _cmd_raster)

    q = psub.add_parser("metrics", help="metric bar chart from an evaluation summary",
                        description="Noisy vs enhanced metric means with 95 %% CIs from the "
                                    "summary.json of snnse evaluate.")
    q.add_argument("source", metavar="RUN_DIR|summary.json", help="evaluation folder or its summary.json")
    common(q, _cmd_metrics)
    p.set_defaults(func=run)


def run(args) -> int:
    """Run ``snnse plot FIGURE``; usage errors raise :class:`UsageError`."""
    func = getattr(args, "plot_func", None)
    if func is None:
        raise UsageError("snnse plot: name a figure: spectrogram, raster or metrics")
    if args.dpi < 150:
        raise UsageError(f"--dpi must be >= 150, got {args.dpi}")
    try:
        return func(args)
    except OSError as err:  # e.g. the output folder is not writable
        raise UsageError(f"{args.output}: cannot write the figure ({err.strerror or err})") from None


def _check_output(out: str, inputs: list[str | None]) -> Path:
    """The output path; UsageError unless it is a .png that is none of the inputs."""
    o = Path(out)
    for p in (Path(i) for i in inputs if i is not None):
        if o.resolve() == p.resolve() or (o.exists() and p.exists() and os.path.samefile(o, p)):
            raise UsageError(f"{o}: output would overwrite input {p}; choose another -o")
    if o.suffix.lower() != ".png" or o.is_dir():
        raise UsageError(f"{o}: output must be a .png file name")
    return o


def _read_mono(path: str, downmix: bool, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` as mono float32 (resampled to ``sample_rate`` if given); UsageError on problems."""
    from snnse.audio import AudioError, read_audio, resample

    try:
        x, sr = read_audio(path)
    except AudioError as err:
        raise UsageError(str(err)) from None
    if x.shape[0] > 1 and not downmix:
        raise UsageError(f"{path}: {x.shape[0]} channels; plots need mono (pass --downmix to average them)")
    x = x.mean(axis=0)
    if sample_rate is not None and sr != sample_rate:
        x, sr = resample(x, sr, sample_rate), sample_rate
    return x, sr


def _forward(model, x: np.ndarray, device: str, name: str):
    """Run ``model`` offline on mono ``x``: ``(enhanced, aux)``; UsageError if it fails."""
    import torch

    try:
        with torch.inference_mode():
            y, aux = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device), return_aux=True)
    except (RuntimeError, ValueError) as err:
        raise UsageError(f"{name}: model failed on this audio ({type(err).__name__}: "
                         f"{' '.join(str(err).split())[:200]})") from None
    y = y.detach().cpu().numpy().astype(np.float64)
    if not np.all(np.isfinite(y)):
        raise UsageError(f"{name}: the model produced NaN or Inf samples")
    return y, aux


def _cmd_spectrogram(args) -> int:
    from snnse.cliutil import load_model

    out = _check_output(args.output, [args.noisy, args.enhanced, args.clean, args.model])
    model = load_model(args.model, args.device) if args.model else None
    noisy, sr = _read_mono(args.noisy, args.downmix, int(model.sample_rate) if model else None)
    enhanced = _read_mono(args.enhanced, args.downmix, sr)[0] if args.enhanced else None
    clean = _read_mono(args.clean, args.downmix, sr)[0] if args.clean else None
    if model is not None:
        enhanced = _forward(model, noisy, args.device, args.noisy)[0]
    title = args.title if args.title is not None else Path(args.noisy).stem + (f" ({model.name})" if model else "")
    spectrograms(noisy, enhanced, clean, sr, out, title=title, dpi=args.dpi)
    print(f"wrote {out}")
    return 0


def _cmd_raster(args) -> int:
    from snnse.cliutil import load_model

    out = _check_output(args.output, [args.audio, args.model])
    if args.max_neurons < 1:
        raise UsageError(f"--max-neurons must be >= 1, got {args.max_neurons}")
    if not args.seconds > 0:
        raise UsageError(f"--seconds must be positive, got {args.seconds}")
    model = load_model(args.model, args.device)
    x, sr = _read_mono(args.audio, args.downmix, int(model.sample_rate))
    record = _forward(model, x[: max(1, int(round(args.seconds * sr)))], args.device, args.audio)[1]["record"]
    if not record:
        raise UsageError(f"{args.model}: model {model.name!r} records no layer activity to plot")
    title = args.title if args.title is not None else f"{model.name} — {Path(args.audio).name}"
    rates = spike_raster(record, model.hop, sr, out, max_neurons=args.max_neurons, title=title, dpi=args.dpi)[1]
    print(f"wrote {out} (firing rates: " + ", ".join(f"{k} {format_rate(v)} %" for k, v in rates.items()) + ")")
    return 0


def _cmd_metrics(args) -> int:
    src = Path(args.source)
    if src.is_dir():  # a run folder: its summary.json, else the only one below it
        found = [src / "summary.json"] if (src / "summary.json").is_file() else sorted(src.rglob("summary.json"))
        if len(found) != 1:
            raise UsageError(f"{src}: " + ("no summary.json in this folder" if not found else
                                           f"several summary.json files ({found[0]}, {found[1]}, ...); name one"))
        src = found[0]
    elif not src.is_file():
        raise UsageError(f"{src}: file not found")
    out = _check_output(args.output, [str(src)])
    try:
        summary = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UsageError(f"{src}: not a readable JSON summary ({type(err).__name__}: {err})") from None
    try:
        metric_bars(summary, out, title=args.title, dpi=args.dpi)
    except ValueError as err:
        raise UsageError(f"{src}: {err}") from None
    print(f"wrote {out}")
    return 0


__all__ = ["spectrograms", "spike_raster", "metric_bars", "log_spectrogram", "firing_rates",
           "format_rate", "select_units", "add_parser", "run"]
