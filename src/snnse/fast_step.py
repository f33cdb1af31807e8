"""A fast path for one streaming hop: :meth:`Enhancer.step` on one frame, without autograd.

A hop of DPSNN is six 256-wide matrix-vector products and a few dozen element-wise operations on
256 numbers; through the modules, most of its time is framework overhead (module calls, ~70
small operators, recomputed ``σ(w)`` decays, transposed weights, complex-real promotions in the
S4D recurrence, a dense DFT matrix for the STFT). A *plan* does the same arithmetic with fewer
operators on constants derived once from the weights:

* transposed, contiguous weight matrices for ``addmm``; decays ``σ(w)``, ``σ(a)``, ``σ(r)``;
  input offsets folded into biases;
* S4D: ``dA`` as a complex tensor, ``dB`` and ``2C`` as real views (no complex–real promotion);
* STFT front-end: ``rfft``/``irfft`` with the window and the overlap-add gain as vectors instead
  of the ``[2K, L]`` Fourier matrices (same transform, rounding of the FFT).

The plan is a pure function of the parameters and buffers: it holds no stream state (the state
is still passed in and returned, with the same structure as the module path). It is cached on the
model and rebuilt when any parameter or buffer changes: in place (optimizer step,
``load_state_dict``: version counter), by ``.data`` assignment or conversion (storage pointer,
dtype, device), or when a parameter, buffer or submodule is (re)assigned anywhere (a global
registration counter). The fast path is used only for one frame (``chunk [B, hop]``), with
autograd off, outside tracing/compilation (ONNX export sees the module path), for configurations
it knows (spiking DPSNN with ``H = B``, Spiking-S4 and its ANN twin, either front-end); anything
else takes the module path, which stays the reference. Spikes and outputs equal the module path
up to float rounding (``tests/test_fast_step.py``).

The tier comes from the one backend switch, :mod:`snnse.backends` (``SNNSE_BACKEND``, read
when this module is imported; ``snnse.set_backend`` at run time): ``reference`` takes the module
path, ``torch`` the PyTorch plans, ``cpp`` / ``auto`` (default) the compiled steps of
:mod:`snnse.fast_cpp` where those build (once, cached; used on the CPU when no activity is
recorded, by the DPSNN plan with the learned front-end and the Spiking-S4 plan with LIF/PLIF
units). The deprecated ``SNNSE_FAST_STEP`` (``0`` / ``torch`` / ``auto``) still works, with a
warning. Finer streaming-only switches: :func:`enabled` / :func:`set_enabled` / :func:`disabled`
(e.g. to time the module path) and :func:`compiled` / :func:`set_compiled`; ``snnse.set_backend``
resets them (the last call wins).

Where it plugs in: the imports go one way, from the fast path to the models. This module imports
the models; each masker class names its plan (``fast_plan = "snnse.fast_dpsnn:DPSNNPlan"``,
resolved on first use by :func:`snnse.models.base.masker_part`; the plans are built from the
blocks of :mod:`snnse.fast_plan`), and on import
installs :func:`hop_plan`, :func:`invalidate` and :func:`compiled_ops` as the hooks of
:mod:`snnse.fastpath`, the low layer that :meth:`Enhancer.step` (``snnse.models.base``) and the
level control (:mod:`snnse.level_control`) call; ``snnse/__init__.py`` imports this module, so the hooks
are set whenever snnse is imported. :func:`stream_hop` makes the compiled ``Hop`` of a stream
(:class:`snnse.streaming.Streamer`).
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn.modules import module as _module

from . import backends, fast_cpp, fastpath
from .fast_plan import (  # noqa: F401  (re-exported: the building blocks used to live here)
    STFTFE, ConvFE, Plan, frontend_plan, level_args, lif_decay, run_frontend, with_level_state)
from .models.base import Enhancer, masker_part
from .state import StateSpec

# The plan class of a masker is named by the masker's class (``fast_plan``, resolved by
# snnse.models.base.masker_part): ``Plan.build(fe, masker, dtype, device, compiled)`` returns the
# plan or None (configuration not supported: the module path).
_REAL = (torch.float32, torch.float64)

_TIER = backends.tier("streaming")  # SNNSE_BACKEND (or the deprecated SNNSE_FAST_STEP), read at import
_enabled = _TIER != "reference"  # the plans (else the module path)
_compiled = _TIER != "torch"  # the compiled steps of snnse.fast_cpp, when they build (and plans are on)
_generation = [0]  # bumped whenever any parameter, buffer or submodule is registered


def _bump(*_args):
    _generation[0] += 1


_module.register_module_parameter_registration_hook(_bump)
_module.register_module_buffer_registration_hook(_bump)
_module.register_module_module_registration_hook(_bump)


def _follow_backend() -> None:
    """After ``snnse.set_backend``: take its tier; every plan and compiled Hop is rebuilt."""
    global _enabled, _compiled
    tier = backends.tier("streaming")
    _enabled, _compiled = tier != "reference", tier != "torch"
    _bump()


backends.subscribe(_follow_backend)


def enabled() -> bool:
    return _enabled


def set_enabled(flag: bool) -> None:
    global _enabled
    _enabled = bool(flag)
    _bump()  # a Streamer's compiled Hop stops too (snnse.streaming)


def compiled() -> bool:
    """Whether plans built from now on may use the compiled step (:mod:`snnse.fast_cpp`)."""
    return _compiled


def set_compiled(flag: bool) -> None:
    """Allow or forbid the compiled step; existing plans are rebuilt on their next use."""
    global _compiled
    _compiled = bool(flag)
    _bump()


@contextlib.contextmanager
def disabled():
    """Within the block, :meth:`Enhancer.step` takes the module path."""
    old = _enabled
    set_enabled(False)
    try:
        yield
    finally:
        set_enabled(old)


class _Cache:
    """The plan and what it was built from. A copied or unpickled model gets an empty cache."""

    gen = -1  # never current: an empty cache is rebuilt on first use

    def __reduce__(self):
        return (_Cache, ())


def plan_for(model):
    """The cached plan of ``model`` (rebuilt if the weights changed), or None (module path)."""
    if not _enabled or fastpath.tracing():
        return None
    c = model.__dict__.get("_fast_step_cache")
    if c is not None and c.gen == _generation[0]:
        ts = c.tensors
        if [t._version for t in ts] == c.versions and [t.data_ptr() for t in ts] == c.ptrs:
            return c.plan
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.is_inference() for t in tensors):  # no version counter: cannot tell when they change
        return None
    c = _Cache()
    c.tensors, c.gen = tensors, _generation[0]
    c.versions, c.ptrs = [t._version for t in tensors], [t.data_ptr() for t in tensors]
    with torch.inference_mode(False), torch.no_grad():
        c.plan = build(model)
    model.__dict__["_fast_step_cache"] = c
    return c.plan


def watched(model) -> list:
    """The tensors whose version counters and storage :func:`plan_for` checks (what a plan is built from)."""
    c = model.__dict__.get("_fast_step_cache")
    return list(c.tensors) if c is not None else [*model.parameters(), *model.buffers()]


def generation() -> int:
    """A counter bumped whenever any parameter, buffer or submodule is registered anywhere."""
    return _generation[0]


def invalidate(model) -> None:
    model.__dict__.pop("_fast_step_cache", None)


def build(model):
    """A plan for ``model`` (an :class:`~snnse.models.base.Enhancer`), or None if unsupported."""
    params = list(model.parameters())
    if not params or len({(p.dtype, p.device) for p in params}) != 1 or params[0].dtype not in _REAL:
        return None
    fe = frontend_plan(model.frontend)
    if fe is None:
        return None
    cls = masker_part(model.masker, "fast_plan")
    if cls is None:
        return None
    plan = cls.build(fe, model.masker, params[0].dtype, params[0].device, _compiled)
    if plan is not None:
        plan.dtype, plan.device = params[0].dtype, params[0].device
        state = model.initial_state(1, params[0].device, params[0].dtype)
        plan.spec = StateSpec({"frontend": state["frontend"], "masker": state["masker"]})
    return plan


def hop_plan(model, chunk):
    """The plan of ``model`` for ``chunk`` (one hop, no autograd, the plan's dtype and device), or None:
    what :meth:`Enhancer.step` gets through :func:`snnse.fastpath.hop_plan`."""
    if chunk.shape[-1] != model.frontend.hop or torch.is_grad_enabled():
        return None
    plan = plan_for(model)
    if plan is None or chunk.dtype != plan.dtype or chunk.device != plan.device:
        return None
    return plan


def stream_hop(model, chunk: torch.Tensor, state: dict):
    """For :class:`snnse.streaming.Streamer`: ``(plan, hop)``, a compiled
    ``torch.classes.snnse_step.Hop`` that continues from ``state`` (copied) for one-hop chunks like
    ``chunk`` of ``model`` (an :class:`~snnse.models.base.Enhancer`), and the plan it was made
    from; None where the fast path is not compiled (or ``model`` is not an Enhancer).
    ``hop.step`` raises ``RuntimeError("snnse Hop: weights changed")`` once a parameter or buffer
    was changed in place or replaced; a registration anywhere bumps :func:`generation`: in both
    cases, make a new one."""
    if not isinstance(model, Enhancer):
        return None
    plan = hop_plan(model, chunk)
    if plan is None:
        return None
    hop = plan.make_hop(state, model.level)
    if hop is None:
        return None
    hop.watch(watched(model))  # it stops (an error) when the weights change
    return plan, hop


def compiled_ops():
    """The compiled operators of :mod:`snnse.fast_cpp` if the fast path may use them now (enabled,
    compiled allowed, not tracing), else None: the input level control's (:mod:`snnse.level_control`)."""
    if _enabled and _compiled and not fastpath.tracing():
        return fast_cpp.load()
    return None


fastpath.install(hop_plan, invalidate, compiled_ops)  # Enhancer.step and snnse.level_control reach the fast path
