import pytest
import torch

import snnse
from snnse.streaming import Streamer

from .helpers import make_fire, speech

LC = {"target_db": -20.0, "attack_s": 0.05, "release_s": 0.5}
CONFIGS = {
    "dpsnn": ("dpsnn", {}),  # the README configuration
    "spiking_s4": ("spiking_s4", {}),  # the paper configuration
    "dpsnn_stft": ("dpsnn", dict(frontend="stft", L=512, stride=128, context_dur=0.032, B=64, H=64)),
    "s4_conv": ("spiking_s4", dict(frontend="conv", n_fft=80, hop=40, d_model=64, d_state=16, n_layers=2)),
    "dpsnn_ann": ("dpsnn", dict(spiking=False, N=64, B=64, H=64)),
    "spiking_s4_ann": ("spiking_s4", dict(spiking=False, d_model=64, d_state=16, n_layers=2)),
    # with the causal input level control (snnse.level_control)
    "dpsnn_level": ("dpsnn", dict(N=64, B=64, H=64, level_control=LC)),
    "spiking_s4_level": ("spiking_s4", dict(d_model=64, d_state=16, n_layers=2, level_control=LC)),
}
# README: streaming output == offline output, max abs diff < 1e-13 in float64 (measured: at most
# 9e-16 on these configurations, i.e. a few float64 rounding steps of outputs up to 0.8)
STREAM_TOL = 1e-13


def _stream(model, x, chunk, record=False):
    st = Streamer(model, batch=x.shape[0], record=record)
    outs = [st.feed(x[:, i : i + chunk]) for i in range(0, x.shape[1], chunk)]
    outs.append(st.flush())
    return torch.cat(outs, -1), st


@pytest.mark.parametrize("key", list(CONFIGS))
def test_streaming_equals_offline_with_firing_neurons(key, data_dir):
    torch.manual_seed(0)
    name, kw = CONFIGS[key]
    model = make_fire(snnse.get(name, **kw)).double().eval()
    x = torch.stack([speech(data_dir, 1.2, "p287_001"), speech(data_dir, 1.2, "p287_004")])
    with torch.no_grad():
        y, aux = model(x, return_aux=True)
        ref_spikes = aux["record"]
        if model.spiking:
            for layer, s in ref_spikes.items():
                if layer != "readout":
                    assert 0.01 <= s.mean() <= 0.6, (layer, s.mean().item())
        for chunk in (1, 17, model.hop, 1000, x.shape[1]):
            ys, st = _stream(model, x, chunk, record=True)
            assert ys.shape == x.shape
            assert (ys - y).abs().max() < STREAM_TOL, (chunk, (ys - y).abs().max().item())
            spikes = st.records()
            assert spikes.keys() == ref_spikes.keys()
            for layer in spikes:
                if layer in ("readout",) or not model.spiking:
                    torch.testing.assert_close(spikes[layer], ref_spikes[layer])
                else:
                    assert torch.equal(spikes[layer], ref_spikes[layer]), (chunk, layer)


def test_streamer_is_reusable_and_handles_edge_cases():
    model = snnse.get("dpsnn", N=16, B=16, H=16).double().eval()
    st = Streamer(model)
    x = torch.randn(333, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        a = torch.cat([st.feed(x), st.flush()])
        b = torch.cat([st.feed(x[:100]), st.feed(x[100:]), st.flush()])  # a second stream after flush
        assert torch.allclose(a, y, atol=1e-12) and torch.allclose(b, y, atol=1e-12)
        assert st.flush().numel() == 0  # empty stream
        assert torch.cat([st.feed(x[:1]), st.flush()]).shape == (1,)  # one sample
        st.feed(x[:50])
        st.reset()
        assert torch.allclose(torch.cat([st.feed(x), st.flush()]), y, atol=1e-12)
    with pytest.raises(ValueError):
        Streamer(model, batch=2).feed(torch.zeros(3, 10))


def test_streaming_output_lags_by_window_minus_hop():
    model = snnse.get("dpsnn", N=16, B=16, H=16).eval()
    st = Streamer(model)
    with torch.no_grad():
        n_out = sum(st.feed(torch.randn(40)).numel() for _ in range(10))
    assert n_out == 400 - (model.frame_length - model.hop)
    assert st.latency_samples == 80
