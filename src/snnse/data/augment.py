"""Data augmentation for on-the-fly mixing: speed, random EQ and simulated reverberation.

:class:`Augment` holds the options (all off by default) that
:class:`~snnse.data.mixing.MixingDataset` takes as its ``augment`` argument;
the functions here do the work on 1-D numpy signals:

* :func:`change_speed` — speed perturbation (tempo and pitch together, as
  playing a recording faster or slower), by resampling with soxr;
* :func:`random_eq` / :func:`apply_eq` — a random channel colouring: a low
  shelf, a high shelf and two peaking biquads (RBJ cookbook designs) whose
  combined magnitude response stays within ``±max_db`` at every frequency.

The simulated reverberation (:func:`simulate_rir`, :func:`simulated_rir_bank`,
:func:`schroeder_rt60`) is defined in :mod:`snnse.data.rir` and re-exported here.

References:
    Ko, Peddinti, Povey, Khudanpur, "Audio augmentation for speech
    recognition", Interspeech 2015 (speed perturbation 0.9–1.1).
    Bristow-Johnson, "Cookbook formulae for audio EQ biquad filter
    coefficients" (shelving and peaking biquads).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import scipy.signal
import soxr

from snnse.data.rir import BANK_VERSION, MANIFEST, schroeder_rt60, simulate_rir, simulated_rir_bank


@dataclasses.dataclass(frozen=True)
class Augment:
    """Augmentation options of :class:`~snnse.data.mixing.MixingDataset` (defaults: all off).

    Built from a dict with :meth:`from_dict` (unknown keys are an error), so a
    YAML ``data.train`` source can say ``augment: {speed_prob: 0.5, ...}``.

    Args:
        speed: Range of the speed factor, drawn uniformly (``> 1`` is faster
            and higher-pitched).
        speed_prob: Probability that an item's clean speech is speed-perturbed.
        noise_speed_prob: Probability that an item's noise is speed-perturbed
            (its own factor from the same range).
        eq_prob: Probability that an item's clean speech gets a random EQ.
        noise_eq_prob: Probability that an item's noise gets its own random EQ.
        eq_db: Bound of the EQ's magnitude response in dB (``±eq_db`` at every
            frequency, before the mixer sets the level).
        sim_rir: Folder of the simulated RIR bank (built there on first use,
            reused afterwards), or None for no simulated RIRs.
        sim_rir_count: Number of simulated RIRs.
        sim_rir_seed: Seed of the bank (rooms, positions, tails).
        sim_rir_rt60: Range of the bank's target RT60 in seconds, drawn uniformly.
        sim_rir_share: With real RIRs too, the probability that a reverberated
            item takes a simulated rather than a real one (without real RIRs
            every reverberated item takes a simulated one).

    Raises:
        ValueError: A probability outside [0, 1], an empty or non-positive
            speed range, a negative ``eq_db``, a non-positive count or an
            invalid RT60 range.
    """

    speed: tuple[float, float] = (0.9, 1.1)
    speed_prob: float = 0.0
    noise_speed_prob: float = 0.0
    eq_prob: float = 0.0
    noise_eq_prob: float = 0.0
    eq_db: float = 6.0
    sim_rir: str | os.PathLike | None = None
    sim_rir_count: int = 200
    sim_rir_seed: int = 0
    sim_rir_rt60: tuple[float, float] = (0.1, 0.8)
    sim_rir_share: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "speed", tuple(float(v) for v in self.speed))
        object.__setattr__(self, "sim_rir_rt60", tuple(float(v) for v in self.sim_rir_rt60))
        for name in ("speed_prob", "noise_speed_prob", "eq_prob", "noise_eq_prob", "sim_rir_share"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {getattr(self, name)}")
        if len(self.speed) != 2 or not 0 < self.speed[0] <= self.speed[1]:
            raise ValueError(f"augment.speed must be [low, high] with 0 < low <= high, got {self.speed}")
        if self.eq_db < 0:
            raise ValueError(f"augment.eq_db must be non-negative, got {self.eq_db}")
        if int(self.sim_rir_count) <= 0:
            raise ValueError(f"augment.sim_rir_count must be positive, got {self.sim_rir_count}")
        if len(self.sim_rir_rt60) != 2 or not 0 < self.sim_rir_rt60[0] <= self.sim_rir_rt60[1]:
            raise ValueError(f"augment.sim_rir_rt60 must be [low, high] seconds, got {self.sim_rir_rt60}")

    @classmethod
    def from_dict(cls, options: dict | None) -> "Augment":
        """Options from a dict (None or ``{}``: all off).

        Raises:
            ValueError: A key that is not an option.
        """
        options = dict(options or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown augment option(s) {unknown}; known: {sorted(known)}")
        return cls(**options)

    @property
    def active(self) -> bool:
        """Whether any augmentation can happen."""
        return bool(self.speed_prob or self.noise_speed_prob or self.eq_prob or self.noise_eq_prob
                    or self.sim_rir is not None)


# ----------------------------------------------------------------------------- speed

def speed_input_length(n: int, factor: float) -> int:
    """Input samples that :func:`change_speed` needs to give ``n`` samples at ``factor``."""
    return int(np.ceil(n * float(factor))) + 2


def change_speed(x: np.ndarray, factor: float, n: int | None = None) -> np.ndarray:
    """Speed-perturb ``x`` by ``factor`` (tempo and pitch), keeping ``n`` samples.

    The signal is resampled by ``1 / factor`` (soxr, quality HQ) and played at
    the original rate: ``factor > 1`` is faster and higher-pitched, the
    content of ``len(x)`` samples lasts ``len(x) / factor`` samples.

    Args:
        x: 1-D signal; give :func:`speed_input_length` ``(n, factor)`` samples
            to fill ``n`` samples of output.
        factor: Speed factor (positive).
        n: Output length: the result is cropped (or, if too short, zero-padded)
            to ``n`` samples; None keeps the resampled length.

    Returns:
        Float array of ``n`` samples (same dtype as ``x``).
    """
    x = np.asarray(x)
    y = x if factor == 1.0 else soxr.resample(x, float(factor), 1.0, quality="HQ")
    if n is None:
        return y
    if len(y) < n:
        y = np.concatenate([y, np.zeros(n - len(y), dtype=y.dtype)])
    return y[:n]


# ----------------------------------------------------------------------------- EQ

def _biquad(kind: str, f0: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """One RBJ-cookbook biquad as an ``[6]`` SOS row (``peak``, ``lowshelf``, ``highshelf``).

    Shelves use slope ``S = 1`` (``q`` is ignored); the response is
    ``gain_db`` at ``f0`` (peak), below it (low shelf) or above it (high shelf).
    """
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * f0 / sample_rate
    cw, sw = np.cos(w0), np.sin(w0)
    if kind == "peak":
        alpha = sw / (2.0 * q)
        b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    else:
        k = 2.0 * np.sqrt(a) * sw / np.sqrt(2.0)   # 2 sqrt(A) alpha with S = 1
        s = 1.0 if kind == "lowshelf" else -1.0
        b = [a * ((a + 1) - s * (a - 1) * cw + k), s * 2 * a * ((a - 1) - s * (a + 1) * cw),
             a * ((a + 1) - s * (a - 1) * cw - k)]
        den = [(a + 1) + s * (a - 1) * cw + k, -s * 2 * ((a - 1) + s * (a + 1) * cw),
               (a + 1) + s * (a - 1) * cw - k]
    return np.concatenate([b, den]) / den[0]


def eq_response_db(sos: np.ndarray, sample_rate: int, freqs: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude response of ``sos`` in dB at ``freqs`` (default 1024 points to Nyquist).

    Returns:
        ``(freqs, response_db)``.
    """
    if freqs is None:
        freqs = np.linspace(0.0, sample_rate / 2.0, 1024)
    freqs = np.asarray(freqs, dtype=np.float64)
    w = 2.0 * np.pi * freqs / sample_rate
    return freqs, _power_db(np.asarray(sos, dtype=np.float64), np.cos(w), np.cos(2.0 * w))


def _power_db(sos: np.ndarray, cos1: np.ndarray, cos2: np.ndarray) -> np.ndarray:
    """``20 log10 |H|`` of the cascade ``sos`` where ``cos1, cos2 = cos(w), cos(2 w)``.

    Uses ``|c0 + c1 z + c2 z²|² = c0² + c1² + c2² + 2 (c0 c1 + c1 c2) cos w + 2 c0 c2 cos 2w``
    on the unit circle (real arithmetic only).
    """
    def power(c0, c1, c2):
        return (c0 * c0 + c1 * c1 + c2 * c2)[:, None] + 2.0 * (c0 * c1 + c1 * c2)[:, None] * cos1 \
            + 2.0 * (c0 * c2)[:, None] * cos2
    ratio = np.prod(power(*sos[:, :3].T) / power(*sos[:, 3:].T), axis=0)
    return 10.0 * np.log10(np.maximum(ratio, 1e-24))


_GRID = np.linspace(0.0, 0.5, 512)  # frequencies / sample rate where random_eq checks its bound


def random_eq(rng: np.random.Generator, max_db: float = 6.0, sample_rate: int = 16000
              ) -> np.ndarray:
    """A random EQ: low shelf, high shelf and two peaks, response within ``±max_db``.

    The low shelf's corner is log-uniform in 80–400 Hz, the high shelf's in
    2–6 kHz (at most 0.4 of the sample rate), the peaks' centres in
    150 Hz–0.42 of the sample rate with Q log-uniform in 0.5–3; every gain is
    uniform in ``±max_db``. If the cascade's response exceeds ``±max_db``
    somewhere (overlapping bands add up), all gains are scaled down together
    until it does not.

    Args:
        rng: Random generator (a fixed number of draws).
        max_db: Bound of the magnitude response in dB.
        sample_rate: Sample rate in Hz.

    Returns:
        ``[4, 6]`` second-order sections for :func:`scipy.signal.sosfilt`.
    """
    nyq = sample_rate / 2.0
    lu = lambda lo, hi: float(np.exp(rng.uniform(np.log(lo), np.log(hi))))  # noqa: E731
    bands = [("lowshelf", lu(80.0, 400.0), 0.7), ("highshelf", lu(2000.0, min(6000.0, 0.8 * nyq)), 0.7)]
    bands += [("peak", lu(150.0, 0.84 * nyq), lu(0.5, 3.0)) for _ in range(2)]
    gains = rng.uniform(-max_db, max_db, size=len(bands))
    w = 2.0 * np.pi * np.concatenate([_GRID, [f / sample_rate for _, f, _ in bands]])
    cos1, cos2 = np.cos(w), np.cos(2.0 * w)
    for _ in range(20):
        sos = np.stack([_biquad(kind, f, g, q, sample_rate) for (kind, f, q), g in zip(bands, gains)])
        peak = float(np.max(np.abs(_power_db(sos, cos1, cos2))))
        if peak <= max_db:
            return sos
        gains = gains * (max_db / peak) * 0.995
    raise RuntimeError(f"random_eq: could not bound the response to ±{max_db} dB")  # not reached


def apply_eq(x: np.ndarray, sos: np.ndarray) -> np.ndarray:
    """Filter ``x`` with the sections ``sos`` (causal, zero initial state); float64 out."""
    return scipy.signal.sosfilt(sos, np.asarray(x, dtype=np.float64))


__all__ = ["BANK_VERSION", "MANIFEST", "Augment", "apply_eq", "change_speed", "eq_response_db", "random_eq",
           "schroeder_rt60", "simulate_rir", "simulated_rir_bank", "speed_input_length"]
