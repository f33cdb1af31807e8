"""The Streamer's compiled Hop (torch.classes.snnse_step.Hop): one-hop feeds through one C++ object that
keeps the stream's state. It must give the offline samples, hand out the same state as the module path,
continue from an assigned state, never touch the caller's tensors, and follow weight changes."""

import pytest
import torch

import snnse
from snnse import fast_cpp, fast_step
from snnse.streaming import Streamer

from .helpers import make_fire, speech

pytestmark = pytest.mark.skipif(fast_cpp.load() is None, reason="the compiled streaming step does not build here")

LC = {"target_db": -20.0, "attack_s": 0.05, "release_s": 0.5}
MODELS = {
    "dpsnn": dict(N=64, B=64, H=64, X=2),
    "spiking_s4": dict(d_model=32, d_state=16, n_layers=2),
}
# Spiking-S4 frame lengths: a power of two runs the Hop's own real FFT (with and without a window), others
# at::fft_rfft/irfft
S4_FRAMES = {"hann64": dict(n_fft=64, hop=16, window="hann"), "hann80": dict(n_fft=80, hop=40, window="hann"),
             "rect256": dict(n_fft=256, hop=128, window="rect")}


def _model(name, level, **kw):
    torch.manual_seed(0)
    kw = dict(MODELS[name], **kw)
    if level:
        kw["level_control"] = LC
    return make_fire(snnse.get(name, **kw)).double().eval()


def _feed_hops(st, x, hop, start=0, stop=None):
    """Feed the whole hops of ``x[..., start:stop]`` one call each."""
    stop = x.shape[-1] if stop is None else stop
    return [st.feed(x[..., i:i + hop]) for i in range(start, stop - (stop - start) % hop, hop)]


def _flatten(state):
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for k in sorted(state) for t in _flatten(state[k])]
    return [t for s in state for t in _flatten(s)]


@pytest.mark.parametrize("level", [False, True])
@pytest.mark.parametrize("name", list(MODELS))
def test_one_hop_feeds_run_the_hop_and_equal_offline(name, level, data_dir):
    model = _model(name, level)
    x = speech(data_dir, 1.0)[None]
    hop = model.hop
    with torch.no_grad():
        y = model(x)
        st = Streamer(model)
        outs = _feed_hops(st, x, hop)
        assert st._hop is not None  # the compiled Hop ran the one-hop feeds
        outs += [st.feed(x[:, x.shape[1] - x.shape[1] % hop:]), st.flush()]
    ys = torch.cat(outs, -1)
    assert ys.shape == y.shape
    assert (ys - y).abs().max() < 1e-10


@pytest.mark.parametrize("frames", list(S4_FRAMES))
def test_spiking_s4_hop_frame_lengths_and_windows(frames, data_dir):
    model = _model("spiking_s4", frames == "hann64", **S4_FRAMES[frames])
    x = speech(data_dir, 0.5)[None]
    hop = model.hop
    with torch.no_grad():
        y = model(x)
        st = Streamer(model)
        outs = _feed_hops(st, x, hop)
        assert st._hop is not None
        outs += [st.feed(x[:, x.shape[1] - x.shape[1] % hop:]), st.flush()]
        # the compiled step of several hops per call (model.step) as well
        state, steps = model.initial_state(1, dtype=x.dtype), []
        for i in range(0, x.shape[1] - 5 * hop, 5 * hop):
            out, state = model.step(x[:, i:i + 5 * hop], state)
            steps.append(out)
    ys, lag = torch.cat(outs, -1), model.frame_length - hop
    assert ys.shape == y.shape and (ys - y).abs().max() < 1e-10
    zs = torch.cat(steps, -1)[:, lag:]
    assert (zs - y[:, :zs.shape[1]]).abs().max() < 1e-10


@pytest.mark.parametrize("name", list(MODELS))
def test_mixed_chunks_state_reads_and_assignment(name, data_dir):
    model = _model(name, True)
    x = speech(data_dir, 1.0)[None]
    hop = model.hop
    with torch.no_grad():
        y = model(x)
        st, ref = Streamer(model), Streamer(model)
        outs = _feed_hops(st, x, hop, 0, 20 * hop)
        with fast_step.disabled():  # the module path from the same input: the reference state
            _feed_hops(ref, x, hop, 0, 20 * hop)
        got, want = st.state, ref.state
        assert got.keys() == want.keys()
        for a, b in zip(_flatten(got), _flatten(want)):
            assert a.shape == b.shape and a.dtype == b.dtype and (a - b).abs().max() < 1e-10
        snapshot = [t.clone() for t in _flatten(got)]
        outs.append(st.feed(x[:, 20 * hop:23 * hop]))  # several hops: the general path
        outs += _feed_hops(st, x, hop, 23 * hop, 30 * hop)  # back to the Hop
        assert st._hop is not None
        outs.append(st.feed(x[:, 30 * hop:30 * hop + 7]))  # a partial hop is left pending
        outs += _feed_hops(st, x, hop, 30 * hop + 7, 40 * hop + 7)  # hop-sized calls, not aligned
        # the state handed out earlier was a copy: the stream went on without touching it
        assert all(torch.equal(a, b) for a, b in zip(_flatten(got), snapshot))
        # assigning a state continues from it (here: the state read above, so the output repeats)
        st2 = Streamer(model)
        st2.state, st2.to_skip = got, 0
        again = torch.cat(_feed_hops(st2, x, hop, 20 * hop, 30 * hop), -1)
        outs.append(st.feed(x[:, 40 * hop + 7:]))
        outs.append(st.flush())
    ys = torch.cat(outs, -1)
    assert ys.shape == y.shape and (ys - y).abs().max() < 1e-10
    lag = model.frame_length - hop
    assert (again - y[:, 20 * hop - lag:30 * hop - lag]).abs().max() < 1e-10


@pytest.mark.parametrize("name", list(MODELS))
def test_weight_changes_mid_stream_are_followed(name, data_dir):
    x = speech(data_dir, 0.6)[None]
    outs = {}
    for mode in ("hop", "module"):
        model = _model(name, False)
        hop = model.hop
        with torch.no_grad(), (fast_step.disabled() if mode == "module" else torch.no_grad()):
            st = Streamer(model)
            out = _feed_hops(st, x, hop, 0, 10 * hop)
            for p in model.masker.parameters():  # in place, as an optimizer step does
                p.mul_(1.05)
            out += _feed_hops(st, x, hop, 10 * hop, 20 * hop)
            last = model.masker.mask if name == "dpsnn" else model.masker.decoder
            last.bias = torch.nn.Parameter(last.bias + 0.01)  # replaced: a registration
            out += _feed_hops(st, x, hop, 20 * hop, 30 * hop)
            if mode == "hop":
                assert st._hop is not None
        outs[mode] = torch.cat(out, -1)
    assert (outs["hop"] - outs["module"]).abs().max() < 1e-10


@pytest.mark.parametrize("name", list(MODELS))
def test_hop_keeps_float32_batches_and_1d_hops(name, data_dir):
    model = snnse.get(name, **MODELS[name]).eval()
    x = torch.stack([speech(data_dir, 0.5, "p287_001"), speech(data_dir, 0.5, "p287_004")]).float()
    with torch.inference_mode():
        y = model(x)
        st = Streamer(model, batch=2)
        rest = x.shape[1] - x.shape[1] % model.hop
        ys = torch.cat(_feed_hops(st, x, model.hop) + [st.feed(x[:, rest:]), st.flush()], -1)
        st1 = Streamer(model)  # batch 1 fed [hop] tensors: [hop] tensors back
        hops = _feed_hops(st1, x[1], model.hop)
        assert st1._hop is not None and all(h.dim() == 1 for h in hops)
        y1 = torch.cat(hops + [st1.feed(x[1, rest:]), st1.flush()], -1)
    assert ys.dtype == torch.float32 and ys.shape == y.shape
    assert (ys - y).abs().max() < 1e-5
    assert torch.equal(y1, ys[1])
