"""VoiceBank+DEMAND: resample the official release once and write manifests.

The official release (Valentini-Botinhao et al., 2016) ships 48 kHz WAV files in
four folders under one root::

    clean_trainset_28spk_wav/  noisy_trainset_28spk_wav/   (11,572 pairs)
    clean_testset_wav/         noisy_testset_wav/          (824 pairs)

(the 56-speaker training set, ``*_trainset_56spk_wav`` with 23,075 pairs, is
used when the 28-speaker one is absent). :func:`prepare_voicebank` converts
every file to ``sample_rate`` with soxr into a cache folder that mirrors these
folder names (files already at ``sample_rate`` are copied sample for sample),
checks that clean and noisy files pair up, and writes ``train.csv``,
``valid.csv`` and ``test.csv`` there (see :mod:`snnse.data.manifest`).

Validation is the training-set utterances of ``valid_speakers`` (p226 and p287
by default, as in most papers since SEGAN), so it is speaker-disjoint from
both the training and the test set; the test set is never used for it.

Conversion is resumable: every file is written atomically, and a cached file
that is readable, at ``sample_rate`` and newer than its source is not
converted again.
Pairing problems (a file without its partner, clean and noisy of different
length, an unreadable file) raise :class:`PairingError` listing the first few,
or, with ``strict=False``, drop those pairs with a warning.
"""

from __future__ import annotations

import argparse
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import soundfile as sf
from tqdm import tqdm

from snnse.audio import AudioError, read_audio, resample, write_audio_atomic
from snnse.data.manifest import write_manifest
from snnse.messages import eprint, listing

TRAINSETS = {"28spk": 11572, "56spk": 23075}
FULL_TEST = 824


class VoiceBankError(Exception):
    """Base class of the errors raised here."""


class LayoutError(VoiceBankError):
    """The root folder, a release folder or a speaker argument is unusable (a usage problem)."""


class PairingError(VoiceBankError):
    """Clean and noisy files do not pair up (missing partner, length mismatch, unreadable)."""


def speaker_of(name: str) -> str:
    """Speaker of a VoiceBank file name: the ``pNNN`` prefix (``"p226_001.wav"`` -> ``"p226"``)."""
    return Path(name).name.split("_", 1)[0]




def _find_layout(root: Path) -> tuple[str, dict[str, tuple[Path, Path]]]:
    """Return the training-set name and ``{split: (clean_dir, noisy_dir)}``.

    Raises:
        LayoutError: Missing root or release folders.
    """
    if not root.is_dir():
        raise LayoutError(f"{root}: no such folder (expected the VoiceBank+DEMAND release root)")
    for name in TRAINSETS:
        dirs = (root / f"clean_trainset_{name}_wav", root / f"noisy_trainset_{name}_wav")
        if all(d.is_dir() for d in dirs):
            break
    else:
        raise LayoutError(f"{root}: found neither clean_trainset_28spk_wav/noisy_trainset_28spk_wav "
                          "nor the 56spk folders of the VoiceBank+DEMAND release")
    test = (root / "clean_testset_wav", root / "noisy_testset_wav")
    missing = [d.name for d in test if not d.is_dir()]
    if missing:
        raise LayoutError(f"{root}: missing release folder(s) {', '.join(missing)}")
    return name, {"train": dirs, "test": test}


def _wavs(folder: Path) -> dict[str, Path]:
    """``{file name: path}`` of the WAV files directly in ``folder``."""
    return {p.name: p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file()}


def _convert(job: tuple[Path, Path, int]) -> tuple[str, int, int]:
    """Convert one file (runs in a worker process).

    Args:
        job: ``(source, destination, sample_rate)``.

    Returns:
        ``(outcome, frames, clipped)``: outcome is ``"cached"``, ``"copied"``,
        ``"resampled"`` or ``"error: <reason>"``; frames of the cached file.
    """
    src, dst, sr = job
    try:
        info = sf.info(str(dst))
        if info.samplerate == sr and info.frames > 0 and dst.stat().st_mtime >= src.stat().st_mtime:
            return "cached", info.frames, 0
    except (sf.SoundFileError, RuntimeError, OSError):
        pass  # missing, unreadable or older than its source: (re)convert
    try:
        x, sr_in = read_audio(src)
        subtype = sf.info(str(src)).subtype
        y = resample(x, sr_in, sr)
        clipped = write_audio_atomic(dst, y, sr, subtype=subtype)
    except (AudioError, sf.SoundFileError, RuntimeError) as err:
        return f"error: {err}", 0, 0
    return ("copied" if sr_in == sr else "resampled"), y.shape[1], clipped


def _run_jobs(jobs: list[tuple[Path, Path, int]], workers: int, progress: bool
              ) -> list[tuple[str, int, int]]:
    """Run :func:`_convert` on all jobs, in a process pool when ``workers > 1``."""
    bar = tqdm(total=len(jobs), desc="voicebank", unit="file", disable=not progress)
    with bar:
        if workers <= 1:
            results = []
            for job in jobs:
                results.append(_convert(job))
                bar.update()
            return results
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = []
            for res in pool.map(_convert, jobs, chunksize=16):
                results.append(res)
                bar.update()
            return results


def prepare_voicebank(root: str | os.PathLike, out: str | os.PathLike | None = None,
                      sample_rate: int = 16000,
                      valid_speakers: Sequence[str] = ("p226", "p287"),
                      workers: int | None = None, progress: bool = True,
                      strict: bool = True) -> dict:
    """Resample VoiceBank+DEMAND once and write ``train``/``valid``/``test`` manifests.

    Args:
        root: Folder holding the release folders (see the module docstring).
        out: Cache and manifest folder; default ``<root>/snnse_16k`` (for
            16 kHz; the name follows ``sample_rate``).
        sample_rate: Target rate in Hz.
        valid_speakers: Training-set speakers held out for validation (a
            sequence, or one comma-separated string).
        workers: Conversion processes; default ``min(8, cpu count)``; 0 or 1
            converts in this process.
        progress: Show a tqdm progress bar.
        strict: Raise :class:`PairingError` on pairing problems; if False,
            drop the affected pairs with a warning.

    Returns:
        Summary dict: ``out`` (Path), ``trainset`` (``"28spk"``/``"56spk"``),
        ``train``/``valid``/``test`` (pair counts), ``resampled``, ``copied``,
        ``cached`` (file counts), ``clipped`` (samples clipped by the
        resampler's overshoot), ``problems`` (dropped pairs, with
        ``strict=False``) and ``notes`` (count-mismatch messages, also issued
        as warnings).

    Raises:
        LayoutError: Missing root or folders, valid speakers absent from the
            training set or present in the test set.
        PairingError: Pairing problems with ``strict=True``.
    """
    root = Path(root)
    name, dirs = _find_layout(root)
    out = Path(out) if out is not None else root / f"snnse_{sample_rate / 1000:g}k"
    if isinstance(valid_speakers, str):
        valid_speakers = valid_speakers.split(",")
    valid_speakers = sorted({s.strip() for s in valid_speakers if s.strip()})

    problems: list[str] = []
    pairs: dict[str, list[str]] = {}
    for split, (cdir, ndir) in dirs.items():
        clean, noisy = _wavs(cdir), _wavs(ndir)
        problems += [f"{cdir.name}/{f}: no noisy file of that name in {ndir.name}/"
                     for f in sorted(clean.keys() - noisy.keys())]
        problems += [f"{ndir.name}/{f}: no clean file of that name in {cdir.name}/"
                     for f in sorted(noisy.keys() - clean.keys())]
        pairs[split] = sorted(clean.keys() & noisy.keys())
    if problems and strict:
        raise PairingError(f"{len(problems)} unpaired file(s) in {root}:\n{listing(problems)}")

    speakers = {s: {speaker_of(f) for f in files} for s, files in pairs.items()}
    absent = [s for s in valid_speakers if s not in speakers["train"]]
    if absent:
        raise LayoutError(f"validation speaker(s) {', '.join(absent)} not in the training set "
                          f"(it has {', '.join(sorted(speakers['train'])) or 'no speakers'})")
    in_test = sorted(set(valid_speakers) & speakers["test"])
    if in_test:
        raise LayoutError(f"validation speaker(s) {', '.join(in_test)} are test-set speakers; "
                          "validation must be speaker-disjoint from the test set")

    jobs, slots = [], []
    for split, (cdir, ndir) in dirs.items():
        for f in pairs[split]:
            for kind, folder in (("clean", cdir), ("noisy", ndir)):
                jobs.append((folder / f, out / folder.name / f, sample_rate))
                slots.append((split, f, kind))
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    results = _run_jobs(jobs, workers, progress)

    converted: dict[tuple[str, str, str], tuple[Path, int]] = {}
    for (split, f, kind), (_, dst, _), (outcome, frames, _) in zip(slots, jobs, results):
        if outcome.startswith("error"):
            problems.append(outcome[7:])  # the message names the file
        else:
            converted[split, f, kind] = (dst, frames)
    rows: dict[str, list[dict]] = {"train": [], "valid": [], "test": []}
    for split in dirs:
        for f in pairs[split]:
            c, n = converted.get((split, f, "clean")), converted.get((split, f, "noisy"))
            if c is None or n is None:
                continue  # unreadable source, already listed
            if c[1] != n[1]:
                problems.append(f"{f}: clean and noisy differ in length after resampling "
                                f"({c[1]} vs {n[1]} samples)")
                continue
            spk = speaker_of(f)
            target = "valid" if split == "train" and spk in valid_speakers else split
            rows[target].append({"id": Path(f).stem, "clean": c[0], "noisy": n[0],
                                 "duration": c[1] / sample_rate, "speaker": spk})
    if problems and strict:
        raise PairingError(f"{len(problems)} problem(s) in {root}:\n{listing(problems)}")
    if problems:
        warnings.warn(f"dropped {len(problems)} file(s)/pair(s):\n{listing(problems)}",
                      stacklevel=2)

    spk = {s: {r["speaker"] for r in rows[s]} for s in rows}
    assert not (spk["valid"] & (spk["train"] | spk["test"])), "validation speakers leak"
    for split, split_rows in rows.items():
        write_manifest(out / f"{split}.csv", split_rows)

    notes = []
    n_train = len(rows["train"]) + len(rows["valid"])
    for found, full, what in ((n_train, TRAINSETS[name], f"training pairs, the full {name[:2]}-speaker"),
                              (len(rows["test"]), FULL_TEST, "test pairs, the full")):
        if found != full:
            notes.append(f"found {found:,} {what} release has {full:,}: is this a subset?")
    for note in notes:
        warnings.warn(note, stacklevel=2)
    counts = {k: sum(r[0] == k for r in results) for k in ("resampled", "copied", "cached")}
    return {"out": out, "trainset": name, **{s: len(r) for s, r in rows.items()}, **counts,
            "clipped": sum(r[2] for r in results), "problems": problems, "notes": notes}


# ---------------------------------------------------------------- command line



def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``voicebank`` subcommand on ``subparsers`` (``func=run``)."""
    p = subparsers.add_parser(
        "voicebank", help="resample VoiceBank+DEMAND and write manifests",
        description="Resample the VoiceBank+DEMAND release once (soxr) into a cache folder and "
                    "write train.csv, valid.csv (held-out training speakers) and test.csv.")
    p.add_argument("--root", required=True, help="folder holding clean_trainset_28spk_wav etc.")
    p.add_argument("--out", help="cache and manifest folder (default ROOT/snnse_16k)")
    p.add_argument("--valid-speakers", default="p226,p287",
                   help="comma-separated training speakers for validation (default p226,p287)")
    p.add_argument("--workers", type=int, default=None, help="conversion processes")
    p.add_argument("--sample-rate", type=int, default=16000, help="target rate (default 16000)")
    p.add_argument("--no-strict", action="store_true",
                   help="drop unpaired or mismatched files with a warning instead of failing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``snnse data voicebank``; 0 ok, 1 pairing problems, 2 usage problems."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            s = prepare_voicebank(args.root, args.out, sample_rate=args.sample_rate,
                                  valid_speakers=args.valid_speakers.split(","),
                                  workers=args.workers, progress=not args.quiet,
                                  strict=not args.no_strict)
        except LayoutError as err:
            eprint(f"error: {err}")
            return 2
        except PairingError as err:
            eprint(f"error: {err}")
            return 1
        finally:
            for w in caught:
                eprint(f"warning: {w.message}")
    print(f"{s['out']}: train {s['train']}, valid {s['valid']}, test {s['test']} pairs "
          f"({s['resampled']} resampled, {s['copied']} copied, {s['cached']} already cached)")
    return 0
