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

The loops themselves come in two implementations with one interface: :class:`TorchLoops`
(PyTorch operations, any device) and the compiled C++ kernel of :mod:`snnse.kernels` (CPU, built
on first use, see there), which removes the per-operation dispatch cost. Internally sequences
keep the caller's batch-major layout ``[B, T, C]`` (a step is the strided slice ``x[:, t]``), so
that no transposed copies are made.

Backends (:func:`set_backend`, :func:`backend`, environment ``SNNSE_NEURON_BACKEND``):

* ``"autograd"``: today's per-step autograd path, kept as the test oracle;
* ``"fused"``: the autograd Functions with :class:`TorchLoops`;
* ``"cpp"``: the autograd Functions with the compiled loops (falls back to ``"fused"``, with one
  warning, when the kernel cannot be built);
* ``None`` / ``"auto"`` (default): ``"cpp"`` if the kernel builds, else ``"fused"``.

Without gradients the fused forward loop is used directly (no autograd node, nothing kept). One
frame (streaming, ``T = 1``) always goes through ``unit.step``. Nothing keeps state between calls.

Gradients follow the per-step graph exactly (same surrogate, detached or not reset, the reset
term's gradient reaching the threshold θ even when the reset is detached); only the order of
floating-point accumulation differs (float64 agreement ~1e-14).
"""

from __future__ import annotations

import contextlib
import os

import torch

BACKENDS = ("autograd", "fused", "cpp")
_backend: str | None = None


def set_backend(name: str | None) -> None:
    """Select the neuron time-loop backend: ``"autograd"``, ``"fused"``, ``"cpp"`` or None (auto)."""
    global _backend
    if name is not None and name != "auto" and name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {BACKENDS} or None")
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
    name = _backend or os.environ.get("SNNSE_NEURON_BACKEND") or "auto"
    if name == "autograd" or name == "fused":
        return name
    if name not in ("cpp", "auto"):
        raise ValueError(f"SNNSE_NEURON_BACKEND={name!r}; choose from {BACKENDS} or auto")
    from . import kernels

    return "cpp" if kernels.load() is not None else "fused"


def enabled() -> bool:
    """True when the fused paths are to be used (any backend but ``"autograd"``)."""
    return get_backend() != "autograd"


class _OneThread:
    """Calls the loops of ``impl`` with one intra-op thread (then restores the setting).

    A step is a few ``[B, C]`` operations and one ``[B, C] × [C, C]`` product: too small to share
    between threads, and on a busy machine every parallel region of a small product can wait
    milliseconds for a descheduled worker. (These products give the same bits on 1 or 2 threads.)
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


def _loops(device: torch.device):
    if device.type == "cpu" and get_backend() == "cpp":
        from . import kernels

        ops = kernels.load()
        if ops is not None:
            return _OneThread(ops)
    return _OneThread(TorchLoops) if device.type == "cpu" else TorchLoops


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _sum_prev(g, first, seq, cur=None, dims=(0, 1)):
    """``Σ_t g_t (p_t − cur_t)`` with the previous states ``p = [first, seq_0, …, seq_{T−2}]``.

    ``g``, ``seq``, ``cur`` are ``[B, T, C]``; without ``cur`` it is ``Σ g_t p_t``. No copy of the
    shifted sequence is made.
    """
    a = seq[:, :-1] if cur is None else seq[:, :-1] - cur[:, 1:]
    b = first if cur is None else first - cur[:, 0]
    return (g[:, 1:] * a).sum(dims) + (g[:, 0] * b).sum(dims[0])


# --------------------------------------------------------------------------------------------
# The loops (PyTorch reference implementation; snnse.kernels has the same functions in C++)
# --------------------------------------------------------------------------------------------
class TorchLoops:
    """Time loops on ``[B, T, C]`` tensors, with the exact operations of the units' ``step``."""

    @staticmethod
    def lif_forward(x, v0, k, decay_input: bool, soft: bool, v_reset: float, v_th: float):
        """LIF charge/fire/reset; ``x`` already holds ``x + v_reset`` when ``decay_input``.

        Returns the pre-spike membrane ``H``, the spikes as a bool mask and the final membrane.
        """
        H = torch.empty_like(x, memory_format=torch.contiguous_format)
        M = torch.empty(x.shape, dtype=torch.bool, device=x.device)
        omk = None if decay_input or v_reset else 1 - k
        vr = x.new_tensor(v_reset)
        v = v0
        for t in range(x.shape[1]):
            xt = x[:, t]
            if decay_input:
                h = torch.lerp(v, xt, k)
            elif v_reset:
                h = torch.lerp(v, vr, k) + xt
            else:
                h = v * omk + xt
            m = h >= v_th  # (h − θ ≥ 0) ⇔ (h ≥ θ) in IEEE arithmetic
            H[:, t], M[:, t] = h, m
            v = torch.where(m, h - v_th, h) if soft else h.masked_fill(m, v_reset)
        return H, M, v

    @staticmethod
    def linear_scan(m, q, g_last):
        """Reverse recurrence ``G[:, T] = g_last``, ``G[:, t] = m[:, t]·G[:, t+1] + q[:, t]``.

        ``q [B, T, C]``; ``m`` the same shape or per channel ``[C]``. Returns ``G [B, T+1, C]``.
        """
        B, T = q.shape[:2]
        G = q.new_empty((B, T + 1) + tuple(q.shape[2:]))
        G[:, T] = g_last
        per_step = m.dim() == q.dim()
        for t in range(T - 1, -1, -1):
            G[:, t] = torch.addcmul(q[:, t], m[:, t] if per_step else m, G[:, t + 1])
        return G

    @staticmethod
    def leaky_forward(x, u0, beta):
        """``u ← lerp(x, u, β)`` per step → ``U [B, T, C]``."""
        U = torch.empty_like(x, memory_format=torch.contiguous_format)
        u = u0
        for t in range(x.shape[1]):
            u = torch.lerp(x[:, t], u, beta)
            U[:, t] = u
        return U

    @staticmethod
    def alif_forward(c, W, alpha, rho, b0: float, beta: float, v0, eta0, s0, y0):
        """ALIF over ``c [B, T, C]``, input current ``c_t + y_{t−1} W^T`` when ``W`` is given.

        Returns ``V`` (membrane), ``E`` (adaptation η), ``I`` (input current; ``c`` itself
        without ``W``) and ``S`` (spikes), all ``[B, T, C]``.
        """
        new = dict(memory_format=torch.contiguous_format)
        V, E, S = torch.empty_like(c, **new), torch.empty_like(c, **new), torch.empty_like(c, **new)
        I = torch.empty_like(c, **new) if W is not None else c
        Wt = W.t() if W is not None else None
        v, eta, s, y = v0, eta0, s0, (y0.contiguous() if W is not None else None)
        for t in range(c.shape[1]):
            if W is not None:
                it = torch.addmm(c[:, t], y, Wt)
                I[:, t] = it
            else:
                it = c[:, t]
            eta = torch.lerp(s, eta, rho)  # ρη + (1 − ρ)s
            theta = eta * beta + b0
            v = torch.lerp(it, v, alpha) - theta * s  # αv + (1 − α)I − θs
            s = (v >= theta).to(c.dtype)
            y = s
            V[:, t], E[:, t], S[:, t] = v, eta, s
        return V, E, I, S

    @staticmethod
    def alif_backward(gS, SG, TH, S, s0, alpha, rho, beta: float, Wp, detach_reset: bool, gvT, geT):
        """Reverse loop of :meth:`alif_forward`: returns ``GV`` (dL/dv_t) and ``GE`` (dL/dη_t).

        ``SG`` surrogate derivative at ``v − θ``, ``TH`` thresholds, ``S`` spikes (``s0`` before
        the first step), ``Wp = diag(1 − α) W`` (None without recurrence), all ``[B, T, C]``.
        """
        T = gS.shape[1]
        GV, GE = torch.empty_like(gS), torch.empty_like(gS)
        omr = 1 - rho
        gv = ge = None
        for t in range(T - 1, -1, -1):
            if t == T - 1:
                gs = gS[:, t]
            else:  # gradient on s_t through step t+1: η, reset, recurrent current
                gs = torch.addcmul(gS[:, t], omr, ge)
                if not detach_reset:
                    gs = gs.addcmul_(TH[:, t + 1], gv, value=-1)
                if Wp is not None:
                    gs = torch.addmm(gs, gv, Wp)
            gz = gs * SG[:, t]
            if t == T - 1:  # the final state's gradients enter directly
                gv, ge = gz + gvT, geT.clone()
            else:  # through α·v_t and ρ·η_t of step t+1
                gv, ge = torch.addcmul(gz, alpha, gv), rho * ge
            ge.add_(gz, alpha=-beta).addcmul_(gv, S[:, t - 1] if t else s0, value=-beta)
            GV[:, t], GE[:, t] = gv, ge
        return GV, GE


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
    def backward(ctx, gS, gvT):
        xin, v0, k, H, M = ctx.saved_tensors
        decay_input, soft, v_reset, v_th, detach_reset, surrogate = ctx.cfg
        SG = surrogate.derivative(H - v_th)
        if soft:  # dv/dh + [not detached] dv/ds · ds/dh
            fac = torch.ones_like(H) if detach_reset else 1 - v_th * SG
        else:
            fac = (~M).to(H.dtype)
            if not detach_reset:
                fac -= (H - v_reset if v_reset else H) * SG
        Q = gS * SG  # direct gradient on h through the spike output
        omk = 1 - k
        G = ctx.loops.linear_scan(fac * omk, Q * omk, gvT.contiguous())  # G[:, t] = dL/dv before step t
        gx = gk = gv0 = None
        need_x, need_v0, need_k = ctx.needs_input_grad[:3]
        if need_x or need_k:
            GH = G[:, 1:] * fac + Q  # dL/dh per step
            if need_x:
                gx = GH * k if decay_input else GH
            if need_k:  # h = lerp(v, x', k): dh/dk = x' − v;  h = v·(1 − k) + x: dh/dk = v_reset − v
                V = torch.where(M, H - v_th, H) if soft else H.masked_fill(M, v_reset)
                gk = -_sum_prev(GH, v0, V, xin).sum() if decay_input else \
                    v_reset * GH.sum() - _sum_prev(GH, v0, V).sum()
                gk = gk.reshape(k.shape)
        if need_v0:
            gv0 = G[:, 0]
        return gx, gv0, gk, None, None


def lif(x, v0, k, v_threshold, v_reset, reset, detach_reset, decay_input, surrogate):
    """Fused LIF/PLIF over ``x [B, T, C]`` from ``v0 [B, C]``; ``k`` the decay ``1/τ`` (0-dim).

    Returns the spikes ``[B, T, C]`` and the final membrane ``[B, C]``.
    """
    cfg = (bool(decay_input), reset == "soft", float(v_reset), float(v_threshold), bool(detach_reset), surrogate)
    loops = _loops(x.device)
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
    loops = _loops(x.device)
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
        V, E, I, S = loops.alif_forward(c, W, alpha, rho, b0, beta, v0, eta0, s0, y0)
        ctx.save_for_backward(I, W, alpha, rho, v0, eta0, s0, y0, V, E, S)
        ctx.cfg, ctx.loops = cfg, loops
        return S, V[:, -1].clone(), E[:, -1].clone()

    @staticmethod
    def backward(ctx, gS, gvT, geT):
        I, W, alpha, rho, v0, eta0, s0, y0, V, E, S = ctx.saved_tensors
        b0, beta, detach_reset, surrogate = ctx.cfg
        need = ctx.needs_input_grad
        TH = E * beta + b0
        SG = surrogate.derivative(V - TH)
        Wp = (1 - alpha)[:, None] * W if W is not None else None
        GV, GE = ctx.loops.alif_backward(gS.contiguous(), SG, TH, S, s0, alpha, rho, beta, Wp, detach_reset,
                                         gvT.contiguous(), geT.contiguous())
        GI = GV * (1 - alpha)
        gW = ga = gr = gv0 = ge0 = gs0 = gy0 = None
        if W is not None and need[1]:  # I_t = c_t + y_{t−1} W^T, y_{t−1} = s_{t−1} for t ≥ 1
            gW = torch.bmm(GI[:, 1:].transpose(1, 2), S[:, :-1]).sum(0) + GI[:, 0].T @ y0
        if need[2]:  # v = lerp(I, v', α)
            ga = _sum_prev(GV, v0, V, I)
        if need[3]:  # η = lerp(s', η', ρ)
            gr = _sum_prev(GE, eta0, E) - _sum_prev(GE, s0, S)
        if need[4]:
            gv0 = GV[:, 0] * alpha
        if need[5]:
            ge0 = GE[:, 0] * rho
        if need[6]:
            gs0 = GE[:, 0] * (1 - rho)
            if not detach_reset:
                gs0 = gs0 - TH[:, 0] * GV[:, 0]
        if W is not None and need[7]:
            gy0 = GI[:, 0] @ W
        return GI, gW, ga, gr, gv0, ge0, gs0, gy0, None, None


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
    loops = _loops(x.device)
    if _needs_grad(x, w_rec, alpha, rho, v0, eta0, s0, y0):
        s, vT, eT = _ALIFFunction.apply(x, w_rec, alpha, rho, v0, eta0, s0, y0, cfg, loops)
    else:
        V, E, _, s = loops.alif_forward(x, w_rec, alpha, rho, cfg[0], cfg[1], v0, eta0, s0, y0)
        vT, eT = V[:, -1], E[:, -1]
    return s, (vT, eT, s[:, -1])


# --------------------------------------------------------------------------------------------
# Depthwise causal convolution (DPSNN's SCNN)
# --------------------------------------------------------------------------------------------
class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xc, weight, bias):
        ctx.save_for_backward(xc, weight)
        return torch.nn.functional.conv1d(xc, weight, bias, groups=xc.shape[1])

    @staticmethod
    def backward(ctx, gy):
        xc, weight = ctx.saved_tensors
        Bt, C, L = xc.shape
        H, _, K = weight.shape
        T, m = L - K + 1, H // C
        gy = gy.contiguous()
        gy4, w3 = gy.view(Bt, C, m, T), weight.view(C, m, K)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:  # x[t + k] feeds y[t] with weight w[k]
            gx = xc.new_zeros(xc.shape)
            for k in range(K):
                if m == 1:
                    gx[..., k : k + T].addcmul_(gy, weight[:, :, k])
                else:
                    gx[..., k : k + T] += (gy4 * w3[:, :, k, None]).sum(2)
        if ctx.needs_input_grad[1]:
            gw = torch.stack([(gy4 * xc[:, :, None, k : k + T]).sum((0, 3)) for k in range(K)], -1)
            gw = gw.view(H, 1, K)
        if ctx.needs_input_grad[2]:
            gb = gy.sum((0, 2))
        return gx, gw, gb


def depthwise_conv(xc, weight, bias):
    """``conv1d(xc, weight, bias, groups=C)`` (no padding) with a light hand-written backward.

    ``xc [Bt, C, L]``, ``weight [H, 1, K]`` (H a multiple of C), ``bias [H]`` → ``[Bt, H, L − K + 1]``.
    PyTorch's own backward of a depthwise convolution (and the unfold formulation) is several
    times slower on CPU than these ``K`` shifted multiply-adds.
    """
    if _needs_grad(xc, weight, bias):
        return _DepthwiseConv.apply(xc, weight, bias)
    return torch.nn.functional.conv1d(xc, weight, bias, groups=xc.shape[1])
