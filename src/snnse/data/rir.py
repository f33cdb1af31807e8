"""Simulated room impulse responses: random shoebox rooms, a cached bank, RT60 estimation.

* :func:`simulate_rir` — the impulse response of a random shoebox room
  (pyroomacoustics image method for the early part, a stochastic
  exponential tail for the rest);
* :func:`simulated_rir_bank` — a bank of such responses, built once from a
  seed and cached on disk as WAV files (what :class:`~snnse.data.augment.Augment`'s
  ``sim_rir`` options ask :class:`~snnse.data.mixing.MixingDataset` for);
* :func:`schroeder_rt60` — the reverberation time of an impulse response
  from its Schroeder energy decay curve.

:mod:`snnse.data.augment` re-exports these names.

References:
    Allen, Berkley, "Image method for efficiently simulating small-room
    acoustics", JASA 65(4), 1979; Scheibler, Bezzam, Dokmanić,
    "Pyroomacoustics", ICASSP 2018.
    Schroeder, "New method of measuring reverberation time", JASA 37(3), 1965.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from snnse.atomic import atomic_path, atomic_write_text

BANK_VERSION = 1
MANIFEST = "bank.json"


def schroeder_rt60(rir: np.ndarray, sample_rate: int, decay_db: float = 20.0,
                   start_db: float = -5.0) -> float:
    """RT60 of an impulse response from its Schroeder energy decay curve.

    The backward-integrated energy (in dB, from the direct path on) is fitted
    by a line between ``start_db`` and ``start_db - decay_db`` and
    extrapolated to 60 dB of decay (T20 with the defaults).

    Args:
        rir: 1-D impulse response.
        sample_rate: Sample rate in Hz.
        decay_db: Decay range of the fit in dB.
        start_db: Start of the fit in dB below the total energy.

    Returns:
        RT60 in seconds.

    Raises:
        ValueError: The decay curve does not fall by ``-start_db + decay_db`` dB.
    """
    h = np.asarray(rir, dtype=np.float64)
    h = h[int(np.argmax(np.abs(h))):]
    edc = np.cumsum(h[::-1] ** 2)[::-1]
    edc_db = 10.0 * np.log10(np.maximum(edc / edc[0], 1e-300))
    end_db = start_db - decay_db
    i0, i1 = int(np.argmax(edc_db <= start_db)), int(np.argmax(edc_db <= end_db))
    if edc_db[-1] > end_db or i1 <= i0 + 1:
        raise ValueError(f"the energy decay curve does not fall below {end_db} dB")
    t = np.arange(i0, i1) / sample_rate
    slope = np.polyfit(t, edc_db[i0:i1], 1)[0]
    return float(-60.0 / slope)


def _draw_room(rng: np.random.Generator, rt60_range: tuple[float, float]) -> dict:
    """Random shoebox room, RT60, absorption and source/mic positions (pyroomacoustics)."""
    import pyroomacoustics as pra

    for _ in range(1000):
        dims = [float(rng.uniform(3.0, 10.0)), float(rng.uniform(3.0, 8.0)), float(rng.uniform(2.4, 4.0))]
        rt60 = float(rng.uniform(*rt60_range))
        # Eyring's formula (which the image method follows better than Sabine's at high absorption)
        volume = float(np.prod(dims))
        surface = 2.0 * (dims[0] * dims[1] + dims[0] * dims[2] + dims[1] * dims[2])
        absorption = 1.0 - np.exp(-24.0 * np.log(10.0) / float(pra.constants.get("c")) * volume
                                  / (surface * rt60))
        if not 0.0 < absorption <= 0.9:  # the room is too large for so short an RT60
            continue
        # image-source order that reaches c * RT60 everywhere (as pyroomacoustics.inverse_sabine)
        radius = min(a * b / np.hypot(a, b) for a, b in itertools.combinations(dims, 2))
        order = int(np.ceil(float(pra.constants.get("c")) * rt60 / radius - 1))
        inner = lambda lo, hi: [float(rng.uniform(0.5, d - 0.5)) for d in dims[:2]] + [  # noqa: E731
            float(rng.uniform(lo, min(hi, dims[2] - 0.3)))]
        mic, src = inner(0.8, 2.0), inner(1.2, 2.0)
        if np.linalg.norm(np.subtract(mic, src)) >= 0.5:
            return {"dims": dims, "rt60": rt60, "absorption": float(absorption),
                    "sabine_order": int(order), "mic": mic, "source": src}
    raise RuntimeError("could not draw a valid room")  # not reached with sensible ranges


def simulate_rir(rng: np.random.Generator, sample_rate: int = 16000,
                 rt60_range: tuple[float, float] = (0.1, 0.8), max_order: int = 17,
                 max_seconds: float = 1.0) -> tuple[np.ndarray, dict]:
    """One RIR of a random shoebox room: image method early part, stochastic tail.

    A room (3–10 × 3–8 × 2.4–4 m), a target RT60 (uniform in ``rt60_range``)
    and source and microphone positions (0.5 m from the side walls, at least
    0.5 m apart) are drawn; the walls' energy absorption follows from
    Eyring's formula. The image method
    (pyroomacoustics, no air absorption, no ray tracing) runs up to
    ``max_order`` reflections, which is exact until the first image of a higher
    order can arrive, ``(max_order - 2) / sqrt(sum_k 1 / L_k²) / c``. When the
    target RT60 needs more reflections than that, the response continues
    from there (10 ms cross-fade) with Gaussian noise decaying by 60 dB per
    target RT60, its level matched to the image-method energy just before.
    The result starts 2 ms before the direct path and is cut at -60 dB of the
    target decay or ``max_seconds`` (10 ms fade-out), then peak-normalised.

    Args:
        rng: Random generator.
        sample_rate: Sample rate in Hz.
        rt60_range: Target RT60 range in seconds.
        max_order: Highest image-source order computed.
        max_seconds: Longest response in seconds.

    Returns:
        ``(rir, params)``: float32 response and a JSON-able dict of the room.
    """
    import pyroomacoustics as pra

    p = _draw_room(rng, rt60_range)
    order = min(p["sabine_order"], int(max_order))
    room = pra.ShoeBox(p["dims"], fs=sample_rate, materials=pra.Material(p["absorption"]),
                       max_order=order, air_absorption=False, ray_tracing=False, use_rand_ism=False)
    room.add_source(p["source"])
    room.add_microphone(p["mic"])
    room.compute_rir()
    h = np.asarray(room.rir[0][0], dtype=np.float64)
    c = float(pra.constants.get("c"))
    direct = int(np.argmax(np.abs(h)))
    start = max(0, direct - int(0.002 * sample_rate))
    total = int(min(max_seconds, 1.1 * p["rt60"] + 0.01) * sample_rate)
    decay = lambda k: 10.0 ** (-3.0 * k / (p["rt60"] * sample_rate))  # noqa: E731  amplitude, 60 dB per RT60
    distance = float(np.linalg.norm(np.subtract(p["mic"], p["source"])))
    # images of order > max_order lie at least (max_order - 2) / sqrt(sum 1 / L_k^2) away
    reach = (order - 2) / np.sqrt(np.sum(1.0 / np.square(p["dims"])))
    exact = direct + int((reach - distance) / c * sample_rate)  # the image method is exact before this
    out = np.zeros(start + total)
    m = min(len(h), len(out))
    out[:m] = h[:m]
    tail = order < p["sabine_order"] and direct + int(0.02 * sample_rate) < exact < len(out)
    if tail:
        w = int(0.01 * sample_rate)
        k = np.arange(exact - w, len(out)) - exact
        env = decay(k)
        ref = out[exact - w:exact]
        sigma = np.sqrt(np.sum(ref ** 2) / np.sum(env[:w] ** 2))
        ramp = np.clip((k + w) / w, 0.0, 1.0)
        out[exact - w:] = out[exact - w:] * (1.0 - ramp) + ramp * sigma * env * rng.standard_normal(len(k))
    out = out[start:]
    fade = int(0.01 * sample_rate)
    out[-fade:] *= np.linspace(1.0, 0.0, fade)
    out /= np.max(np.abs(out))
    p.update(max_order=order, stochastic_tail=bool(tail), c=c)
    return out.astype(np.float32), p


def _bank_key(count: int, seed: int, sample_rate: int, rt60_range: tuple[float, float]) -> dict:
    return {"version": BANK_VERSION, "count": int(count), "seed": int(seed),
            "sample_rate": int(sample_rate), "rt60_range": [float(v) for v in rt60_range]}


def simulated_rir_bank(folder: str | os.PathLike, count: int = 200, seed: int = 0,
                       sample_rate: int = 16000, rt60_range: tuple[float, float] = (0.1, 0.8),
                       verbose: bool = False) -> list[Path]:
    """The files of a simulated RIR bank in ``folder``, built there if needed.

    RIR ``k`` is :func:`simulate_rir` with ``np.random.default_rng([seed, k])``,
    so the bank depends only on its parameters. It is written as
    ``rir_sim_0000.wav`` ... (float WAV) and a manifest ``bank.json`` with the
    parameters and every room; the manifest is written last, atomically, and
    a later call with the same parameters reads it and returns the files
    without simulating anything. A folder holding a bank of other parameters
    is rebuilt (with a warning).

    Args:
        folder: Folder of the bank (created if needed).
        count: Number of RIRs.
        seed: Seed of the bank.
        sample_rate: Sample rate in Hz.
        rt60_range: Target RT60 range in seconds.
        verbose: Print the build time.

    Returns:
        The ``count`` WAV files, in order.
    """
    folder = Path(folder).expanduser()
    key = _bank_key(count, seed, sample_rate, rt60_range)
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
        except (OSError, ValueError):
            old = {}
        files = [folder / r["file"] for r in old.get("rirs", [])]
        if {k: old.get(k) for k in key} == key and len(files) == count and all(f.is_file() for f in files):
            return files
        warnings.warn(f"{folder} holds a simulated RIR bank of other parameters; rebuilding it",
                      stacklevel=2)
    t0 = time.perf_counter()
    rows = []
    for k in range(int(count)):
        h, params = simulate_rir(np.random.default_rng([int(seed), k]), sample_rate, rt60_range)
        name = f"rir_sim_{k:04d}.wav"
        with atomic_path(folder / name, suffix=".wav") as tmp:
            sf.write(str(tmp), h, sample_rate, subtype="FLOAT")
        rows.append({"file": name, **params})
    seconds = time.perf_counter() - t0
    atomic_write_text(manifest, json.dumps({**key, "build_seconds": round(seconds, 2), "rirs": rows},
                                           indent=1))
    if verbose:
        print(f"simulated {count} RIRs into {folder} in {seconds:.1f} s")
    return [folder / r["file"] for r in rows]
