"""The data side of ``snnse fit``: datasets from a recipe's sources, and their loaders.

:func:`build_dataset` makes one dataset from a source of the configuration (a manifest, folders
of noisy and clean pairs, an N-DNS folder, or clean speech and noise mixed on the fly);
:func:`_loader` wraps it with the sampler that makes a run resumable: crops, mixtures and the
batch order are functions of (seed, epoch, index) (:class:`~snnse.data.paired.EpochSampler`,
:class:`~snnse.data.paired.StreamSampler` for training with carried state), and the training
loader (:class:`~snnse.data.paired.EpochLoader`) skips, on resume, the batches of the epoch it
had handed out. Used by :mod:`snnse.training`, which re-exports :func:`build_dataset`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from snnse.config import ConfigError
from snnse.data.paired import EpochLoader, EpochSampler, PairedDataset, StreamSampler


def _resolve(root: Path, value):
    """Resolve a path (or list of paths) against ``root``."""
    if isinstance(value, (list, tuple)):
        return [_resolve(root, v) for v in value]
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else root / p


def build_dataset(spec: dict, data: dict, seed: int, train: bool):
    """One dataset from a source ``spec`` (see :data:`snnse.config.DEFAULTS`)."""
    root = Path(data["root"]).expanduser()
    sr = int(data["sample_rate"])
    segment = int(round(float(data["segment"]) * sr)) if train else None
    context = int(data["context"]) if train else 0
    limit = data["train_limit" if train else "valid_limit"]
    kinds = [k for k in ("manifest", "noisy", "ndns", "noise") if k in spec]
    if len(kinds) != 1:
        raise ConfigError(f"a data source needs exactly one of manifest / noisy+clean / ndns / "
                          f"clean+noise, got {sorted(spec) or 'nothing'}")
    kind = kinds[0]
    if kind == "manifest":
        return PairedDataset(_resolve(root, spec["manifest"]), segment, context, sr, seed, limit)
    if kind == "noisy":
        if "clean" not in spec:
            raise ConfigError("a noisy-folder source also needs 'clean'")
        return PairedDataset((_resolve(root, spec["noisy"]), _resolve(root, spec["clean"])),
                             segment, context, sr, seed, limit)
    if kind == "ndns":
        from snnse.data.ndns import ndns_pairs
        rows = ndns_pairs(_resolve(root, spec["ndns"]), spec.get("split", "training_set"))
        return PairedDataset(rows, segment, context, sr, seed, limit)
    from snnse.data.mixing import MixingDataset
    if segment is None:
        raise ConfigError("on-the-fly mixing needs fixed-length items; use it for training only")
    opts = {k: v for k, v in spec.items() if k not in ("clean", "noise", "rir")}
    opts.setdefault("length", limit or 1000)
    if isinstance(opts.get("augment"), dict) and opts["augment"].get("sim_rir"):  # the RIR bank's folder
        opts["augment"] = {**opts["augment"], "sim_rir": _resolve(root, opts["augment"]["sim_rir"])}
    rir = _resolve(root, spec["rir"]) if spec.get("rir") else None
    return MixingDataset(_resolve(root, spec["clean"]), _resolve(root, spec["noise"]), segment=segment,
                         context=context, rir=rir, sample_rate=sr, seed=seed, **opts)


def _loader(ds, cfg: dict, train: bool, seed: int) -> DataLoader:
    data = cfg["data"]
    workers = int(data["num_workers"])
    opts = dict(num_workers=workers, persistent_workers=False, pin_memory=torch.cuda.is_available())
    crops = getattr(ds, "stream_crops", 1)
    if train and crops > 1:  # streams for training with carried state
        sampler = StreamSampler(len(ds), crops, int(data["batch_size"]), shuffle=True, seed=seed)
    else:
        sampler = EpochSampler(len(ds), shuffle=train, seed=seed)
    if train:
        return EpochLoader(ds, sampler, batch_size=int(data["batch_size"]), **opts)
    return DataLoader(ds, batch_size=1, sampler=sampler, **opts)
