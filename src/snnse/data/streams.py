"""Long test streams: utterances with pauses, noise and SNR changing over time, a slow level envelope.

:func:`build_long_stream` is what the robustness suite (:mod:`snnse.robustness`) enhances in one
go to see whether a model's state drifts over minutes; :func:`windows` cuts it for scoring. Pure
functions of their inputs and a numpy Generator.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from snnse.data.mixing import at_level, loop_crop, mix, rms_db  # noqa: F401 (at_level re-exported)


def noise_crop(noise: Sequence[np.ndarray], n: int, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """A random noise signal and a (looped) random crop of ``n`` samples, made zero-mean (a DC
    offset is inaudible but would count in the SNR), that is not silent."""
    for _ in range(100):
        k = int(rng.integers(len(noise)))
        x = loop_crop(noise[k], n, rng)
        x = x - x.mean()
        if rms_db(x) > -60:
            return k, x
    raise ValueError("100 random noise crops in a row were silent")


def build_long_stream(clean_signals: Sequence[np.ndarray], noise_signals: Sequence[np.ndarray],
                      duration_s: float, rng: np.random.Generator, *, sample_rate: int = 16000,
                      pause_s: tuple = (0.5, 4.0), segment_s: tuple = (20.0, 40.0),
                      snrs: Sequence[float] = (0, 5, 10, 20, 30, 40),
                      level_db: tuple = (-35.0, -15.0), level_period_s: float = 60.0,
                      peak: float | None = 0.99) -> dict:
    """A long noisy stream: utterances with pauses, noise and SNR changing by segment, slow level.

    Pure: everything random comes from ``rng``; the inputs are not modified.

    * Speech: the utterances in random order (a new permutation once all were used), each set to
      0 dBFS RMS, every one preceded by a silence of uniform random length in ``pause_s``; the
      last is cut at the end. The speech level then follows a slow envelope: piecewise linear in
      dB between knots every ``level_period_s`` seconds, drawn uniformly in ``level_db``.
    * Noise: consecutive segments of uniform random length in ``segment_s`` (the last one takes
      the rest, at least half the shortest length), each with a noise signal drawn at random
      (a looped random crop, zero-mean, not silent) at an SNR taken from ``snrs`` (shuffled; every value
      once per round), defined as in :func:`snnse.data.mixing.mix`: clean over noise energy
      within the segment.
    * If the mixture's peak passes ``peak``, all three signals are scaled by one constant
      (``gain_db``), so the SNRs stay exact and the levels move together.

    Args:
        clean_signals: Clean utterances (1-D, at ``sample_rate``, not silent).
        noise_signals: Noise recordings (1-D, at ``sample_rate``).
        duration_s: Length of the stream in seconds.
        rng: The random generator.

    Returns:
        ``{"noisy", "clean", "noise"}`` float64 arrays with ``noisy == clean + noise``, and
        ``segments`` (dicts ``start``, ``end`` in samples, ``snr_db``, ``noise`` index),
        ``utterances`` (dicts ``index``, ``start``, ``end``; the pauses lie between them),
        ``level_knots`` (``[time_s, dB]`` of the envelope) and ``gain_db``.
    """
    sr, n = int(sample_rate), int(round(duration_s * sample_rate))
    if n <= 0 or not len(clean_signals) or not len(noise_signals):
        raise ValueError("need a positive duration, clean utterances and noise signals")
    clean, utts, pos, order = np.zeros(n), [], 0, []
    while pos < n:
        pos += int(round(rng.uniform(*pause_s) * sr))
        if pos >= n:
            break
        if not order:
            order = [int(k) for k in rng.permutation(len(clean_signals))]
        k = order.pop()
        x = np.asarray(clean_signals[k], dtype=np.float64)
        x = x[:n - pos] / np.sqrt(np.mean(x ** 2))
        clean[pos:pos + len(x)] = x
        utts.append({"index": k, "start": pos, "end": pos + len(x)})
        pos += len(x)
    knots_t = np.arange(0.0, duration_s + level_period_s, level_period_s)
    knots_db = rng.uniform(*level_db, size=len(knots_t))
    clean *= 10.0 ** (np.interp(np.arange(n) / sr, knots_t, knots_db) / 20.0)
    starts, shortest = [0], int(segment_s[0] * sr)
    while True:
        nxt = starts[-1] + int(round(rng.uniform(*segment_s) * sr))
        if nxt > n - shortest // 2:
            break
        starts.append(nxt)
    noise, segments, bag = np.zeros(n), [], []
    for a, b in zip(starts, starts[1:] + [n]):
        if not bag:
            bag = [float(s) for s in rng.permutation(np.asarray(snrs, dtype=np.float64))]
        snr = bag.pop()
        k, crop = noise_crop(noise_signals, b - a, rng)
        if rms_db(clean[a:b]) > -100:
            noise[a:b] = mix(clean[a:b], crop, snr, None, peak=None)[2]
        else:  # a segment of silence only: the noise at the envelope's level minus the SNR
            noise[a:b] = at_level(crop, float(np.mean(knots_db)) - snr, None)
        segments.append({"start": a, "end": b, "snr_db": snr, "noise": k})
    noisy, g = clean + noise, 1.0
    if peak is not None and np.max(np.abs(noisy)) > peak:
        g = peak / np.max(np.abs(noisy))
        noisy, clean, noise = noisy * g, clean * g, noise * g
    return {"noisy": noisy, "clean": clean, "noise": noise, "segments": segments,
            "utterances": utts, "level_knots": [[float(t), float(d)] for t, d in zip(knots_t, knots_db)],
            "gain_db": float(20 * np.log10(g))}


def windows(n: int, width: int) -> list[tuple[int, int]]:
    """``[start, end)`` windows of ``width`` samples; a rest shorter than half joins the last."""
    bounds = [[a, min(a + width, n)] for a in range(0, n, width)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < width // 2:
        last = bounds.pop()
        bounds[-1][1] = last[1]
    return [tuple(b) for b in bounds]


# ---------------------------------------------------------------- systems and scoring
