"""Writing audio files atomically: the output format, an incremental writer, whole-array writes.

Part of :mod:`snnse.audio` (which re-exports these names). Every output goes to a temporary file
in the target's folder and is renamed into place, so a reader or a crash never sees half a file.
Integer output subtypes (``PCM_16``, ``PCM_24``, ...) cannot hold values outside ``[-1, 1]``;
the writers clip such samples and report how many were clipped
(:attr:`AtomicAudioWriter.clipped`, return value of :func:`write_audio_atomic`) instead of
printing anything themselves.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from snnse.audio_read import AudioError, _sf_reason

_FORMAT_BY_EXT = {".wav": "WAV", ".flac": "FLAC"}
_UNCLIPPED_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})


def output_format(out_path: str | os.PathLike, in_format: str | None = None,
                  in_subtype: str | None = None) -> tuple[str, str]:
    """Choose the container format and subtype for an output file.

    The format follows the output extension (``.wav``/``.flac``), else the
    input's format, else WAV. The input subtype is kept when the format allows
    it, else the format's default subtype is used.

    Returns:
        ``(format, subtype)`` as soundfile names.
    """
    fmt = _FORMAT_BY_EXT.get(Path(out_path).suffix.lower()) or in_format or "WAV"
    if in_subtype and sf.check_format(fmt, in_subtype):
        return fmt, in_subtype
    return fmt, sf.default_subtype(fmt)


class AtomicAudioWriter:
    """Write audio incrementally to a temp file, then rename it into place.

    Use as a context manager: on normal exit the temp file (in the target's
    directory) is moved onto ``path`` with :func:`os.replace`; on an exception,
    or after :meth:`abort`, it is deleted and ``path`` is left untouched.

    Args:
        path: Final output path; parent folders are created.
        sample_rate: Sample rate in Hz.
        channels: Number of channels.
        subtype: soundfile subtype (e.g. ``"PCM_16"``); default for the format
            when None or not supported by the format.
        format: soundfile format, used when ``path`` does not end in
            .wav/.flac (see :func:`output_format`).

    Attributes:
        clipped: Number of samples clipped to [-1, 1] (integer subtypes only).
        frames: Frames written so far.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int,
                 subtype: str | None = None, format: str | None = None):
        self.path = Path(path)
        self.format, self.subtype = output_format(self.path, format, subtype)
        self.channels = int(channels)
        self.clipped = 0
        self.frames = 0
        self._clip = self.subtype not in _UNCLIPPED_SUBTYPES
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part",
                                       dir=self.path.parent)
            os.close(fd)
        except OSError as err:
            raise AudioError(f"{self.path}: cannot create output ({err.strerror or err})") from None
        self.tmp_path = Path(tmp)
        try:
            self._snd = sf.SoundFile(tmp, "w", samplerate=int(sample_rate), channels=self.channels,
                                     subtype=self.subtype, format=self.format)
        except (sf.SoundFileError, RuntimeError, ValueError, OSError) as err:
            self._remove_tmp()
            raise AudioError(f"{self.path}: cannot write audio ({_sf_reason(err)})") from None

    def write(self, x: np.ndarray) -> None:
        """Append a block ``[channels, n]`` (clipped for integer subtypes)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float32))
        if x.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {x.shape[0]}")
        if x.shape[1] == 0:
            return
        if self._clip:
            over = np.abs(x) > 1.0
            n_over = int(over.sum())
            if n_over:
                self.clipped += n_over
                x = np.clip(x, -1.0, 1.0)
        try:
            self._snd.write(np.ascontiguousarray(x.T))
        except (sf.SoundFileError, RuntimeError, OSError) as err:
            raise AudioError(f"{self.path}: cannot write audio ({_sf_reason(err)})") from None
        self.frames += x.shape[1]

    def commit(self) -> None:
        """Close the temp file and move it onto the final path."""
        self._snd.close()
        try:
            umask = os.umask(0o022)
            os.umask(umask)
            os.chmod(self.tmp_path, 0o666 & ~umask)  # mkstemp makes it 0600
            os.replace(self.tmp_path, self.path)
        except OSError as err:
            self._remove_tmp()
            raise AudioError(f"{self.path}: cannot write output ({err.strerror or err})") from None

    def abort(self) -> None:
        """Discard everything written; the final path is not touched."""
        if not self._snd.closed:
            self._snd.close()
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> "AtomicAudioWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_audio_atomic(path: str | os.PathLike, x: np.ndarray, sr: int,
                       subtype: str | None = None) -> int:
    """Write ``[channels, samples]`` audio atomically (temp file + rename).

    Args:
        path: Output file; format from its extension (.wav/.flac, else WAV).
        x: Audio ``[channels, samples]`` (1-D is treated as mono).
        sr: Sample rate in Hz.
        subtype: soundfile subtype to keep (e.g. the input's ``"PCM_16"``).

    Returns:
        Number of samples clipped to [-1, 1] (always 0 for FLOAT/DOUBLE).

    Raises:
        AudioError: If the file cannot be written; no partial file is left.
    """
    x = np.atleast_2d(np.asarray(x))
    if x.ndim != 2:
        raise ValueError(f"expected [channels, samples], got shape {x.shape}")
    with AtomicAudioWriter(path, sr, x.shape[0], subtype=subtype) as writer:
        writer.write(x)
    return writer.clipped
