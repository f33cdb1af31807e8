"""Where the fast path plugs in: the hooks through which the models reach :mod:`snnse.fast_step`.

The imports go one way: the fast path (:mod:`snnse.fast_step`, the plans of
:mod:`snnse.fast_dpsnn` and :mod:`snnse.fast_s4`, the compiled steps of :mod:`snnse.fast_cpp`)
imports the models; the models (:mod:`snnse.models`) and :mod:`snnse.level_control` import only this
module, which imports nothing of snnse. :mod:`snnse.fast_step` fills the hooks when it is
imported, and ``snnse/__init__.py`` imports it, so the fast path is active as soon as ``snnse``
is. Without it the hooks answer None and everything takes the module path (the reference).

* :func:`hop_plan` — what :meth:`snnse.models.base.Enhancer.step` asks for every chunk: the
  model's plan for a one-hop chunk without autograd (right dtype and device), or None;
* :func:`invalidate` — what ``Enhancer._apply`` (``.to()``, ``.double()``, ...) calls: drop the
  constants derived from the weights;
* :func:`compiled_ops` — the compiled operators (``torch.ops.snnse_step``) if the fast path may
  use them now (on, compiled allowed, not tracing), else None (:mod:`snnse.level_control`'s level control);
* :func:`tracing` — whether torch is tracing, scripting or compiling (the fast path stays out).
"""

from __future__ import annotations

from typing import Callable

import torch

_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


def tracing() -> bool:
    """True under ``torch.jit.trace``/``script`` or ``torch.compile`` (the ONNX export traces)."""
    return torch.jit.is_tracing() or torch.jit.is_scripting() or _compiling()


def _none(*_args):
    return None


_hop_plan: Callable = _none
_invalidate: Callable = _none
_compiled_ops: Callable = _none


def install(hop_plan: Callable, invalidate: Callable, compiled_ops: Callable) -> None:
    """Set the hooks (:mod:`snnse.fast_step` does, on import):

    Args:
        hop_plan: ``(model, chunk) -> plan or None``.
        invalidate: ``(model) -> None``.
        compiled_ops: ``() -> ops or None``.
    """
    global _hop_plan, _invalidate, _compiled_ops
    _hop_plan, _invalidate, _compiled_ops = hop_plan, invalidate, compiled_ops


def hop_plan(model, chunk: torch.Tensor):
    """The fast-path plan of ``model`` for ``chunk`` (one hop, no autograd, the plan's dtype and
    device), or None: ``plan.step(chunk, state, record, level=None)`` then gives ``(out, state)``
    or None (take the module path)."""
    return _hop_plan(model, chunk)


def invalidate(model) -> None:
    """Forget the constants the fast path derived from ``model``'s weights."""
    _invalidate(model)


def compiled_ops():
    """The compiled operators if the fast path may use them now, else None."""
    return _compiled_ops()


__all__ = ["compiled_ops", "hop_plan", "install", "invalidate", "tracing"]
