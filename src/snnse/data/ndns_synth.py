"""Synthesis of N-DNS look-alike clips from any clean-speech and noise folders.

:func:`synthesize` writes clips in the N-DNS layout (:mod:`snnse.data.ndns_layout`),
following the N-DNS recipe (16 kHz, 30 s, SNR uniform in [-5, 20] dB,
level uniform in [-35, -15] dBFS, both drawn as integers). A clip's randomness
depends only on ``(seed, fileid)``, so synthesis is deterministic and
resumable. Names are truthful: when a mixture would clip, all three signals are
scaled down to the next lower integer level, which the name then states. The
import path is :mod:`snnse.data.ndns`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from snnse.audio import AudioError, find_audio_files, read_audio, resample, write_audio_atomic
from snnse.data.mixing import apply_rir, loop_crop, mix
from snnse.data.ndns_layout import NOISY_RE, NDNSError

PEAK = 0.99          # largest sample magnitude written
GAP_SECONDS = 0.2    # silence between concatenated clean utterances (as in the DNS synthesizer)
TRIES = 10           # redraws when a clean or noise excerpt is silent


class _Sources:
    """Audio files of one kind, loaded as mono float64 at one rate; unreadable ones are skipped."""

    def __init__(self, dirs, what: str, sample_rate: int):
        dirs = [dirs] if isinstance(dirs, (str, os.PathLike)) else list(dirs)
        self.files = [f for f in find_audio_files(dirs) if f.is_file()]
        if not self.files:
            raise NDNSError(f"no {what} audio files (.wav/.flac) found in: "
                            f"{', '.join(map(str, dirs)) or '(nothing given)'}")
        self.what, self.sr, self.bad = what, sample_rate, set()

    def fingerprint(self) -> str:
        """Hash of the ordered file names and sizes (the draws depend on them)."""
        text = "\n".join(f"{f.name}\t{f.stat().st_size}" for f in self.files)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, Path]:
        """A random readable file as ``(mono samples, path)``; warns once per unreadable file."""
        while len(self.bad) < len(self.files):
            f = self.files[int(rng.integers(len(self.files)))]
            if f in self.bad:
                continue
            try:
                x, sr = read_audio(f, dtype="float64")
            except AudioError as err:
                self.bad.add(f)
                warnings.warn(f"skipping unreadable {self.what} file: {err}", stacklevel=3)
                continue
            return resample(x.mean(axis=0), sr, self.sr), f
        raise NDNSError(f"all {len(self.files)} {self.what} files are unreadable")

    def concat(self, rng: np.random.Generator, n: int, gap: int = 0) -> tuple[np.ndarray, Path]:
        """Random files concatenated (``gap`` zeros between) to at least ``n`` samples, and the first file."""
        parts, total, first = [], 0, None
        while total < n:
            x, f = self.draw(rng)
            first = first or f
            parts += [x, np.zeros(gap)]
            total += len(x) + gap
        return np.concatenate(parts), first


def _int_range(r: Sequence[float], what: str, upper: float = math.inf) -> tuple[int, int]:
    """Integer bounds ``(lo, hi)`` inside the closed range ``r``."""
    lo, hi = (float(v) for v in r)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or hi > upper:
        raise NDNSError(f"bad {what} range ({lo:g}, {hi:g}): need finite lo <= hi"
                        + (f" <= {upper:g}" if math.isfinite(upper) else ""))
    ilo, ihi = math.ceil(lo), math.floor(hi)
    if ilo > ihi:
        raise NDNSError(f"{what} range ({lo:g}, {hi:g}) contains no integer value")
    return ilo, ihi


def _clip(fileid: int, seed: int, n: int, sr: int, snr: tuple[int, int], level: tuple[int, int],
          clean: _Sources, noise: _Sources, rir: _Sources | None, rir_prob: float):
    """Make one clip: ``(clean, noise, noisy, snr, level, source name)``."""
    rng = np.random.default_rng([seed, fileid])
    s = int(rng.integers(snr[0], snr[1] + 1))
    t = int(rng.integers(level[0], level[1] + 1))
    reverberate = rir is not None and rng.random() < rir_prob
    for _ in range(TRIES):
        c, first = clean.concat(rng, n, gap=int(GAP_SECONDS * sr))
        c = c[:n]
        if reverberate:
            c = apply_rir(c, rir.draw(rng)[0])
        z = loop_crop(noise.concat(rng, n)[0], n, rng)
        try:
            y, c, z, reached = mix(c, z, s, t, peak=None)
            break
        except ValueError:  # a silent excerpt: draw again
            continue
    else:
        raise NDNSError(f"fileid {fileid}: only silent clean or noise excerpts in {TRIES} draws")
    peak = max(np.abs(y).max(), np.abs(c).max(), np.abs(z).max())
    if peak > PEAK:  # scale down to the next integer level that does not clip
        t = math.floor(reached + 20 * math.log10(PEAK / peak))
        g = 10 ** ((t - reached) / 20)
        y, c, z = y * g, c * g, z * g
    return c, z, y, s, t, re.sub(r"[^A-Za-z0-9_-]", "-", first.stem)


def synthesize(clean_dirs, noise_dirs, out: str | os.PathLike, n_clips: int,
               clip_seconds: float = 30.0, snr_range: Sequence[float] = (-5, 20),
               level_range: Sequence[float] = (-35, -15), rir_dir=None, rir_prob: float = 0.0,
               seed: int = 0, split: str = "training_set", sample_rate: int = 16000,
               progress: bool = True) -> dict:
    """Synthesize N-DNS-style clips with fileids ``0 .. n_clips-1``.

    Clean speech is a concatenation of random utterances (``GAP_SECONDS`` of
    silence between them) cut to the clip length; noise is a random excerpt
    of randomly chosen noise files concatenated (looped) to the clip length.
    SNR and level are integers drawn uniformly from the closed ranges and
    applied with :func:`snnse.data.mixing.mix`. With probability ``rir_prob``
    the clean speech is first convolved with a random impulse response from
    ``rir_dir`` (aligned on its direct path, see
    :func:`snnse.data.mixing.apply_rir`); the reverberant speech is then the
    clean target (as in DNS).
    Sources are resampled to ``sample_rate`` and downmixed to mono; unreadable
    ones are skipped with a warning. Files are 16-bit PCM, written atomically,
    noisy last.

    Re-running skips clips whose three files exist and re-creates the others
    identically. The settings are kept in ``{out}/{split}/synthesis.json``;
    re-running into the same folder with other settings or sources (other than
    ``n_clips``) is refused.

    Args:
        clean_dirs: Clean speech folder(s) or file(s).
        noise_dirs: Noise folder(s) or file(s).
        out: Output root; clips go to ``{out}/{split}/{clean,noise,noisy}/``.
        n_clips: Number of clips.
        clip_seconds: Clip length in seconds.
        snr_range: Closed SNR range in dB.
        level_range: Closed level range in dBFS (at most 0).
        rir_dir: Impulse response folder(s) or file(s), used if ``rir_prob > 0``.
        rir_prob: Probability of reverberating a clip.
        seed: Random seed.
        split: Split folder name.
        sample_rate: Output rate in Hz.
        progress: Show a tqdm progress bar.

    Returns:
        Summary dict: ``out`` (the split folder), ``made``, ``skipped``
        (clips), ``unreadable`` (source files skipped).

    Raises:
        NDNSError: No sources, bad ranges or settings, or an output folder
            synthesized with other settings.
    """
    n = int(round(clip_seconds * sample_rate))
    if n_clips < 0 or n <= 0 or sample_rate <= 0:
        raise NDNSError(f"need n_clips >= 0, clip_seconds > 0 and sample_rate > 0 "
                        f"(got {n_clips}, {clip_seconds:g}, {sample_rate})")
    if not 0.0 <= rir_prob <= 1.0:
        raise NDNSError(f"rir_prob must be in [0, 1], got {rir_prob:g}")
    if rir_prob > 0 and not rir_dir:
        raise NDNSError("rir_prob > 0 needs rir_dir (a folder of room impulse responses)")
    snr, level = _int_range(snr_range, "SNR"), _int_range(level_range, "level", upper=0.0)
    clean = _Sources(clean_dirs, "clean", sample_rate)
    noise = _Sources(noise_dirs, "noise", sample_rate)
    rir = _Sources(rir_dir, "impulse response", sample_rate) if rir_prob > 0 else None

    base = Path(out) / split
    settings = {"seed": seed, "clip_seconds": clip_seconds, "snr": snr, "level": level,
                "rir_prob": rir_prob, "sample_rate": sample_rate, "clean": clean.fingerprint(),
                "noise": noise.fingerprint(), "rir": rir.fingerprint() if rir else None}
    cfg = base / "synthesis.json"
    if cfg.is_file():
        old = json.loads(cfg.read_text())
        diff = [k for k in settings if old.get(k) != json.loads(json.dumps(settings[k]))]
        if diff:
            raise NDNSError(f"{base} was synthesized with other settings ({', '.join(diff)}); "
                            "use another output folder or the same settings")
    else:
        base.mkdir(parents=True, exist_ok=True)
        cfg.write_text(json.dumps(settings, indent=1) + "\n")

    noisy_dir = base / "noisy"
    existing = {int(m["fileid"]): noisy_dir / m.string for m in
                (NOISY_RE.match(p.name) for p in noisy_dir.glob("*.wav")) if m}
    made = skipped = 0
    for i in tqdm(range(n_clips), desc=f"synthesize {split}", unit="clip", disable=not progress):
        paths = (base / "clean" / f"clean_fileid_{i}.wav", base / "noise" / f"noise_fileid_{i}.wav")
        if i in existing and all(p.is_file() for p in paths):
            skipped += 1
            continue
        c, z, y, s, t, prefix = _clip(i, seed, n, sample_rate, snr, level, clean, noise, rir,
                                      rir_prob)
        noisy_path = noisy_dir / f"{prefix}_snr{s}_tl{t}_fileid_{i}.wav"
        for path, x in zip((*paths, noisy_path), (c, z, y)):
            write_audio_atomic(path, x[None], sample_rate, subtype="PCM_16")
        if existing.get(i, noisy_path) != noisy_path:
            existing[i].unlink(missing_ok=True)
        made += 1
    bad = sorted(map(str, clean.bad | noise.bad | (rir.bad if rir else set())))
    return {"out": base, "made": made, "skipped": skipped, "unreadable": bad}
