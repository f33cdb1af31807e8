"""Training losses of the two papers, in one configurable class.

* DPSNN (Sun & Bohté 2024): ``100 − SI-SNR + 0.001·MSE(waveform) + 0.001·mean|proj| +
  0.001·mean|readout|``. The activity terms are averaged over **all** frames of the
  segment (the authors' code saw only the last frame, a defect models.md lists).
* Spiking-S4 (Du et al. 2024) / Intel N-DNS baseline: ``−SI-SNR + 0.001·MSE(mask)``,
  the MSE between the masked noisy features and the clean features (for the STFT
  front-end: masked and clean magnitudes).
* Optional, in neither paper: a multi-resolution STFT loss (spectral convergence + L1 of log
  magnitudes at several resolutions; Yamamoto et al. 2020, used by Défossez et al. 2020 for
  denoising), which penalises audible spectral artifacts that SI-SNR alone tolerates early in
  training. Off (weight 0) in the paper recipes.
* Optional, in neither paper: ``1 − STOI`` with a differentiable STOI (:func:`stoi_loss`), the
  intelligibility measure that SI-SNR alone can trade away at moderate SNRs. Off by default.

The first ``context`` samples of every segment are warm-up for the recurrent state:
SI-SNR and the waveform MSE ignore them.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


def si_snr(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SNR in dB, zero-mean, over the last dimension.

    Shape:
        est, ref: ``[..., T]`` → ``[...]``.

    References:
        Le Roux et al., "SDR — half-baked or well done?", ICASSP 2019.
    """
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    proj = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps) * ref
    noise = est - proj
    return 10 * torch.log10((proj.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def _power(spec: torch.Tensor) -> torch.Tensor:
    """``|spec|²`` as ``re² + im²``: the gradient of ``abs()`` overflows to NaN on subnormal bins
    (a model's output in the digital silence of clean-only training items, ~1e-45), the sum of
    squares' gradient stays finite."""
    return torch.view_as_real(spec).pow(2).sum(-1)


def mrstft_loss(est: torch.Tensor, ref: torch.Tensor,
                resolutions: Sequence[tuple[int, int]] = ((1024, 256), (512, 128), (256, 64)),
                eps: float = 1e-7) -> torch.Tensor:
    """Multi-resolution STFT loss: mean over resolutions of spectral convergence + log-magnitude L1.

    ``SC = ‖|S(ref)| − |S(est)|‖_F / ‖|S(ref)|‖_F`` and ``LM = mean |log|S(ref)| − log|S(est)||``
    with Hann windows of ``n_fft`` samples and hop ``hop`` (``(n_fft, hop)`` pairs).

    Shape:
        est, ref: ``[B, T]`` → scalar.

    References:
        Yamamoto, Song, Kim, "Parallel WaveGAN", ICASSP 2020 (multi-resolution STFT loss).
        Défossez, Synnaeve, Adi, "Real time speech enhancement in the waveform domain",
        Interspeech 2020.
    """
    total = est.new_zeros(())
    for n_fft, hop in resolutions:
        win = torch.hann_window(n_fft, dtype=est.dtype, device=est.device)
        power = [_power(torch.stft(x, n_fft, hop, window=win, return_complex=True)) for x in (est, ref)]
        e, r = (torch.sqrt(p + eps) for p in power)  # smooth at 0 for the gradient
        sc = torch.linalg.norm(r - e, dim=(-2, -1)) / torch.linalg.norm(r, dim=(-2, -1)).clamp_min(eps)
        total = total + sc.mean() + (r.log() - e.log()).abs().mean()
    return total / len(resolutions)


def _third_octave_bands(n_fft: int, sample_rate: int, n_bands: int = 15, low: float = 150.0) -> torch.Tensor:
    """``[n_bands, n_fft // 2 + 1]`` 0/1 matrix of STOI's one-third octave bands (centres ``low·2^(k/3)``)."""
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    centres = low * 2.0 ** (torch.arange(n_bands, dtype=torch.float64) / 3)
    lo, hi = centres * 2 ** (-1 / 6), centres * 2 ** (1 / 6)
    return ((freqs[None] >= lo[:, None]) & (freqs[None] < hi[:, None])).double()


def stoi_loss(est: torch.Tensor, ref: torch.Tensor, sample_rate: int = 16000, segment: int = 30,
              beta_db: float = -15.0, eps: float = 1e-8) -> torch.Tensor:
    """``1 −`` a differentiable short-time objective intelligibility (STOI), batch mean.

    STOI's steps at ``sample_rate`` instead of 10 kHz: 25 ms Hann frames with 50 % overlap and a
    512-point (16 kHz) FFT, 15 one-third octave bands from 150 Hz, envelopes over ``segment``
    frames (375 ms at 16 kHz), the estimate's envelope scaled to the reference's and
    clipped at ``β = beta_db``, then the correlation coefficient per band and segment, averaged.
    Unlike the measure, no silent frames are removed (training crops are mostly speech): use
    :mod:`snnse.metrics` for scores; this is a training objective that follows them closely.

    Shape:
        est, ref: ``[B, T]`` with ``T`` of at least ``segment`` frames (~0.4 s) → scalar.

    References:
        Taal, Hendriks, Heusdens, Jensen, "An algorithm for intelligibility prediction of
        time-frequency weighted noisy speech", IEEE TASLP 19(7), 2011.
    """
    frame = int(round(0.025 * sample_rate))
    n_fft = 1 << (frame - 1).bit_length()
    win = torch.hann_window(frame, dtype=est.dtype, device=est.device)
    bands = _third_octave_bands(n_fft, sample_rate).to(est)
    env = []
    for x in (est, ref):
        power = _power(torch.stft(x, n_fft, frame // 2, frame, window=win, center=False, return_complex=True))
        env.append(torch.sqrt(bands @ power + eps))  # [B, 15, frames]
    if env[0].shape[-1] < segment:
        raise ValueError(f"stoi_loss needs at least {segment} frames ({segment * frame // 2} samples), "
                         f"got {env[0].shape[-1]}")
    y, x = (e.unfold(-1, segment, 1) for e in env)  # [B, 15, S, N]
    alpha = x.norm(dim=-1, keepdim=True) / (y.norm(dim=-1, keepdim=True) + eps)
    y = torch.minimum(alpha * y, x * (1 + 10 ** (-beta_db / 20)))
    x, y = x - x.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
    corr = (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1) + eps)
    return 1 - corr.mean()


class EnhancementLoss(nn.Module):
    """``offset − SI-SNR + wave_mse·MSE + activity_l1·Σ_layers mean|a| + mask_mse·MSE(mask)
    + mrstft·MRSTFT + stoi·(1 − STOI)``.

    Args:
        offset: Constant added (DPSNN: 100) — it only shifts the logged value.
        wave_mse: Weight of the waveform MSE.
        activity_l1: Weight of the mean absolute activity of each layer in ``activity_layers``.
        activity_layers: Names in the masker's ``record`` (DPSNN: ``proj``, ``readout``).
        mask_mse: Weight of ``MSE(mask · noisy features, clean features)``.
        mrstft: Weight of :func:`mrstft_loss` (0: off, as in both papers).
        stoi: Weight of :func:`stoi_loss` (0: off, as in both papers).
        sample_rate: Rate of the signals (for the STOI term's frames and bands).

    ``forward(model, noisy, clean, context=0)`` returns ``(loss, parts)`` where ``parts`` holds
    detached components (``sisnr``, ``wave_mse``, ``l1_<layer>``, ``mrstft``, ``stoi`` (the
    differentiable STOI itself, not ``1 −`` it), ``mask_mse``) for logging.
    """

    def __init__(self, offset: float = 0.0, wave_mse: float = 0.0, activity_l1: float = 0.0,
                 activity_layers: Sequence[str] = (), mask_mse: float = 0.0, mrstft: float = 0.0,
                 stoi: float = 0.0, sample_rate: int = 16000):
        super().__init__()
        self.mrstft, self.stoi, self.sample_rate = float(mrstft), float(stoi), int(sample_rate)
        self.offset, self.wave_mse, self.activity_l1 = float(offset), float(wave_mse), float(activity_l1)
        self.activity_layers, self.mask_mse = tuple(activity_layers), float(mask_mse)

    def forward(self, model, noisy: torch.Tensor, clean: torch.Tensor, context: int = 0,
                return_estimate: bool = False, carry=None):
        """Loss of ``model`` on a batch ``[B, T]``; the first ``context`` samples are warm-up.

        With ``return_estimate`` the enhanced batch is returned as a third value.

        ``carry`` trains with carried state (truncated back-propagation through time): the batch
        continues the streams of the previous call. It is ``(model state, clean history)`` as
        returned by the previous call, or ``()`` to start new streams (zero state). The model
        then runs :meth:`~snnse.models.base.Enhancer.module_step` from that state, whose output
        lags the input by ``D = frame_length − hop`` samples, so the target is the clean signal
        delayed by ``D`` (its last ``D`` samples of the previous call, the *clean history*, then
        this call's); over consecutive calls the outputs are exactly the offline output of the
        whole stream. The new carry is returned last, not detached (the caller detaches it
        where the truncation should be). A model with a level control is trained through it, as
        it streams (the masker sees the level-controlled input; not with ``mask_mse``).
        """
        c = int(context)
        if carry is None:
            est, aux = model(noisy, return_aux=True)
            target, clean_feats = clean, None
        else:
            if model.level is not None and self.mask_mse:
                raise ValueError("training with carried state and a level control cannot use mask_mse (the "
                                 "clean features would need the level control's gains); set loss.mask_mse 0 "
                                 "or train without the level control")
            fe = model.frontend
            state, hist = carry if carry else (model.initial_state(noisy.shape[0], noisy.device, noisy.dtype),
                                               fe.initial_state(noisy.shape[0], noisy.device, noisy.dtype)[0])
            aux = {"record": {}}
            if model.level is None:
                est, state, step_aux = model.module_step(noisy, state, aux["record"])
            else:  # as Enhancer.step: the input scaled before the masker, the output divided after
                scaled, g_out, level = model.level.step(noisy, state["level"])
                est, state, step_aux = model.module_step(scaled, state, aux["record"])
                est, state["level"] = est / g_out, level
            aux.update(step_aux)
            frames, new_hist = fe.frames_step(clean, hist)
            target = torch.cat([hist, clean], -1)[..., : clean.shape[-1]]
            clean_feats = fe.analyze(frames)[0] if self.mask_mse else None
            carry = (state, new_hist)
        clean = target
        s = si_snr(est[..., c:], clean[..., c:]).mean()
        loss = self.offset - s
        parts = {"sisnr": s.detach()}
        if self.wave_mse:
            mse = (est[..., c:] - clean[..., c:]).pow(2).mean()
            loss = loss + self.wave_mse * mse
            parts["wave_mse"] = mse.detach()
        if self.activity_l1:
            for name in self.activity_layers:
                if name not in aux["record"]:
                    raise KeyError(f"activity layer {name!r} not recorded; the model records "
                                   f"{sorted(aux['record'])}")
                l1 = aux["record"][name].abs().mean()
                loss = loss + self.activity_l1 * l1
                parts[f"l1_{name}"] = l1.detach()
        if self.mrstft:
            mr = mrstft_loss(est[..., c:], clean[..., c:])
            loss = loss + self.mrstft * mr
            parts["mrstft"] = mr.detach()
        if self.stoi:
            st = stoi_loss(est[..., c:], clean[..., c:], self.sample_rate)
            loss = loss + self.stoi * st
            parts["stoi"] = (1 - st).detach()
        if self.mask_mse:
            if clean_feats is None:
                fe = model.frontend
                clean_feats, _ = fe.analyze(fe.frames(clean))
            mse = (aux["mask"] * aux["features"] - clean_feats).pow(2).mean()
            loss = loss + self.mask_mse * mse
            parts["mask_mse"] = mse.detach()
        out = (loss, parts, est) if return_estimate else (loss, parts)
        return out if carry is None else out + (carry,)
