"""Intel N-DNS Challenge data: read the release layout and synthesize look-alike clips.

The layout of a split (``training_set``, ``validation_set``) is::

    <root>/<split>/clean/clean_fileid_{N}.wav
    <root>/<split>/noise/noise_fileid_{N}.wav
    <root>/<split>/noisy/<source>_snr{S}_tl{T}_fileid_{N}.wav

Files pair by fileid ``N``; the noisy name states the SNR ``S`` (dB, clean
over noise energy) and the mixture's RMS level ``T`` (dBFS). N-DNS writes ``S``
and ``T`` as integers; :func:`ndns_pairs` also reads negative and decimal
values.

:func:`synthesize` writes clips in that layout from any clean-speech and noise
folders, following the N-DNS recipe (16 kHz, 30 s, SNR uniform in [-5, 20] dB,
level uniform in [-35, -15] dBFS, both drawn as integers). A clip's randomness
depends only on ``(seed, fileid)``, so synthesis is deterministic and
resumable. Names are truthful: when a mixture would clip, all three signals are
scaled down to the next lower integer level, which the name then states.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
from tqdm import tqdm

from snnse.audio import AudioError, find_audio_files, read_audio, resample, write_audio_atomic
from snnse.data.manifest import write_manifest
from snnse.data.mixing import apply_rir, loop_crop, mix
from snnse.messages import eprint, listing

CLEAN_RE = re.compile(r"^clean_fileid_(?P<fileid>\d+)\.wav$")
NOISE_RE = re.compile(r"^noise_fileid_(?P<fileid>\d+)\.wav$")
NOISY_RE = re.compile(r"^(?P<prefix>.*)_snr(?P<snr>-?\d+(?:\.\d+)?)_tl(?P<tl>-?\d+(?:\.\d+)?)"
                      r"_fileid_(?P<fileid>\d+)\.wav$")
SPLITS = {"training_set": "train", "validation_set": "valid"}
PEAK = 0.99          # largest sample magnitude written
GAP_SECONDS = 0.2    # silence between concatenated clean utterances (as in the DNS synthesizer)
TRIES = 10           # redraws when a clean or noise excerpt is silent


class NDNSError(Exception):
    """Unusable layout, sources or settings for N-DNS data."""




def _index(folder: Path, pattern: re.Pattern, problems: list[str]) -> dict[int, re.Match]:
    """Map fileid -> name match for the files of ``folder``; odd names and duplicates go to ``problems``."""
    found: dict[int, re.Match] = {}
    for p in sorted(folder.glob("*.wav")):
        m = pattern.match(p.name)
        if m is None:
            problems.append(f"{folder.name}/{p.name}: name does not follow the N-DNS pattern")
        elif int(m["fileid"]) in found:
            problems.append(f"{folder.name}/{p.name}: fileid {m['fileid']} already used by "
                            f"{found[int(m['fileid'])].string}")
        else:
            found[int(m["fileid"])] = m
    return found


def ndns_pairs(root: str | os.PathLike, split: str = "training_set", strict: bool = False
               ) -> list[dict]:
    """Pair the noisy, clean and noise files of an N-DNS split by fileid.

    Args:
        root: Folder holding the split folders.
        split: Split folder name, e.g. ``"training_set"`` or ``"validation_set"``.
        strict: Raise on unpaired fileids or odd names instead of warning.

    Returns:
        Dicts sorted by fileid with ``fileid`` (int), ``noisy``, ``clean``
        (Paths), ``noise`` (Path, or None where the split has no noise file for
        it), ``snr`` and ``level`` (floats parsed from the noisy name).

    Raises:
        NDNSError: Missing ``clean``/``noisy`` folder, no pairs at all, or
            (with ``strict``) any unpaired fileid or odd file name.
    """
    base = Path(root) / split
    for sub in ("clean", "noisy"):
        if not (base / sub).is_dir():
            raise NDNSError(f"{base / sub}: no such folder (expected the N-DNS layout "
                            f"{split}/{{clean,noise,noisy}}/)")
    problems: list[str] = []
    noisy = _index(base / "noisy", NOISY_RE, problems)
    clean = _index(base / "clean", CLEAN_RE, problems)
    noise = _index(base / "noise", NOISE_RE, problems) if (base / "noise").is_dir() else {}
    problems += [f"fileid {i}: noisy/{noisy[i].string} has no clean/clean_fileid_{i}.wav"
                 for i in sorted(noisy.keys() - clean.keys())]
    problems += [f"fileid {i}: clean/{clean[i].string} has no noisy file"
                 for i in sorted(clean.keys() - noisy.keys())]
    if noise:
        problems += [f"fileid {i}: no noise/noise_fileid_{i}.wav"
                     for i in sorted((noisy.keys() & clean.keys()) - noise.keys())]
    if problems:
        msg = f"{base}: {len(problems)} problem(s):\n{listing(problems)}"
        if strict:
            raise NDNSError(msg)
        warnings.warn(msg, stacklevel=2)
    pairs = [{"fileid": i, "noisy": base / "noisy" / noisy[i].string,
              "clean": base / "clean" / clean[i].string,
              "noise": base / "noise" / noise[i].string if i in noise else None,
              "snr": float(noisy[i]["snr"]), "level": float(noisy[i]["tl"])}
             for i in sorted(noisy.keys() & clean.keys())]
    if not pairs:
        raise NDNSError(f"{base}: no noisy/clean pairs found")
    return pairs


def write_ndns_manifest(root: str | os.PathLike, split: str, out_csv: str | os.PathLike,
                        strict: bool = False) -> int:
    """Write a manifest for an N-DNS split.

    Besides the required columns it has ``snr``, ``level`` (from the noisy
    name), ``noise`` (path relative to the manifest's folder, empty if none)
    and ``fileid``. N-DNS clips concatenate several readers and carry no
    speaker label, so ``speaker`` is ``"unknown"``. ``id`` is
    ``fileid_{N}``; ``duration`` is that of the clean file.

    Args:
        root: Folder holding the split folders.
        split: Split folder name.
        out_csv: Manifest to write.
        strict: As for :func:`ndns_pairs`; also applies to clean/noisy length
            mismatches, which are otherwise dropped with a warning.

    Returns:
        Number of rows written.
    """
    out_csv = Path(out_csv)
    base = out_csv.parent.resolve()
    rows, problems = [], []
    for p in ndns_pairs(root, split, strict=strict):
        try:
            c, n = sf.info(str(p["clean"])), sf.info(str(p["noisy"]))
        except (sf.SoundFileError, RuntimeError) as err:
            problems.append(f"fileid {p['fileid']}: unreadable ({err})")
            continue
        if (c.frames, c.samplerate) != (n.frames, n.samplerate):
            problems.append(f"fileid {p['fileid']}: clean and noisy differ "
                            f"({c.frames} @ {c.samplerate} Hz vs {n.frames} @ {n.samplerate} Hz)")
            continue
        noise = os.path.relpath(p["noise"].resolve(), base) if p["noise"] else ""
        rows.append({"id": f"fileid_{p['fileid']}", "noisy": p["noisy"], "clean": p["clean"],
                     "duration": c.frames / c.samplerate, "speaker": "unknown",
                     "snr": f"{p['snr']:g}", "level": f"{p['level']:g}", "noise": noise,
                     "fileid": p["fileid"]})
    if problems:
        msg = f"{Path(root) / split}: {len(problems)} pair(s) dropped:\n{listing(problems)}"
        if strict:
            raise NDNSError(msg)
        warnings.warn(msg, stacklevel=2)
    return write_manifest(out_csv, rows, extra=("snr", "level", "noise", "fileid"))


# ---------------------------------------------------------------- synthesis

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


# ---------------------------------------------------------------- command line



def _report(fn, *args, **kwargs):
    """Call ``fn``, printing its warnings as ``warning:`` and its errors as ``error:`` lines.

    Returns:
        ``(status, result)``: status 0, or 2 after an :class:`NDNSError`
        (usage) or 1 after an :class:`AudioError` (an output), with result None.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return 0, fn(*args, **kwargs)
        except (NDNSError, AudioError) as err:
            eprint(f"error: {err}")
            return (2 if isinstance(err, NDNSError) else 1), None
        finally:
            for w in caught:
                eprint(f"warning: {w.message}")


def add_parser(subparsers) -> None:
    """Register ``synthesize`` (``func=run_synthesize``) and ``ndns`` (``func=run_ndns``)."""
    p = subparsers.add_parser(
        "synthesize", help="synthesize N-DNS-style noisy/clean/noise clips",
        description="Mix random clean utterances with random noise into N-DNS-style clips "
                    "(deterministic per seed and fileid, resumable).")
    p.add_argument("--clean", nargs="+", required=True, metavar="DIR", help="clean speech folders")
    p.add_argument("--noise", nargs="+", required=True, metavar="DIR", help="noise folders")
    p.add_argument("--out", required=True, help="output root (clips go to OUT/SPLIT/...)")
    p.add_argument("--clips", type=int, required=True, help="number of clips")
    p.add_argument("--seconds", type=float, default=30.0, help="clip length (default 30)")
    p.add_argument("--snr", type=float, nargs=2, default=(-5, 20), metavar=("LO", "HI"),
                   help="SNR range in dB, integers drawn (default -5 20)")
    p.add_argument("--level", type=float, nargs=2, default=(-35, -15), metavar=("LO", "HI"),
                   help="level range in dBFS, integers drawn (default -35 -15)")
    p.add_argument("--rir", nargs="+", metavar="DIR", help="room impulse response folders")
    p.add_argument("--rir-prob", type=float, default=None, help="probability of reverberating a clip")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--split", default="training_set", help="split folder (default training_set)")
    p.add_argument("--sample-rate", type=int, default=16000, help="output rate (default 16000)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_synthesize)

    q = subparsers.add_parser(
        "ndns", help="write manifests for an N-DNS release",
        description="Pair the files of ROOT/training_set and ROOT/validation_set by fileid and "
                    "write OUT/train.csv and OUT/valid.csv.")
    q.add_argument("--root", required=True, help="folder holding training_set/ and validation_set/")
    q.add_argument("--out", required=True, help="manifest folder")
    q.set_defaults(func=run_ndns)


def run_synthesize(args: argparse.Namespace) -> int:
    """Run ``snnse data synthesize``; 0 ok, 1 an output could not be written, 2 usage problems."""
    if args.rir and args.rir_prob is None:
        eprint("error: --rir needs --rir-prob P (the probability of reverberating a clip)")
        return 2
    status, s = _report(synthesize, args.clean, args.noise, args.out, args.clips,
                        clip_seconds=args.seconds, snr_range=args.snr, level_range=args.level,
                        rir_dir=args.rir, rir_prob=args.rir_prob or 0.0, seed=args.seed,
                        split=args.split, sample_rate=args.sample_rate, progress=not args.quiet)
    if status == 0:
        print(f"{s['out']}: made {s['made']} clips, {s['skipped']} already there")
    return status


def run_ndns(args: argparse.Namespace) -> int:
    """Run ``snnse data ndns``; 0 ok, 2 if no split is usable."""
    splits = [s for s in SPLITS if (Path(args.root) / s).is_dir()]
    if not splits:
        eprint(f"error: {args.root}: no {' or '.join(SPLITS)} folder")
        return 2
    for s in splits:
        out_csv = Path(args.out) / f"{SPLITS[s]}.csv"
        status, n = _report(write_ndns_manifest, args.root, s, out_csv)
        if status:
            return status
        print(f"{out_csv}: {n} pairs from {s}")
    return 0
