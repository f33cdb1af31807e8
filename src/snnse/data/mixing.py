"""Mixing clean speech with noise at a chosen SNR and level.

The conventions are those of the DNS / Intel N-DNS synthesis: the SNR is the
ratio of the clean and noise energies over the whole clip, and the level is
the RMS of the noisy mixture in dBFS; clean and noise are scaled by the same
factor as the mixture, so ``noisy == clean + noise`` holds exactly.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def rms_db(x: np.ndarray) -> float:
    """RMS level of ``x`` in dBFS (``-inf`` for silence)."""
    p = float(np.mean(np.square(x, dtype=np.float64)))
    return 10.0 * np.log10(p) if p > 0 else float("-inf")


def snr_db(clean: np.ndarray, noise: np.ndarray) -> float:
    """Energy ratio of ``clean`` to ``noise`` in dB."""
    return rms_db(clean) - rms_db(noise)


def mix(clean: np.ndarray, noise: np.ndarray, snr: float, level: float | None = None,
        peak: float | None = 0.99) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Mix ``clean`` and ``noise`` (same length) at ``snr`` dB, mixture at ``level`` dBFS.

    Args:
        clean: Clean speech, 1-D float array.
        noise: Noise, same shape as ``clean``.
        snr: Wanted SNR in dB (clean energy over noise energy).
        level: Wanted RMS level of the mixture in dBFS; ``None`` keeps the
            clean signal's level.
        peak: If the scaled mixture's peak would exceed this, all three
            signals are scaled down together so that it does not clip; the
            level actually reached is returned. ``None`` disables this.

    Returns:
        ``(noisy, clean, noise, level)``: float64 arrays with
        ``noisy = clean + noise`` and the mixture's actual RMS level in dBFS.

    Raises:
        ValueError: Different shapes, or silent clean or noise signals.
    """
    clean = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    if clean.shape != noise.shape:
        raise ValueError(f"clean and noise differ in shape: {clean.shape} vs {noise.shape}")
    pc, pn = np.mean(clean ** 2), np.mean(noise ** 2)
    if pc <= EPS ** 2 or pn <= EPS ** 2:
        raise ValueError("cannot mix at an SNR: the clean or the noise signal is silent")
    noise = noise * np.sqrt(pc / pn * 10.0 ** (-snr / 10.0))
    noisy = clean + noise
    if level is not None:
        g = 10.0 ** (level / 20.0) / np.sqrt(np.mean(noisy ** 2))
        noisy, clean, noise = noisy * g, clean * g, noise * g
    if peak is not None:
        m = np.max(np.abs(noisy))
        if m > peak:
            g = peak / m
            noisy, clean, noise = noisy * g, clean * g, noise * g
    return noisy, clean, noise, rms_db(noisy)
