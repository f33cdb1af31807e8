"""What the robustness suite feeds its systems: sizes, folders, the sweeps' items, the systems.

Part of ``snnse evaluate --robustness`` (:mod:`snnse.robustness`, which runs the suite and
re-exports these names): :class:`Settings` (the sizes of the suite), :func:`load_folder` (the
usable speech or noise recordings of a folder), :func:`select` (the utterances used),
:func:`build_items` (the items of the parts ``clean``, ``snr`` and ``level``) and
:func:`make_systems` (``input``, the baselines and the model, as functions of a signal). The long
stream comes from :mod:`snnse.data.streams`. Everything random is drawn from
``np.random.default_rng([seed, part, index...])`` (:func:`_rng`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from snnse.audio import AudioError, find_audio_files, load_mono
from snnse.data.mixing import mix, rms_db
from snnse.data.streams import at_level, noise_crop
from snnse.robustness_scoring import INPUT, METRICS

PARTS = ("clean", "snr", "level", "stream")
_CODES = {"select": 0, "clean": 1, "snr": 2, "level": 3, "stream": 4}
DEFAULT_CLEAN, DEFAULT_NOISE = "data/demo/test/clean", "data/demo/test/noise"
MIN_SPEECH_S = 1.5  # shorter utterances are left out (see load_folder)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of the suite (the defaults are the full suite; :meth:`quick` a smoke test)."""

    max_utterances: int = 60          # utterances used (chosen by the seed when there are more)
    snrs: tuple = (-5, 0, 5, 10, 15, 20, 30, 40)
    levels: tuple = (-55, -45, -35, -25, -15, -6)
    level_snr: float = 10.0           # SNR of the level sweep's mixtures
    level_range: tuple = (-35.0, -15.0)   # drawn levels (clean input, SNR sweep, stream speech)
    stream_s: float = 300.0
    window_s: float = 30.0
    head_s: float | None = 120.0      # "first/last two minutes"; None: a third of the stream
    segment_s: tuple = (20.0, 40.0)   # the stream's noise and SNR change after this long
    pause_s: tuple = (0.5, 4.0)       # silence between the stream's utterances
    stream_snrs: tuple = (0, 5, 10, 20, 30, 40)
    level_period_s: float = 60.0      # the stream's level envelope: a new knot this often

    @classmethod
    def quick(cls, **changes) -> "Settings":
        return dataclasses.replace(cls(max_utterances=4, stream_s=40.0, window_s=10.0, head_s=None,
                                       segment_s=(8.0, 14.0), level_period_s=15.0), **changes)


class SuiteError(Exception):
    """The suite cannot run (missing folders, no audio, ...); ``str(err)`` is one line."""


def _rng(seed: int, part: str, *index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _CODES[part], *map(int, index)])


def load_folder(folder, sample_rate: int, what: str, min_s: float = 0.5) -> list[tuple[str, np.ndarray]]:
    """``(name, float64 mono signal)`` of every audio file under ``folder``, at ``sample_rate``,
    of at least ``min_s`` seconds and not silent.

    Speech is loaded with ``min_s`` = :data:`MIN_SPEECH_S`: STOI needs about 0.4 s of active
    speech and returns a placeholder (1e-5, with a warning) on less, which would count as a
    collapse of intelligibility (single letters read aloud, in the validation voices, do that).
    """
    folder = Path(folder)
    if not folder.is_dir():
        hint = (" (build the demo corpus with `snnse data demo data/demo`, or give --clean DIR "
                "--noise DIR)" if str(folder) in (DEFAULT_CLEAN, DEFAULT_NOISE) else "")
        raise SuiteError(f"{what} folder not found: {folder}{hint}")
    out = []
    for f in find_audio_files([folder]):
        try:
            x = load_mono(f, sample_rate).astype(np.float64)
        except (AudioError, RuntimeError) as err:
            raise SuiteError(f"{f}: {err}") from None
        if len(x) >= min_s * sample_rate and rms_db(x) > -60:  # shorter or silent files are unusable
            out.append((str(f.relative_to(folder).with_suffix("")), x))
    if not out:
        raise SuiteError(f"no usable {what} audio (.wav/.flac, at least {min_s:g} s, not silent) in {folder}")
    return out


def select(n: int, settings: Settings, seed: int) -> list[int]:
    """Indices of the utterances used: all, or ``max_utterances`` chosen by the seed."""
    if n <= settings.max_utterances:
        return list(range(n))
    return sorted(int(i) for i in _rng(seed, "select").choice(n, settings.max_utterances, replace=False))


def build_items(clean: Sequence[tuple[str, np.ndarray]], noise: Sequence[tuple[str, np.ndarray]],
                settings: Settings, seed: int) -> dict[str, list[dict]]:
    """The items of the parts ``clean``, ``snr`` and ``level``: dicts with ``clean`` (the
    reference), ``noisy`` (the input) and their description (``utterance``, ``snr_db``,
    ``level_db``, ``noise``). Item ``i`` of a part draws from ``[seed, part, i, j]`` only. The
    signals are rounded to float32 values (float64 arrays), so that a 32-bit float file holds
    them exactly and ``snnse evaluate`` scores the files as the suite scores the arrays."""
    def f32(*xs):
        return [x.astype(np.float32).astype(np.float64) for x in xs]

    nz = [x for _, x in noise]
    parts: dict[str, list[dict]] = {"clean": [], "snr": [], "level": []}
    for i, (name, x) in enumerate(clean):
        ref, = f32(at_level(x, _rng(seed, "clean", i).uniform(*settings.level_range)))
        parts["clean"].append({"id": name, "utterance": name, "level_db": rms_db(ref),
                               "clean": ref, "noisy": ref})
        for j, snr in enumerate(settings.snrs):
            rng = _rng(seed, "snr", i, j)
            k, crop = noise_crop(nz, len(x), rng)
            noisy, ref, _, level = mix(x, crop, snr, rng.uniform(*settings.level_range))
            noisy, ref = f32(noisy, ref)
            parts["snr"].append({"id": f"{name}@{snr:g}dB", "utterance": name, "snr_db": float(snr),
                                 "noise": noise[k][0], "level_db": rms_db(noisy), "clean": ref, "noisy": noisy})
        k, crop = noise_crop(nz, len(x), _rng(seed, "level", i))
        noisy, ref, _, _ = mix(x, crop, settings.level_snr, None, peak=None)
        for level in settings.levels:
            g = 10.0 ** ((level - rms_db(noisy)) / 20.0)
            scaled_ref, scaled = f32(ref * g, noisy * g)
            parts["level"].append({"id": f"{name}@{level:g}dBFS", "utterance": name,
                                   "snr_db": float(settings.level_snr), "noise": noise[k][0],
                                   "level_db": float(level), "clean": scaled_ref, "noisy": scaled})
    return parts


def make_systems(model=None, baselines: Sequence[str] = (), sample_rate: int = 16000,
                 mode: str = "stream", device: str = "cpu", model_name: str | None = None,
                 notice: Callable[[str], None] | None = None) -> dict[str, Callable]:
    """``{name: f(input [T]) -> output [T]}``: ``input`` (identity), the baselines, the model."""
    from snnse.baselines import get as baseline
    from snnse.evaluation_pipeline import _Pipeline

    systems: dict[str, Callable] = {INPUT: lambda x: x}
    for name in dict.fromkeys(baselines):
        f = baseline(name)
        systems[name] = lambda x, f=f: np.asarray(f(x, sample_rate), dtype=np.float64)
    if model is not None:
        pipe = _Pipeline(list(METRICS), [INPUT, "enhanced"], model, mode, device, False, notice)
        name = model_name or getattr(model, "name", None) or "model"
        name = "model:" + name if name in systems else name
        systems[name] = lambda x: pipe.enhance(x, sample_rate, "robustness")
    return systems
