"""The one backend switch: which tier runs the accelerated computations, for training and streaming.

Every accelerated computation has three tiers (``docs/architecture.md``), and one vocabulary
names them everywhere:

* ``"reference"``: pure PyTorch reference code. Training: the per-step autograd neurons
  (:func:`snnse.neurons._scan`, one graph per step, the test oracle). Streaming: the
  :class:`~snnse.models.base.Enhancer` module path (no plan).
* ``"torch"``: the accelerated PyTorch tier, no compiled code. Training: the fused autograd
  Functions of :mod:`snnse.fused` with the PyTorch loops (:class:`~snnse.kernels.loops.TorchLoops`).
  Streaming: the PyTorch plans of :mod:`snnse.fast_step` (:mod:`snnse.fast_dpsnn`,
  :mod:`snnse.fast_s4`).
* ``"cpp"``: compiled C++ where it builds (:mod:`snnse.kernels` for training,
  :mod:`snnse.fast_cpp` for streaming; built on first use), else ``"torch"`` with one warning.
* ``"auto"`` (the default) is ``"cpp"``.

Choose with the environment variable ``SNNSE_BACKEND`` or at run time with
:func:`set_backend` / :func:`use_backend` (``snnse.set_backend``, ``snnse.use_backend``);
:func:`backend` tells the choice. Precedence: :func:`set_backend` > ``SNNSE_BACKEND`` > the
deprecated variables below > ``"auto"``. Training reads the environment at every loop call;
streaming reads it when :mod:`snnse.fast_step` is imported (with ``import snnse``), because
plans are cached, and again whenever :func:`set_backend` is called (which also drops every cached
plan and stops the compiled streams' ``Hop`` objects, so that they are rebuilt for the new tier).

Deprecated aliases, honoured for one release with a :class:`DeprecationWarning` (once per
variable and value), each for its own area only, as before; ``SNNSE_BACKEND`` wins over both:

* ``SNNSE_NEURON_BACKEND`` (training): ``autograd`` → ``reference``, ``fused`` → ``torch``,
  ``cpp`` → ``cpp``, ``auto`` → ``auto``; any other value is a :class:`ValueError`;
* ``SNNSE_FAST_STEP`` (streaming): ``0``/``false``/``no``/``off`` → ``reference``, ``torch`` →
  ``torch``, anything else (``auto``) → ``cpp``.

Finer per-area switches remain: :func:`snnse.neurons.backend` / :func:`snnse.neurons.set_backend`
(training only; they accept the old names ``autograd``/``fused`` too) and
:func:`snnse.fast_step.set_enabled` / :func:`~snnse.fast_step.set_compiled` /
:func:`~snnse.fast_step.disabled` (streaming only). The last call wins: :func:`set_backend`
resets them.

This module imports nothing of snnse: the areas subscribe to :func:`set_backend`
(:func:`subscribe`), so the imports go one way (:mod:`snnse.fused`, :mod:`snnse.fast_step` →
here).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Callable, Iterator

BACKENDS = ("reference", "torch", "cpp")
CHOICES = (*BACKENDS, "auto")
ENV = "SNNSE_BACKEND"
AREAS = ("training", "streaming")

# area -> (deprecated variable, its value -> tier (None: any other value is an error), default tier)
_OFF = {"0": "reference", "false": "reference", "no": "reference", "off": "reference"}
ALIASES: dict[str, tuple[str, dict[str, str]]] = {
    "training": ("SNNSE_NEURON_BACKEND", {"autograd": "reference", "fused": "torch", "cpp": "cpp", "auto": "cpp"}),
    "streaming": ("SNNSE_FAST_STEP", {**_OFF, "torch": "torch"}),  # anything else: "cpp", as before
}

_choice: str | None = None  # set_backend's tier, or None: the environment
_listeners: list[Callable[[], None]] = []
_warned: set[tuple[str, str]] = set()


def _check(name: str, source: str) -> str:
    tier = name.strip().lower()
    if tier not in CHOICES:
        raise ValueError(f"{source}={name!r}; choose from {', '.join(CHOICES)}")
    return "cpp" if tier == "auto" else tier


def _deprecated(var: str, value: str, note: str) -> None:
    if (var, value) not in _warned:
        _warned.add((var, value))
        warnings.warn(f"{var} is deprecated, use {ENV} instead ({note})", DeprecationWarning, stacklevel=4)


def tier(area: str) -> str:
    """The tier requested for ``area`` (``"training"`` or ``"streaming"``): ``"reference"``,
    ``"torch"`` or ``"cpp"`` (``"auto"`` resolved; whether ``"cpp"`` builds is decided by the area)."""
    if area not in AREAS:
        raise ValueError(f"unknown area {area!r}; choose from {AREAS}")
    if _choice is not None:
        return _choice
    new = os.environ.get(ENV, "")
    var, table = ALIASES[area]
    old = os.environ.get(var, "")
    if new:
        if old:
            _deprecated(var, old, f"ignored: {ENV}={new} is set and wins")
        return _check(new, ENV)
    if not old:
        return "cpp"
    if area == "training":
        if old not in table:
            raise ValueError(f"{var}={old!r} (deprecated, use {ENV}); choose from {', '.join(table)}")
        t = table[old]
    else:
        t = table.get(old.lower(), "cpp")
    _deprecated(var, old, f"{var}={old} means {ENV}={t}")
    return t


def backend() -> str:
    """The tier chosen for both areas: :func:`set_backend`'s, else ``SNNSE_BACKEND``'s, else
    ``"cpp"`` (auto). The deprecated per-area variables are in :func:`tier`."""
    if _choice is not None:
        return _choice
    new = os.environ.get(ENV, "")
    return _check(new, ENV) if new else "cpp"


def set_backend(name: str | None) -> None:
    """Select the tier for training and streaming: ``"reference"``, ``"torch"``, ``"cpp"`` or
    ``"auto"`` (= ``"cpp"``); None goes back to the environment. Resets the per-area switches and
    drops the cached streaming plans."""
    global _choice
    _choice = None if name is None else _check(name, "backend")
    for fn in list(_listeners):
        fn()


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """``with snnse.use_backend("reference"): ...``; restores the previous choice afterwards."""
    old = _choice
    set_backend(name)
    try:
        yield
    finally:
        set_backend(old)


def subscribe(fn: Callable[[], None]) -> None:
    """Call ``fn()`` after every :func:`set_backend` (the areas re-read :func:`tier` there)."""
    _listeners.append(fn)


__all__ = ["ALIASES", "BACKENDS", "CHOICES", "ENV", "backend", "set_backend", "subscribe", "tier", "use_backend"]
