"""Manifests: the one format every corpus in snnse is described by.

A manifest is a CSV file with a header. Required columns are ``id``,
``noisy``, ``clean``, ``duration`` (seconds) and ``speaker``; any further
columns (``snr``, ``level``, ``noise``, ...) are kept as strings. Paths are
written relative to the manifest's folder, so a prepared corpus can be moved
or shared as a whole; absolute paths are accepted on reading.

Manifests are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable, Sequence
from snnse.atomic import atomic_path

REQUIRED = ("id", "noisy", "clean", "duration", "speaker")


class ManifestError(Exception):
    """A manifest is missing, malformed or points at missing files."""


def write_manifest(path: str | os.PathLike, rows: Iterable[dict],
                   extra: Sequence[str] = ()) -> int:
    """Write ``rows`` (dicts with at least :data:`REQUIRED` keys) atomically.

    Args:
        path: Output CSV file.
        rows: One dict per pair. ``noisy``/``clean`` may be absolute or
            relative to the current directory; they are stored relative to
            the manifest's folder.
        extra: Additional column names to write after the required ones.

    Returns:
        Number of rows written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    fields = list(REQUIRED) + [c for c in extra if c not in REQUIRED]
    n = 0
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            for row in rows:
                row = dict(row)
                for key in ("noisy", "clean"):
                    row[key] = os.path.relpath(Path(row[key]).resolve(), base)
                row["duration"] = f"{float(row['duration']):.4f}"
                w.writerow(row)
                n += 1
    return n


def read_manifest(path: str | os.PathLike, check_files: bool = True) -> list[dict]:
    """Read a manifest; ``noisy``/``clean`` come back as absolute :class:`Path` objects.

    Args:
        path: Manifest CSV.
        check_files: Raise if a listed file does not exist.

    Raises:
        ManifestError: Missing file, missing columns, empty manifest, bad
            duration, or (with ``check_files``) a listed file that is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    base = path.parent.resolve()
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = []
        for i, row in enumerate(reader, start=2):
            for key in ("noisy", "clean"):
                p = Path(row[key])
                row[key] = p if p.is_absolute() else (base / p)
                if check_files and not row[key].is_file():
                    raise ManifestError(f"{path}:{i}: {key} file {row[key]} does not exist")
            try:
                row["duration"] = float(row["duration"])
            except ValueError:
                raise ManifestError(f"{path}:{i}: bad duration {row['duration']!r}") from None
            rows.append(row)
    if not rows:
        raise ManifestError(f"{path}: manifest has no rows")
    return rows
