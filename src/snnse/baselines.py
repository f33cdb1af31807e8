"""Enhancement baselines, scored next to the models by ``snnse evaluate``.

* ``noisereduce``: spectral gating from the ``noisereduce`` package (Sainburg 2020), with its
  defaults (non-stationary gating, ``prop_decrease=1.0``), what a Python user would otherwise
  reach for. It runs on the whole file (it is not causal), so it is an offline reference, not a
  streaming competitor.
* ``rnnoise``: RNNoise (Valin 2018), the learned real-time denoiser (DSP band features, a small
  GRU network predicts 22 band gains and a voice probability, a pitch comb filter), with the
  model built into the C library that the ``pyrnnoise`` wheel bundles (RNNoise 0.2 code): an
  optional dependency, ``pip install "snnse[baselines]"``. It runs causally, frame by frame, so
  it is a **streaming competitor**. RNNoise works at 48 kHz on 10 ms frames (480 samples) of
  float samples in the 16-bit range: the input is resampled to 48 kHz with soxr
  (:func:`snnse.audio.resample`, linear phase, its delay compensated), scaled by 32768, denoised
  from a fresh state (one per call, so per file), scaled back and resampled to the input rate,
  in float throughout (no int16 rounding or clipping, unlike ``pyrnnoise``'s own wrapper).

  Delay: the library's output lags its input by :data:`RNNOISE_DELAY` = 960 samples at 48 kHz
  (20 ms). Measured by cross-correlating the raw output with the input on the six clean
  VoiceBank clips of ``shared/data/voicebank_debug`` (960 on each; ``pyrnnoise``'s own wrapper
  lags by the same 320 samples at 16 kHz), and explained by the code: 10 ms from the
  overlap-add synthesis (20 ms windows, 10 ms hop) and 10 ms because RNNoise 0.2 applies the
  gains computed on frame ``t`` to the spectrum of frame ``t − 1`` (one frame of lookahead).
  The baseline feeds 960 zeros after the input and drops the first 960 output samples, so its
  output has the input's length and no lag (residual cross-correlation lag 0). Live, the lag
  plus the 10 ms frame being filled makes 30 ms of algorithmic latency in the sense ``snnse``
  uses for its models (output lag + one hop), plus the delay of a streaming resampler at rates
  other than 48 kHz; the 20 ms usually quoted for RNNoise is the original design's (10 ms
  frames with 10 ms of window overlap), without the extra lookahead frame. Compute: well within
  real time on one core (measured: ``benchmarks/RESULTS.md``).

Each baseline is a function ``f(noisy [T] float64, sample_rate) -> enhanced [T] float64``.

References:
    T. Sainburg, "timsainb/noisereduce: v1.0", Zenodo, 2020, doi:10.5281/zenodo.3243139.
    T. Sainburg, M. Thielk, T. Q. Gentner, "Finding, visualizing, and quantifying latent
    structure across diverse animal vocal repertoires", PLoS Comput. Biol. 2020.
    J.-M. Valin, "A hybrid DSP/deep learning approach to real-time full-band speech
    enhancement", IEEE MMSP 2018, arXiv:1709.08243.
"""

from __future__ import annotations

import ctypes
from typing import Callable

import numpy as np

from snnse.audio import resample

INSTALL_HINT = 'pip install "snnse[baselines]"'
RNNOISE_SAMPLE_RATE = 48000
RNNOISE_FRAME = 480
# Output lag of rnnoise_process_frame behind its input, in samples at 48 kHz (see above).
RNNOISE_DELAY = 2 * RNNOISE_FRAME
# RNNoise takes float samples in the int16 range.
_INT16_SCALE = 32768.0


class BaselineUnavailableError(RuntimeError):
    """A baseline's optional package is not installed (the message says how to install it)."""


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


def _rnnoise_binding():
    """``pyrnnoise.rnnoise``, whose ``lib`` is a ctypes handle to the bundled librnnoise with the
    argument types of ``rnnoise_create``, ``rnnoise_process_frame`` and ``rnnoise_destroy`` set."""
    try:
        from pyrnnoise import rnnoise as binding
    except (ImportError, OSError) as err:
        raise BaselineUnavailableError(
            f"the rnnoise baseline needs the optional package pyrnnoise, which is not installed "
            f"or cannot load its RNNoise library ({type(err).__name__}: {err}); install it with: "
            f"{INSTALL_HINT}") from err
    return binding


def _rnnoise_48k(binding, x48: np.ndarray) -> np.ndarray:
    """RNNoise's raw output (lagging by :data:`RNNOISE_DELAY`) for 48 kHz float audio, from a
    fresh state, zero-padded to whole frames and cut back to ``len(x48)``."""
    frame = int(binding.lib.rnnoise_get_frame_size())
    if frame != RNNOISE_FRAME:  # pragma: no cover - another RNNoise build than the one measured
        raise RuntimeError(f"rnnoise: the library's frame is {frame} samples, expected {RNNOISE_FRAME}")
    total = -(-len(x48) // frame) * frame
    inp = np.zeros(total, dtype=np.float32)
    inp[:len(x48)] = np.asarray(x48, dtype=np.float64) * _INT16_SCALE
    out = np.empty(total, dtype=np.float32)
    ptr = ctypes.POINTER(ctypes.c_float)
    state = binding.lib.rnnoise_create(None)
    if not state:  # pragma: no cover - out of memory
        raise RuntimeError("rnnoise: rnnoise_create failed")
    try:
        for i in range(0, total, frame):  # causal: frame by frame, in order
            binding.lib.rnnoise_process_frame(state, out[i:i + frame].ctypes.data_as(ptr),
                                              inp[i:i + frame].ctypes.data_as(ptr))
    finally:
        binding.lib.rnnoise_destroy(state)
    return out[:len(x48)].astype(np.float64) / _INT16_SCALE


def rnnoise_denoise(noisy: np.ndarray, sample_rate: int) -> np.ndarray:
    """RNNoise from a fresh state over the whole signal, time-aligned with the input.

    Resampled to 48 kHz and back with soxr, denoised in 10 ms frames in float; the output has
    the input's length and rate and no lag (the :data:`RNNOISE_DELAY` is compensated).

    Raises:
        BaselineUnavailableError: (a ``RuntimeError``) ``pyrnnoise`` is not installed.
        ValueError: the input is not 1-D or has NaN or infinite samples.
    """
    binding = _rnnoise_binding()
    x = np.asarray(noisy, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"rnnoise takes a 1-D signal, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("rnnoise: the input has NaN or infinite samples")
    if len(x) == 0:
        return x.copy()
    x48 = resample(x, int(sample_rate), RNNOISE_SAMPLE_RATE)
    n48 = len(x48)
    # zeros after the signal flush the delayed samples out
    y48 = _rnnoise_48k(binding, np.concatenate([x48, np.zeros(RNNOISE_DELAY)]))
    y48 = y48[RNNOISE_DELAY:RNNOISE_DELAY + n48]
    y = resample(y48, RNNOISE_SAMPLE_RATE, int(sample_rate))[:len(x)]
    return np.pad(y, (0, len(x) - len(y)))


BASELINES: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "noisereduce": noisereduce_gate,
    "rnnoise": rnnoise_denoise,
}
# What each baseline needs beyond snnse's dependencies: a callable that raises
# BaselineUnavailableError when it is missing.
_REQUIRES: dict[str, Callable[[], object]] = {"rnnoise": _rnnoise_binding}


def get(name: str) -> Callable[[np.ndarray, int], np.ndarray]:
    """A baseline by name; ``ValueError`` names the known ones."""
    try:
        return BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; available: {', '.join(BASELINES)}") from None


def check(name: str) -> None:
    """``ValueError`` if the baseline is unknown or its optional package is not installed."""
    get(name)
    if name in _REQUIRES:
        try:
            _REQUIRES[name]()
        except BaselineUnavailableError as err:
            raise ValueError(str(err)) from None
