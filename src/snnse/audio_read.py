"""Reading audio files: checks, whole-file and block reads, truncated WAV files, mono at a rate.

Part of :mod:`snnse.audio` (which re-exports every public name). Arrays are ``[channels,
samples]``; every problem with an input raises :class:`AudioError`, the error of all the audio
modules, with a one-line message naming the file.

A truncated WAV file (its header declares more sample frames than the file holds, as after an
interrupted copy or download) is read up to where it ends: libsndfile does that silently, so
:func:`wav_truncation` checks the header and :func:`read_audio` warns
(:class:`TruncatedAudioWarning`) with what is missing.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from snnse.audio_resample import resample


class AudioError(Exception):
    """A problem with an audio file; ``str(err)`` is one line naming the file."""


class TruncatedAudioWarning(UserWarning):
    """A WAV file holds fewer samples than its header declares; what is there was read."""


def _sf_reason(err: Exception) -> str:
    """Return a short lower-case reason from a soundfile/libsndfile error."""
    reason = getattr(err, "error_string", None) or str(err)
    reason = " ".join(str(reason).split()).rstrip(".")
    return reason[:1].lower() + reason[1:] if reason else "unknown error"


def open_audio(path: str | os.PathLike) -> sf.SoundFile:
    """Open an audio file for reading after checking that it is usable.

    Args:
        path: Audio file (anything libsndfile reads, e.g. WAV or FLAC).

    Returns:
        An open :class:`soundfile.SoundFile`; the caller closes it.

    Raises:
        AudioError: If the file is missing, not a regular file, unreadable or
            holds no samples.
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: file not found")
    if not p.is_file():
        raise AudioError(f"{p}: not a file")
    try:
        snd = sf.SoundFile(str(p), "r")
    except (sf.SoundFileError, RuntimeError, OSError) as err:
        raise AudioError(f"{p}: cannot read audio ({_sf_reason(err)})") from None
    if snd.frames <= 0 or snd.channels <= 0:
        snd.close()
        raise AudioError(f"{p}: empty audio file (no samples)")
    return snd


def iter_blocks(snd: sf.SoundFile, block_frames: int, path: str | os.PathLike
                ) -> Iterator[np.ndarray]:
    """Yield finite float32 blocks ``[channels, n]`` from an open sound file.

    Args:
        snd: File opened for reading (e.g. by :func:`open_audio`).
        block_frames: Maximum number of frames per block (>= 1).
        path: File name used in error messages.

    Yields:
        Float32 arrays of shape ``[channels, n]`` with ``1 <= n <= block_frames``.

    Raises:
        AudioError: If decoding fails part-way (corrupt or truncated data) or a
            block contains NaN or Inf samples.
    """
    block_frames = max(1, int(block_frames))
    pos = 0
    while True:
        try:
            block = snd.read(block_frames, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as err:
            raise AudioError(f"{path}: corrupt or truncated audio after "
                             f"{pos / snd.samplerate:.2f} s ({_sf_reason(err)})") from None
        if block.shape[0] == 0:
            return
        if not np.isfinite(block).all():
            bad = int(np.argmax(~np.isfinite(block).all(axis=1)))
            raise AudioError(f"{path}: contains NaN or Inf samples "
                             f"(first at {(pos + bad) / snd.samplerate:.3f} s)")
        pos += block.shape[0]
        yield np.ascontiguousarray(block.T)


# WAVE format tags whose data chunk is whole frames of ``block_align`` bytes: PCM, IEEE float,
# A-law, mu-law (and WAVE_FORMAT_EXTENSIBLE with one of these as its sub-format)
_FRAMED_WAV_TAGS = frozenset({0x0001, 0x0003, 0x0006, 0x0007})
_WAV_EXTENSIBLE = 0xFFFE
_OPEN_LENGTHS = (0, 0xFFFFFFFF)  # data sizes a streaming writer leaves before it knows the length


def wav_truncation(path: str | os.PathLike) -> tuple[int, int] | None:
    """Check whether a WAV file holds fewer sample frames than its header declares.

    libsndfile reads such a file without complaint and reports the frames that
    are there, so the truncation is found here from the RIFF header: the size of
    the ``data`` chunk (the ``ds64`` chunk's for RF64) against the bytes that
    follow it in the file.

    Args:
        path: Any file; only RIFF/RIFX/RF64 WAVE files with PCM, float, A-law or
            mu-law samples are examined.

    Returns:
        ``(declared, present)`` sample frames if the data chunk is cut short,
        else ``None`` (complete, not such a WAV file, unreadable header, or a
        length left open as 0 or 0xFFFFFFFF by a streaming writer).
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(12)
            if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX", b"RF64"):
                return None
            end = ">" if head[:4] == b"RIFX" else "<"
            block_align = ds64_data = None
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                cid, (csize,) = f.read(4), struct.unpack(end + "I", f.read(4))
                body = pos + 8
                if cid == b"ds64":
                    b = f.read(16)
                    if len(b) == 16:
                        ds64_data = struct.unpack("<Q", b[8:16])[0]
                elif cid == b"fmt ":
                    b = f.read(min(csize, 40))
                    if len(b) < 14:
                        return None
                    tag, _, _, _, block_align = struct.unpack(end + "HHIIH", b[:14])
                    if tag == _WAV_EXTENSIBLE and len(b) >= 26:
                        tag = struct.unpack(end + "H", b[24:26])[0]
                    if tag not in _FRAMED_WAV_TAGS:
                        return None
                elif cid == b"data":
                    if head[:4] == b"RF64" and csize == 0xFFFFFFFF and ds64_data is not None:
                        csize = ds64_data
                    if not block_align or csize in _OPEN_LENGTHS:
                        return None
                    declared, present = csize // block_align, max(0, size - body) // block_align
                    return (declared, present) if present < declared else None
                pos = body + csize + (csize & 1)
    except OSError:
        return None
    return None


def truncation_message(path: str | os.PathLike, declared: int, present: int, sample_rate: int) -> str:
    """One line naming a truncated file and how much of it is missing (see :func:`wav_truncation`)."""
    missing, sr = declared - present, sample_rate
    return (f"{path}: truncated WAV file: its header declares {declared} frames "
            f"({declared / sr:.2f} s), the file holds {present} ({present / sr:.2f} s); "
            f"the last {missing} frames ({missing / sr:.2f} s) are missing")


def read_audio(path: str | os.PathLike, dtype: str = "float32") -> tuple[np.ndarray, int]:
    """Read a whole audio file.

    Args:
        path: Audio file (WAV, FLAC or anything else libsndfile reads).
        dtype: ``"float32"`` or ``"float64"``.

    Returns:
        ``(x, sample_rate)`` with ``x`` of shape ``[channels, samples]``.

    Raises:
        AudioError: Missing, not a file, unreadable, corrupt, empty, or
            containing NaN/Inf samples.

    Warns:
        TruncatedAudioWarning: A WAV file holds fewer frames than its header
            declares (:func:`wav_truncation`); the frames that are there are
            returned.
    """
    with open_audio(path) as snd:
        sr = snd.samplerate
        blocks = list(iter_blocks(snd, 1 << 20, path))
    if not blocks:
        raise AudioError(f"{path}: empty audio file (no samples)")
    cut = wav_truncation(path)
    if cut is not None:
        warnings.warn(truncation_message(path, *cut, sr), TruncatedAudioWarning, stacklevel=2)
    x = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    return x.astype(dtype, copy=False), sr


def load_mono(path: str | os.PathLike, sample_rate: int, start: int = 0, frames: int = -1) -> np.ndarray:
    """Read ``frames`` samples (all if -1) from ``start`` as float32 mono at ``sample_rate``.

    Files at another rate are read whole and resampled (the crop is then taken
    at ``sample_rate``). Multichannel files are averaged to mono.
    """
    info = sf.info(str(path))
    if info.samplerate == sample_rate:
        x, _ = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
        x = x.T
    else:
        x, sr = read_audio(path)
        x = resample(x, sr, sample_rate)
        x = x[:, start:] if frames < 0 else x[:, start:start + frames]
    x = x.mean(axis=0) if x.shape[0] > 1 else x[0]
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{path}: contains NaN or Inf samples")
    return np.ascontiguousarray(x, dtype=np.float32)
