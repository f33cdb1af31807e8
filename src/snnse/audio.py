"""Robust audio input/output for the command line tools: the one import path for all of it.

Everything works on arrays laid out as ``[channels, samples]`` and raises :class:`AudioError`
with a one-line, user-readable message naming the file when something is wrong with an input or
an output. No model code lives here. The names are defined, by idea, in

* :mod:`snnse.audio_read` — :class:`AudioError`, :func:`open_audio`, :func:`iter_blocks`,
  :func:`read_audio`, :func:`load_mono`, and truncated WAV files (:func:`wav_truncation`,
  :func:`truncation_message`, :class:`TruncatedAudioWarning`);
* :mod:`snnse.audio_resample` — :func:`resample`, :class:`StreamResampler` (soxr);
* :mod:`snnse.audio_write` — :class:`AtomicAudioWriter`, :func:`write_audio_atomic`,
  :func:`output_format` (atomic writes, clipping counted for integer subtypes);
* :mod:`snnse.audio_files` — :func:`find_audio_files`, :func:`plan_outputs`,
  :data:`AUDIO_EXTENSIONS`;

and re-exported here, so that ``from snnse.audio import ...`` reaches every one of them.
"""

from __future__ import annotations

from snnse.audio_files import AUDIO_EXTENSIONS, find_audio_files, plan_outputs
from snnse.audio_read import (AudioError, TruncatedAudioWarning, iter_blocks, load_mono, open_audio, read_audio,
                              truncation_message, wav_truncation)
from snnse.audio_resample import StreamResampler, resample
from snnse.audio_write import AtomicAudioWriter, output_format, write_audio_atomic

__all__ = ["AUDIO_EXTENSIONS", "AtomicAudioWriter", "AudioError", "StreamResampler", "TruncatedAudioWarning",
           "find_audio_files", "iter_blocks", "load_mono", "open_audio", "output_format", "plan_outputs",
           "read_audio", "resample", "truncation_message", "wav_truncation", "write_audio_atomic"]
