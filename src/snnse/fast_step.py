"""A fast path for one streaming hop: :meth:`Enhancer.step` on one frame, without autograd.

A hop of DPSNN is six 256-wide matrix-vector products and a few dozen element-wise operations on
256 numbers; through the modules, most of its time is framework overhead (module calls, ~70
small operators, recomputed ``σ(w)`` decays, transposed weights, complex-real promotions in the
S4D recurrence, a dense DFT matrix for the STFT). A *plan* does the same arithmetic with fewer
operators on constants derived once from the weights:

* transposed, contiguous weight matrices for ``addmm``; decays ``σ(w)``, ``σ(a)``, ``σ(r)``;
  input offsets folded into biases;
* S4D: ``dA`` as a complex tensor, ``dB`` and ``2C`` as real views (no complex–real promotion);
* STFT front-end: ``rfft``/``irfft`` with the window and the overlap-add gain as vectors instead
  of the ``[2K, L]`` Fourier matrices (same transform, rounding of the FFT).

The plan is a pure function of the parameters and buffers: it holds no stream state (the state
is still passed in and returned, with the same structure as the module path). It is cached on the
model and rebuilt when any parameter or buffer changes: in place (optimizer step,
``load_state_dict``: version counter), by ``.data`` assignment or conversion (storage pointer,
dtype, device), or when a parameter, buffer or submodule is (re)assigned anywhere (a global
registration counter). The fast path is used only for one frame (``chunk [B, hop]``), with
autograd off, outside tracing/compilation (ONNX export sees the module path), for configurations
it knows (spiking DPSNN with ``H = B``, Spiking-S4 and its ANN twin, either front-end); anything
else takes the module path, which stays the reference. Spikes and outputs equal the module path
up to float rounding (``tests/test_fast_step.py``).

:func:`enabled` / :func:`set_enabled` / :func:`disabled` switch it (e.g. to time the module
path); the environment variable ``SNNSE_FAST_STEP=0`` disables it. When no activity is recorded,
on the CPU, the DPSNN plan (learned front-end) and the Spiking-S4 plan (LIF/PLIF units) call the
compiled steps of :mod:`snnse.fast_cpp` if those build (once, cached); :func:`set_compiled` or
``SNNSE_FAST_STEP=torch`` keep everything in PyTorch.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch.nn.modules import module as _module

from .state import StateSpec

_ENV = os.environ.get("SNNSE_FAST_STEP", "auto").lower()
_enabled = _ENV not in ("0", "false", "no", "off")
_compiled = _ENV not in ("torch",)  # the compiled DPSNN step of snnse.fast_cpp, when it builds
_generation = [0]  # bumped whenever any parameter, buffer or submodule is registered


def _bump(*_args):
    _generation[0] += 1


_module.register_module_parameter_registration_hook(_bump)
_module.register_module_buffer_registration_hook(_bump)
_module.register_module_module_registration_hook(_bump)


def enabled() -> bool:
    return _enabled


def set_enabled(flag: bool) -> None:
    global _enabled
    _enabled = bool(flag)
    _bump()  # a Streamer's compiled Hop stops too (snnse.streaming)


def compiled() -> bool:
    """Whether plans built from now on may use the compiled step (:mod:`snnse.fast_cpp`)."""
    return _compiled


def set_compiled(flag: bool) -> None:
    """Allow or forbid the compiled step; existing plans are rebuilt on their next use."""
    global _compiled
    _compiled = bool(flag)
    _bump()


@contextlib.contextmanager
def disabled():
    """Within the block, :meth:`Enhancer.step` takes the module path."""
    old = _enabled
    set_enabled(False)
    try:
        yield
    finally:
        set_enabled(old)


_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.jit.is_scripting() or _compiling()


class _Cache:
    """The plan and what it was built from. A copied or unpickled model gets an empty cache."""

    gen = -1  # never current: an empty cache is rebuilt on first use

    def __reduce__(self):
        return (_Cache, ())


def plan_for(model):
    """The cached plan of ``model`` (rebuilt if the weights changed), or None (module path)."""
    if not _enabled or _tracing():
        return None
    c = model.__dict__.get("_fast_step_cache")
    if c is not None and c.gen == _generation[0]:
        ts = c.tensors
        if [t._version for t in ts] == c.versions and [t.data_ptr() for t in ts] == c.ptrs:
            return c.plan
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.is_inference() for t in tensors):  # no version counter: cannot tell when they change
        return None
    c = _Cache()
    c.tensors, c.gen = tensors, _generation[0]
    c.versions, c.ptrs = [t._version for t in tensors], [t.data_ptr() for t in tensors]
    with torch.inference_mode(False), torch.no_grad():
        c.plan = build(model)
    model.__dict__["_fast_step_cache"] = c
    return c.plan


def watched(model) -> list:
    """The tensors whose version counters and storage :func:`plan_for` checks (what a plan is built from)."""
    c = model.__dict__.get("_fast_step_cache")
    return list(c.tensors) if c is not None else [*model.parameters(), *model.buffers()]


def generation() -> int:
    """A counter bumped whenever any parameter, buffer or submodule is registered anywhere."""
    return _generation[0]


def invalidate(model) -> None:
    model.__dict__.pop("_fast_step_cache", None)


def build(model):
    """A plan for ``model`` (an :class:`~snnse.models.base.Enhancer`), or None if unsupported."""
    from .models.dpsnn import DPSNNMasker
    from .models.spiking_s4 import SpikingS4Masker

    params = list(model.parameters())
    if not params or len({(p.dtype, p.device) for p in params}) != 1 or params[0].dtype not in _REAL:
        return None
    fe = _frontend_plan(model.frontend)
    if fe is None:
        return None
    if type(model.masker) is DPSNNMasker:
        from .fast_dpsnn import DPSNNPlan as Plan
    elif type(model.masker) is SpikingS4Masker:
        from .fast_s4 import S4Plan as Plan
    else:
        return None
    plan = Plan.build(fe, model.masker, params[0].dtype, params[0].device)
    if plan is not None:
        plan.dtype, plan.device = params[0].dtype, params[0].device
        state = model.initial_state(1, params[0].device, params[0].dtype)
        plan.spec = StateSpec({"frontend": state["frontend"], "masker": state["masker"]})
    return plan


class Plan:
    """What the plans share: the flat state of their compiled calls.

    Attributes:
        spec: The structure of the model's state without the level control
            (:class:`snnse.state.StateSpec`, set by :func:`build`); its flat order is the order of
            the compiled calls' state tensors.
    """

    spec: StateSpec

    def flatten_state(self, state) -> list[torch.Tensor]:
        """The state without the level control as the flat list of the compiled calls."""
        return self.spec.flatten(state)

    def unflatten_state(self, r, level=False) -> dict:
        """The state dict from ``r`` = the flat state (then ``d, past`` of the level control)."""
        return with_level_state(r, level, self.spec.unflatten)


_REAL = (torch.float32, torch.float64)


def _c(t: torch.Tensor) -> torch.Tensor:
    """A detached contiguous copy (constants never alias the parameters)."""
    return t.detach().clone().contiguous()


def lif_decay(unit):
    """``(decay, threshold)`` of a LIF/PLIF in its default form (``decay_input``, hard reset to 0),
    or None for any other configuration."""
    from .neurons import LIF

    if not isinstance(unit, LIF) or not unit.decay_input or unit.v_reset != 0.0 or unit.reset != "hard":
        return None
    return _c(unit.decay()), float(unit.v_threshold)


# ---- front-ends --------------------------------------------------------------------------------
class ConvFE:
    """Learned encoder/decoder on one frame ``[B, L]``."""

    def __init__(self, fe):
        self.hop, self.overlap = fe.hop, fe.overlap
        self.w_enc, self.b_enc = _c(fe.encoder.weight.T), _c(fe.encoder.bias)
        self.w_dec, self.b_dec = _c(fe.decoder.weight.T), _c(fe.decoder_bias)

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
        self.window = None if bool((w == 1).all()) else _c(w)
        # synthesis row 0 is w / (n_fft · gain): the window and the overlap-add gain per sample
        self.synth = _c(fe.synthesis_weight[0] * fe.frame_length)

    def analyze(self, frame):
        spec = torch.fft.rfft(frame if self.window is None else frame * self.window)
        r = torch.view_as_real(spec)
        return (r * r).sum(-1).add_(self.eps).sqrt_(), spec

    def synthesize(self, mask, spec):
        return torch.fft.irfft(spec * mask, n=self.n_fft).mul_(self.synth)

    def finalize(self, y):
        return y


def _frontend_plan(fe):
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
