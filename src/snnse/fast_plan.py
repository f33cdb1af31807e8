"""The building blocks of the fast one-hop plans (see :mod:`snnse.fast_step`).

What :mod:`snnse.fast_dpsnn` and :mod:`snnse.fast_s4` share: the :class:`Plan` base (the flat
state of the compiled calls), the one-frame front-ends (:class:`ConvFE`, :class:`STFTFE`), the
constants helpers (:func:`const`, :func:`lif_decay`) and the front-end round of a hop
(:func:`run_frontend`). It imports no model module and no plan: :mod:`snnse.fast_step` imports
the plans, which import this.
"""

from __future__ import annotations

import torch

from .state import StateSpec


class Plan:
    """What the plans share: the flat state of their compiled calls.

    Attributes:
        spec: The structure of the model's state without the level control
            (:class:`snnse.state.StateSpec`, set by :func:`snnse.fast_step.build`); its flat order is the order of
            the compiled calls' state tensors.
    """

    spec: StateSpec

    def flatten_state(self, state) -> list[torch.Tensor]:
        """The state without the level control as the flat list of the compiled calls."""
        return self.spec.flatten(state)

    def unflatten_state(self, r, level=False) -> dict:
        """The state dict from ``r`` = the flat state (then ``d, past`` of the level control)."""
        return with_level_state(r, level, self.spec.unflatten)


def const(t: torch.Tensor) -> torch.Tensor:
    """A detached contiguous copy (constants never alias the parameters)."""
    return t.detach().clone().contiguous()


def lif_decay(unit):
    """``(decay, threshold)`` of a LIF/PLIF in its default form (``decay_input``, hard reset to 0),
    or None for any other configuration."""
    from .neurons import LIF

    if not isinstance(unit, LIF) or not unit.decay_input or unit.v_reset != 0.0 or unit.reset != "hard":
        return None
    return const(unit.decay()), float(unit.v_threshold)


# ---- front-ends --------------------------------------------------------------------------------
class ConvFE:
    """Learned encoder/decoder on one frame ``[B, L]``."""

    def __init__(self, fe):
        self.hop, self.overlap = fe.hop, fe.overlap
        self.w_enc, self.b_enc = const(fe.encoder.weight.T), const(fe.encoder.bias)
        self.w_dec, self.b_dec = const(fe.decoder.weight.T), const(fe.decoder_bias)

    def analyze(self, frame):
        w = torch.addmm(self.b_enc, frame, self.w_enc).relu_()
        return w, w

    def synthesize(self, mask, ctx):
        return torch.mm(ctx * mask, self.w_dec)

    def finalize(self, y):
        return y + self.b_dec


class STFTFE:
    """STFT/iSTFT on one frame with ``rfft``/``irfft`` (the front-end's matrices are this transform)."""

    def __init__(self, fe):
        self.hop, self.overlap, self.n_fft, self.eps = fe.hop, fe.overlap, fe.frame_length, fe.eps
        a = fe.analysis_weight
        w = a[0]  # row k = 0: cos(0)·w = the analysis window
        self.window = None if bool((w == 1).all()) else const(w)
        # synthesis row 0 is w / (n_fft · gain): the window and the overlap-add gain per sample
        self.synth = const(fe.synthesis_weight[0] * fe.frame_length)

    def analyze(self, frame):
        spec = torch.fft.rfft(frame if self.window is None else frame * self.window)
        r = torch.view_as_real(spec)
        return (r * r).sum(-1).add_(self.eps).sqrt_(), spec

    def synthesize(self, mask, spec):
        return torch.fft.irfft(spec * mask, n=self.n_fft).mul_(self.synth)

    def finalize(self, y):
        return y


def frontend_plan(fe):
    from .frontends import ConvFrontend, STFTFrontend

    if type(fe) is ConvFrontend:
        return ConvFE(fe)
    if type(fe) is STFTFrontend:
        return STFTFE(fe)
    return None


def level_args(state, level):
    """The compiled calls' level-control arguments: ``([d, past], params)``, or ``([], [])`` without one."""
    return (list(state["level"]), level.params) if level is not None else ([], [])


def with_level_state(r, level, unflatten):
    """The state dict from a compiled call's flat state ``r``: ``unflatten(r)``, plus ``"level"`` from
    the last two tensors when ``level`` (the level control's ``d, past``)."""
    if not level:
        return unflatten(r)
    return {"level": (r[-2], r[-1]), **unflatten(r[:-2])}


def run_frontend(fe, chunk, state, analyze_mask):
    """Frame ``chunk [B, hop]`` with the history, analyse, mask (``analyze_mask(feats) -> mask``),
    synthesise and overlap-add. Returns ``(out [B, hop], (history, pending))``."""
    hist, pending = state
    buf = torch.cat([hist, chunk], 1)
    feats, ctx = fe.analyze(buf)
    y = fe.synthesize(analyze_mask(feats), ctx)
    ov, hop = fe.overlap, fe.hop
    if ov == hop:  # the pending half is all that overlaps the samples now final
        return fe.finalize(y[:, :hop] + pending), (buf[:, hop:], y[:, hop:])
    if ov:
        y[:, :ov].add_(pending)
    return fe.finalize(y[:, :hop]), (buf[:, hop:], y[:, hop:])
