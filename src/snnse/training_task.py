"""The LightningModule of ``snnse fit``: :class:`EnhancementTask`.

An :class:`~snnse.models.base.Enhancer` built from the registry, trained with
:class:`~snnse.losses.EnhancementLoss` and Adam/AdamW/RAdam with a per-batch exponential decay
and floor; validation SI-SNR on every file and PESQ/STOI on the first ``data.metrics_subset``
files of each process. Batches of stream crops (:class:`~snnse.data.paired.StreamSampler`)
continue from the state at the end of the previous batch (truncated BPTT), and that state is
saved in and restored from the checkpoints. Used by :mod:`snnse.training`, which re-exports it.
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils._pytree import tree_map

from snnse.config import ConfigError
from snnse.losses import EnhancementLoss
from snnse.models import base
from snnse.ssm import param_groups


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
