"""Robust audio input/output for the command line tools.

Everything here works on arrays laid out as ``[channels, samples]`` and raises
:class:`AudioError` with a one-line, user-readable message naming the file when
something is wrong with an input or an output.  No model code lives here.

Integer output subtypes (``PCM_16``, ``PCM_24``, ...) cannot hold values
outside ``[-1, 1]``; the writers clip such samples and report how many were
clipped (:attr:`AtomicAudioWriter.clipped`, return value of
:func:`write_audio_atomic`) instead of printing anything themselves.

A truncated WAV file (its header declares more sample frames than the file
holds, as after an interrupted copy or download) is read up to where it ends:
libsndfile does that silently, so :func:`wav_truncation` checks the header and
:func:`read_audio` warns (:class:`TruncatedAudioWarning`) with what is missing.
"""

from __future__ import annotations

import os
import struct
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import soundfile as sf
import soxr

AUDIO_EXTENSIONS = (".wav", ".flac")
_FORMAT_BY_EXT = {".wav": "WAV", ".flac": "FLAC"}
_UNCLIPPED_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})


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


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``[channels, samples]`` (or 1-D) audio with soxr (quality VHQ).

    Args:
        x: Audio, ``[channels, samples]`` or ``[samples]``.
        sr_in: Input sample rate in Hz.
        sr_out: Output sample rate in Hz.

    Returns:
        Resampled audio with the same ndim and dtype; ``x`` itself if the rates
        are equal.
    """
    if int(sr_in) == int(sr_out):
        return x
    y = soxr.resample(np.ascontiguousarray(np.asarray(x).T), sr_in, sr_out, quality="VHQ")
    return np.ascontiguousarray(y.T).astype(x.dtype, copy=False)


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


class StreamResampler:
    """Chunked soxr resampler on ``[channels, n]`` float32 blocks.

    Concatenating all :meth:`process` outputs and the :meth:`flush` output gives
    the same samples as :func:`resample` on the whole signal. With equal rates
    it passes blocks through unchanged.

    Args:
        sr_in: Input sample rate in Hz.
        sr_out: Output sample rate in Hz.
        channels: Number of channels.
    """

    def __init__(self, sr_in: int, sr_out: int, channels: int):
        self.channels = int(channels)
        self._rs = None
        if int(sr_in) != int(sr_out):
            self._rs = soxr.ResampleStream(sr_in, sr_out, self.channels,
                                           dtype="float32", quality="VHQ")

    def process(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample one block ``[channels, n]``; ``last=True`` flushes."""
        x = np.asarray(x, dtype=np.float32)
        if self._rs is None:
            return x
        y = self._rs.resample_chunk(np.ascontiguousarray(x.T), last=last)
        return np.ascontiguousarray(y.reshape(-1, self.channels).T)

    def flush(self) -> np.ndarray:
        """Return the remaining output; call once at the end."""
        return self.process(np.zeros((self.channels, 0), np.float32), last=True)


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
