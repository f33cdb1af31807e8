"""Mixing clean speech with noise at a chosen SNR and level.

The conventions are those of the DNS / Intel N-DNS synthesis: the SNR is the
ratio of the clean and noise energies over the whole clip, and the level is
the RMS of the noisy mixture in dBFS; clean and noise are scaled by the same
factor as the mixture, so ``noisy == clean + noise`` holds exactly.

:class:`MixingDataset` draws such mixtures on the fly from folders of clean
speech, noise and (optionally) room impulse responses.
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch

from snnse.audio import AudioError, find_audio_files, open_audio, read_audio, resample
from snnse.data.augment import Augment, apply_eq, change_speed, random_eq, speed_input_length
from snnse.data.rir import simulated_rir_bank

EPS = 1e-12
Sources = str | os.PathLike | Sequence[str | os.PathLike]


def rms_db(x: np.ndarray) -> float:
    """RMS level of ``x`` in dBFS (``-inf`` for silence)."""
    p = float(np.mean(np.square(x, dtype=np.float64)))
    return 10.0 * np.log10(p) if p > 0 else float("-inf")


def snr_db(clean: np.ndarray, noise: np.ndarray) -> float:
    """Energy ratio of ``clean`` to ``noise`` in dB."""
    return rms_db(clean) - rms_db(noise)


def at_level(x: np.ndarray, level: float, peak: float | None = 0.99) -> np.ndarray:
    """``x`` scaled to an RMS of ``level`` dBFS, then down to ``peak`` if it would exceed it (None: no guard)."""
    y = x * 10.0 ** ((level - rms_db(x)) / 20.0)
    m = np.max(np.abs(y))
    return y * (peak / m) if peak is not None and m > peak else y


def mix(clean: np.ndarray, noise: np.ndarray, snr: float, level: float | None = None,
        peak: float | None = 0.99) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Mix ``clean`` and ``noise`` (same length) at ``snr`` dB, mixture at ``level`` dBFS.

    Args:
        clean: Clean speech, 1-D float array.
        noise: Noise, same shape as ``clean``.
        snr: Wanted SNR in dB (clean energy over noise energy).
        level: Wanted RMS level of the mixture in dBFS; ``None`` keeps the
            clean signal's level.
        peak: If the scaled mixture's peak would exceed this, all three
            signals are scaled down together so that it does not clip; the
            level actually reached is returned. ``None`` disables this.

    Returns:
        ``(noisy, clean, noise, level)``: float64 arrays with
        ``noisy = clean + noise`` and the mixture's actual RMS level in dBFS.

    Raises:
        ValueError: Different shapes, or silent clean or noise signals.
    """
    clean = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    if clean.shape != noise.shape:
        raise ValueError(f"clean and noise differ in shape: {clean.shape} vs {noise.shape}")
    pc, pn = np.mean(clean ** 2), np.mean(noise ** 2)
    if pc <= EPS ** 2 or pn <= EPS ** 2:
        raise ValueError("cannot mix at an SNR: the clean or the noise signal is silent")
    noise = noise * np.sqrt(pc / pn * 10.0 ** (-snr / 10.0))
    noisy = clean + noise
    if level is not None:
        g = 10.0 ** (level / 20.0) / np.sqrt(np.mean(noisy ** 2))
        noisy, clean, noise = noisy * g, clean * g, noise * g
    if peak is not None:
        m = np.max(np.abs(noisy))
        if m > peak:
            g = peak / m
            noisy, clean, noise = noisy * g, clean * g, noise * g
    return noisy, clean, noise, rms_db(noisy)


def loop_crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random excerpt of ``n`` samples of ``x``, looping ``x`` if it is shorter.

    Args:
        x: 1-D signal.
        n: Wanted length.
        rng: Random generator (one or two draws).

    Returns:
        ``n`` samples: a random crop, or ``x`` repeated from a random start.
    """
    if len(x) >= n:
        start = int(rng.integers(0, len(x) - n + 1))
        return x[start:start + n]
    start = int(rng.integers(0, len(x)))
    return x[(start + np.arange(n)) % len(x)]


def apply_rir(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Reverberate ``x`` with ``rir``, aligned on the direct path.

    The impulse response is cut 1 ms before its largest sample, so the output
    is not delayed; the tail beyond ``len(x)`` is dropped.

    Args:
        x: 1-D signal.
        rir: 1-D room impulse response.

    Returns:
        Float64 array of ``len(x)`` samples.
    """
    rir = np.asarray(rir, dtype=np.float64)
    rir = rir[max(0, int(np.argmax(np.abs(rir))) - 16):]
    n_fft = 1 << int(np.ceil(np.log2(len(x) + len(rir) - 1)))
    y = np.fft.irfft(np.fft.rfft(x, n_fft) * np.fft.rfft(rir, n_fft), n_fft)
    return y[:len(x)]


class _AudioIndex:
    """Mono audio files indexed by length; random access to frame ranges.

    Files at ``sample_rate`` are read from disk on demand (only the frames
    asked for); files at another rate, and all files if ``preload``, are read
    once, resampled and kept in memory.
    """

    def __init__(self, sources: Sources, sample_rate: int, what: str, preload: bool = False):
        items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
        self.files = find_audio_files(items)
        if not self.files:
            where = ", ".join(map(str, items)) or "(nothing given)"
            raise AudioError(f"no {what} audio files (.wav/.flac) found in: {where}")
        self.cache: dict[int, np.ndarray] = {}
        lengths, n_resampled = [], 0
        for k, f in enumerate(self.files):
            with open_audio(f) as snd:
                frames, rate = snd.frames, snd.samplerate
            n_resampled += rate != sample_rate
            if preload or rate != sample_rate:
                x, _ = read_audio(f)
                self.cache[k] = resample(x.mean(axis=0), rate, sample_rate)
                frames = len(self.cache[k])
            lengths.append(frames)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if n_resampled:
            warnings.warn(f"{n_resampled} {what} file(s) are not at {sample_rate} Hz; they are "
                          "loaded once, resampled and kept in memory", stacklevel=3)

    def __len__(self) -> int:
        return len(self.files)

    cdf: np.ndarray | None = None  # cumulative sampling weights (None: uniform)

    def set_weights(self, weights: dict | None) -> None:
        """Draw file ``k`` with probability proportional to the weight of the first matching pattern."""
        if not weights:
            self.cdf = None
            return
        w = np.ones(len(self.files))
        for k, f in enumerate(self.files):
            for pattern, weight in weights.items():
                if fnmatch.fnmatch(Path(f).name, str(pattern)):
                    w[k] = float(weight)
                    break
        if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"clean_weights must be finite, non-negative and not all zero: {weights}")
        self.cdf = np.cumsum(w) / w.sum()

    def draw(self, rng: np.random.Generator) -> int:
        """A random file index (one draw of ``rng``)."""
        if self.cdf is None:
            return int(rng.integers(len(self)))
        return min(int(np.searchsorted(self.cdf, rng.random(), side="right")), len(self) - 1)

    def read(self, k: int, start: int, frames: int) -> np.ndarray:
        """``frames`` mono float32 samples of file ``k`` from ``start``."""
        if k in self.cache:
            return self.cache[k][start:start + frames]
        try:
            x, _ = sf.read(str(self.files[k]), frames=frames, start=start, dtype="float32",
                           always_2d=True)
        except (sf.SoundFileError, RuntimeError) as err:
            raise AudioError(f"{self.files[k]}: cannot read audio ({err})") from None
        return x.mean(axis=1)


class _AugmentDraws:
    """The augmentation drawn for one item, from ``SeedSequence(entropy + [0xA06])``.

    Each kind has its own stream, so changing one option does not change the
    draws of the others; nothing is drawn when augmentation is off.
    """

    def __init__(self, a: Augment, entropy: list[int], sample_rate: int):
        self.speed, self.noise_speed, self.eq, self.noise_eq, self.reverb = 1.0, 1.0, None, None, None
        if not a.active:
            return
        speed, noise_speed, reverb, eq, noise_eq = (
            np.random.default_rng(s) for s in np.random.SeedSequence(entropy + [0xA06]).spawn(5))
        self.reverb = reverb
        if speed.random() < a.speed_prob:
            self.speed = float(speed.uniform(*a.speed))
        if noise_speed.random() < a.noise_speed_prob:
            self.noise_speed = float(noise_speed.uniform(*a.speed))
        if eq.random() < a.eq_prob:
            self.eq = random_eq(eq, a.eq_db, sample_rate)
        if noise_eq.random() < a.noise_eq_prob:
            self.noise_eq = random_eq(noise_eq, a.eq_db, sample_rate)


class MixingDataset(torch.utils.data.Dataset):
    """Noisy/clean pairs mixed on the fly from clean speech, noise and RIR files.

    Item ``i`` draws, from ``np.random.default_rng([seed, epoch, i])`` only: a
    clean file and crop, a noise file and crop, whether and which room impulse
    response reverberates the speech, the SNR and the level; then it mixes with
    :func:`mix` (peak guard on). Items therefore depend only on
    ``(seed, epoch, i)``: they are reproducible, and identical whatever the
    DataLoader worker that computes them, so no ``worker_init_fn`` is needed.
    :meth:`set_epoch` changes them; call it before iterating a DataLoader (with
    ``persistent_workers=True`` the workers keep the epoch they started with).

    Crops read only the frames they need; files are indexed once at
    construction. Files at another sample rate (and all RIRs) are loaded once,
    resampled and cached in memory, with a warning. Clean files shorter than
    the item are placed at a random offset and zero-padded; noise files
    shorter than the item are looped. Crops below :attr:`silence_db` are
    drawn again (with the same generator) so that the SNR is defined. With a
    RIR, the reverberant speech is the clean target (``noisy == clean + noise``):
    the model learns to denoise, not to dereverberate.

    Augmentation (``augment``, see :class:`~snnse.data.augment.Augment`; all
    off by default) draws from a second generator,
    ``SeedSequence([seed, epoch, i, 0xA06])`` split into one stream per kind,
    so the draws above stay the same with it on or off (only a speed factor
    changes the length of the crop read) and the items stay reproducible per
    ``(seed, epoch, i)``. In order, before mixing: the clean speech and,
    independently, the noise are speed-perturbed (read ``ceil(n * factor)``
    samples, resample, keep ``n``); the speech is reverberated (``rir_prob``
    is the probability of reverberating with any RIR; with real RIRs and a
    simulated bank, ``sim_rir_share`` of those items take a simulated one);
    the clean speech and, independently, the noise get a random EQ. The
    targets are the speed-perturbed, reverberated, equalised speech, so the
    mixture is still ``clean + noise`` exactly; the mixer then sets the SNR
    and level as without augmentation. The simulated RIR bank is built at
    construction when its folder does not hold it yet (a few seconds for 200).

    Args:
        clean: Folder(s) or files of clean speech.
        noise: Folder(s) or files of noise.
        segment: Samples per item (without context).
        context: Extra past samples before the segment; items have
            ``segment + context`` samples.
        length: Items per epoch.
        snr_range: SNR range in dB, drawn uniformly.
        level_range: Mixture level range in dBFS, drawn uniformly (the random
            gain of the items; the peak guard may lower a level).
        rir: Folder(s) or files of room impulse responses, or None.
        rir_prob: Probability that an item's speech is reverberated (with a
            real RIR or one of ``augment``'s simulated bank).
        sample_rate: Sample rate of the items in Hz.
        seed: Base seed.
        augment: Augmentation options: an :class:`~snnse.data.augment.Augment`
            or a dict of its fields (``speed``, ``speed_prob``,
            ``noise_speed_prob``, ``eq_prob``, ``noise_eq_prob``, ``eq_db``,
            ``sim_rir``, ``sim_rir_count``, ``sim_rir_seed``, ``sim_rir_rt60``,
            ``sim_rir_share``); None or ``{}`` for none.
        clean_weights: Sampling weights of the clean files, ``{pattern: weight}`` with
            ``fnmatch`` patterns on the file name (the first pattern that matches wins;
            unmatched files weigh 1). A file is drawn with probability proportional to its
            weight (e.g. ``{"en_*": 3}`` to see a recording chain more often). None (the
            default): uniform over files, the draws of earlier versions.
        clean_prob: Probability that an item is clean speech alone (the noise is zeroed,
            ``snr`` is ``inf``, the clean speech is set to the drawn level): a denoiser must
            also learn to leave clean input alone. Drawn from its own generator,
            ``default_rng([seed, epoch, i, 0xC1EA])``, so the other draws do not change.
        stream_crops: ``K > 1`` makes the items *streams* for training with carried state
            (truncated back-propagation through time): items ``s·K … s·K + K − 1`` are the
            consecutive crops of stream ``s``, a long mixture whose content (utterance,
            noise, SNR, clean or not) changes from one crop to the next while its level
            stays that of the stream (drawn once per stream from ``level_range``, from
            ``default_rng([seed, epoch, s, 0x57EA])``, plus ``±level_jitter`` dB per crop).
            Items are then ``(noisy, clean, crop)`` with ``crop = i mod K``;
            :class:`~snnse.data.paired.StreamSampler` batches them so that batch ``t + 1``
            continues the streams of batch ``t``. ``length`` must be a multiple of ``K``.
        level_jitter: Per-crop level change (uniform, dB) around the stream's level.

    Raises:
        AudioError: No audio files in a source, or an unreadable file.
        ValueError: Non-positive ``segment`` or ``length``, a negative
            ``context``, or an invalid ``augment`` option.
    """

    silence_db = -60.0
    max_tries = 100

    def __init__(self, clean: Sources, noise: Sources, segment: int, context: int = 0,
                 length: int = 1000, snr_range: tuple[float, float] = (-5, 20),
                 level_range: tuple[float, float] = (-35, -15), rir: Sources | None = None,
                 rir_prob: float = 0.0, sample_rate: int = 16000, seed: int = 0,
                 augment: Augment | dict | None = None, clean_weights: dict | None = None,
                 clean_prob: float = 0.0, stream_crops: int = 1, level_jitter: float = 3.0):
        if segment <= 0 or length <= 0 or context < 0:
            raise ValueError("segment and length must be positive and context non-negative")
        if not 0.0 <= float(clean_prob) <= 1.0:
            raise ValueError(f"clean_prob must be in [0, 1], got {clean_prob}")
        if int(stream_crops) < 1 or int(length) % int(stream_crops):
            raise ValueError(f"stream_crops must be >= 1 and divide length ({length}), got {stream_crops}")
        self.clean_prob, self.stream_crops = float(clean_prob), int(stream_crops)
        self.level_jitter = float(level_jitter)
        self.n = int(segment) + int(context)
        self.length = int(length)
        self.snr_range, self.level_range = tuple(snr_range), tuple(level_range)
        self.rir_prob, self.seed, self.epoch = float(rir_prob), int(seed), 0
        self.sample_rate = int(sample_rate)
        self.augment = augment if isinstance(augment, Augment) else Augment.from_dict(augment)
        self.clean = _AudioIndex(clean, sample_rate, "clean")
        self.clean.set_weights(clean_weights)
        self.noise = _AudioIndex(noise, sample_rate, "noise")
        self.rir = _AudioIndex(rir, sample_rate, "RIR", preload=True) if rir is not None else None
        self.sim_rir = None
        if self.augment.sim_rir is not None:
            a = self.augment
            files = simulated_rir_bank(a.sim_rir, a.sim_rir_count, a.sim_rir_seed, sample_rate,
                                       a.sim_rir_rt60)
            self.sim_rir = _AudioIndex(files, sample_rate, "simulated RIR", preload=True)
            if self.rir_prob == 0.0:
                warnings.warn("augment.sim_rir is set but rir_prob is 0: no item is reverberated",
                              stacklevel=2)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose items are drawn."""
        self.epoch = int(epoch)

    def _crop(self, index: _AudioIndex, rng: np.random.Generator, pad: bool, n: int | None = None
              ) -> tuple[np.ndarray, Path]:
        """A non-silent random crop of ``n`` (default ``self.n``) samples (zero-padded or looped if short)."""
        n = self.n if n is None else int(n)
        for _ in range(self.max_tries):
            k = index.draw(rng)
            size = int(index.lengths[k])
            if size >= n:
                x = index.read(k, int(rng.integers(0, size - n + 1)), n)
            elif pad:
                x = np.zeros(n, dtype=np.float32)
                start = int(rng.integers(0, n - size + 1))
                x[start:start + size] = index.read(k, 0, size)
            else:
                x = loop_crop(index.read(k, 0, size), n, rng)
            if rms_db(x) > self.silence_db:
                return x, index.files[k]
        raise AudioError(f"{self.max_tries} random crops in a row were silent (below "
                         f"{self.silence_db} dBFS); last file: {index.files[k]}")

    def sample(self, i: int, epoch: int | None = None) -> dict:
        """Draw item ``i`` (of ``epoch``, default the one set by :meth:`set_epoch`) with its parts.

        Returns:
            Dict with float32 arrays ``noisy``, ``clean``, ``noise`` (``noisy
            == clean + noise`` exactly), floats ``snr`` and ``level`` (dB, the
            level actually reached), paths ``clean_file``, ``noise_file``,
            ``rir_file`` (None without reverberation; a file of the simulated
            bank for a simulated RIR) and ``augment``: the augmentation done,
            ``{"speed": f, "noise_speed": f, "eq": sos, "noise_eq": sos}`` (factor
            1.0 and None where not applied).
        """
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, epoch, int(i)])
        a = self.augment
        draws = _AugmentDraws(a, [self.seed, epoch, int(i)], self.sample_rate)
        n_clean, n_noise = (speed_input_length(self.n, f) if f != 1.0 else self.n
                            for f in (draws.speed, draws.noise_speed))
        clean, clean_file = self._crop(self.clean, rng, pad=True, n=n_clean)
        noise, noise_file = self._crop(self.noise, rng, pad=False, n=n_noise)
        clean = change_speed(clean, draws.speed, self.n)
        noise = change_speed(noise, draws.noise_speed, self.n)
        rir_file, rir = None, None
        if self.rir is not None and rng.random() < self.rir_prob:
            k = int(rng.integers(len(self.rir)))
            rir_file, rir = self.rir.files[k], self.rir.cache[k]
        if self.sim_rir is not None:
            reverberate = rir is not None if self.rir is not None else draws.reverb.random() < self.rir_prob
            use_sim = self.rir is None or draws.reverb.random() < a.sim_rir_share
            k = int(draws.reverb.integers(len(self.sim_rir)))
            if reverberate and use_sim:
                rir_file, rir = self.sim_rir.files[k], self.sim_rir.cache[k]
        if rir is not None:
            clean = apply_rir(clean, rir)
        if draws.eq is not None:
            clean = apply_eq(clean, draws.eq)
        if draws.noise_eq is not None:
            noise = apply_eq(noise, draws.noise_eq)
        snr = float(rng.uniform(*self.snr_range))
        level = float(rng.uniform(*self.level_range))
        if self.stream_crops > 1:
            level = self._stream_level(i, epoch)
        if self.clean_prob and np.random.default_rng([self.seed, epoch, int(i), 0xC1EA]).random() < self.clean_prob:
            clean = at_level(np.asarray(clean, dtype=np.float64), level)  # with mix()'s peak guard
            snr, noise, level = float("inf"), np.zeros_like(clean), rms_db(clean)
        else:
            _, clean, noise, level = mix(clean, noise, snr, level)
        clean, noise = clean.astype(np.float32), noise.astype(np.float32)
        return {"noisy": clean + noise, "clean": clean, "noise": noise, "snr": snr,
                "level": level, "clean_file": clean_file, "noise_file": noise_file,
                "rir_file": rir_file, "augment": {"speed": draws.speed, "noise_speed": draws.noise_speed,
                                                  "eq": draws.eq, "noise_eq": draws.noise_eq}}

    def _stream_level(self, i: int, epoch: int) -> float:
        """The level of item ``i``: its stream's level plus this crop's jitter, inside ``level_range``."""
        s, c = divmod(int(i), self.stream_crops)
        g = np.random.default_rng([self.seed, epoch, s, 0x57EA])
        base = g.uniform(*self.level_range)
        jitter = g.uniform(-self.level_jitter, self.level_jitter, self.stream_crops)[c]
        return float(np.clip(base + jitter, *sorted(self.level_range)))

    def __getitem__(self, index) -> tuple[torch.Tensor, ...]:
        """``(noisy, clean)`` float32 tensors of ``segment + context`` samples, and with
        ``stream_crops > 1`` the crop's place in its stream, ``(noisy, clean, crop)``.

        ``index`` is ``i`` (the epoch set by :meth:`set_epoch`) or ``(epoch, i)`` as
        :class:`~snnse.data.paired.EpochSampler` yields it.
        """
        epoch, i = (int(index[0]), int(index[1])) if isinstance(index, (tuple, list)) else (None, int(index))
        if not 0 <= i < self.length:
            raise IndexError(f"item {i} out of range for {self.length} items")
        item = self.sample(i, epoch)
        pair = torch.from_numpy(item["noisy"]), torch.from_numpy(item["clean"])
        return pair + (i % self.stream_crops,) if self.stream_crops > 1 else pair
