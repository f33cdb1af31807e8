"""Spiking units with explicit state, their surrogate gradients, and ANN stand-ins.

Every unit follows the project's state convention:

* ``initial_state(batch, device=None, dtype=None)`` returns a tuple of tensors ``[B, C]``;
* ``step(x[B, C], state) -> (y[B, C], state)`` advances one time step;
* ``forward(x[B, T, C], state=None) -> (y[B, T, C], state)`` runs a whole sequence.

No module keeps membrane state between calls. Two implementations of the time loop give the same
spikes and gradients: :func:`_scan`, which calls the neuron's pure ``step`` per frame and records
an autograd graph per step (the reference, backend ``"autograd"``), and the fused loops of
:mod:`snnse.fused` (one autograd node per sequence with a hand-written backward, optionally a
compiled C++ kernel), used by default for LIF, PLIF, ALIF (also with DPSNN's recurrent matrix
inside the loop, :meth:`ALIF.recurrent`) and the leaky integrator. Select with the one backend
switch, ``SNNSE_BACKEND`` / ``snnse.set_backend("reference" | "torch" | "cpp")`` (training and
streaming, :mod:`snnse.backends`), or for training only with
``snnse.neurons.backend("autograd" | "fused" | "cpp")`` (context manager, the old names of the
same tiers) or :func:`set_backend`.
``step`` (streaming, one frame) is the same in every backend.

Surrogate gradients replace the derivative of the Heaviside step ``H(x) = 1[x >= 0]`` in the
backward pass (Neftci et al., 2019). ``spike(x, surrogate)`` is exactly ``H(x)`` in the forward
pass.

References:
    Fang et al., "Incorporating learnable membrane time constant to enhance learning of spiking
    neural networks", ICCV 2021 (PLIF). Yin et al., "Accurate and efficient time-domain
    classification with adaptive spiking recurrent neural networks", Nat. Mach. Intell. 2021
    (ALIF, multi-Gaussian surrogate). Sun & Bohté, "DPSNN", Neuromorph. Comput. Eng. 2024.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import fused
from .fused import backend, get_backend, set_backend  # noqa: F401  (public API)

State = tuple[torch.Tensor, ...]


# --------------------------------------------------------------------------------------------
# Surrogate gradients
# --------------------------------------------------------------------------------------------
class Surrogate(nn.Module):
    """Base class: ``derivative(x)`` is the pseudo-derivative used for ``dH/dx``.

    ``kernel_spec()`` names the built-in formulas that the compiled kernel of
    :mod:`snnse.kernels` also evaluates (a subclass without one always uses ``derivative``).
    """

    def derivative(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def kernel_spec(self) -> tuple | None:
        """``(kind, a, b, c)`` of the compiled formula, or None."""
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spike(x, self)


class ATan(Surrogate):
    """``g'(x) = (α/2) / (1 + (π α x / 2)²)``; α = 2 in PLIF and Spiking-S4."""

    def __init__(self, alpha: float = 2.0):
        super().__init__()
        self.alpha = float(alpha)

    def derivative(self, x):
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x) ** 2)

    def kernel_spec(self):
        return (0, self.alpha, 0.0, 0.0) if type(self) is ATan else None

    def extra_repr(self):
        return f"alpha={self.alpha}"


class Sigmoid(Surrogate):
    """``g'(x) = α σ(αx)(1 − σ(αx))``."""

    def __init__(self, alpha: float = 4.0):
        super().__init__()
        self.alpha = float(alpha)

    def derivative(self, x):
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1 - s)

    def kernel_spec(self):
        return (1, self.alpha, 0.0, 0.0) if type(self) is Sigmoid else None

    def extra_repr(self):
        return f"alpha={self.alpha}"


def _normal_pdf(x, mu, sigma):
    return torch.exp(-((x - mu) ** 2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)


class MultiGaussian(Surrogate):
    """``γ[(1+h)·N(x; 0, σ) − h·N(x; σ, 6σ) − h·N(x; −σ, 6σ)]`` (Yin et al., 2021)."""

    def __init__(self, sigma: float = 0.5, h: float = 0.15, gamma: float = 0.5):
        super().__init__()
        self.sigma, self.h, self.gamma = float(sigma), float(h), float(gamma)

    def derivative(self, x):
        s, h = self.sigma, self.h
        if torch.is_grad_enabled() and x.requires_grad:  # differentiable (double backward)
            return self.gamma * (
                (1 + h) * _normal_pdf(x, 0.0, s) - h * _normal_pdf(x, s, 6 * s) - h * _normal_pdf(x, -s, 6 * s)
            )
        # the same sum with 3 temporaries instead of ~20 (the backward of every DPSNN layer calls this)
        c0 = self.gamma * (1 + h) / (math.sqrt(2 * math.pi) * s)
        c1 = self.gamma * h / (math.sqrt(2 * math.pi) * 6 * s)
        out = x.square().mul_(-0.5 / s**2).exp_().mul_(c0)
        wide = (x - s).square_().mul_(-0.5 / (6 * s) ** 2).exp_()
        wide += (x + s).square_().mul_(-0.5 / (6 * s) ** 2).exp_()
        return out.sub_(wide, alpha=c1)

    def kernel_spec(self):
        return (2, self.sigma, self.h, self.gamma) if type(self) is MultiGaussian else None

    def extra_repr(self):
        return f"sigma={self.sigma}, h={self.h}, gamma={self.gamma}"


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, surrogate):
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        ctx.compiled = fused.get_backend() == "cpp"  # decided with the forward, like the fused units
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return fused.surrogate_grad(ctx.surrogate, x, grad, compiled=ctx.compiled), None


def spike(x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
    """Heaviside ``1[x >= 0]`` whose gradient is ``surrogate.derivative(x)``."""
    if x.requires_grad and torch.is_grad_enabled():
        return _Spike.apply(x, surrogate)
    return (x >= 0).to(x.dtype)  # inference: skip the autograd machinery


SURROGATES = {"atan": ATan, "sigmoid": Sigmoid, "multi_gaussian": MultiGaussian}


def make_surrogate(spec: str | Surrogate) -> Surrogate:
    if isinstance(spec, Surrogate):
        return spec
    try:
        return SURROGATES[spec]()
    except KeyError:
        raise ValueError(f"unknown surrogate {spec!r}; choose from {sorted(SURROGATES)}") from None


# --------------------------------------------------------------------------------------------
# Stateful units
# --------------------------------------------------------------------------------------------
def _scan(unit: "Unit", x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
    """The time loop shared by all recurrent units: ``unit.step`` over ``x[B, T, C]``."""
    if state is None:
        state = unit.initial_state(x.shape[0], x.device, x.dtype)
    if x.shape[1] == 1:  # streaming: one frame
        y, state = unit.step(x[:, 0], state)
        return y.unsqueeze(1), state
    if x.shape[1] > 1 and hasattr(unit, "_fused_scan") and fused.enabled():
        return unit._fused_scan(x, state)
    ys = []
    for xt in x.unbind(1):  # one backward node for all steps (x[:, t] would cost O(T²) in backward)
        y, state = unit.step(xt, state)
        ys.append(y)
    if not ys:
        return x.new_zeros(x.shape[0], 0, unit.size), state
    return torch.stack(ys, 1), state


class Unit(nn.Module):
    """A layer of ``size`` units with explicit state; subclasses define ``n_state`` and ``step``."""

    n_state = 1  # number of [B, C] tensors in the state tuple
    spiking = True

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)

    def _like(self, device, dtype):
        p = next(self.parameters(), None)
        device = device if device is not None else (p.device if p is not None else None)
        dtype = dtype if dtype is not None else (p.dtype if p is not None else torch.get_default_dtype())
        return device, dtype

    def initial_state(self, batch: int, device=None, dtype=None) -> State:
        device, dtype = self._like(device, dtype)
        return tuple(torch.zeros(batch, self.size, device=device, dtype=dtype) for _ in range(self.n_state))

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Run ``x[B, T, C]``; returns the outputs ``[B, T, C]`` and the final state."""
        return _scan(self, x, state)


class LIF(Unit):
    """Leaky integrate-and-fire neuron with fixed time constant ``tau``.

    Charge ``v ← v + (x − (v − v_reset)) / τ`` (``decay_input=True``, the SpikingJelly
    convention) or ``v ← v − (v − v_reset)/τ + x``; fire ``s = H(v − v_th)``; reset ``hard``
    (``v ← v_reset`` where ``s = 1``) or ``soft`` (``v ← v − s·v_th``). ``detach_reset`` stops
    the gradient through the reset.

    Shape:
        step: ``x [B, C] -> s [B, C]``; forward: ``x [B, T, C] -> s [B, T, C]``.
    """

    def __init__(
        self,
        size: int,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float = 0.0,
        reset: str = "hard",
        detach_reset: bool = True,
        decay_input: bool = True,
        surrogate: str | Surrogate = "atan",
    ):
        super().__init__(size)
        if reset not in ("hard", "soft"):
            raise ValueError(f"reset must be 'hard' or 'soft', got {reset!r}")
        if tau <= 1.0:
            raise ValueError(f"tau must be > 1, got {tau}")
        self.v_threshold, self.v_reset = float(v_threshold), float(v_reset)
        self.reset, self.detach_reset, self.decay_input = reset, bool(detach_reset), bool(decay_input)
        self.surrogate = make_surrogate(surrogate)
        self._init_decay(tau)

    def _init_decay(self, tau):
        self.register_buffer("_decay", torch.tensor(1.0 / tau))

    def decay(self) -> torch.Tensor:
        """The charge factor ``1/τ``."""
        return self._decay

    def step(self, x, state):
        (v,) = state
        k = self.decay()
        if self.decay_input:  # v + (x − (v − v_reset))·k
            v = torch.lerp(v, x + self.v_reset if self.v_reset else x, k)
        else:  # v − (v − v_reset)·k + x
            v = (torch.lerp(v, v.new_tensor(self.v_reset), k) if self.v_reset else v * (1 - k)) + x
        s = spike(v - self.v_threshold, self.surrogate)
        sr = s.detach() if self.detach_reset else s
        if self.reset == "soft":
            v = v - sr * self.v_threshold
        elif self.v_reset:
            v = torch.lerp(v, v.new_tensor(self.v_reset), sr)
        else:
            v = v * (1 - sr)
        return s, (v,)

    def _fused_scan(self, x, state):
        s, v = fused.lif(x, state[0], self.decay(), self.v_threshold, self.v_reset, self.reset,
                         self.detach_reset, self.decay_input, self.surrogate)
        return s, (v,)

    def extra_repr(self):
        return (
            f"{self.size}, v_threshold={self.v_threshold}, v_reset={self.v_reset}, reset={self.reset}, "
            f"detach_reset={self.detach_reset}"
        )


class PLIF(LIF):
    """Parametric LIF: one learnable ``w`` per layer with ``1/τ = σ(w)``, initialised from ``tau``.

    ``v ← v + (x − (v − v_reset))·σ(w)``. Defaults are the DPSNN / Spiking-S4 settings:
    τ = 2, threshold 1, hard reset to 0, detached reset, ATan(α = 2).
    """

    def _init_decay(self, tau):
        self.w = nn.Parameter(torch.tensor(-math.log(tau - 1.0)))

    def decay(self):
        return torch.sigmoid(self.w)


class ALIF(Unit):
    """Adaptive LIF with per-neuron learnable decays (DPSNN's SRNN neurons).

    With ``α = σ(a)``, ``ρ = σ(r)`` (``a``, ``r`` initialised to 0) and the previous spikes
    ``s_{t−1}``::

        η ← ρ η + (1 − ρ) s_{t−1}
        θ = b0 + β η
        v ← α v + (1 − α) I_t − θ s_{t−1}      (soft reset)
        s = H(v − θ)

    State: ``(v, η, s_{t−1})``. Multi-Gaussian surrogate by default.
    """

    n_state = 3

    def __init__(
        self,
        size: int,
        b0: float = 1.6,
        beta: float = 0.184,
        detach_reset: bool = False,
        surrogate: str | Surrogate = "multi_gaussian",
    ):
        super().__init__(size)
        self.b0, self.beta, self.detach_reset = float(b0), float(beta), bool(detach_reset)
        self.a = nn.Parameter(torch.zeros(size))
        self.r = nn.Parameter(torch.zeros(size))
        self.surrogate = make_surrogate(surrogate)

    def step(self, x, state):
        v, eta, s_prev = state
        sr = s_prev.detach() if self.detach_reset else s_prev
        eta = torch.lerp(s_prev, eta, torch.sigmoid(self.r))  # ρη + (1 − ρ)s
        theta = self.b0 + self.beta * eta
        v = torch.lerp(x, v, torch.sigmoid(self.a)) - theta * sr  # αv + (1 − α)I − θs
        s = spike(v - theta, self.surrogate)
        return s, (v, eta, s)

    def _fused_scan(self, x, state, w_rec=None, y=None):
        return fused.alif(x, state, torch.sigmoid(self.a), torch.sigmoid(self.r), self.b0, self.beta,
                          self.detach_reset, self.surrogate, w_rec, y)

    def recurrent(self, x, w_rec, state, y):
        """Run with recurrent input: the current at step t is ``x_t + y_{t−1} w_rec^T``.

        ``y`` is the output before the first step (DPSNN's SRNN keeps it in its state; it equals
        the spikes of the previous step except at the start of a stream).

        Shape:
            ``x [B, T, C]``, ``w_rec [C, C]``, ``y [B, C]`` → ``(s [B, T, C], state, y [B, C])``.
        """
        if x.shape[1] > 1 and fused.enabled():
            s, state = self._fused_scan(x, state, w_rec, y)
            return s, state, s[:, -1]
        w = w_rec.T
        ys = []
        for c in x.unbind(1):  # the per-step reference loop
            y, state = self.step(torch.addmm(c, y, w), state)
            ys.append(y)
        return (torch.stack(ys, 1) if ys else x), state, y

    def extra_repr(self):
        return f"{self.size}, b0={self.b0}, beta={self.beta}, detach_reset={self.detach_reset}"


class LeakyIntegrator(Unit):
    """Non-spiking leaky integrator, ``u ← β u + (1 − β) x`` with per-neuron ``β = σ(b)``."""

    spiking = False

    def __init__(self, size: int, init_decay: float = 0.5):
        super().__init__(size)
        if not 0.0 < init_decay < 1.0:
            raise ValueError(f"init_decay must be in (0, 1), got {init_decay}")
        self.b = nn.Parameter(torch.full((size,), math.log(init_decay / (1 - init_decay))))

    def step(self, x, state):
        u = torch.lerp(x, state[0], torch.sigmoid(self.b))  # βu + (1 − β)x
        return u, (u,)

    def _fused_scan(self, x, state):
        u, last = fused.leaky(x, state[0], torch.sigmoid(self.b))
        return u, (last,)


class Activation(Unit):
    """Stateless stand-in for a spiking unit in the ANN twins (``relu``, ``gelu``, ``tanh``...).

    It keeps the stateful API (empty state) so that a model can swap units by configuration;
    ``forward`` is applied to the whole sequence at once.
    """

    n_state = 0
    spiking = False
    FUNCTIONS = {"relu": torch.relu, "gelu": nn.functional.gelu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
                 "identity": lambda x: x}

    def __init__(self, size: int, kind: str = "relu"):
        super().__init__(size)
        if kind not in self.FUNCTIONS:
            raise ValueError(f"unknown activation {kind!r}; choose from {sorted(self.FUNCTIONS)}")
        self.kind = kind

    def step(self, x, state):
        return self.FUNCTIONS[self.kind](x), state

    def forward(self, x, state=None):
        return self.FUNCTIONS[self.kind](x), ()

    def extra_repr(self):
        return f"{self.size}, kind={self.kind}"


class Threshold(Unit):
    """Binary threshold unit ``s = H(y − θ)`` with one learnable threshold ``θ`` (init 0).

    Stateless (DPSNN's "proj" activation-suppression layer #1); gradient through the
    multi-Gaussian surrogate, which also reaches ``θ``.
    """

    n_state = 0

    def __init__(self, size: int, init_threshold: float = 0.0, surrogate: str | Surrogate = "multi_gaussian"):
        super().__init__(size)
        self.threshold = nn.Parameter(torch.tensor(float(init_threshold)))
        self.surrogate = make_surrogate(surrogate)

    def step(self, x, state):
        return spike(x - self.threshold, self.surrogate), state

    def forward(self, x, state=None):
        return spike(x - self.threshold, self.surrogate), ()


class Suppression(nn.Module):
    """Threshold-based activation suppression ``x·1[x > θ]`` with a learnable ``θ`` (init 0).

    The authors' code gives ``θ`` no gradient (a documented defect); here the hard gate gets a
    straight-through surrogate so that ``θ`` learns: ``d/dθ = −x·g'(x − θ)``.
    """

    def __init__(self, init_threshold: float = 0.0, surrogate: str | Surrogate = "multi_gaussian"):
        super().__init__()
        self.threshold = nn.Parameter(torch.tensor(float(init_threshold)))
        self.surrogate = make_surrogate(surrogate)

    def forward(self, x):
        # spike() is 1[x - θ >= 0]; the published gate is strict (x > θ): equal only on a
        # measure-zero set, so the surrogate-carrying Heaviside is used for both.
        return x * spike(x - self.threshold, self.surrogate)


UNITS = {"lif": LIF, "plif": PLIF, "alif": ALIF}


def make_unit(kind: str, size: int, **kwargs) -> Unit:
    """Build a unit by name: a spiking type in :data:`UNITS` or an :class:`Activation` kind."""
    if kind in UNITS:
        return UNITS[kind](size, **kwargs)
    if kind in Activation.FUNCTIONS:
        return Activation(size, kind)
    raise ValueError(f"unknown unit {kind!r}; choose from {sorted(UNITS) + sorted(Activation.FUNCTIONS)}")
