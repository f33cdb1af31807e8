"""Training on PyTorch Lightning: ``snnse fit --config configs/X.yaml [--key value ...]``.

* :func:`fit` — builds datasets, logs (TensorBoard and CSV), checkpoints (Lightning
  ``best.ckpt``/``last.ckpt`` plus the self-describing ``best.pt``/``last.pt`` model files),
  writes the resolved configuration beside the run and resumes with ``resume=True``;
  :func:`recipe_of` — the transferable part of a configuration, saved in the model files.
* :mod:`snnse.training_task` — :class:`EnhancementTask`, the LightningModule (model, loss,
  optimizer and schedule, validation metrics).
* :mod:`snnse.training_data` — :func:`build_dataset` and the resumable loaders.
* :mod:`snnse.training_checkpoints` — :class:`LastCheckpoint`, :class:`ModelExport`,
  :func:`load_run_checkpoint`.

This module re-exports the public names of the three, so ``snnse.training`` stays the one
import path for training.

Resumption from any ``last.ckpt`` is exact: crops, mixtures and the batch order are
functions of (seed, epoch, index) (:class:`~snnse.data.paired.EpochSampler`), the
training loader (:class:`~snnse.data.paired.EpochLoader`) stores how many batches of the
epoch it has handed out and skips them on resume, the weights are initialised from the
seed, and Lightning restores the optimizer, the per-batch learning-rate schedule, its loop
counters (``global_step``, ``batch_idx``, the validation schedule) and the callbacks (the
best score of :class:`ModelExport`). The models draw no random numbers while training (no
dropout), so no generator state is needed; a model that did would not resume bit-exactly.
A run stopped by Ctrl-C or a signal is resumed from its last written checkpoint: Lightning
writes none at the interruption.

Several GPUs or nodes: ``--trainer.devices 4 --trainer.strategy ddp [--trainer.num_nodes 2]``.
Each process reads its own shard of every epoch's permutation; ``data.batch_size`` is per process.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

from snnse.config import ConfigError, dump_config
from snnse.models import base
from snnse.training_checkpoints import LastCheckpoint, ModelExport, _record_validation, load_run_checkpoint
from snnse.training_data import _loader, build_dataset
from snnse.training_task import EnhancementTask

__all__ = ["EnhancementTask", "LastCheckpoint", "ModelExport", "build_dataset", "fit", "load_run_checkpoint",
           "recipe_of"]


class _Threads(pl.Callback):
    """``torch.set_num_threads(n)`` once Lightning has launched the processes (it sets its own)."""

    def __init__(self, n: int):
        self.n = n

    def setup(self, trainer, task, stage):
        torch.set_num_threads(self.n)


def fit(cfg: dict, resume: bool | str = False, callbacks: list | None = None) -> Path | None:
    """Train according to a resolved configuration; returns the run folder (None on ranks > 0).

    Args:
        cfg: Output of :func:`snnse.config.load_config`; besides the model, data, loss,
            optimizer and trainer it reads ``checkpoint.every_n_steps``/``keep_steps``
            (:class:`LastCheckpoint`) and ``threads`` (``torch.set_num_threads`` in every
            training process for the duration of the call).
        resume: ``True`` continues from ``<run>/checkpoints/last.ckpt``; a path names a
            checkpoint. Without it an existing run folder with checkpoints is an error.
        callbacks: Extra Lightning callbacks (e.g. timers in ``benchmarks/``).
    """
    threads = cfg.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a positive integer or null, got {threads!r}")
    run_dir = Path(cfg["run"]["dir"]).expanduser() / cfg["run"]["name"]
    ckpt_dir = run_dir / "checkpoints"
    ckpt_path = None
    if resume:
        ckpt_path = Path(resume) if isinstance(resume, (str, Path)) else ckpt_dir / "last.ckpt"
        if not ckpt_path.is_file():
            raise ConfigError(f"nothing to resume: {ckpt_path} does not exist")
    elif (ckpt_dir / "last.ckpt").exists():
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it "
                          f"or --run.name NEW for a new one")
    saved_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _fit(cfg, run_dir, ckpt_dir, ckpt_path, list(callbacks or []) + ([_Threads(threads)] if threads else []))
    finally:
        torch.set_num_threads(saved_threads)


#: keys of a training source that name files: not part of a recipe (the data is the user's)
_SOURCE_KEYS = ("clean", "noise", "rir", "manifest", "noisy", "ndns", "split", "clean_weights", "length")


def recipe_of(cfg: dict) -> dict:
    """The transferable part of a resolved training configuration: how, not on what.

    Seed, crop length, batch, the training source's mixing and augmentation options (without
    its files), loss, optimizer, gradient clipping and threads; a dict that
    :func:`snnse.config.merge` accepts. ``snnse fit`` saves it in the model files it writes
    (``meta["recipe"]``), and ``snnse finetune`` starts from it.
    """
    import copy

    data = cfg["data"]
    train = {k: v for k, v in data.get("train", {}).items() if k not in _SOURCE_KEYS}
    if isinstance(train.get("augment"), dict):
        train["augment"] = {k: v for k, v in train["augment"].items() if k != "sim_rir"} | (
            {"sim_rir": True} if train["augment"].get("sim_rir") else {})  # a bank, built where needed
    return copy.deepcopy({
        "seed": cfg["seed"],
        "data": {k: data[k] for k in ("sample_rate", "segment", "context", "batch_size", "num_workers")}
        | {"train": train},
        "loss": cfg["loss"], "optim": cfg["optim"],
        "trainer": {"gradient_clip_val": cfg["trainer"].get("gradient_clip_val")},
        "threads": cfg.get("threads")})


def _warm_start(model: torch.nn.Module, source: str, lr: float | None = None) -> None:
    """Copy the weights of ``source`` (a snnse model file, a bundled name or a Lightning checkpoint
    of ``snnse fit``) into ``model``.

    Only the weights travel: the optimizer, schedule and data position start fresh, which is what
    fine-tuning on new data wants (``--resume`` continues a run exactly instead). The source must
    be the same model with the same constructor arguments.
    """
    try:
        src = load_run_checkpoint(source)[0]
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"model.init: {err}") from None
    try:
        model.load_state_dict(src.state_dict())
    except RuntimeError as err:
        raise ConfigError(f"model.init: the weights of {source} do not fit this model "
                          f"(other constructor arguments?): {str(err).splitlines()[0]}") from None
    print(f"snnse fit: weights initialised from {source}", file=sys.stderr)
    was = (getattr(src, "meta", None) or {}).get("recipe", {}).get("optim", {}).get("lr")
    if lr is not None and was and lr > 3.0 * float(was):
        print(f"warning: optim.lr {lr:g} is {lr / float(was):.0f}x the learning rate these weights were "
              f"trained with ({float(was):g}): a recipe for training from scratch can wreck trained "
              "weights in a few dozen steps; `snnse finetune` adapts them with their own recipe and "
              "keeps the result only if it is better", file=sys.stderr)


def _fit(cfg: dict, run_dir: Path, ckpt_dir: Path, ckpt_path: Path | None, callbacks: list) -> Path | None:
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    seed = int(cfg["seed"])
    pl.seed_everything(seed, workers=True, verbose=False)
    data = cfg["data"]
    train_ds = build_dataset(data["train"], data, seed, train=True)
    valid_ds = build_dataset(data["valid"], data, seed, train=False)
    task = EnhancementTask(cfg["model"]["name"], cfg["model"]["kwargs"], cfg["loss"], cfg["optim"],
                           context=int(data["context"]), metrics_subset=int(data["metrics_subset"]))
    if cfg["model"].get("init") and ckpt_path is None:
        _warm_start(task.model, cfg["model"]["init"], float(cfg["optim"]["lr"]))
    task.model.meta = {"recipe": recipe_of(cfg)}  # saved in last.pt / best.pt
    if task.model.sample_rate != int(data["sample_rate"]):
        raise ConfigError(f"model runs at {task.model.sample_rate} Hz but data.sample_rate is {data['sample_rate']}")
    opts = dict(cfg["trainer"])
    export = None
    if opts.get("enable_checkpointing", True):
        every = cfg.get("checkpoint", {})
        export = ModelExport(run_dir)
        callbacks += [ModelCheckpoint(ckpt_dir, filename="best", monitor="val/sisnr", mode="max",
                                      save_last=False, save_top_k=1, auto_insert_metric_name=False),
                      LastCheckpoint(ckpt_dir, run_dir / "last.pt", every.get("every_n_steps", 0),
                                     every.get("keep_steps", False)),
                      export]
    if opts.pop("logger", True) is not False:
        # one version_K folder per start, so a resumed run keeps the logs of the earlier ones
        opts["logger"] = [TensorBoardLogger(run_dir, name="tensorboard"), CSVLogger(run_dir, name="csv")]
    try:
        trainer = pl.Trainer(default_root_dir=run_dir, callbacks=callbacks, use_distributed_sampler=False, **opts)
    except TypeError as err:  # an unknown --trainer.KEY
        raise ConfigError(f"trainer: {err}") from None
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_config(cfg))
        print(f"snnse fit: {cfg['model']['name']} ({base.count_parameters(task.model):,} parameters), "
              f"{len(train_ds)} training / {len(valid_ds)} validation items, run folder {run_dir}",
              file=sys.stderr)
    valid_loader = _loader(valid_ds, cfg, False, seed)
    # Ctrl-C: Lightning stops and exits with status 1 (SystemExit) without writing a checkpoint;
    # --resume continues from the last one written (after an epoch, or checkpoint.every_n_steps)
    # checkpoints never run code: Lightning releases that accept it load them with weights_only=True
    safe = {"weights_only": True} if "weights_only" in inspect.signature(trainer.fit).parameters else {}
    trainer.fit(task, _loader(train_ds, cfg, True, seed), valid_loader,
                ckpt_path=str(ckpt_path) if ckpt_path else None, **safe)
    if trainer.global_step > task.validated_step and not trainer.interrupted:
        # stopped inside an epoch (--trainer.max_steps): validate the final weights too
        trainer.validate(task, valid_loader, verbose=False)
        if export is not None and trainer.is_global_zero:
            _record_validation(ckpt_dir / "last.ckpt", trainer.global_step, export)
    return run_dir if trainer.is_global_zero else None
