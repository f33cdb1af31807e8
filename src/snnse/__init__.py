"""snnse: speech enhancement with spiking neural networks (DPSNN, Spiking-S4, ANN twins).

Importing the package also imports :mod:`snnse.fast_step`, which plugs the fast streaming path
into the models' hooks (:mod:`snnse.fastpath`): :meth:`Enhancer.step` on one hop takes it.

:func:`set_backend` / :func:`use_backend` / :func:`backend` (or ``SNNSE_BACKEND``) choose the tier of
the accelerated code for training and streaming: ``reference``, ``torch``, ``cpp`` (``auto``), see
:mod:`snnse.backends`.
"""

from ._version import __version__
from .backends import backend, set_backend, use_backend
from .models import available, get, load
from . import fast_step  # noqa: F401, E402  (installs the fast path in snnse.fastpath; imports the models)

__all__ = ["__version__", "available", "backend", "get", "load", "set_backend", "use_backend"]
