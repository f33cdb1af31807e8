"""The fast one-hop plan of DPSNN (see :mod:`snnse.fast_step`, which registers it for
:class:`~snnse.models.dpsnn.DPSNNMasker`).

Same arithmetic as :class:`~snnse.models.dpsnn.DPSNNMasker` on one frame, operation for
operation where that is free (so spikes and outputs agree with the module path to float
rounding): ``H(x − θ)`` is computed as ``x >= θ`` (equal in IEEE arithmetic), the PLIF hard
reset as a masked fill, the ALIF reset as one ``addcmul``, and the two SRNN biases are summed
once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import fast_cpp
from .fast_plan import ConvFE, Plan, const, level_args, lif_decay, run_frontend
from .models.dpsnn import DPSNNMasker
from .neurons import ALIF, LeakyIntegrator, Suppression, Threshold


class DPSNNPlan(Plan):
    @classmethod
    def build(cls, fe, masker: DPSNNMasker, dtype, device, compiled: bool = True):
        """The plan of ``masker`` after the front-end plan ``fe``, or None (not supported); with
        ``compiled``, the compiled step of :mod:`snnse.fast_cpp` where it applies and builds."""
        if type(masker.proj_unit) is not Threshold or type(masker.readout_unit) is not LeakyIntegrator \
                or type(masker.suppress) is not Suppression:
            return None
        blocks = []
        for b in masker.blocks:
            plif = lif_decay(b.scnn_unit)
            if plif is None or type(b.srnn_unit) is not ALIF or b.scnn.weight.shape[0] != b.channels:
                return None
            u = b.srnn_unit
            blocks.append((
                const(b.scnn.weight.view(b.channels, b.kernel)), const(b.scnn.bias), *plif,
                const(b.srnn_in.weight.T), const(b.srnn_in.bias + b.srnn_rec.bias), const(b.srnn_rec.weight.T),
                const(torch.sigmoid(u.a)), const(torch.sigmoid(u.r)), u.b0, u.beta,
            ))
        p = cls()
        p.fe, p.blocks = fe, tuple(blocks)
        p.suffix = [str(i) if len(blocks) > 1 else "" for i in range(len(blocks))]
        n = masker.norm
        p.norm = (n.normalized_shape, const(n.weight), const(n.bias), n.eps)
        p.w_proj, p.b_proj, p.th_proj = const(masker.proj.weight.T), const(masker.proj.bias), const(masker.proj_unit.threshold)
        p.w_ro, p.b_ro = const(masker.readout.weight.T), const(masker.readout.bias)
        p.beta_ro = const(torch.sigmoid(masker.readout_unit.b))
        p.th_sup = const(masker.suppress.threshold)
        p.w_mask, p.b_mask = const(masker.mask.weight.T), const(masker.mask.bias)
        p.ops = None
        if isinstance(fe, ConvFE) and device.type == "cpu" and compiled:
            p.ops = fast_cpp.load()
            p.cpp_w = [fe.w_enc, fe.b_enc, fe.w_dec, fe.b_dec, p.norm[1], p.norm[2], p.w_proj, p.b_proj, p.th_proj]
            p.cpp_f = [float(p.norm[3])]
            for w, bias, k, v_th, w_in, b_in, w_rec, alpha, rho, b0, beta in p.blocks:
                p.cpp_w += [w, bias, k, w_in, b_in, w_rec, alpha, rho]
                p.cpp_f += [v_th, b0, beta]
            p.cpp_w += [p.w_ro, p.b_ro, p.beta_ro, p.th_sup, p.w_mask, p.b_mask]
        return p

    def make_hop(self, state, level=None):
        """A ``torch.classes.snnse_step.Hop`` that continues from ``state`` (copied), or None."""
        if self.ops is None:
            return None
        lvl, lp = level_args(state, level)
        return torch.classes.snnse_step.Hop(0, self.cpp_w, self.cpp_f, self.flatten_state(state), lvl, lp,
                                            None, None, 0.0)

    def compiled_step(self, chunk, state, level=None):
        """The hop as one call of ``torch.ops.snnse_step.dpsnn_step`` (same state structure), with
        the input level control ``level`` (:class:`snnse.level_control.LevelControl`) fused in when given."""
        lvl, lp = level_args(state, level)
        r = self.ops.dpsnn_step(chunk, self.cpp_w, self.cpp_f, self.flatten_state(state), lvl, lp)
        return r[0], self.unflatten_state(r[1:], level is not None)

    def step(self, chunk, state, record=None, level=None):
        if self.ops is not None and record is None:
            return self.compiled_step(chunk, state, level)
        if level is not None:  # only the compiled call fuses the level control
            return None
        mstate = state["masker"]
        new_blocks = []

        def masker(feats):
            shape, g, b, eps = self.norm
            h = torch.addmm(self.b_proj, F.layer_norm(feats, shape, g, b, eps), self.w_proj)
            s = h >= self.th_proj  # bool spikes: the cat below converts them
            if record is not None:
                record["proj"] = s[:, None].to(h.dtype)
            outs = []
            for i, (blk, st) in enumerate(zip(self.blocks, mstate["blocks"])):
                w, bias, k, v_th, w_in, b_in, w_rec, alpha, rho, b0, beta = blk
                hist, (v1,), (v, eta, s_prev), y = st
                xc = torch.cat([hist, s[:, :, None]], -1)  # float (type promotion)
                # SCNN: depthwise conv over the window, then PLIF (hard reset to 0)
                v1 = torch.lerp(v1, (xc * w).sum(-1).add_(bias), k)
                fired = v1 >= v_th
                s1 = fired.to(v1.dtype)
                v1 = v1.masked_fill_(fired, 0.0)
                # SRNN: input and recurrent maps into ALIF
                cur = torch.addmm(torch.addmm(b_in, s1, w_in), y, w_rec)
                eta = torch.lerp(s_prev, eta, rho)
                theta = (eta * beta).add_(b0)
                v = torch.addcmul(torch.lerp(cur, v, alpha), theta, s_prev, value=-1)
                s = (v >= theta).to(v.dtype)
                if record is not None:
                    record["scnn" + self.suffix[i]], record["srnn" + self.suffix[i]] = s1[:, None], s[:, None]
                outs.append(s)
                new_blocks.append((xc[..., 1:], (v1,), (v, eta, s), s))
            r = torch.addmm(self.b_ro, outs[0] if len(outs) == 1 else torch.cat(outs, -1), self.w_ro)
            u = torch.lerp(r, mstate["readout"][0], self.beta_ro)
            new_blocks.append(u)
            a = u * (u >= self.th_sup)
            if record is not None:
                record["readout"] = a[:, None]
            return torch.addmm(self.b_mask, a, self.w_mask).sigmoid_()

        out, fstate = run_frontend(self.fe, chunk, state["frontend"], masker)
        u = new_blocks.pop()
        return out, {"frontend": fstate, "masker": {"blocks": tuple(new_blocks), "readout": (u,)}}
