"""Atomic file output: write to a temporary file in the target's folder, then rename.

A reader (or a crash) never sees a half-written file, and an existing file is replaced only
once the new one is complete. Audio has its own streaming writer
(:class:`snnse.audio.AtomicAudioWriter`); everything else goes through here. :func:`file_sha256`
names a file's content (caches, pinned downloads).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    The folder is created if needed. The file gets the usual permissions (``0o666`` minus
    the umask) rather than ``mkstemp``'s ``0o600``. On any exception the temporary file is
    removed and ``path`` is left as it was.

    Args:
        path: The final file.
        suffix: Suffix of the temporary file (``.{name}.XXXX{suffix}``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (no newline translation); return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding, newline="") as f:
            f.write(text)
    return Path(path)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["atomic_path", "atomic_write_text", "file_sha256"]
