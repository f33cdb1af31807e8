"""Which files: audio files found in files and folders, and the output path of each input.

Part of :mod:`snnse.audio` (which re-exports these names): :func:`find_audio_files` expands the
command line's inputs, :func:`plan_outputs` pairs each input with its output and refuses
outputs that would overwrite an input or each other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from snnse.audio_read import AudioError

AUDIO_EXTENSIONS = (".wav", ".flac")


def _is_audio(p: Path) -> bool:
    return p.suffix.lower() in AUDIO_EXTENSIONS


def _collect(inputs: Sequence[str | os.PathLike]) -> list[tuple[Path, Path | None]]:
    """Return ``(file, folder_root_or_None)`` for every input, deduplicated."""
    found: list[tuple[Path, Path | None]] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            pairs = [(f, p) for f in sorted(p.rglob("*")) if f.is_file() and _is_audio(f)]
        else:
            pairs = [(p, None)]  # missing files are kept so callers report them
        for f, root in pairs:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                found.append((f, root))
    return found


def find_audio_files(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into a list of audio files.

    Folders are searched recursively for ``.wav``/``.flac`` files (any case),
    sorted. Explicit file arguments are kept whatever their extension, and
    also when they do not exist, so that the caller can report them per file.
    Duplicates are removed.

    Args:
        inputs: File and folder paths.

    Returns:
        Paths in input order (folder contents sorted).
    """
    return [f for f, _ in _collect(inputs)]


def plan_outputs(inputs: Sequence[str | os.PathLike], out: str | os.PathLike
                 ) -> list[tuple[Path, Path]]:
    """Pair each input audio file with its output path.

    ``out`` is a folder: a file input ``a/b.wav`` goes to ``out/b.wav`` and a
    folder input ``d`` keeps its relative structure (``d/x/y.wav`` goes to
    ``out/x/y.wav``). With a single file input and ``out`` ending in ``.wav`` or
    ``.flac`` (and not an existing folder), ``out`` is the output file itself.

    Args:
        inputs: File and folder paths.
        out: Output folder, or output file for a single file input.

    Returns:
        ``(input, output)`` pairs.

    Raises:
        AudioError: If no inputs are found, two inputs map to the same output,
            or an output would overwrite any input file.
    """
    out = Path(out)
    found = _collect(inputs)
    if not found:
        raise AudioError(f"no audio files (.wav/.flac) found in: {', '.join(map(str, inputs))}")
    single = (len(inputs) == 1 and len(found) == 1 and found[0][1] is None
              and _is_audio(out) and not out.is_dir())
    pairs: list[tuple[Path, Path]] = []
    for f, root in found:
        if single:
            dst = out
        elif root is not None:
            dst = out / f.relative_to(root)
        else:
            dst = out / f.name
        pairs.append((f, dst))
    inputs_resolved = {f.resolve(): f for f, _ in found}
    existing_inputs = [f for f, _ in found if f.exists()]
    used: dict[Path, Path] = {}
    for src, dst in pairs:
        key = dst.resolve()
        clash = inputs_resolved.get(key)
        if clash is None and dst.exists():
            clash = next((f for f in existing_inputs if os.path.samefile(f, dst)), None)
        if clash is not None:
            raise AudioError(f"{dst}: output would overwrite input file {clash}; choose another -o")
        if key in used:
            raise AudioError(f"{dst}: inputs {used[key]} and {src} would both be written there")
        used[key] = src
    return pairs
