"""Compiled C++ time loops for the fused neurons, built on first use.

The C++ is in ``csrc/`` beside this module: ``neurons.cpp`` (the LIF/PLIF, leaky-integrator and
ALIF loops), ``misc.cpp`` (``dw_backward``, ``surrogate_grad``) and ``fused_ops.cpp`` (the
registration), with the headers ``fused.h`` and ``common.h``. :func:`load` compiles them with
the package's one loader, :mod:`snnse.kernels.build` (``torch.utils.cpp_extension``, g++, light
ATen headers only: 15–35 s once, then cached under ``~/.cache/torch_extensions`` or
``$TORCH_EXTENSIONS_DIR``; the build name carries a hash of the sources, headers, flags and CPU,
so an edit rebuilds and no build is shared between CPU types), registers the operators
``torch.ops.snnse_fused.*`` and checks on random inputs that their forward loops are
bit-identical to :class:`snnse.kernels.loops.TorchLoops` (they must be: the C++ reproduces
PyTorch's ``lerp``/FMA arithmetic). If the build or the check fails, :func:`load` returns None,
warns once, and :mod:`snnse.fused` uses the PyTorch loops instead.

Why C++: the fused PyTorch loops still pay PyTorch's dispatch cost (a few µs) for every small
element-wise operation of every step, and their backward makes a dozen passes over ``[B, T, C]``
temporaries. Here one call runs a whole loop, one vectorised pass over the ``C`` channels of a
batch row per step, with the gradient sums accumulated on the way; the recurrent ALIF uses the
same ``addmm`` as PyTorch for its ``[B, C] × [C, C]`` products. Besides the loops: the
backward of DPSNN's depthwise convolution (``dw_backward``) and the derivatives of the built-in
surrogates (``surrogate_grad``) in one pass each.
"""

from __future__ import annotations

import torch

from .build import load_extension, load_once, name_getattr

SOURCES = ("neurons.cpp", "misc.cpp", "fused_ops.cpp")  # in csrc/; the headers they include come along
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-trapping-math", "-fno-math-errno", "-fopenmp-simd"]
PREFIX = "snnse_fused_"

_state: dict = {"tried": False, "ops": None, "error": None}


__getattr__ = name_getattr(__name__, PREFIX, SOURCES, FLAGS)  # NAME: the build's name, when asked for


def _build():
    """Compile (or load the cached build of) the extension; returns the operator namespace."""
    load_extension(PREFIX, SOURCES, FLAGS)
    return torch.ops.snnse_fused


def _self_check(ops) -> None:
    """Raise if the compiled forward loops are not bit-identical to the PyTorch loops."""
    from .loops import TorchLoops

    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        B, T, C = 3, 9, 16

        def r(*shape, scale=1.0, shift=0.0):
            return torch.randn(*shape, generator=g, dtype=dtype) * scale + shift

        x, v0 = r(B, T, C, scale=1.5, shift=0.7), r(B, C, scale=0.3)
        for k in (torch.tensor(0.4, dtype=dtype), torch.tensor(0.7, dtype=dtype)):
            for args in ((True, False, 0.0, 1.0), (False, True, 0.0, 1.0), (False, False, -0.2, 0.9)):
                a, b = ops.lif_forward(x, v0, k, *args), TorchLoops.lif_forward(x, v0, k, *args)
                if not all(torch.equal(p, q) for p, q in zip(a, b)):
                    raise RuntimeError("lif_forward differs from the PyTorch loop")
        beta = torch.rand(C, generator=g, dtype=dtype)
        if not torch.equal(ops.leaky_forward(x, v0, beta), TorchLoops.leaky_forward(x, v0, beta)):
            raise RuntimeError("leaky_forward differs from the PyTorch loop")
        alpha, rho = torch.rand(C, generator=g, dtype=dtype), torch.rand(C, generator=g, dtype=dtype)
        W, s0 = r(C, C, scale=0.5), (r(B, C) > 0).to(dtype)
        for w in (W, None):
            args = (x * 2, w, alpha, rho, 1.6, 0.184, v0, v0.abs(), s0, s0 if w is not None else None)
            a, b = ops.alif_forward(*args), TorchLoops.alif_forward(*args)
            if not all(torch.equal(p, q) for p, q in zip(a, b)):
                raise RuntimeError("alif_forward differs from the PyTorch loop")


def _build_checked():
    ops = _build()
    _self_check(ops)
    return ops


def load():
    """The compiled operators (``torch.ops.snnse_fused``), or None if they cannot be built (or
    fail the check); decided once per process, with one warning on failure."""
    return load_once(_state, _build_checked,
                     lambda err: f"snnse: C++ neuron kernel unavailable ({err}); using the PyTorch loops")


def reset() -> None:
    """Forget the outcome of :func:`load` (the next call tries again); for tests."""
    _state.update(tried=False, ops=None, error=None)


__all__ = ["load", "reset", "FLAGS", "NAME", "SOURCES"]
