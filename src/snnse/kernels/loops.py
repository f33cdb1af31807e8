"""The time loops of :mod:`snnse.fused` in PyTorch: the reference implementation of the kernels.

:class:`TorchLoops` and the compiled operators ``torch.ops.snnse_fused`` (see
:mod:`snnse.kernels`) have the same functions, arguments and results; :mod:`snnse.fused` calls
whichever the backend selects. Sequences are ``[B, T, C]`` (a step is the slice ``x[:, t]``).

The forward loops use exactly the operations of the units' ``step`` methods (so their outputs are
bit-identical to the per-step path). The backward functions take the surrogate derivative ``SG``
already evaluated at every step (any :class:`snnse.neurons.Surrogate`) and return the final
gradients; here everything that does not depend on the reverse recurrence is vectorised over
time, and the loop itself is one multiply-add per step (LIF/PLIF, leaky integrator) or a few
operations and one ``[B, C] × [C, C]`` product (recurrent ALIF).
"""

from __future__ import annotations

import torch


def _sum_prev(g, first, seq, cur=None):
    """``Σ_{b,t} g_t (p_t − cur_t)`` per channel, with ``p = [first, seq_0, …, seq_{T−2}]``.

    ``g``, ``seq``, ``cur`` are ``[B, T, C]``; without ``cur`` it is ``Σ g_t p_t``. The shifted
    sequence is never copied.
    """
    a = seq[:, :-1] if cur is None else seq[:, :-1] - cur[:, 1:]
    b = first if cur is None else first - cur[:, 0]
    return (g[:, 1:] * a).sum((0, 1)) + (g[:, 0] * b).sum(0)


class TorchLoops:
    """Time loops on ``[B, T, C]`` tensors in PyTorch operations."""

    # ---- LIF / PLIF --------------------------------------------------------------------------
    @staticmethod
    def lif_forward(x, v0, k, decay_input: bool, soft: bool, v_reset: float, v_th: float):
        """LIF charge/fire/reset; ``x`` already holds ``x + v_reset`` when ``decay_input``.

        Returns the pre-spike membrane ``H``, the spikes as a bool mask ``M`` and the final
        membrane.
        """
        H, M = [], []  # stacked once at the end (cheaper than a copy per step)
        omk = None if decay_input or v_reset else 1 - k
        vr = x.new_tensor(v_reset)
        v = v0
        for xt in x.unbind(1):
            if decay_input:
                h = torch.lerp(v, xt, k)
            elif v_reset:
                h = torch.lerp(v, vr, k) + xt
            else:
                h = v * omk + xt
            m = h >= v_th  # (h − θ ≥ 0) ⇔ (h ≥ θ) in IEEE arithmetic
            H.append(h)
            M.append(m)
            v = torch.where(m, h - v_th, h) if soft else h.masked_fill(m, v_reset)
        return torch.stack(H, 1), torch.stack(M, 1), v

    @staticmethod
    def lif_backward(gS, gvT, SG, H, M, xin, v0, k, decay_input: bool, soft: bool, v_reset: float,
                     v_th: float, detach_reset: bool, need_k: bool):
        """Gradients of :meth:`lif_forward`: ``(dL/dx, dL/dv0, dL/dk)`` (``dL/dk`` 0-dim, or
        undefined without ``need_k``), given ``dL/ds`` and ``dL/dv_T``."""
        if soft:  # dv/dh + [not detached] dv/ds · ds/dh
            fac = torch.ones_like(H) if detach_reset else 1 - v_th * SG
        else:
            fac = (~M).to(H.dtype)
            if not detach_reset:
                fac -= (H - v_reset) * SG
        Q = gS * SG  # direct gradient on h through the spike output
        omk = 1 - k
        G = TorchLoops.linear_scan(fac * omk, Q * omk, gvT)  # G[:, t] = dL/dv before step t
        GH = G[:, 1:] * fac + Q  # dL/dh per step
        gx = GH * k if decay_input else GH
        gk = None
        if need_k:  # h = lerp(v, x', k): dh/dk = x' − v;  h = v·(1 − k) + x: dh/dk = v_reset − v
            V = torch.where(M, H - v_th, H) if soft else H.masked_fill(M, v_reset)
            gk = -_sum_prev(GH, v0, V, xin).sum() if decay_input else \
                v_reset * GH.sum() - _sum_prev(GH, v0, V).sum()
        return gx, G[:, 0], gk

    @staticmethod
    def linear_scan(m, q, g_last):
        """Reverse recurrence ``G[:, T] = g_last``, ``G[:, t] = m[:, t]·G[:, t+1] + q[:, t]``.

        ``q [B, T, C]``; ``m`` the same shape, per channel ``[C]`` or a scalar. Returns
        ``G [B, T+1, C]``.
        """
        B, T = q.shape[:2]
        G = q.new_empty((B, T + 1) + tuple(q.shape[2:]))
        G[:, T] = g_last
        per_step = m.dim() == q.dim()
        for t in range(T - 1, -1, -1):
            G[:, t] = torch.addcmul(q[:, t], m[:, t] if per_step else m, G[:, t + 1])
        return G

    # ---- leaky integrator ----------------------------------------------------------------------
    @staticmethod
    def leaky_forward(x, u0, beta):
        """``u ← lerp(x, u, β)`` per step → ``U [B, T, C]``."""
        U, u = [], u0
        for xt in x.unbind(1):
            u = torch.lerp(xt, u, beta)
            U.append(u)
        return torch.stack(U, 1)

    # ---- ALIF ----------------------------------------------------------------------------------
    @staticmethod
    def alif_forward(c, W, alpha, rho, b0: float, beta: float, v0, eta0, s0, y0):
        """ALIF over ``c [B, T, C]``, input current ``c_t + y_{t−1} W^T`` when ``W`` is given.

        Returns ``V`` (membrane), ``E`` (adaptation η), ``I`` (input current; ``c`` itself
        without ``W``), ``S`` (spikes) and ``Z = V − θ`` (where the surrogate derivative is
        taken), all ``[B, T, C]``.
        """
        V, E, I, S, Z = [], [], [], [], []  # stacked once at the end
        Wt = W.t() if W is not None else None
        v, eta, s, y = v0, eta0, s0, (y0.contiguous() if W is not None else None)
        for ct in c.unbind(1):
            it = torch.addmm(ct, y, Wt) if W is not None else ct
            eta = torch.lerp(s, eta, rho)  # ρη + (1 − ρ)s
            theta = eta * beta + b0
            v = torch.lerp(it, v, alpha) - theta * s  # αv + (1 − α)I − θs
            s = (v >= theta).to(c.dtype)
            y = s
            for seq, a in ((V, v), (E, eta), (I, it), (S, s), (Z, v - theta)):
                seq.append(a)
        return (*(torch.stack(seq, 1) for seq in (V, E)), torch.stack(I, 1) if W is not None else c,
                *(torch.stack(seq, 1) for seq in (S, Z)))

    @staticmethod
    def alif_backward(gS, gvT, geT, SG, V, E, I, S, v0, eta0, s0, alpha, rho, b0: float, beta: float, Wp,
                      detach_reset: bool):
        """Gradients of :meth:`alif_forward` given ``dL/dS``, ``dL/dv_T``, ``dL/dη_T``.

        ``SG`` is the surrogate derivative at ``v − θ`` (``θ = β η + b0``),
        ``Wp = diag(1 − α) W`` (None without recurrence). Returns ``dL/dI`` (= ``dL/dc``),
        ``dL/dα``, ``dL/dρ`` (per neuron) and ``dL/dv0``, ``dL/dη0``, ``dL/ds0``; ``dL/dW`` and
        ``dL/dy0`` follow from ``dL/dI`` (one product each).
        """
        T = gS.shape[1]
        GV, GE = torch.empty_like(gS), torch.empty_like(gS)
        TH = E * beta + b0
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
        GI = GV * (1 - alpha)
        ga = _sum_prev(GV, v0, V, I)  # v = lerp(I, v', α)
        gr = _sum_prev(GE, eta0, E) - _sum_prev(GE, s0, S)  # η = lerp(s', η', ρ)
        gs0 = GE[:, 0] * omr
        if not detach_reset:
            gs0 = gs0 - TH[:, 0] * GV[:, 0]
        return GI, ga, gr, GV[:, 0] * alpha, GE[:, 0] * rho, gs0

    # ---- depthwise convolution -----------------------------------------------------------------
    @staticmethod
    def dw_backward(gy, xc, weight):
        """Backward of ``conv1d(xc, weight, groups=C)``: ``gy [Bt, H, T]`` → ``(dL/dxc, dL/dweight)``."""
        Bt, C, L = xc.shape
        H, _, K = weight.shape
        T, m = L - K + 1, H // C
        gy4, w3 = gy.view(Bt, C, m, T), weight.view(C, m, K)
        gx = xc.new_zeros(xc.shape)
        for k in range(K):  # x[t + k] feeds y[t] with weight w[k]
            if m == 1:
                gx[..., k : k + T].addcmul_(gy, weight[:, :, k])
            else:
                gx[..., k : k + T] += (gy4 * w3[:, :, k, None]).sum(2)
        gw = torch.stack([(gy4 * xc[:, :, None, k : k + T]).sum((0, 3)) for k in range(K)], -1)
        return gx, gw.view(H, 1, K)
