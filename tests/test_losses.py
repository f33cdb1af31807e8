"""The optional losses of the bundled recipes (in neither paper): multi-resolution STFT and STOI."""

import numpy as np
import pytest
import soundfile as sf
import torch

from snnse.losses import EnhancementLoss, mrstft_loss, si_snr, stoi_loss
from snnse.models import base


def _pair(data_dir, n=8000):
    vb = data_dir / "voicebank_debug"
    x = torch.from_numpy(sf.read(vb / "noisy" / "p287_002.wav")[0][:n])[None]
    c = torch.from_numpy(sf.read(vb / "clean" / "p287_002.wav")[0][:n])[None]
    return x, c


def test_mrstft_matches_a_direct_computation(data_dir):
    x, c = _pair(data_dir)
    assert mrstft_loss(c, c).item() == pytest.approx(0.0, abs=1e-12)
    got = mrstft_loss(x, c, resolutions=[(512, 128)], eps=1e-7).item()
    w = np.hanning(513)[:-1]  # periodic Hann, as torch.hann_window
    xp = np.pad(x[0].numpy(), 256, mode="reflect")
    cp = np.pad(c[0].numpy(), 256, mode="reflect")
    frames = lambda s: np.lib.stride_tricks.sliding_window_view(s, 512)[::128]  # noqa: E731
    E = np.sqrt(np.abs(np.fft.rfft(frames(xp) * w)) ** 2 + 1e-7)
    R = np.sqrt(np.abs(np.fft.rfft(frames(cp) * w)) ** 2 + 1e-7)
    want = np.linalg.norm(R - E) / np.linalg.norm(R) + np.abs(np.log(R) - np.log(E)).mean()
    assert got == pytest.approx(want, rel=1e-9)
    # noisier estimates cost more
    assert mrstft_loss(c + 0.1 * (x - c), c) < mrstft_loss(x, c)


# (term, weight, the term's loss function, its logged value from that loss)
WEIGHTED_TERMS = [("mrstft", 2.5, mrstft_loss, lambda v: v), ("stoi", 30.0, stoi_loss, lambda v: 1 - v)]


@pytest.mark.parametrize("term, weight, fn, logged", WEIGHTED_TERMS, ids=[t[0] for t in WEIGHTED_TERMS])
def test_enhancement_loss_adds_weighted_term(data_dir, term, weight, fn, logged):
    torch.manual_seed(0)
    model = base.get("dpsnn", N=16, B=16, H=16).double()
    x, c = _pair(data_dir)
    plain, _ = EnhancementLoss(offset=100.0)(model, x, c, context=160)
    loss, parts = EnhancementLoss(offset=100.0, **{term: weight})(model, x, c, context=160)
    est = model(x)
    want = fn(est[:, 160:], c[:, 160:]).item()
    assert parts[term].item() == pytest.approx(logged(want), rel=1e-12)
    assert loss.item() == pytest.approx(plain.item() + weight * want, rel=1e-12)
    assert plain.item() == pytest.approx(100 - si_snr(est[:, 160:], c[:, 160:]).mean().item(), rel=1e-12)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_stoi_loss_follows_pystoi_on_real_mixtures(data_dir):
    """1 − stoi_loss tracks the measure (pystoi, with its silent-frame removal) across SNRs."""
    from pystoi import stoi

    vb = data_dir / "voicebank_debug"
    c = sf.read(vb / "clean" / "p287_002.wav")[0]
    noise = sf.read(vb / "noisy" / "p287_002.wav")[0] - c
    ours, ref = [], []
    for gain in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0):
        x = c + gain * noise
        ref.append(stoi(c, x, 16000))
        ours.append(1 - stoi_loss(torch.from_numpy(x)[None], torch.from_numpy(c)[None]).item())
    assert ours[0] == pytest.approx(1.0, abs=1e-6)
    assert all(a > b for a, b in zip(ours, ours[1:]))  # monotone in the noise level, like STOI
    assert np.max(np.abs(np.subtract(ours, ref))) < 0.05
    with pytest.raises(ValueError, match="at least 30 frames"):
        stoi_loss(torch.zeros(1, 4000), torch.zeros(1, 4000))



def test_spectral_losses_have_finite_gradients_on_subnormal_output():
    """Clean-only training items with zero-padded speech: the model's output in the silence is 0 or
    subnormal (seen: k·1.4e-45, |k| <= 23), which gives STFT bins like 2.8e-45+7.0e-45j where
    ``abs()``'s backward overflows (1/|x| > float max) to NaN: one batch's NaN weights in training."""
    import torch

    from snnse.losses import mrstft_loss, stoi_loss

    torch.manual_seed(0)
    ref = torch.zeros(2, 16000)
    ref[:, 2000:10000] = torch.randn(2, 8000) * 0.1
    est = ref * 0.9
    est[:, -512:] = torch.randint(-23, 16, (2, 512)).float() * 1.401298464324817e-45
    for loss in (mrstft_loss, stoi_loss):
        x = est.clone().requires_grad_(True)
        loss(x, ref).backward()
        assert torch.isfinite(x.grad).all(), loss.__name__
