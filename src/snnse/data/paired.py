"""Paired (noisy, clean) datasets with reproducible random crops, and the sampler that drives them.

Every random choice of an item comes from ``np.random.default_rng([seed, epoch, index])``.
:class:`EpochSampler` yields ``(epoch, index)`` pairs, so items depend neither on the
worker that loads them nor on the random state of the process, and distributed ranks
split one permutation between them. :class:`EpochLoader` counts the batches it has
handed out and restarts in the middle of an epoch, so that a run resumed from any
checkpoint sees exactly the batches an uninterrupted run sees.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from snnse.audio import find_audio_files, load_mono  # noqa: F401 (load_mono re-exported)
from snnse.data.manifest import read_manifest


def split_index(index) -> tuple[int, int]:
    """``(epoch, i)`` from an index that is either an int (epoch 0) or a pair."""
    if isinstance(index, (tuple, list)):
        return int(index[0]), int(index[1])
    return 0, int(index)


def pair_folders(noisy: str | os.PathLike, clean: str | os.PathLike) -> list[dict]:
    """Pair the audio files of two folders by relative path; raise on unpaired files."""
    noisy, clean = Path(noisy), Path(clean)
    n = {p.relative_to(noisy): p for p in find_audio_files([noisy])}
    c = {p.relative_to(clean): p for p in find_audio_files([clean])}
    lonely = sorted(set(n) ^ set(c))
    if lonely:
        raise ValueError(f"{len(lonely)} file(s) without a partner between {noisy} and {clean}, "
                         f"e.g. {', '.join(map(str, lonely[:3]))}")
    rows = []
    for rel in sorted(n):
        info = sf.info(str(n[rel]))
        rows.append({"id": str(rel.with_suffix("")), "noisy": n[rel], "clean": c[rel],
                     "duration": info.frames / info.samplerate, "speaker": "unknown"})
    return rows


class PairedDataset(Dataset):
    """Noisy/clean pairs from a manifest, a list of rows or two folders.

    Args:
        source: Manifest CSV path, a list of manifest rows, or ``(noisy_dir, clean_dir)``.
        segment: Crop length in samples (random crop, zero-padded when the file is
            shorter); ``None`` returns whole utterances.
        context: Extra past samples prepended to each crop (warm-up for the
            recurrent state; the loss ignores them).
        sample_rate: Rate the model runs at; other rates are resampled.
        seed: Seed of the crops.
        limit: Keep only the first ``limit`` pairs.

    Items are ``(noisy, clean)`` float32 tensors ``[context + segment]`` (or
    ``[T]``). Index with ``(epoch, i)`` (see :class:`EpochSampler`) or with ``i``.
    """

    def __init__(self, source, segment: int | None = None, context: int = 0, sample_rate: int = 16000,
                 seed: int = 0, limit: int | None = None):
        if isinstance(source, (str, os.PathLike)):
            rows = read_manifest(source)
        elif isinstance(source, tuple) and len(source) == 2:
            rows = pair_folders(*source)
        else:
            rows = list(source)
        if not rows:
            raise ValueError("PairedDataset: no pairs")
        self.rows = rows[:limit] if limit else rows
        for row in self.rows:  # e.g. N-DNS pairs come without durations
            if "duration" not in row:
                info = sf.info(str(row["noisy"]))
                row["duration"] = info.frames / info.samplerate
        self.segment, self.context = segment, int(context)
        self.sample_rate, self.seed = int(sample_rate), int(seed)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        epoch, i = split_index(index)
        row = self.rows[i]
        if self.segment is None:
            noisy = load_mono(row["noisy"], self.sample_rate)
            clean = load_mono(row["clean"], self.sample_rate)
            n = min(len(noisy), len(clean))
            return torch.from_numpy(noisy[:n]), torch.from_numpy(clean[:n])
        want = self.segment + self.context
        total = int(round(float(row["duration"]) * self.sample_rate))
        rng = np.random.default_rng([self.seed, epoch, i])
        start = int(rng.integers(0, total - want + 1)) if total > want else 0
        noisy = load_mono(row["noisy"], self.sample_rate, start, want)
        clean = load_mono(row["clean"], self.sample_rate, start, want)
        out = np.zeros((2, want), dtype=np.float32)
        n = min(len(noisy), len(clean), want)
        out[0, :n], out[1, :n] = noisy[:n], clean[:n]
        return torch.from_numpy(out[0]), torch.from_numpy(out[1])


def pad_collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]):
    """Stack ``(noisy, clean)`` items of different lengths, zero-padded; returns ``(noisy, clean, lengths)``."""
    lengths = torch.tensor([len(b[0]) for b in batch])
    T = int(lengths.max())
    noisy = torch.zeros(len(batch), T)
    clean = torch.zeros(len(batch), T)
    for k, (n, c) in enumerate(batch):
        noisy[k, :len(n)], clean[k, :len(c)] = n, c
    return noisy, clean, lengths


class EpochSampler(Sampler):
    """Yields ``(epoch, index)``: a seeded permutation per epoch, split between distributed ranks.

    Args:
        n: Dataset length.
        shuffle: Permute (seeded by ``seed`` and the epoch) or keep order.
        seed: Seed of the permutation.
        rank, world_size: Distributed position; ``None`` reads ``torch.distributed`` at
            iteration time (1 process when it is not initialised). Every rank gets
            ``ceil(n / world_size)`` indices (wrapping around), as ``DistributedSampler`` does.

    :meth:`start_at` makes the next pass begin in the middle of this rank's shard (a
    resumed run); ``len()`` stays the length of the whole shard.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None):
        self.n, self.shuffle, self.seed = int(n), bool(shuffle), int(seed)
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._start: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def start_at(self, epoch: int, position: int) -> None:
        """Let the next pass over ``epoch`` skip the first ``position`` indices of this rank's shard.

        Only the next pass is affected; if it is over another epoch, nothing is skipped.
        """
        if int(position) < 0:
            raise ValueError(f"position must be >= 0, got {position}")
        self._start = (int(epoch), int(position))

    def _dist(self) -> tuple[int, int]:
        if self.world_size is not None:
            return int(self.rank or 0), int(self.world_size)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __len__(self) -> int:
        return -(-self.n // self._dist()[1])

    def _mine(self, rank: int, world: int) -> list[int]:
        """This rank's shard of the epoch's order."""
        order = self._order()
        per = -(-self.n // world)
        order = (order * (per * world // max(self.n, 1) + 1))[: per * world]
        return order[rank::world]

    def __iter__(self):
        mine = self._mine(*self._dist())
        start, self._start = self._start, None
        if start is not None and start[0] == self.epoch:
            mine = mine[start[1]:]
        return iter([(self.epoch, i) for i in mine])


class StreamSampler(EpochSampler):
    """An :class:`EpochSampler` for training with carried state over streams of ``crops`` items.

    Items ``s·crops … s·crops + crops − 1`` are the consecutive crops of stream ``s`` (see
    ``MixingDataset(stream_crops=...)``). Each epoch the streams are permuted (seeded by
    ``seed`` and the epoch), dealt to the ranks in turn and taken ``batch_size`` at a time:
    the next ``crops`` batches of a rank are crop 0, 1, … of the same ``batch_size`` streams,
    in the same rows, so the state at the end of one batch continues on the next. Streams are
    repeated (wrapping around) until every rank has whole groups; ``len()`` is this rank's
    number of items, a multiple of ``batch_size · crops``, so every batch is full and a
    resumed run restarts at ``batches · batch_size`` as with :class:`EpochSampler`.
    """

    def __init__(self, n: int, crops: int, batch_size: int, shuffle: bool = True, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None):
        if int(crops) < 1 or int(n) % int(crops) or int(batch_size) < 1:
            raise ValueError(f"need crops >= 1 dividing n ({n}) and batch_size >= 1, got crops={crops}, "
                             f"batch_size={batch_size}")
        super().__init__(n, shuffle, seed, rank, world_size)
        self.crops, self.batch_size = int(crops), int(batch_size)

    def _groups(self, world: int) -> int:
        """Groups of ``batch_size`` streams per rank."""
        return -(-(self.n // self.crops) // (self.batch_size * world))

    def __len__(self) -> int:
        return self._groups(self._dist()[1]) * self.batch_size * self.crops

    def _mine(self, rank: int, world: int) -> list[int]:
        n_streams = self.n // self.crops
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            streams = torch.randperm(n_streams, generator=g).tolist()
        else:
            streams = list(range(n_streams))
        size = self._groups(world) * self.batch_size * world
        streams = (streams * (size // max(n_streams, 1) + 1))[:size][rank::world]
        out = []
        for g0 in range(0, len(streams), self.batch_size):
            group = streams[g0:g0 + self.batch_size]
            out += [s * self.crops + c for c in range(self.crops) for s in group]
        return out


class EpochLoader(DataLoader):
    """A ``DataLoader`` over an :class:`EpochSampler` that resumes in the middle of an epoch.

    It counts the batches it has handed out in the current pass. :meth:`state_dict` is
    ``{"epoch": E, "batches": B, "batch_size": S, "world_size": W}``; after :meth:`load_state_dict` the next pass over epoch
    ``E`` starts with batch ``B`` (the sampler drops the first ``B * batch_size`` indices of
    this process's shard, so the skipped items are never loaded, whatever the number of
    workers). Lightning saves this state with its loops and loads it before it creates the
    iterator of a resumed epoch (its "stateful data loader" protocol). Under DDP every
    process has handed out the same number of batches, so the state of rank 0 serves all.

    Args:
        dataset: Indexed with the ``(epoch, index)`` pairs of the sampler.
        sampler: The :class:`EpochSampler`.
        batch_size: Items per batch; every batch but the last of a pass is full (no
            ``drop_last``), which is what makes ``B * batch_size`` the position to restart at.
        **kwargs: Other ``DataLoader`` arguments (``num_workers``, ``collate_fn``, ...).
    """

    def __init__(self, dataset, sampler: EpochSampler, batch_size: int = 1, **kwargs):
        if not isinstance(sampler, EpochSampler):
            raise TypeError(f"EpochLoader needs an EpochSampler, got {type(sampler).__name__}")
        if kwargs.get("drop_last"):
            raise ValueError("EpochLoader does not support drop_last")
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self._epoch, self._batches = sampler.epoch, 0
        self._resume: tuple[int, int] | None = None

    def __iter__(self):
        epoch = self.sampler.epoch
        resume, self._resume = self._resume, None
        first = resume[1] if resume is not None and resume[0] == epoch else 0
        if first:
            layout = (self.batch_size, self.sampler._dist()[1])
            if resume[2:] != layout:
                raise ValueError(f"cannot resume in the middle of epoch {epoch} with batch size {layout[0]} "
                                 f"on {layout[1]} process(es): the checkpoint was written with batch size "
                                 f"{resume[2]} on {resume[3]}")
            self.sampler.start_at(epoch, first * self.batch_size)
        inner = super().__iter__()  # starts the workers now, as a plain DataLoader does
        self._epoch, self._batches = epoch, first
        return self._count(inner)

    def _count(self, inner):
        for batch in inner:
            self._batches += 1
            yield batch

    def state_dict(self) -> dict:
        """``{"epoch": E, "batches": B, ...}``: ``B`` batches of epoch ``E`` were handed out.

        Also records the batch size and the number of processes, without which ``B`` means
        nothing: resuming in the middle of an epoch with other values is an error.
        """
        return {"epoch": int(self._epoch), "batches": int(self._batches),
                "batch_size": int(self.batch_size), "world_size": int(self.sampler._dist()[1])}

    def load_state_dict(self, state: dict) -> None:
        """Make the next pass over ``state["epoch"]`` begin with batch ``state["batches"]``.

        Also sets the sampler's epoch: a resumed Lightning run creates the iterator of the
        resumed epoch before it calls ``set_epoch`` (measured with Lightning 2.x), and with the
        sampler still at epoch 0 the pass would start epoch 0 over from its first batch.
        """
        self.sampler.set_epoch(int(state["epoch"]))
        self._resume = (int(state["epoch"]), int(state["batches"]),
                        int(state.get("batch_size", self.batch_size)),
                        int(state.get("world_size", self.sampler._dist()[1])))
