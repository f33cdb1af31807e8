"""Training configuration: YAML recipes, dotted command-line overrides, validation.

A recipe (``configs/*.yaml``) is merged onto :data:`DEFAULTS`; ``--a.b value`` on the
command line overrides any key (values are parsed as YAML: ``--trainer.devices 2``,
``--optim.lr 3e-4``, ``--loss.activity_layers [proj,readout]``). Unknown keys are
errors, except below the open sections listed in :data:`OPEN`, whose contents are
passed on as keyword arguments (model constructor, Lightning ``Trainer``, data sources).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import yaml

DEFAULTS: dict = {
    "seed": 0,
    "model": {"name": "dpsnn", "kwargs": {},
              "init": None},            # start from these weights (snnse checkpoint or bundled name); fresh optimizer
    "data": {
        "root": ".",            # relative paths of the sources resolve against this folder
        "sample_rate": 16000,
        "segment": 1.0,         # seconds per training crop
        "context": 0,           # extra past samples per crop, excluded from the loss
        "train": {},            # a source: {manifest: F} | {noisy: D, clean: D} | {ndns: D, split: S} |
        "valid": {},            #           {clean: D, noise: D, [rir: D, rir_prob, length, snr_range, level_range,
                                #            augment, clean_weights, clean_prob, stream_crops, level_jitter]}
        "train_limit": None,    # use only the first N training pairs (mixing: N items per epoch)
        "valid_limit": None,    # use only the first N validation pairs
        "batch_size": 16,
        "num_workers": 0,
        "metrics_subset": 4,    # validation files (per process) that also get PESQ and STOI
    },
    "loss": {"offset": 0.0, "wave_mse": 0.0, "activity_l1": 0.0, "activity_layers": [], "mask_mse": 0.0,
             "mrstft": 0.0,   # mrstft: multi-resolution STFT loss weight (in neither paper)
             "stoi": 0.0},    # stoi: weight of 1 − differentiable STOI (in neither paper)
    "optim": {
        "name": "adam",         # adam | adamw | radam
        "lr": 1e-3,
        "weight_decay": 0.0,    # S4D parameters always get 0 (see snnse.ssm.param_groups)
        "betas": [0.9, 0.999],
        "gamma": 1.0,           # per-batch exponential decay of the learning rate
        "lr_floor": 0.0,        # the decayed learning rate never goes below this
    },
    "trainer": {
        "max_epochs": 10,
        "max_steps": -1,
        "accelerator": "auto",
        "devices": 1,
        "num_nodes": 1,
        "strategy": "auto",
        "precision": "32-true",
        "gradient_clip_val": None,
        "log_every_n_steps": 10,
        "enable_progress_bar": True,
    },
    "checkpoint": {
        "every_n_steps": 0,     # also write last.ckpt and last.pt every N optimizer steps (0: after each epoch only)
        "keep_steps": False,    # also keep checkpoints/step-NNNNNNN.ckpt of every periodic write
    },
    "threads": None,            # torch.set_num_threads(N) in every training process (None: torch's default)
    "run": {"dir": "runs", "name": None},
}

OPEN = ("model.kwargs", "trainer", "data.train", "data.valid")


class ConfigError(ValueError):
    """A bad configuration file or override."""


def merge(base: dict, new: dict, prefix: str = "") -> dict:
    """Recursively merge ``new`` into a copy of ``base``; unknown keys are errors outside :data:`OPEN`."""
    out = copy.deepcopy(base)
    for key, value in (new or {}).items():
        path = f"{prefix}{key}"
        if path in OPEN:
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{path!r} must be a mapping, got {value!r}")
            out[key] = _merge_open(out.get(key) or {}, value or {})
        elif key not in out:
            raise ConfigError(f"unknown configuration key {path!r}; known here: {', '.join(sorted(out))}")
        elif isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{path!r} is a section, not a value; set its keys (--{path}.KEY VALUE)")
            out[key] = merge(out[key], value, path + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_open(base: dict, new: dict) -> dict:
    """Merge inside an open section: nested mappings merge key by key, anything else replaces.

    So ``--data.train.augment.speed [0.8,1.1]`` changes one augmentation option and keeps the
    recipe's others. (Before 2026-12-02 the nested mapping was replaced whole: that override ran
    stage 5 of ``dpsnn-demo`` with no augmentation but the speed range, whose probability is 0 by
    default — i.e. none; its resolved ``config.yaml`` records what ran.)
    """
    out = copy.deepcopy(base)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_open(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(items: Sequence[str]) -> dict:
    """``["--a.b", "1", "--c=x"]`` → ``{"a": {"b": 1}, "c": "x"}`` (values parsed as YAML)."""
    out: dict = {}
    items = list(items)
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--") or len(item) < 3:
            raise ConfigError(f"expected --key value, got {item!r}")
        if "=" in item:
            key, text = item[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(items):
                raise ConfigError(f"{item} needs a value")
            key, text = item[2:], items[i + 1]
            i += 2
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--{key} conflicts with another override")
        node[parts[-1]] = value
    return out


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> dict:
    """Defaults ← recipe file ← command-line overrides; also fills ``run.name`` from the file name."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found")
        try:
            recipe = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(recipe, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        cfg = merge(cfg, recipe)
        if cfg["run"]["name"] is None:
            cfg["run"]["name"] = path.stem
    cfg = merge(cfg, parse_overrides(overrides))
    if cfg["run"]["name"] is None:
        cfg["run"]["name"] = cfg["model"]["name"]
    return cfg


def dump_config(cfg: dict) -> str:
    """The resolved configuration as YAML text.

    The first line is the comment ``# snnse <version>`` (a comment, so that the text still loads
    with :func:`load_config`, which rejects unknown keys).
    """
    from snnse import __version__

    return f"# snnse {__version__}\n" + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)
