"""Training on PyTorch Lightning: ``snnse fit --config configs/X.yaml [--key value ...]``.

* :class:`EnhancementTask` — the LightningModule: an :class:`~snnse.models.base.Enhancer`
  built from the registry, :class:`~snnse.losses.EnhancementLoss`, Adam/AdamW/RAdam with a
  per-batch exponential decay and floor, validation SI-SNR on every file and PESQ/STOI on
  the first ``data.metrics_subset`` files of each process.
* :func:`fit` — builds datasets, logs (TensorBoard and CSV), checkpoints (Lightning
  ``best.ckpt``/``last.ckpt`` plus the self-describing ``best.pt``/``last.pt`` model files),
  writes the resolved configuration beside the run and resumes with ``resume=True``.
* :class:`LastCheckpoint` — writes ``last.ckpt`` and ``last.pt`` after every epoch, every
  ``checkpoint.every_n_steps`` optimizer steps and at a ``max_steps`` stop inside an epoch.

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
import math
import os
import shutil
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils._pytree import tree_map
from torch.utils.data import DataLoader

from snnse.config import ConfigError, dump_config
from snnse.data.paired import EpochLoader, EpochSampler, PairedDataset, StreamSampler
from snnse.losses import EnhancementLoss
from snnse.models import base
from snnse.ssm import param_groups


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


class EnhancementTask(pl.LightningModule):
    """LightningModule around a registered model.

    Args:
        model_name: Registry name (``dpsnn``, ``spiking_s4``, their ``_ann`` twins, ...).
        model_kwargs: Constructor arguments.
        loss: :class:`~snnse.losses.EnhancementLoss` arguments.
        optim: ``name``, ``lr``, ``weight_decay``, ``betas``, ``gamma``, ``lr_floor``.
        context: Warm-up samples per training crop (excluded from the loss).
        metrics_subset: Validation files per process that also get PESQ and STOI.
    """

    def __init__(self, model_name: str, model_kwargs: dict, loss: dict, optim: dict,
                 context: int = 0, metrics_subset: int = 4):
        super().__init__()
        self.save_hyperparameters()
        self.model = base.get(model_name, **model_kwargs)
        self.loss = EnhancementLoss(**loss, sample_rate=self.model.sample_rate)
        self.optim, self.context, self.metrics_subset = dict(optim), int(context), int(metrics_subset)
        self.validated_step = -1
        self.carry, self.next_crop = None, 0  # training with carried state: the streams' state

    def _carried(self, crop: torch.Tensor):
        """The carry that continues the streams of a batch of crops ``crop [B]`` (``()``: new streams)."""
        first = int(crop[0])
        if bool((crop != first).any()):
            raise RuntimeError(f"a batch mixes crops {sorted(set(crop.tolist()))} of its streams; "
                               "stream items need the StreamSampler")
        if first == 0:
            return ()
        if self.carry is None or first != self.next_crop:
            raise RuntimeError(f"crop {first} of a stream follows crop {self.next_crop - 1}: the carried "
                               "state is missing (a checkpoint without it?)")
        return self.carry

    def training_step(self, batch, batch_idx):
        noisy, clean = batch[0], batch[1]
        if len(batch) > 2:  # stream crops: continue from the state at the end of the previous batch
            loss, parts, carry = self.loss(self.model, noisy, clean, self.context, carry=self._carried(batch[2]))
            # the truncation point; cloned, since the states are views of whole-chunk buffers that
            # would otherwise be kept alive (and saved whole in the checkpoints: 20+ MB)
            self.carry = tree_map(lambda t: t.detach().clone(), carry)
            self.next_crop = int(batch[2][0]) + 1
        else:
            loss, parts = self.loss(self.model, noisy, clean, self.context)
        self.log("train/loss", loss, prog_bar=True)
        for k, v in parts.items():
            self.log(f"train/{k}", v, prog_bar=(k == "sisnr"))
        self.log("lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def validation_step(self, batch, batch_idx):
        noisy, clean = batch[0], batch[1]
        loss, parts, est = self.loss(self.model, noisy, clean, 0, return_estimate=True)
        n = noisy.shape[0]
        self.log("val/loss", loss, sync_dist=True, batch_size=n)
        self.log("val/sisnr", parts["sisnr"], prog_bar=True, sync_dist=True, batch_size=n)
        if batch_idx < self.metrics_subset:
            from snnse.metrics.quality import MetricError, pesq, stoi
            est = est.detach().cpu().double().numpy()
            ref = clean.detach().cpu().double().numpy()
            sr = self.model.sample_rate
            scores = {"pesq": [], "stoi": []}
            for r, e in zip(ref, est):
                try:
                    scores["pesq"].append(pesq(r, e, sr))
                except MetricError:
                    pass
                scores["stoi"].append(stoi(r, e, sr))
            for k, v in scores.items():
                if v:
                    self.log(f"val/{k}", float(np.mean(v)), sync_dist=True, batch_size=len(v))

    def on_validation_epoch_end(self):
        if not self.trainer.sanity_checking:
            self.validated_step = self.global_step

    def on_save_checkpoint(self, checkpoint):
        from snnse import __version__

        checkpoint["validated_step"] = self.validated_step
        checkpoint["snnse_version"] = __version__
        if self.carry is not None:  # a run stopped inside its streams resumes with their state
            checkpoint["stream_carry"] = {"carry": self.carry, "next_crop": self.next_crop}

    def on_load_checkpoint(self, checkpoint):
        self.validated_step = int(checkpoint.get("validated_step", -1))
        saved = checkpoint.get("stream_carry")
        if saved is not None:
            self.carry, self.next_crop = saved["carry"], int(saved["next_crop"])

    def configure_optimizers(self):
        o = self.optim
        name = o.get("name", "adam").lower()
        classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "radam": torch.optim.RAdam}
        if name not in classes:
            raise ConfigError(f"unknown optimizer {name!r}; choose from {', '.join(classes)}")
        lr, gamma = float(o["lr"]), float(o.get("gamma", 1.0))
        opt = classes[name](param_groups(self.model, lr, float(o.get("weight_decay", 0.0))),
                            lr=lr, betas=tuple(o.get("betas", (0.9, 0.999))))
        floor = float(o.get("lr_floor", 0.0)) / lr
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(gamma ** step, floor))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class ModelExport(pl.Callback):
    """Writes ``last.pt`` after every validation and ``best.pt`` when ``val/sisnr`` improves (rank 0)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.best = -math.inf

    def on_validation_end(self, trainer, task):
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        task.model.save(self.folder / "last.pt")
        score = trainer.callback_metrics.get("val/sisnr")
        if score is not None and float(score) > self.best:
            self.best = float(score)
            task.model.save(self.folder / "best.pt")

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state):
        self.best = float(state["best"])


def _fitting(trainer) -> bool:
    return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking


class LastCheckpoint(Checkpoint):
    """Writes ``checkpoints/last.ckpt`` (Lightning) and ``last.pt`` (the model file) at resumable points.

    * after every epoch, once its validation has run;
    * every ``every_n_steps`` optimizer steps (0: never) at the end of the batch, or, when
      a validation follows that batch (``val_check_interval``), once more after it, so
      that a resumed run neither repeats nor skips it;
    * at the last step when ``trainer.max_steps`` ends the run inside an epoch.

    Inside an epoch only batches that stepped the optimizer count (not the middle of a
    gradient accumulation). Each write replaces the previous file atomically (temporary
    file, then rename), so only the latest is kept; ``keep_steps`` also keeps a hard link
    ``step-NNNNNNN.ckpt`` of every periodic write.

    Args:
        folder: The ``checkpoints`` folder.
        model_file: Where the model file goes (``<run>/last.pt``).
        every_n_steps: Period in optimizer steps; 0 writes after epochs (and at a
            ``max_steps`` stop) only.
        keep_steps: Keep the periodic checkpoints under step-numbered names too.
    """

    def __init__(self, folder: Path, model_file: Path, every_n_steps: int = 0, keep_steps: bool = False):
        if int(every_n_steps) < 0:
            raise ConfigError(f"checkpoint.every_n_steps must be >= 0, got {every_n_steps}")
        self.folder, self.model_file = Path(folder), Path(model_file)
        self.every, self.keep = int(every_n_steps), bool(keep_steps)
        self._step_before = -1
        self._written_at = -1  # global step of the last write inside an epoch

    @property
    def path(self) -> Path:
        return self.folder / "last.ckpt"

    def write(self, trainer, task, keep: bool = False) -> None:
        """Write both files now (every process must call it; rank 0 writes)."""
        tmp = self.folder / ".last.ckpt.partial"
        trainer.save_checkpoint(tmp)  # rank 0 writes; all processes wait for it
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
            task.model.save(self.model_file)
            if keep:
                named = self.folder / f"step-{trainer.global_step:07d}.ckpt"
                named.unlink(missing_ok=True)
                try:
                    os.link(self.path, named)  # the next write replaces last.ckpt, not this
                except OSError:  # a file system without hard links
                    shutil.copyfile(self.path, named)

    def _periodic(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def on_train_batch_start(self, trainer, task, batch, batch_idx):
        self._step_before = trainer.global_step

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx):
        step = trainer.global_step
        if not _fitting(trainer) or step == self._step_before:  # accumulating gradients
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # the end-of-epoch write follows, after the validation
        if self._periodic(step) or 0 <= trainer.max_steps <= step:
            self.write(trainer, task, keep=self.keep and self._periodic(step))
            self._written_at = step

    def on_validation_end(self, trainer, task):
        step = trainer.global_step
        if _fitting(trainer) and self._written_at == step \
                and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            # a validation right after a write: write again, so that the checkpoint includes it
            # (and ModelExport's best) and a resumed run neither repeats nor skips it
            self.write(trainer, task, keep=self.keep and self._periodic(step))

    def on_train_epoch_end(self, trainer, task):
        loop = trainer.fit_loop.epoch_loop
        if _fitting(trainer) and (loop.batch_progress.is_last_batch
                                  or loop.batch_progress.current.ready >= trainer.num_training_batches):
            # (a max_steps stop inside the epoch was written at its batch)
            self.write(trainer, task, keep=self.keep and self._periodic(trainer.global_step))


def _record_validation(path: Path, step: int, export: ModelExport) -> None:
    """Put the final validation of a ``max_steps`` run (after the last write) into ``last.ckpt``.

    Keeps a resumed run's best score in step with ``best.pt``, which that validation may
    have replaced.
    """
    if not path.is_file():
        return
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("global_step") != step or export.state_key not in ckpt.get("callbacks", {}):
        return
    ckpt["callbacks"][export.state_key] = export.state_dict()
    ckpt["validated_step"] = step
    base.save_checkpoint(ckpt, path)


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


def load_run_checkpoint(path: str | os.PathLike) -> tuple[base.Enhancer, int]:
    """The model of a Lightning checkpoint written by ``snnse fit`` (``*.ckpt``) and its step.

    Loaded with ``weights_only=True``; a model file or bundled name goes through
    :func:`snnse.models.base.load` (step -1).
    """
    if Path(path).suffix != ".ckpt":
        return base.load(str(path)), -1
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        hp = ck["hyper_parameters"]
        model = base.get(hp["model_name"], **hp["model_kwargs"])
    except (OSError, RuntimeError, KeyError, TypeError, EOFError) as err:
        raise ValueError(f"{path}: not a readable checkpoint of snnse fit ({type(err).__name__}: {err})") from None
    model.load_state_dict({k[len("model."):]: v for k, v in ck["state_dict"].items() if k.startswith("model.")})
    return model, int(ck.get("global_step", -1))


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
