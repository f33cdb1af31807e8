"""The fast one-hop plan of Spiking-S4 (see :mod:`snnse.fast_step`, which registers it for
:class:`~snnse.models.spiking_s4.SpikingS4Masker`).

Same arithmetic as :class:`~snnse.models.spiking_s4.SpikingS4Masker` on one frame. The S4D
recurrence ``x ← dA·x + dB·u``, ``y = 2 Re Σ C x + D u`` keeps its complex state; ``dB·u`` is
added on the real view (no promotion of ``u`` to complex) and ``2 Re Σ C x`` is one real
multiply-sum with ``(2 Re C, −2 Im C)`` interleaved. The input offset is folded into the
encoder bias. Outputs equal the module path up to float rounding. With LIF/PLIF units and no
record, the masker runs as one compiled call (:mod:`snnse.fast_cpp`) when that builds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import fast_cpp
from .fast_plan import STFTFE, Plan, const, level_args, lif_decay, run_frontend
from .models.spiking_s4 import SpikingS4Masker
from .neurons import Activation
from .ssm import S4D


class S4Plan(Plan):
    @classmethod
    def build(cls, fe, masker: SpikingS4Masker, dtype, device, compiled: bool = True):
        """The plan of ``masker`` after the front-end plan ``fe``, or None (not supported); with
        ``compiled``, the compiled masker of :mod:`snnse.fast_cpp` where it applies and builds."""
        layers = []
        for layer in masker.layers:
            if type(layer.s4) is not S4D:
                return None
            unit = lif_decay(layer.unit)
            if unit is None:
                if type(layer.unit) is not Activation:
                    return None
                unit = (Activation.FUNCTIONS[layer.unit.kind], None)
            _, dA, dB, C = layer.s4._discretize()
            c2 = torch.view_as_real(C) * torch.tensor([2.0, -2.0], dtype=dtype, device=device)
            n = layer.norm
            layers.append((
                const(dA), const(torch.view_as_real(dB).flatten(-2)), const(c2.flatten(-2)), const(layer.s4.D),
                const(layer.emission.weight.T), const(layer.emission.bias), *unit,
                n.normalized_shape, const(n.weight), const(n.bias), n.eps,
            ))
        p = cls()
        p.fe, p.layers = fe, tuple(layers)
        w = masker.encoder.weight
        p.w_enc, p.b_enc = const(w.T), const(masker.encoder.bias - masker.input_offset * w.sum(1))
        p.w_dec, p.b_dec = const(masker.decoder.weight.T), const(masker.decoder.bias + 1.0)
        p.ops = None
        if device.type == "cpu" and compiled and all(layer[7] is not None for layer in layers):
            p.ops = fast_cpp.load()
            p.cpp_w, p.cpp_f = [p.w_enc, p.b_enc], []
            p.cpp_w_hop = [p.w_enc, p.b_enc]  # the same, with the S4D constants mode-major for the Hop
            for dA, dB, c2, D, w_em, b_em, k, v_th, _, g, b, eps in layers:
                # the S4D constants of a channel as unit-stride rows: Re dA, Im dA, Re dB, Im dB, 2 Re C, -2 Im C
                s4d = torch.stack([torch.view_as_real(dA).movedim(-1, 1), dB.view(dB.shape[0], -1, 2).movedim(-1, 1),
                                   c2.view(c2.shape[0], -1, 2).movedim(-1, 1)], 1)
                p.cpp_w += [const(s4d.flatten(1, 2)), D, w_em, b_em, k, g, b]
                p.cpp_f += [v_th, float(eps)]
                p.cpp_w_hop += [const(s4d.flatten(1, 2).permute(1, 2, 0)), D, w_em, b_em, k, g, b]  # [6, M, D]
            p.cpp_w += [p.w_dec, p.b_dec]
            p.cpp_w_hop += [p.w_dec, p.b_dec]
        return p

    def compiled_masker(self, feats, mstate, new_state, stft=False):
        """The masker as one call of ``torch.ops.snnse_step.s4_masker``; with ``stft``, ``feats`` is the
        complex spectrum and the result the masked spectrum."""
        flat = [t for xs, (v,) in mstate for t in (xs, v)]
        r = self.ops.s4_masker(feats, self.cpp_w, self.cpp_f, flat, stft, self.fe.eps if stft else 0.0)
        new_state.extend((r[i], (r[i + 1],)) for i in range(1, len(r), 2))
        return r[0]

    def make_hop(self, state, level=None):
        """A ``torch.classes.snnse_step.Hop`` (STFT front-end) that continues from ``state`` (copied), or None."""
        if self.ops is None or not isinstance(self.fe, STFTFE) or not state["masker"][0][0].is_complex():
            return None
        fe = self.fe
        lvl, lp = level_args(state, level)
        return torch.classes.snnse_step.Hop(1, self.cpp_w_hop, self.cpp_f, self.flatten_state(state), lvl, lp,
                                            fe.window, fe.synth, float(fe.eps))

    def compiled_stft_step(self, chunk, state, level=None):
        """The whole hop with the STFT front-end as one call of ``torch.ops.snnse_step.s4_stft_step``,
        with the input level control ``level`` fused in when given."""
        fe, (hist, pending, *flat) = self.fe, self.flatten_state(state)
        lvl, lp = level_args(state, level)
        r = self.ops.s4_stft_step(chunk, hist, pending, fe.window, fe.synth, self.cpp_w, self.cpp_f, flat, fe.eps,
                                  lvl, lp)
        return r[0], self.unflatten_state(r[1:], level is not None)

    def step(self, chunk, state, record=None, level=None):
        mstate = state["masker"]
        if not mstate[0][0].is_complex():  # e.g. a real-valued state of an export wrapper
            return None
        if level is not None:  # only the compiled STFT call fuses the level control
            if self.ops is None or record is not None or not isinstance(self.fe, STFTFE):
                return None
            return self.compiled_stft_step(chunk, state, level)
        new_state = []
        if self.ops is not None and record is None:
            if isinstance(self.fe, STFTFE):
                return self.compiled_stft_step(chunk, state)
            out, fstate = run_frontend(self.fe, chunk, state["frontend"],
                                       lambda feats: self.compiled_masker(feats, mstate, new_state))
            return out, {"frontend": fstate, "masker": tuple(new_state)}

        def masker(feats):
            x = torch.addmm(self.b_enc, feats, self.w_enc)
            for i, (layer, (xs, ustate)) in enumerate(zip(self.layers, mstate)):
                dA, dB, c2, D, w_em, b_em, k, v_th, shape, g, b, eps = layer
                # S4D: x ← dA·x + dB·u ;  y = 2 Re Σ C x + D u
                xs = dA * xs
                xr = torch.view_as_real(xs).flatten(-2)  # [B, H, 2M] view: (re, im) interleaved
                xr.addcmul_(dB, x[:, :, None])
                y = torch.addcmul((xr * c2).sum(-1), D, x)
                cur = torch.addmm(b_em, y, w_em)
                if v_th is None:  # ANN twin: a stateless activation (k is the function)
                    s = k(cur)
                else:
                    v = torch.lerp(ustate[0], cur, k)
                    s = v >= v_th  # bool spikes: the residual add converts them
                    ustate = (v.masked_fill_(s, 0.0),)
                if record is not None:
                    record[f"s4_{i}"] = s[:, None].to(x.dtype)
                x = F.layer_norm(x + s, shape, g, b, eps)
                new_state.append((xs, ustate))
            return torch.addmm(self.b_dec, x, self.w_dec).relu_()

        out, fstate = run_frontend(self.fe, chunk, state["frontend"], masker)
        return out, {"frontend": fstate, "masker": tuple(new_state)}
