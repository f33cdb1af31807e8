import pytest
import soundfile as sf
import torch

from snnse.frontends import ConvFrontend, STFTFrontend, make_frontend
from snnse.streaming import Streamer


def _speech(data_dir, n=None):
    x, sr = sf.read(data_dir / "voicebank_debug" / "noisy" / "p287_002.wav", dtype="float64")
    assert sr == 16000
    x = torch.from_numpy(x)
    return x[:n] if n else x


@pytest.mark.parametrize("window,n_fft,hop", [("rect", 512, 128), ("hann", 512, 128), ("hann", 80, 40), ("hann", 512, 100), ("rect", 64, 32)])
def test_stft_istft_reconstructs_offline_and_frame_by_frame(data_dir, window, n_fft, hop):
    fe = STFTFrontend(n_fft, hop, window).double()
    x = torch.stack([_speech(data_dir, 20011), torch.randn(20011, dtype=torch.float64) * 0.1])
    # perfect reconstruction up to float64 rounding: measured at most 7.8e-16 (1.5e-15 of max |x|)
    tol = 1e-12 * x.abs().max().item()
    y = fe(x)
    assert y.shape == x.shape
    assert (y - x).abs().max() < tol, (y - x).abs().max().item()
    for chunk in (1, hop, 1000):
        st = Streamer(fe, batch=2)
        ys = torch.cat([st.feed(x[:, i : i + chunk]) for i in range(0, x.shape[1], chunk)] + [st.flush()], -1)
        assert ys.shape == x.shape
        assert (ys - x).abs().max() < tol, (chunk, (ys - x).abs().max().item())


def test_stft_matches_torch_stft():
    fe = STFTFrontend(512, 128, "hann").double()
    x = torch.randn(1, 4000, dtype=torch.float64)
    mag, spec = fe.analyze(fe.frames(x))
    ref = torch.stft(torch.nn.functional.pad(x, (384, 0)), 512, 128, window=torch.hann_window(512, dtype=torch.float64),
                     center=False, return_complex=True)  # [1, 257, F']
    n = ref.shape[-1]
    torch.testing.assert_close(mag[0, :n].T, ref[0].abs(), atol=1e-4, rtol=0)  # eps under the sqrt
    re, im = spec.chunk(2, -1)
    torch.testing.assert_close(torch.complex(re, im)[0, :n].T, ref[0])


def test_stft_weights_are_frozen_and_not_parameters():
    fe = STFTFrontend()
    assert sum(p.numel() for p in fe.parameters()) == 0
    assert fe.n_features == 257 and fe.latency_ms == 32.0


def test_bad_frontend_configurations_rejected():
    with pytest.raises(ValueError, match="uncovered"):
        STFTFrontend(512, 512, "hann")  # w[0] = 0 and nothing overlaps it
    with pytest.raises(ValueError):
        make_frontend("wavelet", 80, 40)
    with pytest.raises(ValueError):
        ConvFrontend(80, 0)


def test_conv_frontend_equals_conv1d_and_convtranspose1d():
    torch.manual_seed(0)
    fe = ConvFrontend(80, 40, 16).double()
    assert sum(p.numel() for p in fe.encoder.parameters()) == 16 * 80 + 16
    assert sum(p.numel() for p in fe.decoder.parameters()) + fe.decoder_bias.numel() == 16 * 80 + 1
    x = torch.randn(2, 4000, dtype=torch.float64)
    frames = fe.frames(x)
    w, _ = fe.analyze(frames)
    xp = torch.nn.functional.pad(x, (40, frames.shape[1] * 40 + 40 - 4000 - 40))
    ref = torch.relu(torch.nn.functional.conv1d(xp[:, None], fe.encoder.weight[:, None], fe.encoder.bias, stride=40))
    torch.testing.assert_close(w, ref.transpose(1, 2))
    y = fe.overlap_add(fe.synthesize(torch.ones_like(w), w), 4000)
    full = torch.nn.functional.conv_transpose1d(w.transpose(1, 2), fe.decoder.weight.T[:, None], fe.decoder_bias, stride=40)
    torch.testing.assert_close(y, full[:, 0, 40 : 40 + 4000])
