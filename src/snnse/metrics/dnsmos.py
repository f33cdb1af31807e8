"""DNSMOS P.835 (SIG, BAK, OVRL): Microsoft's non-intrusive speech quality estimate.

The metric of the Intel Neuromorphic DNS Challenge board. The network is
``sig_bak_ovr.onnx`` as shipped in the ``speechmos`` wheel (never downloaded);
this module locates the file without importing any ``speechmos`` submodule (those
import librosa) and runs it with onnxruntime on the CPU.

Procedure (the one of Microsoft's ``dnsmos_local.py`` and ``speechmos`` 0.0.1.1):

1. Audio at another rate is resampled to 16 kHz (:func:`snnse.audio.resample`).
2. Audio shorter than one window (9.01 s = 144160 samples) is concatenated with
   itself (doubling its length) until it is at least one window long.
3. ``int(floor(len / 16000) - 9.01) + 1`` windows with a 1 s hop; window ``k``
   covers samples ``[16000 k, 16000 k + 144160)``; a window that runs past the end
   is skipped.
4. Each window gives raw ``(sig, bak, ovr)``, mapped by the non-personalised
   quadratic fits :data:`POLY_FITS`; the clip score is the mean over windows.

Differences from ``speechmos``: audio outside ``[-1, 1]`` is scored unchanged
(see :class:`DNSMOS`), any rate is accepted, and every full window is scored,
whereas Microsoft's floating-point slice end drops windows 7-23 and 119-122
(``legacy_rounding=True`` reproduces that).

Reproducibility: the network is very sensitive to sub-sample details of its
input (shifting a noisy VoiceBank clip by one sample moves SIG by up to 0.6),
so scores are only comparable when computed the same way. On the six
``voicebank_debug`` noisy files this module reproduces all 18 ``speechmos``
0.0.1.1 scores in ``shared/data/reference_metrics.json`` within 3e-7.

Example:
    >>> from snnse.metrics.dnsmos import dnsmos
    >>> dnsmos(audio, 16000)  # doctest: +SKIP
    {'dnsmos_sig': 3.35, 'dnsmos_bak': 2.63, 'dnsmos_ovrl': 2.39}
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import threading
from pathlib import Path

import numpy as np

from snnse.atomic import file_sha256
from snnse.audio import resample
from snnse.metrics.quality import MetricError

__all__ = [
    "DNSMOS",
    "dnsmos",
    "model_info",
    "default_model_path",
    "lengthen",
    "window_starts",
    "POLY_FITS",
    "SAMPLE_RATE",
    "WINDOW",
    "HOP",
]

SAMPLE_RATE = 16000
"""Rate of the model input in Hz."""
WINDOW_SECONDS = 9.01
WINDOW = 144160
"""Window length in samples (9.01 s at 16 kHz)."""
HOP = 16000
"""Hop between windows in samples (1 s)."""

POLY_FITS: dict[str, tuple[float, float, float]] = {
    "sig": (-0.08397278, 1.22083953, 0.0052439),
    "bak": (-0.13166888, 1.60915514, -0.39604546),
    "ovrl": (-0.06766283, 1.11546468, 0.04602535),
}
"""Non-personalised fits ``p0 x**2 + p1 x + p2`` from raw model output to MOS."""

_MODEL_PACKAGE = "speechmos"
_MODEL_RELPATH = ("dnsmos_models", "sig_bak_ovr.onnx")
_INSTALL_HINT = "install the 'speechmos' package (pip install speechmos==0.0.1.1), which ships sig_bak_ovr.onnx"


def default_model_path() -> Path:
    """Path of ``sig_bak_ovr.onnx`` inside the installed ``speechmos`` package.

    Only the package's location is looked up; no ``speechmos`` module is imported.

    Returns:
        The path of the ONNX file.

    Raises:
        FileNotFoundError: ``speechmos`` is not installed or lacks the model file.
    """
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc).joinpath(*_MODEL_RELPATH)
        if path.is_file():
            return path
    where = "is not installed" if spec is None else f"has no {'/'.join(_MODEL_RELPATH)} in {locations}"
    raise FileNotFoundError(f"DNSMOS model not found: package {_MODEL_PACKAGE!r} {where}; {_INSTALL_HINT}")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _fit(raw: np.ndarray) -> np.ndarray:
    """Map raw ``[n, 3]`` (sig, bak, ovr) to MOS with :data:`POLY_FITS`."""
    raw = np.asarray(raw, dtype=np.float64)
    out = np.empty_like(raw)
    for col, name in enumerate(("sig", "bak", "ovrl")):
        p0, p1, p2 = POLY_FITS[name]
        x = raw[:, col]
        out[:, col] = p0 * x * x + p1 * x + p2
    return out


def _check_audio(audio, sample_rate) -> tuple[np.ndarray, int]:
    """Validate a mono signal; return it as float64 at the given rate."""
    try:
        sr = int(sample_rate)
    except (TypeError, ValueError):
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}") from None
    if sr <= 0 or sr != sample_rate:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    x = np.asarray(audio)
    if x.ndim != 1:
        raise ValueError(
            f"DNSMOS expects mono 1-D audio [samples], got shape {x.shape}; downmix multi-channel audio first"
        )
    if x.size == 0:
        raise MetricError("empty signal")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ValueError(f"audio must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise MetricError("signal contains NaN or Inf")
    return x, sr


def lengthen(audio: np.ndarray) -> np.ndarray:
    """Concatenate audio with itself until it is at least one window long.

    Microsoft's rule: the already lengthened signal is appended to itself, so the
    length doubles each time (1.96 s becomes 15.68 s, not 9.8 s).

    Args:
        audio: 1-D audio at 16 kHz, at least one sample long.

    Returns:
        ``audio`` itself when long enough, else the lengthened copy.

    Raises:
        MetricError: Empty audio.
    """
    x = np.asarray(audio)
    if x.size == 0:
        raise MetricError("empty signal")
    while len(x) < WINDOW:
        x = np.concatenate([x, x])
    return x


def window_starts(n_samples: int, legacy_rounding: bool = False) -> list[int]:
    """First samples of the DNSMOS windows of a (lengthened) 16 kHz signal.

    ``int(floor(n / 16000) - 9.01) + 1`` candidate windows, window ``k`` covering
    ``[16000 k, 16000 k + 144160)``; a window that runs past the end is skipped.

    Args:
        n_samples: Length of the signal after :func:`lengthen`.
        legacy_rounding: Reproduce the floating-point slice end of Microsoft's
            script and ``speechmos`` (``int((k + 9.01) * 16000)``), which is one
            sample short for ``k`` in 7..23 and 119..122, so that those windows
            are skipped as there.

    Returns:
        Start sample of each window, ascending.
    """
    n_hops = int(np.floor(n_samples / SAMPLE_RATE) - WINDOW_SECONDS) + 1
    starts = []
    for k in range(max(n_hops, 0)):
        start = k * HOP
        stop = int((k + WINDOW_SECONDS) * HOP) if legacy_rounding else start + WINDOW
        if min(stop, n_samples) - start >= WINDOW:
            starts.append(start)
    return starts


class DNSMOS:
    """DNSMOS P.835 scorer (non-personalised ``sig_bak_ovr.onnx``).

    The onnxruntime session is created on first use and reused. Pickling an
    instance drops the session (the state is only the settings and the model
    path), so instances can be sent to worker processes, each of which builds
    its own session once; creating an instance per worker is equally cheap.

    Audio outside ``[-1, 1]`` is fed to the model unchanged, as Microsoft's
    reference script does with the float samples it reads (``speechmos`` instead
    rejects such arrays). DNSMOS depends on the level, so peak-normalising would
    score a different signal than the one given, and clipping would add
    distortion the estimate does not have; unchanged is the only choice that
    scores the signal itself. To score what a 16-bit WAV file would contain,
    clip before calling.

    Args:
        threads: onnxruntime intra-op threads (default 1: evaluation is
            expected to parallelise over processes). Inter-op threads are 1.
        model_path: ONNX file to use; default :func:`default_model_path`.
        batch_size: Most windows per ``session.run`` call (the model takes a
            batch dimension). Default 1: on one CPU thread batching is no faster
            and needs several times the onnxruntime arena memory (measured:
            ``benchmarks/RESULTS.md``).
        legacy_rounding: Skip the windows that Microsoft's script and
            ``speechmos`` skip through floating-point rounding (see
            :func:`window_starts`). Off by default, which scores every full
            window. The two agree on audio shorter than 17 s (after the
            lengthening); on a 30 s N-DNS clip the legacy rule scores only
            windows 0-6 of 21.

    Raises:
        FileNotFoundError: No model file (``speechmos`` missing).
        ValueError: ``threads`` or ``batch_size`` below 1.
    """

    def __init__(
        self,
        threads: int = 1,
        model_path: str | Path | None = None,
        *,
        batch_size: int = 1,
        legacy_rounding: bool = False,
    ) -> None:
        if int(threads) < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.threads = int(threads)
        self.batch_size = int(batch_size)
        self.legacy_rounding = bool(legacy_rounding)
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"DNSMOS model file not found: {self.model_path}; {_INSTALL_HINT}")
        self._session = None
        self._input_name: str | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_session"] = None
        state["_input_name"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DNSMOS(threads={self.threads}, model_path={str(self.model_path)!r})"

    def _get_session(self):
        """The onnxruntime session, created once (thread-safe)."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import onnxruntime as ort

                    opts = ort.SessionOptions()
                    opts.intra_op_num_threads = self.threads
                    opts.inter_op_num_threads = 1
                    session = ort.InferenceSession(
                        str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"]
                    )
                    inputs, outputs = session.get_inputs(), session.get_outputs()
                    last = inputs[0].shape[-1] if len(inputs) == 1 else None
                    if len(inputs) != 1 or (isinstance(last, int) and last != WINDOW) or len(outputs) < 1:
                        raise RuntimeError(
                            f"{self.model_path} is not the DNSMOS P.835 model: inputs "
                            f"{[(i.name, i.shape) for i in inputs]}, outputs {[o.name for o in outputs]}"
                        )
                    self._input_name = inputs[0].name
                    self._session = session
        return self._session

    def raw(self, audio, sample_rate: int) -> np.ndarray:
        """Raw model outputs per window, before the polynomial fits.

        Args:
            audio: 1-D float audio.
            sample_rate: Its rate in Hz (resampled to 16 kHz when different).

        Returns:
            ``[n_windows, 3]`` float64 array of raw (sig, bak, ovr).

        Raises:
            ValueError: Audio not 1-D, or a bad sample rate.
            MetricError: Empty audio or NaN/Inf samples.
        """
        x, sr = _check_audio(audio, sample_rate)
        x = lengthen(resample(x, sr, SAMPLE_RATE))
        starts = window_starts(len(x), legacy_rounding=self.legacy_rounding)
        if not starts:
            raise MetricError("no full DNSMOS window in the signal")
        session = self._get_session()
        out = []
        for i in range(0, len(starts), self.batch_size):  # frames built per batch: bounded memory
            batch = np.stack([x[s : s + WINDOW] for s in starts[i : i + self.batch_size]]).astype(np.float32)
            out.append(session.run(None, {self._input_name: batch})[0])
        raw = np.concatenate(out, axis=0).astype(np.float64)
        if raw.shape != (len(starts), 3) or not np.all(np.isfinite(raw)):
            raise MetricError(f"DNSMOS model returned unusable output of shape {raw.shape}")
        return raw

    def windows(self, audio, sample_rate: int) -> np.ndarray:
        """Fitted MOS per window.

        Args:
            audio: 1-D float audio.
            sample_rate: Its rate in Hz (resampled to 16 kHz when different).

        Returns:
            ``[n_windows, 3]`` float64 array, columns (sig, bak, ovrl).

        Raises:
            ValueError: Audio not 1-D, or a bad sample rate.
            MetricError: Empty audio or NaN/Inf samples.
        """
        return _fit(self.raw(audio, sample_rate))

    def __call__(self, audio, sample_rate: int) -> dict[str, float]:
        """Clip scores: the mean of :meth:`windows` over windows.

        Args:
            audio: 1-D float audio.
            sample_rate: Its rate in Hz (resampled to 16 kHz when different).

        Returns:
            ``{"dnsmos_sig": float, "dnsmos_bak": float, "dnsmos_ovrl": float}``.

        Raises:
            ValueError: Audio not 1-D, or a bad sample rate.
            MetricError: Empty audio or NaN/Inf samples.
        """
        mean = self.windows(audio, sample_rate).mean(axis=0)
        return {"dnsmos_sig": float(mean[0]), "dnsmos_bak": float(mean[1]), "dnsmos_ovrl": float(mean[2])}


_DEFAULT: DNSMOS | None = None
_DEFAULT_LOCK = threading.Lock()


def _default() -> DNSMOS:
    global _DEFAULT
    if _DEFAULT is None:
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                _DEFAULT = DNSMOS()
    return _DEFAULT


def dnsmos(audio, sample_rate: int) -> dict[str, float]:
    """DNSMOS P.835 scores with a cached default :class:`DNSMOS` (1 thread).

    Args:
        audio: 1-D float audio.
        sample_rate: Its rate in Hz (resampled to 16 kHz when different).

    Returns:
        ``{"dnsmos_sig": float, "dnsmos_bak": float, "dnsmos_ovrl": float}``.

    Raises:
        ValueError: Audio not 1-D, or a bad sample rate.
        MetricError: Empty audio or NaN/Inf samples.
        FileNotFoundError: ``speechmos`` (the model file) is not installed.
    """
    return _default()(audio, sample_rate)


def model_info(model_path: str | Path | None = None) -> dict:
    """Provenance of the DNSMOS model, for reports.

    Args:
        model_path: ONNX file; default :func:`default_model_path`.

    Returns:
        Dict with ``model_path``, ``sha256`` (of the ONNX file), ``speechmos_version``,
        ``onnxruntime_version``, ``sample_rate``, ``window_samples``,
        ``window_seconds``, ``hop_samples`` and ``poly_fits`` (non-personalised,
        ``p0 x**2 + p1 x + p2`` per score).

    Raises:
        FileNotFoundError: No model file.
    """
    path = Path(model_path) if model_path is not None else default_model_path()
    return {
        "model": "DNSMOS P.835 sig_bak_ovr.onnx (non-personalised)",
        "model_path": str(path),
        "sha256": file_sha256(path),
        "speechmos_version": _version("speechmos"),
        "onnxruntime_version": _version("onnxruntime"),
        "sample_rate": SAMPLE_RATE,
        "window_samples": WINDOW,
        "window_seconds": WINDOW_SECONDS,
        "hop_samples": HOP,
        "poly_fits": {name: list(p) for name, p in POLY_FITS.items()},
    }
