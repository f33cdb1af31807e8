"""Causal input level control (AGC) around a model: the same gains offline and streaming.

Mask-based denoisers trained on mixtures between −35 and −15 dBFS are not level-invariant (the
biases and thresholds of the layers see absolute magnitudes): measured on the demo validation
split, the bundled Spiking-S4 lowered STOI on mixtures quieter than −31 dBFS (−0.031) while it
raised it on louder ones, and normalising every file to one level before the model raised STOI
and SI-SNR for both bundled models (``configs/pretrained/*.notes.md`` has the numbers). A file's
RMS is not known while it streams, so :class:`LevelControl` tracks the level causally, hop by
hop, as a model can at run time:

* per hop ``i`` the level ``l_i = 10 log10(mean(x²) + 10^(floor/10))`` dBFS;
* a smoothed deviation from the target, ``d_i = d_{i-1} + c (l_i − target − d_{i-1})`` with
  ``c = 1 − exp(−hop / (τ·sr))``, ``τ`` the attack time when the level rises above the estimate
  and the release time when it falls (the usual asymmetric AGC);
* the hop is fed to the model multiplied by ``10^(g_i/20)``, ``g_i = clamp(−d_i, ±max_gain)``;
* each output sample is divided by the gain that its input sample received, so that the output
  keeps the input's level (the model output lags the input by ``frame_length − hop`` samples:
  the per-sample gains of that many past samples are part of the state).

The state is ``(d [B, 1], past gains [B, frame_length − hop])`` in dB, all zeros at the start
(``d = 0``: the estimate starts at the target, i.e. unity gain; the ONNX export relies on the
all-zeros initial state). The loop over hops is a scalar recurrence per stream: one call of the
compiled ``level_step`` of :mod:`snnse.fast_cpp` offline and for a separate streaming step, fused
into the compiled DPSNN and Spiking-S4 hops, and a few tensor operations per hop in PyTorch where
that is not available (autograd through the scaled input, tracing for the ONNX export). This
module reaches the compiled operators only through :func:`snnse.fastpath.compiled_ops` (the fast
path, :mod:`snnse.fast_step`, fills that hook): the models import it, and the fast path imports
the models, never the other way round.
"""

from __future__ import annotations

import math

import torch

from . import fastpath

_DB = math.log(10.0) / 20.0  # 10^(g/20) = exp(g · _DB)


class LevelControl:
    """Causal hop-wise gain control (see the module docstring).

    Args:
        hop: Hop of the model (samples); the gain is constant over a hop.
        delay: Output lag of the model (``frame_length − hop`` samples).
        sample_rate: Sample rate (Hz).
        target_db: Level the model should see (dBFS).
        attack_s, release_s: Time constants (seconds) when the level rises / falls.
        max_gain_db: Largest gain or attenuation applied.
        floor_db: Level assigned to silence.
    """

    def __init__(self, hop: int, delay: int, sample_rate: int, target_db: float = -22.0, attack_s: float = 0.1,
                 release_s: float = 2.0, max_gain_db: float = 20.0, floor_db: float = -80.0):
        if attack_s <= 0 or release_s <= 0 or max_gain_db < 0:
            raise ValueError("level control: attack_s and release_s must be > 0 and max_gain_db >= 0")
        self.hop, self.delay = int(hop), int(delay)
        self.target_db, self.max_gain_db = float(target_db), float(max_gain_db)
        self.floor = 10.0 ** (float(floor_db) / 10.0)
        self.c_attack = 1.0 - math.exp(-hop / (attack_s * sample_rate))
        self.c_release = 1.0 - math.exp(-hop / (release_s * sample_rate))
        # the arguments of the compiled level_step (snnse.fast_cpp)
        self.params = [float(self.hop), self.target_db, self.c_attack, self.c_release, self.max_gain_db, self.floor]

    def initial_state(self, batch: int, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.zeros(batch, 1, device=device, dtype=dtype),
                torch.zeros(batch, self.delay, device=device, dtype=dtype))

    def hop_gains(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, k·hop]``, deviation ``d [B, 1]`` → gains ``[B, k]`` (dB) and the new deviation."""
        b, n = x.shape
        k = n // self.hop
        x = x.detach()
        level = 10.0 * torch.log10((x * x).reshape(b, k, self.hop).mean(-1) + self.floor) - self.target_db
        gains = []
        for i in range(k):
            e = level[:, i : i + 1] - d
            d = d + torch.where(e > 0, e * self.c_attack, e * self.c_release)
            gains.append(torch.clamp(-d, -self.max_gain_db, self.max_gain_db))
        return torch.cat(gains, 1), d

    def sample_gains(self, hop_gains: torch.Tensor) -> torch.Tensor:
        """Per-hop gains ``[B, k]`` → per-sample linear gains ``[B, k·hop]``."""
        b, k = hop_gains.shape
        return torch.exp(hop_gains * _DB).unsqueeze(-1).expand(b, k, self.hop).reshape(b, k * self.hop)

    def offline(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample gains ``[B, T]`` of a whole signal ``x [B, T]`` (the last hop zero-padded),
        computed without autograd (they are constants of the graph); on the CPU in one call of the
        compiled ``level_step`` when it builds (also for CUDA inputs: one copy instead of a loop of
        small kernels), else with the PyTorch loop over hops."""
        t = x.shape[-1]
        pad = -t % self.hop
        xp = torch.nn.functional.pad(x.detach(), (0, pad)) if pad else x.detach()
        xc = xp.cpu()
        ops = self._compiled(xc)
        if ops is not None:  # the loop over hops in C++, on the CPU (the gains are constants for autograd)
            xc = xc.contiguous()
            z = xc.new_zeros(x.shape[0], 1)
            return ops.level_step(xc, z, z[:, :0], self.params)[1][:, :t].to(x.device)
        g, _ = self.hop_gains(xp, x.new_zeros(x.shape[0], 1))
        return self.sample_gains(g)[:, :t]

    @staticmethod
    def _compiled(x: torch.Tensor):
        """The compiled operators if ``x`` may use them (CPU, fast path on, compiled allowed, not
        tracing: :func:`snnse.fastpath.compiled_ops`), else None."""
        return fastpath.compiled_ops() if x.device.type == "cpu" else None

    def step(self, chunk: torch.Tensor, state) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """``chunk [B, k·hop]`` → (the chunk times its gains, output divisors ``[B, k·hop]``, new state).

        Without autograd on the CPU this is one call of the compiled ``level_step`` of
        :mod:`snnse.fast_cpp` when that builds (same formulas; equal up to float rounding).
        """
        d, past = state
        ops = None if torch.is_grad_enabled() else self._compiled(chunk)
        if ops is not None:
            x, g_out, d, past = ops.level_step(chunk, d, past, self.params)
            return x, g_out, (d, past)
        g, d = self.hop_gains(chunk, d)
        g_in_db = g.unsqueeze(-1).expand(*g.shape, self.hop).reshape(g.shape[0], -1)
        hist = torch.cat([past, g_in_db], -1)
        n = chunk.shape[-1]
        g_out = torch.exp(hist[:, :n] * _DB)
        return chunk * torch.exp(g_in_db * _DB), g_out, (d, hist[:, n:])


def make(spec: dict | None, hop: int, delay: int, sample_rate: int) -> LevelControl | None:
    """A :class:`LevelControl` from a model's ``level_control`` keyword (None: off)."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError(f"level_control must be a dict of LevelControl options or None, got {spec!r}")
    try:
        return LevelControl(hop, delay, sample_rate, **spec)
    except TypeError as e:
        raise ValueError(f"bad level_control options {spec!r}: {e}") from None
