"""Intrusive speech quality metrics on numpy signals.

* :func:`si_snr` — scale-invariant SNR (zero-mean), dB.
* :func:`pesq` — ITU-T P.862.2 wide-band (16 kHz) or P.862 narrow-band (8 kHz) PESQ
  through the ``pesq`` package; other rates are resampled with soxr first.
* :func:`stoi` — STOI / ESTOI through ``pystoi`` (which resamples to 10 kHz itself).

Inputs are 1-D float arrays ``(reference, estimate)``; different lengths are cut to
the shorter one. NaN/Inf raise :class:`MetricError`; so does PESQ on silence.
"""

from __future__ import annotations

import numpy as np

from snnse.audio import resample


class MetricError(ValueError):
    """A metric cannot be computed on these signals (NaN, silence, too short)."""


def _pair(ref, est) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    est = np.asarray(est, dtype=np.float64).reshape(-1)
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(est))):
        raise MetricError("signal contains NaN or Inf")
    n = min(len(ref), len(est))
    if n == 0:
        raise MetricError("empty signal")
    return ref[:n], est[:n]


def si_snr(ref, est, eps: float = 1e-12) -> float:
    """Scale-invariant SNR of ``est`` against ``ref`` in dB (both made zero-mean)."""
    ref, est = _pair(ref, est)
    ref, est = ref - ref.mean(), est - est.mean()
    target = np.dot(est, ref) / (np.dot(ref, ref) + eps) * ref
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(est - target, est - target) + eps)))


def pesq(ref, est, sample_rate: int, mode: str = "wb") -> float:
    """PESQ MOS-LQO: ``mode="wb"`` at 16 kHz (P.862.2) or ``"nb"`` at 8 kHz (P.862).

    Raises:
        MetricError: NaN/Inf, or no speech found in the reference (silence).
    """
    from pesq import pesq as _pesq
    from pesq import PesqError

    if mode not in ("wb", "nb"):
        raise ValueError(f"PESQ mode must be 'wb' or 'nb', got {mode!r}")
    ref, est = _pair(ref, est)
    fs = 16000 if mode == "wb" else 8000
    ref, est = resample(ref, sample_rate, fs), resample(est, sample_rate, fs)
    try:
        return float(_pesq(fs, ref, est, mode))
    except PesqError as err:
        raise MetricError(f"PESQ failed: {type(err).__name__} (silence or too short?)") from None


def stoi(ref, est, sample_rate: int, extended: bool = False) -> float:
    """STOI (or ESTOI with ``extended=True``) of ``est`` against ``ref``."""
    from pystoi import stoi as _stoi

    ref, est = _pair(ref, est)
    return float(_stoi(ref, est, sample_rate, extended=extended))
