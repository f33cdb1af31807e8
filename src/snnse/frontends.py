"""Front-ends: the learned conv encoder/decoder of DPSNN and the frozen-weight STFT/iSTFT.

A front-end turns a waveform into frames of ``frame_length`` samples every ``hop`` samples,
maps each frame to ``n_features`` features, and maps masked features back to frames that are
overlap-added. All three steps are frame-local, so the same code runs offline (all frames at
once) and frame by frame:

* offline: :meth:`Frontend.frames` pads ``frame_length − hop`` zeros on the left (so that every
  output sample is covered by the same number of frames) and enough on the right that the last
  samples are covered too; :meth:`Frontend.overlap_add` folds frames back and trims to the input
  length. Output sample ``n`` is the estimate of input sample ``n`` (no shift).
* streaming: :meth:`Frontend.frames_step` keeps the last ``frame_length − hop`` input samples,
  :meth:`Frontend.overlap_add_step` keeps the unfinished ``frame_length − hop`` output samples.
  After ``k·hop`` new input samples, ``k·hop`` output samples are final; they lag the input by
  ``frame_length − hop`` samples, which together with the hop of buffering gives the
  algorithmic latency of one window, ``frame_length / sample_rate``.

A ``Conv1d(1, N, kernel=L, stride=hop)`` is exactly a ``Linear(L, N)`` applied to each frame,
and a ``ConvTranspose1d(N, 1, L, stride=hop)`` a per-frame ``Linear(N, L)`` followed by
overlap-add; the frame form is used because it is the one that streams. The STFT front-end's
Fourier matrices are such convolution weights, precomputed and frozen (registered as buffers,
so they are neither trained nor counted as parameters), as in Spiking-S4.

References:
    Luo & Mesgarani, "Conv-TasNet", IEEE/ACM TASLP 2019 (learned encoder/decoder).
    Du, Liu, Chua, "Spiking structured state space model for monaural speech enhancement",
    ICASSP 2024 (frozen STFT/iSTFT layers).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


class Frontend(nn.Module):
    """Framing, overlap-add and the streaming state shared by all front-ends.

    Subclasses implement ``analyze(frames) -> (features, ctx)`` and
    ``synthesize(mask, ctx) -> frames``; ``finalize(y)`` post-processes overlap-added output.

    Args:
        frame_length: window length ``L`` in samples.
        hop: frame shift in samples, ``1 <= hop <= L``.
        sample_rate: sampling rate in Hz.
    """

    n_features: int

    def __init__(self, frame_length: int, hop: int, sample_rate: int = 16000):
        super().__init__()
        if not (isinstance(frame_length, int) and isinstance(hop, int)) or not 1 <= hop <= frame_length:
            raise ValueError(f"need integers 1 <= hop <= frame_length, got hop={hop}, frame_length={frame_length}")
        self.frame_length, self.hop, self.sample_rate = frame_length, hop, int(sample_rate)

    @property
    def overlap(self) -> int:
        return self.frame_length - self.hop

    @property
    def latency_ms(self) -> float:
        """Algorithmic latency: one window."""
        return 1000.0 * self.frame_length / self.sample_rate

    def n_frames(self, length: int) -> int:
        """Frames used offline for a signal of ``length`` samples (all samples fully covered)."""
        return -(-(length + self.overlap) // self.hop)

    # ---- offline --------------------------------------------------------------------------
    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T] -> frames [B, F, L]`` with ``F = n_frames(T)``."""
        n = self.n_frames(x.shape[-1])
        total = (n - 1) * self.hop + self.frame_length
        x = F.pad(x, (self.overlap, total - self.overlap - x.shape[-1]))
        return x.unfold(-1, self.frame_length, self.hop)

    def _fold(self, frames: torch.Tensor) -> torch.Tensor:
        b, n, L = frames.shape
        out = F.fold(frames.transpose(1, 2), (1, (n - 1) * self.hop + L), (1, L), stride=(1, self.hop))
        return out.reshape(b, -1)

    def overlap_add(self, frames: torch.Tensor, length: int) -> torch.Tensor:
        """``frames [B, F, L] -> y [B, length]``: inverse of :meth:`frames`."""
        y = self._fold(frames)[:, self.overlap : self.overlap + length]
        return self.finalize(y)

    # ---- streaming ------------------------------------------------------------------------
    def initial_state(self, batch: int, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input history, unfinished output)``, both ``[B, L − hop]`` zeros."""
        p = next(itertools.chain(self.parameters(), self.buffers()), None)
        device = device if device is not None else (p.device if p is not None else None)
        dtype = dtype if dtype is not None else (p.dtype if p is not None else torch.get_default_dtype())
        z = torch.zeros(batch, self.overlap, device=device, dtype=dtype)
        return z, z.clone()

    def frames_step(self, chunk: torch.Tensor, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``chunk [B, k·hop] -> (frames [B, k, L], new history)``."""
        if chunk.shape[-1] % self.hop:
            raise ValueError(f"chunk length {chunk.shape[-1]} is not a multiple of hop {self.hop}")
        buf = torch.cat([history, chunk], -1)
        return buf.unfold(-1, self.frame_length, self.hop), buf[:, buf.shape[-1] - self.overlap :]

    def overlap_add_step(self, frames: torch.Tensor, pending: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``frames [B, k, L] -> (final output [B, k·hop], new unfinished output)``."""
        k = frames.shape[1]
        if k == 0:
            return pending.new_zeros(pending.shape[0], 0), pending
        y = self._fold(frames) if k > 1 else frames[:, 0].clone()  # one frame: nothing to fold
        y[:, : self.overlap] += pending
        n = k * self.hop
        return self.finalize(y[:, :n]), y[:, n:]

    # ---- identity path (analysis → synthesis with a unit mask), for tests and debugging ------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Analysis then synthesis with a unit mask: ``x [B, T] -> x̂ [B, T]``."""
        feats, ctx = self.analyze(self.frames(x))
        return self.overlap_add(self.synthesize(torch.ones_like(feats), ctx), x.shape[-1])

    def step(self, chunk: torch.Tensor, state, record: dict | None = None):
        hist, pending = state
        frames, hist = self.frames_step(chunk, hist)
        feats, ctx = self.analyze(frames)
        out, pending = self.overlap_add_step(self.synthesize(torch.ones_like(feats), ctx), pending)
        return out, (hist, pending)

    def finalize(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def analyze(self, frames: torch.Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    def synthesize(self, mask: torch.Tensor, ctx) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class ConvFrontend(Frontend):
    """Learned encoder ``ReLU(Conv1d(1, N, L, stride))`` and decoder ``ConvTranspose1d(N, 1, L, stride)``.

    The mask multiplies the post-ReLU encoder output (DPSNN, Conv-TasNet).
    Parameters: ``N·L + N`` (encoder) and ``N·L + 1`` (decoder).

    Shape:
        analyze: ``frames [B, F, L] -> features [B, F, N]``; synthesize: ``-> frames [B, F, L]``.
    """

    def __init__(self, frame_length: int = 80, hop: int = 40, n_filters: int = 256, sample_rate: int = 16000):
        super().__init__(frame_length, hop, sample_rate)
        self.n_features = int(n_filters)
        self.encoder = nn.Linear(frame_length, n_filters)
        self.decoder = nn.Linear(n_filters, frame_length, bias=False)
        self.decoder_bias = nn.Parameter(torch.zeros(1))
        # ConvTranspose1d's default initialisation (fan-in of the transposed weight is L).
        bound = 1 / math.sqrt(frame_length)
        nn.init.uniform_(self.decoder.weight, -bound, bound)
        nn.init.uniform_(self.decoder_bias, -bound, bound)

    def analyze(self, frames):
        w = torch.relu(self.encoder(frames))
        return w, w

    def synthesize(self, mask, ctx):
        return self.decoder(ctx * mask)

    def finalize(self, y):
        return y + self.decoder_bias


class STFTFrontend(Frontend):
    """STFT / iSTFT as frozen Fourier convolutions; features are magnitudes, phase is kept.

    ``analyze`` returns the magnitude ``|X|`` (``n_fft/2 + 1`` bins) and the complex spectrum;
    ``synthesize`` multiplies the spectrum by the real mask (so the enhanced magnitude is
    ``mask·|X|`` with the noisy phase) and inverts it. The synthesis window is the
    least-squares dual of the analysis window ``w``: ``w[n] / Σ_m w²[n + m·hop]`` (the
    normalisation ``torch.istft`` applies), so reconstruction is perfect for every output sample
    and any window/hop that covers all samples (rect: any hop ≤ n_fft; periodic Hann: any hop
    < n_fft).

    Args:
        n_fft: window length (= ``frame_length``), default 512 (32 ms at 16 kHz).
        hop: default 128.
        window: ``"rect"`` (the Spiking-S4 challenge code) or ``"hann"``.
        eps: added under the square root of the magnitude so that its gradient stays finite.
    """

    WINDOWS = ("rect", "hann")

    def __init__(self, n_fft: int = 512, hop: int = 128, window: str = "rect", sample_rate: int = 16000,
                 eps: float = 1e-10):
        super().__init__(n_fft, hop, sample_rate)
        if window not in self.WINDOWS:
            raise ValueError(f"window must be one of {self.WINDOWS}, got {window!r}")
        self.window, self.eps = window, float(eps)
        self.n_features = n_fft // 2 + 1
        analysis, synthesis = self._fourier_weights()
        dtype = torch.get_default_dtype()
        # Derived from the configuration, so not saved in checkpoints (persistent=False).
        self.register_buffer("analysis_weight", analysis.to(dtype), persistent=False)
        self.register_buffer("synthesis_weight", synthesis.to(dtype), persistent=False)

    def _fourier_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Analysis ``[2K, L]`` (``X = Σ x w e^{-iωn}``, real parts then imaginary) and synthesis
        ``[2K, L]`` matrices, computed in float64."""
        n_fft, hop = self.frame_length, self.hop
        n = torch.arange(n_fft, dtype=torch.float64)
        w = torch.ones(n_fft, dtype=torch.float64) if self.window == "rect" else torch.hann_window(n_fft, dtype=torch.float64)
        gain = torch.stack([(w**2)[j::hop].sum() for j in range(hop)])  # Σ_m w²[j + m·hop]
        if gain.min() <= 1e-8 * gain.max():
            raise ValueError(f"window {self.window!r} with n_fft={n_fft}, hop={hop} leaves samples uncovered")
        k = torch.arange(self.n_features, dtype=torch.float64)
        ang = 2 * math.pi * torch.outer(k, n).remainder(n_fft) / n_fft  # exact phase, [K, L]
        analysis = torch.cat([torch.cos(ang), -torch.sin(ang)]) * w
        c = torch.full((self.n_features, 1), 2.0, dtype=torch.float64)
        c[0] = 1.0
        if n_fft % 2 == 0:
            c[-1] = 1.0
        synthesis = torch.cat([c * torch.cos(ang), -c * torch.sin(ang)]) / n_fft * w / gain[torch.arange(n_fft) % hop]
        return analysis, synthesis

    def _apply(self, fn, recurse=True):
        # After a dtype/device change, rebuild the frozen weights from float64 so that a
        # float32-built model converted with .double() is exact in float64.
        super()._apply(fn, recurse)
        a, s = self._fourier_weights()
        self.analysis_weight = a.to(self.analysis_weight.device, self.analysis_weight.dtype)
        self.synthesis_weight = s.to(self.synthesis_weight.device, self.synthesis_weight.dtype)
        return self

    def analyze(self, frames):
        spec = frames @ self.analysis_weight.T  # [B, F, 2K]
        re, im = spec.chunk(2, -1)
        return torch.sqrt(re**2 + im**2 + self.eps), spec

    def synthesize(self, mask, ctx):
        return (ctx * torch.cat([mask, mask], -1)) @ self.synthesis_weight

    def extra_repr(self):
        return f"n_fft={self.frame_length}, hop={self.hop}, window={self.window}"


FRONTENDS = {"conv": ConvFrontend, "stft": STFTFrontend}


def make_frontend(kind: str, frame_length: int, hop: int, n_filters: int = 256, window: str = "rect",
                  sample_rate: int = 16000) -> Frontend:
    """Build a front-end by name: ``"conv"`` (learned, ``n_filters`` features) or ``"stft"``
    (``frame_length/2 + 1`` magnitude bins; ``n_filters`` unused)."""
    if kind == "conv":
        return ConvFrontend(frame_length, hop, n_filters, sample_rate)
    if kind == "stft":
        return STFTFrontend(frame_length, hop, window, sample_rate)
    raise ValueError(f"unknown frontend {kind!r}; choose from {sorted(FRONTENDS)}")
