"""The model skeleton (front-end → masker → mask → synthesis), the registry, and save/load.

Every model in snnse is an :class:`Enhancer`: a :class:`~snnse.frontends.Frontend` that turns
frames into features, a *masker* that turns the feature sequence into a mask of the same shape
(causally, with explicit state), and the front-end's synthesis. Maskers and front-ends are
interchangeable by configuration (``frontend="conv"`` or ``"stft"`` in every builder).

A masker is an ``nn.Module`` with

* ``initial_state(batch, device=None, dtype=None) -> state``;
* ``forward(features[B, F, C], state=None, record=None) -> (mask[B, F, C], state)``, which
  must give the same result on a whole sequence as on consecutive chunks carrying the state;
  ``record``, when a dict, receives the per-layer activity ``[B, F, C']`` under layer names
  (spikes of spiking layers, and what the losses and efficiency counters need).

Checkpoints are plain dicts of tensors and primitives, loaded with ``weights_only=True``::

    {"format": "snnse.model", "format_version": 1, "model": name, "kwargs": {...},
     "sample_rate": 16000, "versions": {"snnse": ..., "torch": ...}, "state_dict": {...},
     "meta": {...}}

``meta`` (optional, plain data) says where the weights come from: ``recipe``, the transferable
part of the training configuration that produced them (:func:`snnse.training.recipe_of`; what
``snnse finetune`` starts from), and, for a fine-tuned model, ``finetune`` (its data, budget and
before/after table; :mod:`snnse.finetune`). Readers that do not know it ignore it.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .. import fastpath, level_control
from .._version import __version__
from ..frontends import Frontend
from ..atomic import atomic_path

FORMAT = "snnse.model"
FORMAT_VERSION = 1
_REGISTRY: dict[str, Callable[..., "Enhancer"]] = {}


class Enhancer(nn.Module):
    """Front-end → masker → synthesis, offline (:meth:`forward`) and streaming (:meth:`step`).

    Args:
        frontend: a :class:`~snnse.frontends.Frontend`.
        masker: a masker (see the module docstring) whose feature size is ``frontend.n_features``.

    Shape:
        forward: ``noisy [B, T]`` or ``[T]`` → ``enhanced`` of the same shape.
        step: ``chunk [B, k·hop]`` → ``out [B, k·hop]``, the output lagging by ``frame_length − hop``
        samples; :class:`snnse.streaming.Streamer` hides that bookkeeping. The state is
        ``{"frontend", "masker"}``, plus ``"level"`` with a level control.

    Attributes:
        level: the causal input level control (:class:`snnse.level_control.LevelControl`) or None; set
            with :meth:`set_level_control` or the ``level_control`` keyword of :func:`get`.
    """

    def __init__(self, frontend: Frontend, masker: nn.Module):
        super().__init__()
        self.frontend, self.masker = frontend, masker
        self.name: str | None = None
        self.kwargs: dict = {}
        self.level: level_control.LevelControl | None = None
        self.meta: dict = {}  # provenance saved with the weights (see the module docstring)

    def set_level_control(self, spec: dict | None) -> None:
        """Put a causal input level control (:class:`snnse.level_control.LevelControl`, options as a dict)
        around the model, or remove it (None). It is part of the model: saved in the checkpoint
        (``kwargs["level_control"]``), applied offline, streaming and in the ONNX step alike."""
        self.level = level_control.make(spec, self.hop, self.frame_length - self.hop, self.sample_rate)
        if spec is None:
            self.kwargs.pop("level_control", None)
        else:
            self.kwargs["level_control"] = dict(spec)

    # ---- properties -----------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    @property
    def hop(self) -> int:
        return self.frontend.hop

    @property
    def frame_length(self) -> int:
        return self.frontend.frame_length

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency (the analysis window), excluding compute time."""
        return self.frontend.latency_ms

    @property
    def spiking(self) -> bool:
        return any(getattr(m, "spiking", False) and hasattr(m, "step") for m in self.masker.modules())

    # ---- offline --------------------------------------------------------------------------
    def forward(self, noisy: torch.Tensor, return_aux: bool = False):
        """Enhance whole signals. With ``return_aux`` also return ``{"mask", "features", "record"}``."""
        squeeze = noisy.dim() == 1
        x = noisy.unsqueeze(0) if squeeze else noisy
        if x.dim() != 2:
            raise ValueError(f"expected noisy audio [B, T] or [T], got shape {tuple(noisy.shape)}")
        record: dict | None = {} if return_aux else None
        gains = self.level.offline(x) if self.level is not None else None
        if gains is not None:
            x = x * gains
        feats, ctx = self.frontend.analyze(self.frontend.frames(x))
        mask, _ = self.masker(feats, None, record)
        y = self.frontend.overlap_add(self.frontend.synthesize(mask, ctx), x.shape[-1])
        if gains is not None:
            y = y / gains
        y = y.squeeze(0) if squeeze else y
        if return_aux:
            return y, {"mask": mask, "features": feats, "record": record}
        return y

    # ---- streaming ------------------------------------------------------------------------
    def initial_state(self, batch: int = 1, device=None, dtype=None) -> dict:
        p = next(self.parameters())
        device = p.device if device is None else device
        dtype = p.dtype if dtype is None else dtype
        state = {
            "frontend": self.frontend.initial_state(batch, device, dtype),
            "masker": self.masker.initial_state(batch, device, dtype),
        }
        if self.level is not None:
            state["level"] = self.level.initial_state(batch, device, dtype)
        return state

    def step(self, chunk: torch.Tensor, state: dict, record: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Consume ``chunk [B, k·hop]``; return the ``k·hop`` output samples that became final.

        One hop without autograd takes the fast path (:mod:`snnse.fast_step`, reached through the
        hook :func:`snnse.fastpath.hop_plan`; same result up to float rounding, same state
        structure); everything else runs through the modules (:meth:`module_step`). With a level
        control (:meth:`set_level_control`) the chunk is scaled before and the output after.
        """
        plan = fastpath.hop_plan(self, chunk)
        if self.level is None:
            if plan is not None:
                res = plan.step(chunk, state, record)
                if res is not None:
                    return res
            out, new, _ = self.module_step(chunk, state, record)
            return out, new
        if plan is not None:
            res = plan.step(chunk, state, record, level=self.level)  # the compiled hop, level control fused in
            if res is not None:
                return res
        scaled, g_out, level = self.level.step(chunk, state["level"])
        res = plan.step(scaled, state, record) if plan is not None else None
        if res is None:
            res = self.module_step(scaled, state, record)
        out, new = res[0], res[1]
        new["level"] = level
        return out / g_out, new

    def module_step(self, chunk: torch.Tensor, state: dict, record: dict | None = None):
        """:meth:`step` through the modules (autograd, no level control, never the fast path),
        also returning ``{"mask", "features"}`` of the chunk's frames: what training with
        carried state (:class:`snnse.losses.EnhancementLoss` with ``carry``) needs.

        Returns:
            ``(out [B, k·hop], new state, aux)``; ``state["level"]``, if any, is passed through.
        """
        hist, pending = state["frontend"]
        frames, hist = self.frontend.frames_step(chunk, hist)
        feats, ctx = self.frontend.analyze(frames)
        mask, mstate = self.masker(feats, state["masker"], record)
        out, pending = self.frontend.overlap_add_step(self.frontend.synthesize(mask, ctx), pending)
        new = {"frontend": (hist, pending), "masker": mstate}
        return out, new, {"mask": mask, "features": feats}

    def _apply(self, fn, recurse=True):  # .to(), .double(), .cuda(): the fast path rebuilds its constants
        fastpath.invalidate(self)
        return super()._apply(fn, recurse)

    # ---- persistence ----------------------------------------------------------------------
    def checkpoint(self) -> dict:
        """The self-describing checkpoint dict (see the module docstring)."""
        if self.name is None:
            raise ValueError("only models built through snnse.models.get() can be saved")
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "kwargs": dict(self.kwargs),
            "sample_rate": self.sample_rate,
            "versions": {"snnse": __version__, "torch": str(torch.__version__)},
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            **({"meta": self.meta} if self.meta else {}),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the checkpoint atomically (temporary file in the same folder, then rename)."""
        return save_checkpoint(self.checkpoint(), path)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, latency_ms={self.latency_ms:g}"


def save_checkpoint(obj: dict, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


# ---- registry ---------------------------------------------------------------------------------
def register(name: str):
    """Decorator: register a builder ``f(**kwargs) -> Enhancer`` under ``name``."""

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def masker_part(masker, part: str):
    """What a masker's class names for ``part`` — ``"fast_plan"`` (its one-hop plan class, see
    :mod:`snnse.fast_step`) or ``"op_graph"`` (its builder in :mod:`snnse.metrics.opcount`) — or
    None when it names none.

    A model family is known in one place, its model module: the masker class names its plan and
    its op-count builder as ``"module:attribute"`` strings, imported here on first use, so that the
    models never import the fast path or the metrics (which import the models). Only the class's
    own attributes count (a subclass must name its own: a plan built for one masker does not
    serve another).
    """
    spec = type(masker).__dict__.get(part)
    if spec is None:
        return None
    found = _PARTS.get(spec)
    if found is None:
        import importlib

        module, _, attr = spec.partition(":")
        found = _PARTS[spec] = getattr(importlib.import_module(module), attr)
    return found


_PARTS: dict[str, object] = {}


def available() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str, **kwargs) -> Enhancer:
    """Build a registered model; unknown names and arguments raise ``ValueError``.

    Every model also accepts ``level_control`` (None, or a dict of :class:`snnse.level_control.LevelControl`
    options): see :meth:`Enhancer.set_level_control`.
    """
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}") from None
    sig = inspect.signature(builder)
    level = kwargs.pop("level_control", None)
    try:
        bound = sig.bind(**kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for model {name!r}: {e}; accepted: {', '.join(sig.parameters)}") from None
    bound.apply_defaults()
    model = builder(**bound.arguments)
    model.name, model.kwargs = name, dict(bound.arguments)
    model.set_level_control(level)
    return model


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Enhancer:
    """Load a checkpoint written by :meth:`Enhancer.save` (never executes code from the file).

    Args:
        path: A checkpoint file, or the name of a bundled pretrained model (``"dpsnn-demo"``,
            ``"spiking-s4-demo"``; see :mod:`snnse.pretrained`). An existing file wins over a name.
        map_location: Device for the weights.
    """
    from .. import pretrained

    if pretrained.is_name(path):
        path = pretrained.path(str(path))  # FileNotFoundError names the missing weights
    path = Path(path)
    if not path.is_file():
        names = ", ".join(pretrained.bundled()) or "none installed"
        raise FileNotFoundError(f"checkpoint not found: {path} (bundled model names: {names})")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt, truncated, or a pickle that needs code
        raise ValueError(f"{path}: not a readable snnse checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not an snnse model checkpoint (missing format {FORMAT!r})")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {ckpt['format_version']} is newer than this snnse supports")
    model = get(ckpt["model"], **ckpt["kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    model.meta = dict(ckpt.get("meta") or {})
    return model.to(map_location)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def causal_context_frames(context_dur: float, hop: int, sample_rate: int) -> int:
    """Past frames covered by ``context_dur`` seconds (DPSNN: 0.01 s / 2.5 ms = 4)."""
    n = context_dur * sample_rate / hop
    if n < 0 or abs(n - round(n)) > 1e-6:
        raise ValueError(f"context_dur={context_dur} s is not a whole number of hops ({hop}/{sample_rate} s)")
    return int(round(n))


__all__ = ["Enhancer", "register", "get", "available", "load", "count_parameters", "save_checkpoint"]
