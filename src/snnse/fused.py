"""Fused spiking time loops: one autograd node per sequence instead of one graph per time step.

The per-step path (:func:`snnse.neurons._scan` calling ``unit.step``) records a small autograd
graph at every frame; for the sizes of speech enhancement (B = 8, C = 256, T = 125..400) the
training step is dominated by that bookkeeping, not by arithmetic. Here each neuron type has one
:class:`torch.autograd.Function`:

* **forward** runs the time loop without autograd, with exactly the tensor operations of the
  unit's ``step`` (same ``lerp``/``mul``/``add`` sequence, so the outputs are bit-identical), and
  saves only what the backward needs: the pre-spike membrane per step (LIF/PLIF), the membrane,
  adaptation trace and input current (ALIF), or the integrator output (leaky integrator).
* **backward** is a hand-written reverse-time loop. Everything that does not depend on the
  reverse recurrence (surrogate derivatives, reset factors, the previous states) is computed for
  all steps at once before the loop, and every reduction over time (gradients of decays, of
  ``W_rec``, of the inputs) after it, so that the loop itself is a few element-wise operations per
  step: one fused multiply-add for LIF/PLIF and the leaky integrator (their adjoint is a linear
  first-order recurrence ``g_t = m_t g_{t+1} + q_t``), and for the recurrent ALIF one
  ``[B, C] × [C, C]`` product plus ~8 element-wise operations. ``dL/dW_rec`` is one
  ``[C, T·B] × [T·B, C]`` product after the loop.

The loops come in two implementations with one interface: :class:`~snnse.kernels.loops.TorchLoops`
(PyTorch operations, any device) and the compiled C++ operators of :mod:`snnse.kernels` (CPU,
built on first use), which remove the per-operation dispatch cost and also fuse the
vectorised parts of the backward into one pass. Sequences keep the caller's batch-major layout
``[B, T, C]`` (a step is the strided slice ``x[:, t]``), so that no transposed copies are made.
The loops run with one intra-op thread (their operations are too small to share).

DPSNN's depthwise causal SCNN convolution gets the same treatment (``conv1d`` forward, a
hand-written ``K``-tap backward instead of PyTorch's much slower depthwise backward).

Backends: the tiers of :mod:`snnse.backends` (``SNNSE_BACKEND``, ``snnse.set_backend``), in the old
names that :func:`get_backend` still reports, and that :func:`set_backend` / :func:`backend` (a
training-only override, also in :mod:`snnse.neurons`) accept beside the new ones:

* ``"autograd"`` (tier ``"reference"``): today's per-step autograd path, kept as the test oracle;
* ``"fused"`` (tier ``"torch"``): the autograd Functions with the PyTorch loops;
* ``"cpp"``: the autograd Functions with the compiled loops (falls back to ``"fused"``, with one
  warning, when the kernel cannot be built);
* ``None`` / ``"auto"`` (default): follow :mod:`snnse.backends` (``SNNSE_BACKEND``, or the
  deprecated ``SNNSE_NEURON_BACKEND``; default ``"cpp"`` if the kernel builds, else ``"fused"``).

Without gradients the fused forward loop is used directly (no autograd node, nothing kept). One
frame (streaming, ``T = 1``) always goes through ``unit.step``. Nothing keeps state between calls.

Forward outputs (spikes, membranes, final states) are bit-identical across the three backends.
Gradients follow the per-step graph exactly (same surrogate, detached or not reset, the reset
term's gradient reaching the threshold θ even when the reset is detached); only the order of
floating-point accumulation differs, and under ``"cpp"`` the built-in surrogate derivatives come
from the kernel's own ``exp`` (~1 ulp): float64 agreement ~1e-14. Any other
:class:`~snnse.neurons.Surrogate` subclass works everywhere through its ``derivative``. The
hand-written backwards are not themselves differentiable (no double backward: an error, never a
silent zero, when one is attempted).
"""

from __future__ import annotations

import contextlib

import torch
from torch.autograd.function import once_differentiable

from . import backends
from .kernels.loops import TorchLoops, _sum_prev

BACKENDS = ("autograd", "fused", "cpp")  # the old names of the tiers reference, torch, cpp
OLD_NAMES = {"reference": "autograd", "torch": "fused", "cpp": "cpp"}  # tier -> old name
_backend: str | None = None  # the training-only override (old name), or None: snnse.backends


def _reset_override() -> None:
    global _backend
    _backend = None


backends.subscribe(_reset_override)  # snnse.set_backend: the last call wins


def set_backend(name: str | None) -> None:
    """Select the neuron time-loop backend (training only): ``"autograd"``, ``"fused"``, ``"cpp"``,
    the tiers ``"reference"``, ``"torch"``, or None / ``"auto"`` (follow :mod:`snnse.backends`)."""
    global _backend
    name = OLD_NAMES.get(name, name)
    if name is not None and name != "auto" and name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {BACKENDS}, {backends.BACKENDS} or None")
    _backend = None if name == "auto" else name


@contextlib.contextmanager
def backend(name: str | None):
    """Context manager: ``with snnse.neurons.backend("autograd"): ...``."""
    old = _backend
    set_backend(name)
    try:
        yield
    finally:
        set_backend(old)


def get_backend() -> str:
    """The backend in effect (auto resolved; ``"cpp"`` resolves to ``"fused"`` if it cannot build)."""
    name = _backend or OLD_NAMES[backends.tier("training")]
    if name == "autograd" or name == "fused":
        return name
    from . import kernels

    return "cpp" if kernels.load() is not None else "fused"


def enabled() -> bool:
    """True when the fused paths are to be used (any backend but ``"autograd"``)."""
    return get_backend() != "autograd"


class _OneThread:
    """Calls the loops of ``impl`` with one intra-op thread (then restores the setting).

    A step is a few ``[B, C]`` operations and one ``[B, C] × [C, C]`` product: too small to share
    between threads, and on a busy machine every parallel region of a small product can wait
    milliseconds for a descheduled worker. (MKL gave these products the same bits on 1 and 2
    threads in our checks.) The setting is process-wide for the duration of the loop.
    """

    def __init__(self, impl):
        self.impl = impl

    def __getattr__(self, name):
        fn = getattr(self.impl, name)

        def call(*args):
            n = torch.get_num_threads()
            if n == 1:
                return fn(*args)
            torch.set_num_threads(1)
            try:
                return fn(*args)
            finally:
                torch.set_num_threads(n)

        return call


def _is_cpp(loops) -> bool:
    return getattr(loops, "impl", loops) is not TorchLoops


def _loops(x: torch.Tensor):
    """The loop implementation for ``x``: compiled (CPU, float32/64, backend ``"cpp"``) or PyTorch."""
    cpu = x.device.type == "cpu"
    if cpu and x.dtype in (torch.float32, torch.float64) and get_backend() == "cpp":
        from . import kernels

        ops = kernels.load()
        if ops is not None:
            return _OneThread(ops)
    return _OneThread(TorchLoops) if cpu else TorchLoops


def surrogate_grad(surrogate, x: torch.Tensor, grad: torch.Tensor | None = None,
                   compiled: bool | None = None) -> torch.Tensor:
    """``grad · surrogate.derivative(x)`` (or the derivative alone).

    With ``compiled`` (default: whether the backend is ``"cpp"``) the built-in surrogates are
    evaluated in one pass by the C++ kernel (same formula, ~1 ulp); otherwise, and for any other
    surrogate, by the surrogate's own ``derivative``.
    """
    spec = surrogate.kernel_spec()
    if compiled is None:
        compiled = spec is not None and get_backend() == "cpp"
    if (compiled and spec is not None and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and (grad is None or (grad.dtype == x.dtype and grad.shape == x.shape))):
        from . import kernels

        ops = kernels.load()
        if ops is not None:
            return ops.surrogate_grad(x, grad, *spec)
    d = surrogate.derivative(x)
    return d if grad is None else grad * d


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


# --------------------------------------------------------------------------------------------
# LIF / PLIF
# --------------------------------------------------------------------------------------------
class _LIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, k, cfg, loops):
        decay_input, soft, v_reset, v_th, detach_reset, surrogate = cfg
        xin = x + v_reset if decay_input and v_reset else x
        H, M, vT = loops.lif_forward(xin, v0, k, decay_input, soft, v_reset, v_th)
        ctx.save_for_backward(xin, v0, k, H, M)
        ctx.cfg, ctx.loops = cfg, loops
        return M.to(x.dtype), vT

    @staticmethod
    @once_differentiable
    def backward(ctx, gS, gvT):
        xin, v0, k, H, M = ctx.saved_tensors
        decay_input, soft, v_reset, v_th, detach_reset, surrogate = ctx.cfg
        SG = surrogate_grad(surrogate, H - v_th, compiled=_is_cpp(ctx.loops))
        need_x, need_v0, need_k = ctx.needs_input_grad[:3]
        gx, gv0, gk = ctx.loops.lif_backward(gS.contiguous(), gvT.contiguous(), SG, H, M, xin, v0, k, decay_input,
                                             soft, v_reset, v_th, detach_reset, need_k)
        return (gx if need_x else None), (gv0 if need_v0 else None), \
            (gk.reshape(k.shape) if need_k else None), None, None


def lif(x, v0, k, v_threshold, v_reset, reset, detach_reset, decay_input, surrogate):
    """Fused LIF/PLIF over ``x [B, T, C]`` from ``v0 [B, C]``; ``k`` the decay ``1/τ`` (0-dim).

    Returns the spikes ``[B, T, C]`` and the final membrane ``[B, C]``.
    """
    cfg = (bool(decay_input), reset == "soft", float(v_reset), float(v_threshold), bool(detach_reset), surrogate)
    x = x.contiguous()  # once (DPSNN's SCNN output is a transposed view), not in forward and backward
    loops = _loops(x)
    if _needs_grad(x, v0, k):
        return _LIFFunction.apply(x, v0, k, cfg, loops)
    xin = x + v_reset if decay_input and v_reset else x
    _, M, vT = loops.lif_forward(xin, v0, k, cfg[0], cfg[1], cfg[2], cfg[3])
    return M.to(x.dtype), vT


# --------------------------------------------------------------------------------------------
# Leaky integrator
# --------------------------------------------------------------------------------------------
class _LeakyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, u0, beta, loops):
        U = loops.leaky_forward(x, u0, beta)
        ctx.save_for_backward(x, u0, beta, U)
        ctx.loops = loops
        return U

    @staticmethod
    @once_differentiable
    def backward(ctx, gU):
        x, u0, beta, U = ctx.saved_tensors
        G = ctx.loops.linear_scan(beta, gU.contiguous(), torch.zeros_like(u0))[:, :-1]  # dL/du_t
        gx = G * (1 - beta) if ctx.needs_input_grad[0] else None
        gu0 = G[:, 0] * beta if ctx.needs_input_grad[1] else None
        gb = _sum_prev(G, u0, U, x) if ctx.needs_input_grad[2] else None  # u = lerp(x, u', β)
        return gx, gu0, gb, None


def leaky(x, u0, beta):
    """Fused leaky integrator ``u ← β u + (1 − β) x`` over ``x [B, T, C]``; ``β [C]``.

    Returns ``u [B, T, C]`` and the final ``u [B, C]``.
    """
    loops = _loops(x)
    if _needs_grad(x, u0, beta):
        u = _LeakyFunction.apply(x, u0, beta, loops)
    else:
        u = loops.leaky_forward(x, u0, beta)
    return u, u[:, -1]


# --------------------------------------------------------------------------------------------
# ALIF, optionally with its recurrent matrix inside the loop
# --------------------------------------------------------------------------------------------
class _ALIFFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, c, W, alpha, rho, v0, eta0, s0, y0, cfg, loops):
        b0, beta, detach_reset, surrogate = cfg
        V, E, I, S, Z = loops.alif_forward(c, W, alpha, rho, b0, beta, v0, eta0, s0, y0)
        ctx.save_for_backward(I, W, alpha, rho, v0, eta0, s0, y0, V, E, S, Z)
        ctx.cfg, ctx.loops = cfg, loops
        return S, V[:, -1].clone(), E[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, gS, gvT, geT):
        I, W, alpha, rho, v0, eta0, s0, y0, V, E, S, Z = ctx.saved_tensors
        b0, beta, detach_reset, surrogate = ctx.cfg
        need = ctx.needs_input_grad
        SG = surrogate_grad(surrogate, Z, compiled=_is_cpp(ctx.loops))
        Wp = (1 - alpha)[:, None] * W if W is not None else None
        GI, ga, gr, gv0, ge0, gs0 = ctx.loops.alif_backward(
            gS.contiguous(), gvT.contiguous(), geT.contiguous(), SG, V, E, I, S, v0, eta0, s0, alpha, rho, b0,
            beta, Wp, detach_reset)
        gW = gy0 = None
        if W is not None and need[1]:  # I_t = c_t + y_{t−1} W^T, y_{t−1} = s_{t−1} for t ≥ 1
            gW = torch.bmm(GI[:, 1:].transpose(1, 2), S[:, :-1]).sum(0) + GI[:, 0].T @ y0
        if W is not None and need[7]:
            gy0 = GI[:, 0] @ W
        grads = (GI, gW, ga, gr, gv0, ge0, gs0, gy0)
        return tuple(g if n else None for g, n in zip(grads, need[:8])) + (None, None)


def alif(x, state, alpha, rho, b0, beta, detach_reset, surrogate, w_rec=None, y0=None):
    """Fused ALIF over ``x [B, T, C]`` with state ``(v, η, s_prev)``.

    With ``w_rec [C, C]`` the input current at step t is ``x_t + y_{t−1} w_rec^T`` where ``y`` are
    the ALIF's own spikes and ``y0`` the output before the first step (DPSNN's SRNN).
    ``alpha = σ(a)``, ``rho = σ(r)`` per neuron. Returns spikes ``[B, T, C]`` and the state.
    """
    v0, eta0, s0 = state
    if w_rec is not None and y0 is None:
        raise ValueError("the recurrent ALIF needs y0, the output before the first step")
    cfg = (float(b0), float(beta), bool(detach_reset), surrogate)
    loops = _loops(x)
    if _needs_grad(x, w_rec, alpha, rho, v0, eta0, s0, y0):
        s, vT, eT = _ALIFFunction.apply(x, w_rec, alpha, rho, v0, eta0, s0, y0, cfg, loops)
    else:
        V, E, _, s, _ = loops.alif_forward(x, w_rec, alpha, rho, cfg[0], cfg[1], v0, eta0, s0, y0)
        vT, eT = V[:, -1], E[:, -1]
    return s, (vT, eT, s[:, -1])


# --------------------------------------------------------------------------------------------
# Depthwise causal convolution (DPSNN's SCNN)
# --------------------------------------------------------------------------------------------
class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xc, weight, bias, loops):
        ctx.save_for_backward(xc, weight)
        ctx.loops = loops
        return torch.nn.functional.conv1d(xc, weight, bias, groups=xc.shape[1])

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        xc, weight = ctx.saved_tensors
        gx, gw = ctx.loops.dw_backward(gy.contiguous(), xc, weight)
        gb = gy.sum((0, 2)) if ctx.needs_input_grad[2] else None
        return gx, gw, gb, None


def depthwise_conv(xc, weight, bias):
    """``conv1d(xc, weight, bias, groups=C)`` (no padding) with a light hand-written backward.

    ``xc [Bt, C, L]``, ``weight [H, 1, K]`` (H a multiple of C), ``bias [H]`` → ``[Bt, H, L − K + 1]``.
    PyTorch's own backward of a depthwise convolution (and the unfold formulation) is several
    times slower on CPU than these ``K`` shifted multiply-adds.
    """
    if _needs_grad(xc, weight, bias):
        return _DepthwiseConv.apply(xc, weight, bias, _loops(xc))
    return torch.nn.functional.conv1d(xc, weight, bias, groups=xc.shape[1])
