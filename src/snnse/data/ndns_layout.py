"""The Intel N-DNS Challenge release layout: its file names, pairing a split's files, manifests.

The layout of a split (``training_set``, ``validation_set``) is::

    <root>/<split>/clean/clean_fileid_{N}.wav
    <root>/<split>/noise/noise_fileid_{N}.wav
    <root>/<split>/noisy/<source>_snr{S}_tl{T}_fileid_{N}.wav

Files pair by fileid ``N``; the noisy name states the SNR ``S`` (dB, clean
over noise energy) and the mixture's RMS level ``T`` (dBFS). N-DNS writes ``S``
and ``T`` as integers; :func:`ndns_pairs` also reads negative and decimal
values. :func:`write_ndns_manifest` writes a split's manifest; :class:`NDNSError`
is the error of all N-DNS code (:mod:`snnse.data.ndns_synth` too). The import
path is :mod:`snnse.data.ndns`.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import soundfile as sf

from snnse.data.manifest import write_manifest
from snnse.messages import listing

CLEAN_RE = re.compile(r"^clean_fileid_(?P<fileid>\d+)\.wav$")
NOISE_RE = re.compile(r"^noise_fileid_(?P<fileid>\d+)\.wav$")
NOISY_RE = re.compile(r"^(?P<prefix>.*)_snr(?P<snr>-?\d+(?:\.\d+)?)_tl(?P<tl>-?\d+(?:\.\d+)?)"
                      r"_fileid_(?P<fileid>\d+)\.wav$")
SPLITS = {"training_set": "train", "validation_set": "valid"}


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
