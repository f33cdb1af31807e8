"""Intrusive speech quality metrics on numpy signals.

* :func:`si_snr` — scale-invariant SNR (zero-mean), dB; :func:`si_snri` its improvement.
* :func:`pesq` — ITU-T P.862.2 wide-band (16 kHz) or P.862 narrow-band (8 kHz) PESQ
  through the ``pesq`` package; other rates are resampled with soxr first.
* :func:`stoi` — STOI / ESTOI through ``pystoi`` (which resamples to 10 kHz itself).
* :func:`composite` — Hu & Loizou (2008) CSIG / CBAK / COVL with their ingredients
  (LLR, WSS, segSNR, PESQ-WB), numerically following the Python port of
  ``composite.m`` that VoiceBank+DEMAND papers report; :func:`segsnr` alone.
* :func:`versions` — one line per metric naming the implementation and package versions.

Inputs are 1-D float arrays ``(reference, estimate)``; different lengths are cut to
the shorter one. NaN/Inf raise :class:`MetricError`; so do PESQ and the composite
measures on a silent (all-zero) reference or estimate and on signals shorter than
PESQ's minimum of 0.25 s. :func:`si_snr` of a silent estimate (or of a silent
reference) is finite and very low (below -100 dB for speech, set by its ``eps``); of
two silent signals it raises :class:`MetricError`.
"""

from __future__ import annotations

import numpy as np

from snnse.audio import resample

COMPOSITE_RATE = 16000
"""Rate (Hz) at which :func:`composite` and :func:`segsnr` work; other rates are resampled."""

_EPS = np.finfo(np.float64).eps
_ALPHA = 0.95  # fraction of best frames kept for LLR and WSS
_SEGSNR_MIN, _SEGSNR_MAX = -10.0, 35.0
_WSS_CENTRE = np.array([
    50.0, 120.0, 190.0, 260.0, 330.0, 400.0, 470.0, 540.0, 617.372, 703.378, 798.717,
    904.128, 1020.38, 1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08,
    2446.71, 2701.97, 2978.04, 3276.17, 3597.63])
_WSS_BANDWIDTH = np.array([
    70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 77.3724, 86.0056, 95.3398, 105.411, 116.256,
    127.914, 140.423, 153.823, 168.154, 183.457, 199.776, 217.153, 235.631, 255.255,
    276.072, 298.126, 321.465, 346.136])
_WSS_KMAX, _WSS_KLOCMAX = 20.0, 1.0


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
    """Scale-invariant SNR of ``est`` against ``ref`` in dB (both made zero-mean).

    Args:
        ref: Reference (clean) signal, 1-D.
        est: Estimated signal, 1-D; cut with ``ref`` to the shorter length.
        eps: Regulariser of both energies.

    Returns:
        SI-SNR in dB. A silent (or constant) estimate gives the finite, very low value
        ``10*log10(eps / (|ref|^2 + eps))`` (all of the reference counted as error;
        the plain formula would give a meaningless 0 dB there); a silent reference
        with a non-silent estimate gives the very low ``10*log10(eps / |est|^2)``.

    Raises:
        MetricError: NaN/Inf or empty input; both signals silent (undefined).
    """
    ref, est = _pair(ref, est)
    ref, est = ref - ref.mean(), est - est.mean()
    e_ref, e_est = np.dot(ref, ref), np.dot(est, est)
    if e_est == 0:
        if e_ref == 0:
            raise MetricError("SI-SNR undefined: reference and estimate are both silent")
        return float(10 * np.log10(eps / (e_ref + eps)))
    target = np.dot(est, ref) / (np.dot(ref, ref) + eps) * ref
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(est - target, est - target) + eps)))


def si_snri(ref, est, noisy) -> float:
    """SI-SNR improvement: ``si_snr(ref, est) - si_snr(ref, noisy)`` in dB.

    Args:
        ref: Reference (clean) signal, 1-D.
        est: Enhanced signal, 1-D.
        noisy: Unprocessed (noisy) input signal, 1-D.

    Returns:
        The improvement in dB (each term cuts its pair to the shorter length).

    Raises:
        MetricError: NaN/Inf or empty input.
    """
    return si_snr(ref, est) - si_snr(ref, noisy)


def pesq(ref, est, sample_rate: int, mode: str = "wb") -> float:
    """PESQ MOS-LQO: ``mode="wb"`` at 16 kHz (P.862.2) or ``"nb"`` at 8 kHz (P.862).

    Signals at another rate are resampled (soxr) to the mode's rate first.

    Args:
        ref: Reference (clean) signal, 1-D.
        est: Degraded / enhanced signal, 1-D; cut with ``ref`` to the shorter length.
        sample_rate: Rate of both signals in Hz.
        mode: ``"wb"`` (wide-band, 16 kHz) or ``"nb"`` (narrow-band, 8 kHz).

    Returns:
        MOS-LQO (about 1.0 to 4.64 for ``"wb"``, up to about 4.55 for ``"nb"``).

    Raises:
        ValueError: Unknown ``mode``.
        MetricError: NaN/Inf; shorter than 0.25 s; a silent (all-zero) reference
            (the package finds no utterances) or estimate (the package's C code
            produces NaN and fails with a bare ``ValueError``); any other failure
            of the package.
    """
    from pesq import PesqError
    from pesq import pesq as _pesq

    if mode not in ("wb", "nb"):
        raise ValueError(f"PESQ mode must be 'wb' or 'nb', got {mode!r}")
    ref, est = _pair(ref, est)
    fs = 16000 if mode == "wb" else 8000
    ref, est = resample(ref, sample_rate, fs), resample(est, sample_rate, fs)
    if len(ref) < fs // 4:
        raise MetricError(f"PESQ needs at least 0.25 s of audio, got {len(ref) / fs:.3f} s")
    # the package divides both by their common peak and casts to float32
    peak = max(np.max(np.abs(ref)), np.max(np.abs(est)))
    for name, sig in (("reference", ref), ("estimate", est)):
        if peak == 0 or not np.any((sig / peak).astype(np.float32)):
            raise MetricError(f"PESQ undefined: the {name} is silent")
    try:
        score = float(_pesq(fs, ref, est, mode))
    except PesqError as err:
        raise MetricError(f"PESQ failed: {type(err).__name__} (silent or too short reference?)") from None
    except ValueError as err:  # NaN inside the C code, e.g. an estimate far quieter than the reference
        raise MetricError(f"PESQ failed ({err}); estimate silent or too quiet?") from None
    if not np.isfinite(score):
        raise MetricError("PESQ returned a non-finite score")
    return score


def stoi(ref, est, sample_rate: int, extended: bool = False) -> float:
    """STOI (or ESTOI with ``extended=True``) of ``est`` against ``ref``."""
    from pystoi import stoi as _stoi

    ref, est = _pair(ref, est)
    return float(_stoi(ref, est, sample_rate, extended=extended))


# --------------------------------------------------------------------------- composite
def _at_rate(ref, est, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Check, cut to the shorter length and resample both signals to 16 kHz."""
    ref, est = _pair(ref, est)
    return resample(ref, sample_rate, COMPOSITE_RATE), resample(est, sample_rate, COMPOSITE_RATE)


def _frames(x: np.ndarray, fs: int) -> np.ndarray:
    """Hann-windowed frames ``[n_frames, W]`` as composite.m cuts them.

    ``W = round(0.03 fs)``, hop ``S = floor(W/4)``, ``n_frames = int(len/S - W/S)``
    (one frame fewer than fit: the original's count drops the last full frame too).
    """
    win = int(round(0.030 * fs))
    hop = win // 4
    n_frames = int(len(x) / hop - win / hop)
    if n_frames < 1:
        raise MetricError(f"signal too short for composite measures ({len(x)} samples)")
    idx = np.arange(n_frames)[:, None] * hop + np.arange(win)[None, :]
    window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, win + 1) / (win + 1)))
    return x[idx] * window


def _best_mean(dist: np.ndarray) -> float:
    """Mean of the smallest ``round(0.95 n)`` values (composite.m's frame selection)."""
    keep = max(1, int(round(_ALPHA * len(dist))))
    return float(np.mean(np.sort(dist)[:keep]))


def _segsnr_frames(ref: np.ndarray, est: np.ndarray, fs: int) -> np.ndarray:
    """Per-frame segmental SNR in dB, clipped to [-10, 35], as the Python port computes it.

    As the port does, both signals are first made zero-mean and the estimate is scaled
    to the reference's peak; this is needed to reproduce the reference CBAK values
    (without it segSNR differs by 0.06-0.7 dB on the VoiceBank debug files).
    """
    ref = ref - ref.mean()
    est = est - est.mean()
    ref_peak, est_peak = np.max(np.abs(ref)), np.max(np.abs(est))
    if ref_peak == 0 or est_peak == 0:
        raise MetricError("segSNR undefined: the " + ("reference" if ref_peak == 0 else "estimate")
                          + " is silent (or constant)")
    est = est * (ref_peak / est_peak)
    cf, pf = _frames(ref, fs), _frames(est, fs)
    signal = np.sum(cf ** 2, axis=1)
    noise = np.sum((cf - pf) ** 2, axis=1)
    snr = 10 * np.log10(signal / (noise + _EPS) + _EPS)
    return np.clip(snr, _SEGSNR_MIN, _SEGSNR_MAX)


def _crit_filters(n_fft: int, fs: int) -> np.ndarray:
    """The 25 Gaussian-shaped critical-band filters ``[25, n_fft/2]`` of the WSS measure."""
    half = n_fft // 2
    f0 = _WSS_CENTRE / (fs / 2) * half
    bw = _WSS_BANDWIDTH / (fs / 2) * half
    norm = np.log(_WSS_BANDWIDTH[0]) - np.log(_WSS_BANDWIDTH)
    j = np.arange(half)[None, :]
    filt = np.exp(-11 * ((j - np.floor(f0)[:, None]) / bw[:, None]) ** 2 + norm[:, None])
    filt[filt <= np.exp(-30 / (2 * 2.303))] = 0.0
    return filt


def _local_peaks(energy: np.ndarray) -> np.ndarray:
    """Nearest spectral peak per band, vectorised over frames (composite.m's search).

    For band ``k`` with a rising slope the search moves right while slopes stay positive
    and takes ``E[n-1]``; otherwise it moves left while slopes are non-positive and takes
    ``E[n+1]`` -- the same indices as the original's loops, off-by-one included.
    """
    slope = np.diff(energy, axis=1)  # [F, 24]
    nb = slope.shape[1]
    k = np.arange(nb)
    rising = slope > 0
    # first n >= k with slope[n] <= 0 (nb if none)
    stop_right = np.where(~rising, k, nb)
    stop_right = np.minimum.accumulate(stop_right[:, ::-1], axis=1)[:, ::-1]
    # last n <= k with slope[n] > 0 (-1 if none)
    stop_left = np.maximum.accumulate(np.where(rising, k, -1), axis=1)
    idx = np.where(rising, stop_right - 1, stop_left + 1)
    return np.take_along_axis(energy, idx, axis=1)


def _wss_frames(ref: np.ndarray, est: np.ndarray, fs: int) -> np.ndarray:
    """Per-frame weighted spectral slope distance (Klatt, 1982) as in composite.m."""
    win = int(round(0.030 * fs))
    n_fft = 2 ** int(np.ceil(np.log2(2 * win)))
    filt = _crit_filters(n_fft, fs)
    dists = []
    for frames in (_frames(ref, fs), _frames(est, fs)):
        spec = np.abs(np.fft.rfft(frames, n_fft, axis=1)[:, : n_fft // 2]) ** 2
        energy = 10 * np.log10(np.maximum(spec @ filt.T, 1e-10))  # [F, 25]
        slope = np.diff(energy, axis=1)
        peak = _local_peaks(energy)
        e = energy[:, :-1]
        w_max = _WSS_KMAX / (_WSS_KMAX + energy.max(axis=1, keepdims=True) - e)
        w_loc = _WSS_KLOCMAX / (_WSS_KLOCMAX + peak - e)
        dists.append((slope, w_max * w_loc))
    (s_ref, w_ref), (s_est, w_est) = dists
    weight = (w_ref + w_est) / 2
    return np.sum(weight * (s_ref - s_est) ** 2, axis=1) / np.sum(weight, axis=1)


def _levinson(r: np.ndarray) -> np.ndarray:
    """Levinson-Durbin on autocorrelations ``[F, P+1]``; returns ``[F, P+1]`` as ``[1, -a1..-aP]``.

    Frames with zero energy give NaN coefficients (as the original's division by zero).
    """
    n_frames, order = r.shape[0], r.shape[1] - 1
    a = np.zeros((n_frames, order))
    err = r[:, 0].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(order):
            acc = np.sum(a[:, :i] * r[:, i:0:-1], axis=1)
            k = (r[:, i + 1] - acc) / err
            a[:, :i] = a[:, :i] - k[:, None] * a[:, :i][:, ::-1]
            a[:, i] = k
            err = (1 - k ** 2) * err
    return np.concatenate([np.ones((n_frames, 1)), -a], axis=1)


def _llr_frames(ref: np.ndarray, est: np.ndarray, fs: int) -> np.ndarray:
    """Per-frame log-likelihood ratio (Itakura) between LPC models, unclipped."""
    order = 16 if fs >= 10000 else 10
    cf, pf = _frames(ref, fs), _frames(est, fs)
    n = cf.shape[1]

    def autocorr(x):
        return np.stack([np.sum(x[:, : n - k] * x[:, k:], axis=1) for k in range(order + 1)], axis=1)

    r_ref, r_est = autocorr(cf), autocorr(pf)
    a_ref, a_est = _levinson(r_ref), _levinson(r_est)
    lag = np.abs(np.arange(order + 1)[:, None] - np.arange(order + 1)[None, :])
    toeplitz = r_ref[:, lag]  # [F, P+1, P+1]
    with np.errstate(divide="ignore", invalid="ignore"):
        num = np.einsum("fi,fij,fj->f", a_est, toeplitz, a_est)
        den = np.einsum("fi,fij,fj->f", a_ref, toeplitz, a_ref)
        return np.log(num / den)


def segsnr(ref, est, sample_rate: int) -> float:
    """Segmental SNR of composite.m: mean over frames of the clipped frame SNR.

    As in the Python port of composite.m, both signals are made zero-mean and the
    estimate is scaled to the reference's peak first. Frames are 30 ms Hann-windowed
    with 75 % overlap at 16 kHz (other rates are resampled first, so the value equals
    ``composite(...)["segsnr"]``); each frame SNR
    ``10 log10(E_clean / (E_error + eps) + eps)`` is clipped to [-10, 35] dB.

    Args:
        ref: Reference (clean) signal, 1-D.
        est: Estimated signal, 1-D; cut with ``ref`` to the shorter length.
        sample_rate: Rate of both signals in Hz.

    Returns:
        segSNR in dB, within [-10, 35].

    Raises:
        MetricError: NaN/Inf; too short for one 30 ms frame plus hop; a silent
            (or constant) reference or estimate (the peak matching is undefined).
    """
    ref, est = _at_rate(ref, est, sample_rate)
    return float(np.mean(_segsnr_frames(ref, est, COMPOSITE_RATE)))


def composite(ref, est, sample_rate: int, pesq_wb: float | None = None) -> dict:
    """Hu & Loizou (2008) composite measures CSIG, CBAK, COVL and their ingredients.

    Follows the widely used Python port of ``composite.m`` (the numbers VoiceBank+DEMAND
    papers report): 30 ms Hann frames with 75 % overlap at 16 kHz; LLR (LPC order 16)
    and WSS (25 critical bands) averaged over the best 95 % of frames; segSNR clipped
    to [-10, 35] dB per frame after the port's DC removal and peak matching (see
    :func:`segsnr`). The per-frame LLR is *not* clipped (clipping it to [0, 2], as some
    other ports do, moves CSIG by up to 0.1 and misses the reference scores). Frames
    whose LLR is not finite (digitally silent frames: 0/0) are dropped before the best
    95 % are selected; the port would propagate NaN there.

    Args:
        ref: Reference (clean) signal, 1-D.
        est: Estimated signal, 1-D; cut with ``ref`` to the shorter length.
        sample_rate: Rate of both signals in Hz; resampled to 16 kHz if different.
        pesq_wb: Precomputed wide-band PESQ of the same pair (skips computing it).

    Returns:
        ``{"csig", "cbak", "covl", "pesq_wb", "llr", "wss", "segsnr"}`` as floats;
        the three composite scores are clipped to [1, 5].

    Raises:
        MetricError: NaN/Inf; too short; a silent reference or estimate (PESQ fails).
    """
    ref, est = _at_rate(ref, est, sample_rate)
    fs = COMPOSITE_RATE
    if pesq_wb is None:
        pesq_wb = pesq(ref, est, fs, mode="wb")
    pesq_wb = float(pesq_wb)
    if not np.isfinite(pesq_wb):
        raise MetricError("pesq_wb must be finite")
    llr_frames = _llr_frames(ref, est, fs)
    llr_frames = llr_frames[np.isfinite(llr_frames)]
    if len(llr_frames) == 0:
        raise MetricError("LLR undefined: no frame with speech energy in both signals")
    llr = _best_mean(llr_frames)
    wss_frames = _wss_frames(ref, est, fs)
    if not np.all(np.isfinite(wss_frames)):
        raise MetricError("WSS undefined (non-finite band weights)")
    wss = _best_mean(wss_frames)
    seg = float(np.mean(_segsnr_frames(ref, est, fs)))

    def clip(x):
        return float(min(max(x, 1.0), 5.0))

    return {
        "csig": clip(3.093 - 1.029 * llr + 0.603 * pesq_wb - 0.009 * wss),
        "cbak": clip(1.634 + 0.478 * pesq_wb - 0.007 * wss + 0.063 * seg),
        "covl": clip(1.594 + 0.805 * pesq_wb - 0.512 * llr - 0.007 * wss),
        "pesq_wb": pesq_wb,
        "llr": llr,
        "wss": wss,
        "segsnr": seg,
    }


def versions() -> dict[str, str]:
    """Describe the implementation behind each metric name, with package versions.

    Returns:
        ``{metric: one-line description}`` for sisnr, sisnri, pesq_wb, pesq_nb, stoi,
        estoi, csig, cbak, covl and segsnr.
    """
    from importlib.metadata import PackageNotFoundError, version

    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "not installed"

    np_v, soxr_v = ver("numpy"), ver("soxr")
    pesq_v, stoi_v = ver("pesq"), ver("pystoi")
    resamp = f"other rates resampled with soxr {soxr_v} (VHQ)"
    comp = (f"Hu & Loizou (2008) composite (snnse numpy {np_v} port of composite.m: "
            "30 ms Hann frames, 75 % overlap, unclipped LLR order 16 and WSS over best 95 % "
            "of frames, segSNR after DC removal and peak matching clipped to [-10, 35] dB) "
            f"with PESQ-WB via pesq {pesq_v}; "
            f"at 16 kHz, {resamp}")
    return {
        "sisnr": f"scale-invariant SNR, zero-mean, dB (snnse, numpy {np_v})",
        "sisnri": f"SI-SNR(clean, enhanced) - SI-SNR(clean, noisy), dB (snnse, numpy {np_v})",
        "pesq_wb": f"ITU-T P.862.2 via pesq {pesq_v} at 16 kHz; {resamp}",
        "pesq_nb": f"ITU-T P.862 via pesq {pesq_v} at 8 kHz; {resamp}",
        "stoi": f"STOI (Taal et al. 2011) via pystoi {stoi_v} (resamples to 10 kHz itself)",
        "estoi": f"ESTOI (Jensen & Taal 2016) via pystoi {stoi_v} (resamples to 10 kHz itself)",
        "csig": "CSIG = 3.093 - 1.029 LLR + 0.603 PESQ - 0.009 WSS, clipped to [1, 5]; " + comp,
        "cbak": "CBAK = 1.634 + 0.478 PESQ - 0.007 WSS + 0.063 segSNR, clipped to [1, 5]; " + comp,
        "covl": "COVL = 1.594 + 0.805 PESQ - 0.512 LLR - 0.007 WSS, clipped to [1, 5]; " + comp,
        "segsnr": ("segmental SNR of the composite.m Python port (DC removed, estimate scaled "
                   "to the reference peak, 30 ms Hann frames, 75 % overlap, frames clipped "
                   f"to [-10, 35] dB, mean) at 16 kHz (snnse, numpy {np_v}); {resamp}"),
    }
