"""Spectrogram figures: :func:`spectrograms` draws noisy / enhanced / clean log-magnitude
spectrograms (:func:`log_spectrogram`) stacked on one colour scale (``magma``), with each
signal's SI-SNR against the clean one in its title.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .style import _STYLE, DEFAULT_DPI, _figure, _mono, _save


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
