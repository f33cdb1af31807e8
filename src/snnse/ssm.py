"""Diagonal structured state-space layer (S4D) with explicit, streamable state.

Per channel ``h`` the layer is the continuous-time linear system
``x'(t) = A x(t) + B u(t)``, ``y(t) = 2 Re(C x(t)) + D u(t)`` with a diagonal
complex ``A`` of ``d_state / 2`` modes (their conjugates are implied, hence the
factor 2 and "``d_state`` real dimensions"), ``B = 1`` (folded into ``C``),
discretised by zero-order hold with a learned step ``dt``:

    dA = exp(dt A),   dB = (exp(dt A) - 1) / A,
    K[l] = 2 Re sum_n C_n dB_n dA_n^l.

The same parameters run either as a causal FFT convolution over a whole
sequence (:meth:`S4D.forward`, optionally continuing from a state so chunks can
be streamed) or one step at a time (:meth:`S4D.step`).

References:
    A. Gu, A. Gupta, K. Goel, C. Re, "On the Parameterization and
    Initialization of Diagonal State Space Models", NeurIPS 2022.
    Y. Du, X. Liu, Y. Chua, "Spiking Structured State Space Model for
    Monaural Speech Enhancement", ICASSP 2024.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["S4D", "param_groups"]

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """Split a model's trainable parameters into optimizer groups.

    Parameters carrying an ``_optim`` dict attribute (e.g. the S4D ``log_dt``,
    ``log_A_real`` and ``A_imag``) are grouped per distinct dict, whose entries
    override the defaults; all other parameters go to the default group.
    Parameters with ``requires_grad=False`` are skipped, shared parameters are
    listed once, and empty groups are omitted.

    Args:
        model: Any module.
        lr: Default learning rate.
        weight_decay: Default weight decay.

    Returns:
        A list of dicts ``{"params": [...], "lr": ..., "weight_decay": ...}``
        ready for ``torch.optim.AdamW(param_groups(model, 1e-3, 1e-2))``; the
        default group comes first.
    """
    default: list[nn.Parameter] = []
    special: dict[tuple, list[nn.Parameter]] = {}
    for p in model.parameters():  # deduplicates shared parameters
        if not p.requires_grad:
            continue
        opt = getattr(p, "_optim", None)
        if opt:
            special.setdefault(tuple(sorted(opt.items())), []).append(p)
        else:
            default.append(p)
    groups = []
    if default:
        groups.append({"params": default, "lr": lr, "weight_decay": weight_decay})
    for key, params in special.items():
        groups.append({"params": params, "lr": lr, "weight_decay": weight_decay, **dict(key)})
    return groups


class S4D(nn.Module):
    """Diagonal state-space layer (S4D-Lin / S4D-Inv), convolutional or recurrent.

    State is explicit: :meth:`forward` and :meth:`step` take a state (``None``
    means zeros) and return the final state; nothing is stored on the module.

    Args:
        d_model: Number of independent channels ``H``.
        d_state: Real state size ``N`` per channel (even, >= 2); the layer keeps
            ``N/2`` complex modes, the conjugate modes being implied.
        dt_min: Lower bound of the log-uniform initial step ``dt``.
        dt_max: Upper bound of the log-uniform initial step ``dt``.
        init: ``"lin"``: ``A_n = -1/2 + i pi n``;
            ``"inv"``: ``A_n = -1/2 + i (N/pi)(N/(2n+1) - 1)`` with
            ``N = d_state`` (the S4D paper's formula for ``N/2`` kept modes).
        ssm_lr: Learning rate for ``log_dt``, ``log_A_real`` and ``A_imag``
            (None: the optimizer default). These parameters always get zero
            weight decay via the ``_optim`` tag read by :func:`param_groups`.

    Shape:
        - forward input ``u``: ``[B, T, H]``; output ``y``: ``[B, T, H]``.
        - state: ``[B, H, N/2]`` complex (complex64 for float32 parameters,
          complex128 for float64).
        - step input ``u``: ``[B, H]``; output: ``[B, H]``.
        - parameters: ``log_dt [H]``, ``C [H, N/2, 2]`` (real view of complex),
          ``log_A_real [H, N/2]``, ``A_imag [H, N/2]``, ``D [H]``
          (``H (2 N + 2)`` numbers in total).

    References:
        Gu, Gupta, Goel, Re, "On the Parameterization and Initialization of
        Diagonal State Space Models", NeurIPS 2022 (S4D).
        Du, Liu, Chua, "Spiking Structured State Space Model for Monaural
        Speech Enhancement", ICASSP 2024 (Spiking-S4).
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 1e-3,
                 dt_max: float = 1e-1, init: str = "lin", ssm_lr: float | None = None):
        super().__init__()
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        if not isinstance(d_state, int) or d_state < 2 or d_state % 2:
            raise ValueError(f"d_state must be an even int >= 2 (N/2 complex modes), got {d_state!r}")
        if init not in ("lin", "inv"):
            raise ValueError(f"init must be 'lin' or 'inv', got {init!r}")
        if not 0 < dt_min < dt_max:
            raise ValueError(f"need 0 < dt_min < dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if ssm_lr is not None and not ssm_lr > 0:
            raise ValueError(f"ssm_lr must be positive or None, got {ssm_lr!r}")
        self.d_model, self.d_state, self.init, self.ssm_lr = d_model, d_state, init, ssm_lr
        H, M = d_model, d_state // 2
        lo, hi = math.log(dt_min), math.log(dt_max)
        self.log_dt = nn.Parameter(torch.rand(H) * (hi - lo) + lo)
        self.C = nn.Parameter(torch.randn(H, M, 2) * math.sqrt(0.5))
        self.log_A_real = nn.Parameter(torch.full((H, M), math.log(0.5)))
        n = torch.arange(M, dtype=torch.float64)
        if init == "lin":
            imag = math.pi * n
        else:
            N = d_state
            imag = (N / math.pi) * (N / (2 * n + 1) - 1)
        self.A_imag = nn.Parameter(imag.float().expand(H, M).clone())
        self.D = nn.Parameter(torch.randn(H))
        self._cache = None  # see _discretize
        self._tag_ssm_params()

    def _tag_ssm_params(self) -> None:
        """Attach the ``_optim`` dict read by :func:`param_groups` to the SSM parameters."""
        tag = {"weight_decay": 0.0} if self.ssm_lr is None else {"weight_decay": 0.0, "lr": self.ssm_lr}
        for p in (self.log_dt, self.log_A_real, self.A_imag):
            p._optim = dict(tag)

    def __setstate__(self, state) -> None:
        # Parameter.__deepcopy__ drops Python attributes: re-tag after copy/unpickle.
        super().__setstate__(state)
        self._tag_ssm_params()

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}, init={self.init!r}"

    def initial_state(self, batch: int, device=None, dtype=None) -> torch.Tensor:
        """Zero state ``[batch, H, N/2]``; ``dtype`` is the *real* dtype (default: parameters')."""
        dtype = dtype or self.log_dt.dtype
        if dtype not in _COMPLEX:
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        return torch.zeros(batch, self.d_model, self.d_state // 2, dtype=_COMPLEX[dtype],
                           device=device or self.log_dt.device)

    def _discretize(self):
        """Return ``(dtA, dA, dB, C)``, each complex ``[H, N/2]``.

        Without autograd (inference, streaming) the result is cached and reused while the
        parameters are unchanged (keyed on their identity, version counter, dtype and device),
        so that frame-by-frame streaming does not recompute complex exponentials every step.
        This caches a function of the parameters only, never stream state.
        """
        params = (self.log_dt, self.log_A_real, self.A_imag, self.C)
        key = tuple((id(p), p._version, p.dtype, p.device) for p in params)
        if not torch.is_grad_enabled() and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)
        dtA = torch.exp(self.log_dt)[:, None] * A
        dA = torch.exp(dtA)
        out = dtA, dA, (dA - 1) / A, torch.view_as_complex(self.C)
        self._cache = (key, tuple(t.detach() for t in out)) if not torch.is_grad_enabled() else None
        return out

    @staticmethod
    def _powers(dtA: torch.Tensor, length: int) -> torch.Tensor:
        """Vandermonde ``dA^l = exp(dtA * l)``, ``l = 0..length-1``: ``[H, N/2, length]``.

        Computed as an outer product ``exp(dtA·a·m) · exp(dtA·b)`` for ``l = a·m + b`` with
        ``m ≈ √length``: about √length complex exponentials per mode instead of ``length``
        (complex ``exp`` dominated the offline run time), at the cost of one rounding.
        """
        m = max(1, math.isqrt(length))
        a = -(-length // m)
        real = dtA.real.dtype
        inner = torch.exp(dtA[..., None] * torch.arange(m, device=dtA.device, dtype=real))
        outer = torch.exp(dtA[..., None] * torch.arange(0, a * m, m, device=dtA.device, dtype=real))
        V = (outer[..., :, None] * inner[..., None, :]).flatten(-2)
        return V[..., :length]

    def kernel(self, length: int) -> torch.Tensor:
        """Convolution kernel ``K[h, l] = 2 Re sum_n C_n dB_n dA_n^l``, shape ``[H, length]``."""
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        dtA, _, dB, C = self._discretize()
        return 2 * torch.einsum("hn,hnl->hl", C * dB, self._powers(dtA, length)).real

    def _check_state(self, state, batch, like):
        if state is None:
            return self.initial_state(batch, device=like.device, dtype=like.dtype)
        if not state.is_complex() or state.shape != (batch, self.d_model, self.d_state // 2):
            raise ValueError(f"state must be complex [{batch}, {self.d_model}, {self.d_state // 2}], "
                             f"got {tuple(state.shape)} {state.dtype}")
        return state

    def forward(self, u: torch.Tensor, state: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run a whole chunk in convolution mode, continuing from ``state``.

        ``y_k = sum_j K[k-j] u_j + 2 Re sum_n C_n dA_n^(k+1) x0_n + D u_k`` and the
        final state ``dA^T x0 + sum_j dA^(T-1-j) dB u_j``, all vectorised (FFT
        and Vandermonde contractions), so chunked calls equal one-shot calls.

        Shape:
            - u: ``[B, T, H]``; state: ``[B, H, N/2]`` complex or None.
            - returns ``y [B, T, H]`` and the final state ``[B, H, N/2]``.
        """
        if u.dim() != 3 or u.shape[-1] != self.d_model:
            raise ValueError(f"u must be [B, T, {self.d_model}], got {tuple(u.shape)}")
        B, T, _ = u.shape
        x0 = self._check_state(state, B, u)
        if T == 0:
            return u.clone(), x0
        if T == 1:  # frame-by-frame streaming: the recurrence is much cheaper than an FFT
            y, xT = self.step(u[:, 0], x0)
            return y[:, None], xT
        dtA, dA, dB, C = self._discretize()
        V = self._powers(dtA, T)  # dA^0 .. dA^(T-1): [H, M, T]
        K = 2 * torch.einsum("hn,hnl->hl", C * dB, V).real
        ut = u.transpose(1, 2)  # [B, H, T]
        nfft = 1 << (2 * T - 1).bit_length()  # power of two >= 2T: no circular wrap
        y = torch.fft.irfft(torch.fft.rfft(ut, n=nfft) * torch.fft.rfft(K, n=nfft), n=nfft)[..., :T]
        y = y + self.D[:, None] * ut
        if state is not None:  # zero-input response of x0: 2 Re sum_n C_n dA_n^(k+1) x0_n
            y = y + 2 * torch.einsum("bhn,hnl->bhl", x0 * (C * dA), V).real
        xT = x0 * (V[..., -1] * dA) + dB * torch.einsum("bhl,hnl->bhn", ut.flip(-1).to(V.dtype), V)
        return y.transpose(1, 2), xT

    def step(self, u: torch.Tensor, state: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step: ``x = dA x + dB u``, ``y = 2 Re sum_n C_n x_n + D u``.

        Shape:
            - u: ``[B, H]``; state: ``[B, H, N/2]`` complex or None.
            - returns ``y [B, H]`` and the new state ``[B, H, N/2]``.
        """
        if u.dim() != 2 or u.shape[-1] != self.d_model:
            raise ValueError(f"u must be [B, {self.d_model}], got {tuple(u.shape)}")
        x = self._check_state(state, u.shape[0], u)
        _, dA, dB, C = self._discretize()
        x = dA * x + dB * u[..., None]
        y = 2 * (x * C).sum(-1).real + self.D * u
        return y, x
