"""Spiking-S4 (Du, Liu & Chua, ICASSP 2024) and its ANN twin (S4 with GELU).

|STFT| − offset → linear encoder → n_layers × [S4D → emission linear → LIF/PLIF → residual →
layer norm] → linear decoder → mask ``relu(x + 1)`` on the noisy magnitude → iSTFT with the
noisy phase. The neuron state is carried across frames, as the paper describes (the authors'
code reset it every step, which removes the membrane dynamics; see ``models.md``).

Parameter count at the paper configuration (n_fft 512 → 257 bins, hidden 256, d_state 64,
4 layers): encoder 257·256 + 256 = 66,048; per layer S4D 33,280 (log_dt 256, C 256·32·2,
A 2·256·32, D 256) + emission 65,792 + PLIF 1 + layer norm 512 = 99,585, × 4 = 398,340;
decoder 256·257 + 257 = 66,049; total 530,437 ≈ 0.53 M. The frozen STFT/iSTFT weights are
buffers, not parameters (the paper counts 0.53 M, so it did not count them either).

References:
    Du, Liu, Chua, "Spiking structured state space model for monaural speech enhancement",
    ICASSP 2024, arXiv:2309.03641.
"""

from __future__ import annotations

import torch
from torch import nn

from ..frontends import make_frontend
from ..neurons import make_unit
from ..ssm import S4D
from .base import Enhancer, register


class SpikingS4Layer(nn.Module):
    """``x → LayerNorm(x + unit(emission(S4D(x))))`` on ``[B, T, H]`` with state ``(ssm, unit)``."""

    def __init__(self, d_model: int, d_state: int = 64, unit: str = "plif", tau: float = 2.0,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, ssm_init: str = "lin", ssm_lr: float | None = None):
        super().__init__()
        self.s4 = S4D(d_model, d_state, dt_min, dt_max, ssm_init, ssm_lr)
        self.emission = nn.Linear(d_model, d_model)
        self.unit = make_unit(unit, d_model, tau=tau) if unit in ("lif", "plif") else make_unit(unit, d_model)
        self.norm = nn.LayerNorm(d_model)

    def initial_state(self, batch, device=None, dtype=None):
        return (self.s4.initial_state(batch, device, dtype), self.unit.initial_state(batch, device, dtype))

    def forward(self, x, state, record=None, name="layer"):
        ssm_state, unit_state = state
        y, ssm_state = self.s4(x, ssm_state)
        s, unit_state = self.unit(self.emission(y), unit_state)
        if record is not None:
            record[name] = s
        return self.norm(x + s), (ssm_state, unit_state)


class SpikingS4Masker(nn.Module):
    """Features ``[B, F, C]`` → mask ``relu(decoder(...) + 1)`` ``[B, F, C]``; records ``s4_{i}``."""

    # the family's accelerated paths, named (not imported): see snnse.models.base.masker_part
    fast_plan = "snnse.fast_s4:S4Plan"
    op_graph = "snnse.metrics.opgraph_models:s4_graph"

    def __init__(self, n_features: int, d_model: int = 256, n_layers: int = 4, input_offset: float = 0.2,
                 **layer_kwargs):
        super().__init__()
        self.input_offset = float(input_offset)
        self.encoder = nn.Linear(n_features, d_model)
        self.layers = nn.ModuleList(SpikingS4Layer(d_model, **layer_kwargs) for _ in range(n_layers))
        self.decoder = nn.Linear(d_model, n_features)

    def initial_state(self, batch, device=None, dtype=None):
        return tuple(layer.initial_state(batch, device, dtype) for layer in self.layers)

    def forward(self, feats, state=None, record=None):
        if state is None:
            state = self.initial_state(feats.shape[0], feats.device, feats.dtype)
        x = self.encoder(feats - self.input_offset)
        new_state = []
        for i, (layer, st) in enumerate(zip(self.layers, state)):
            x, st = layer(x, st, record, f"s4_{i}")
            new_state.append(st)
        return torch.relu(self.decoder(x) + 1.0), tuple(new_state)


@register("spiking_s4")
def spiking_s4(n_fft: int = 512, hop: int = 128, window: str = "rect", d_model: int = 256, d_state: int = 64,
               n_layers: int = 4, spiking: bool = True, unit: str = "plif", tau: float = 2.0,
               input_offset: float = 0.2, dt_min: float = 1e-3, dt_max: float = 1e-1, ssm_init: str = "lin",
               ssm_lr: float | None = None, frontend: str = "stft", n_filters: int = 256,
               sample_rate: int = 16000) -> Enhancer:
    """Spiking-S4 (defaults: the paper configuration, 0.53 M parameters, 32 ms latency).

    Args:
        n_fft: STFT window (= algorithmic latency); with ``frontend="conv"`` the encoder kernel.
        hop: frame shift. window: ``"rect"`` (authors' code) or ``"hann"``.
        d_model, d_state, n_layers: S4 hidden size, state size (real dims), depth.
        spiking: False builds the ANN twin (GELU instead of the spiking unit).
        unit: ``"plif"`` (learnable τ, the paper) or ``"lif"`` (fixed τ).
        tau: initial (PLIF) or fixed (LIF) membrane time constant.
        input_offset: subtracted from the features before the encoder (``|X| − 0.2``).
        dt_min, dt_max, ssm_init, ssm_lr: S4D settings (see :class:`snnse.ssm.S4D`).
        frontend: ``"stft"`` (the paper) or ``"conv"`` (learned, e.g. ``n_fft=80, hop=40`` for a
            5 ms Spiking-S4). n_filters: conv encoder filters.
    """
    fe = make_frontend(frontend, n_fft, hop, n_filters, window, sample_rate)
    masker = SpikingS4Masker(fe.n_features, d_model, n_layers, input_offset, d_state=d_state,
                             unit=unit if spiking else "gelu", tau=tau, dt_min=dt_min, dt_max=dt_max,
                             ssm_init=ssm_init, ssm_lr=ssm_lr)
    return Enhancer(fe, masker)
