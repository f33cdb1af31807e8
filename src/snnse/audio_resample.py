"""Resampling with soxr (quality VHQ): whole signals and chunked streams.

Part of :mod:`snnse.audio` (which re-exports these names). :class:`StreamResampler` gives, chunk
by chunk, the same samples as :func:`resample` on the whole signal.
"""

from __future__ import annotations

import numpy as np
import soxr


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
