"""The checkpoints of ``snnse fit``: writing them at resumable points, and reading them back.

* :class:`LastCheckpoint` — writes ``last.ckpt`` and ``last.pt`` after every epoch, every
  ``checkpoint.every_n_steps`` optimizer steps and at a ``max_steps`` stop inside an epoch;
* :class:`ModelExport` — writes the self-describing model files ``last.pt`` after every
  validation and ``best.pt`` when ``val/sisnr`` improves;
* :func:`_record_validation` — puts the final validation of a ``max_steps`` run into ``last.ckpt``;
* :func:`load_run_checkpoint` — the model (and step) of a Lightning checkpoint of ``snnse fit``,
  loaded with ``weights_only=True``.

Used by :mod:`snnse.training`, which re-exports the public names.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.trainer.states import TrainerFn

from snnse.config import ConfigError
from snnse.models import base


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
        trainer.save_checkpoint(tmp, weights_only=False)  # the full resumable state; rank 0 writes, all wait
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
