"""Causal input level control (snnse.level_control): streaming == offline, gains, persistence."""

import math

import pytest
import torch

import snnse
from snnse.level_control import LevelControl
from snnse.streaming import Streamer

from .helpers import make_fire, speech

LC = {"target_db": -20.0, "attack_s": 0.05, "release_s": 0.5, "max_gain_db": 20.0}
MODELS = {
    "dpsnn": dict(N=32, B=32, H=32),
    "spiking_s4": dict(d_model=32, d_state=8, n_layers=2),
}


def _db(x):
    return 10 * math.log10(float((x * x).mean()))


@pytest.mark.parametrize("name", list(MODELS))
def test_streaming_equals_offline_with_level_control(name, data_dir):
    torch.manual_seed(0)
    model = make_fire(snnse.get(name, level_control=LC, **MODELS[name])).double().eval()
    x = speech(data_dir, 1.0, "p287_004").double()[None] * 0.05  # about -45 dBFS: the gain is at work
    x[:, 6000:9000] *= 30.0  # a loud burst: attack, then release
    with torch.no_grad():
        y = model(x)
        for size in (1, model.hop, 3 * model.hop + 7):
            st = Streamer(model)
            ys = torch.cat([st.feed(x[:, i : i + size]) for i in range(0, x.shape[-1], size)] + [st.flush()], -1)
            assert torch.allclose(ys, y, atol=1e-10, rtol=0), (size, (ys - y).abs().max())
        plain = snnse.get(name, **MODELS[name]).double().eval()
        plain.load_state_dict(model.state_dict())
        assert (plain(x) - y).abs().max() > 1e-3  # the level control changes the result


def test_gains_track_the_level_causally():
    lc = LevelControl(hop=40, delay=40, sample_rate=16000, target_db=-20.0, attack_s=0.05, release_s=0.5,
                      max_gain_db=30.0)
    torch.manual_seed(0)
    x = torch.randn(1, 32000, dtype=torch.float64) * 10 ** (-40 / 20)  # steady noise at -40 dBFS
    g = lc.offline(x)
    assert g[0, 0] == pytest.approx(1.0, abs=0.02)  # starts at unity (the estimate starts at the target)
    assert 20 * math.log10(g[0, -1]) == pytest.approx(20.0, abs=1.5)  # converged (within the bias of the asymmetric smoothing)
    assert _db(x[:, -8000:] * g[:, -8000:]) == pytest.approx(-20.0, abs=1.5)
    # causal: the gains of the first half do not depend on the second
    y = x.clone()
    y[:, 16000:] *= 100
    assert torch.equal(lc.offline(y)[:, :16000], g[:, :16000])
    # clamped at max_gain_db for silence
    assert 20 * math.log10(lc.offline(torch.zeros(1, 32000, dtype=torch.float64))[0, -1]) == pytest.approx(30.0)


def test_level_control_is_saved_and_initial_state_is_zero(tmp_path):
    model = snnse.get("dpsnn", level_control=LC, **MODELS["dpsnn"])
    assert model.kwargs["level_control"] == LC
    path = model.save(tmp_path / "m.pt")
    again = snnse.load(path)
    assert again.level is not None and again.kwargs["level_control"] == LC
    state = again.initial_state(2)
    assert all(float(t.abs().max()) == 0 for t in state["level"])
    assert state["level"][1].shape == (2, again.frame_length - again.hop)
    again.set_level_control(None)
    assert "level_control" not in again.kwargs and "level" not in again.initial_state(1)


@pytest.mark.parametrize("bad", [{"attack_s": 0}, {"nonsense": 1}, "loud"])
def test_bad_level_control_options(bad):
    with pytest.raises(ValueError, match="level_control|attack_s"):
        snnse.get("dpsnn", level_control=bad, **MODELS["dpsnn"])


def test_compiled_level_step_equals_the_pytorch_one():
    from snnse import fast_cpp, fast_step

    if not fast_step.compiled() or fast_cpp.load() is None:
        pytest.skip("compiled step not available")
    lc = LevelControl(hop=40, delay=60, sample_rate=16000, target_db=-20.0, attack_s=0.05, release_s=0.5)
    torch.manual_seed(1)
    x = torch.randn(2, 5 * 40, dtype=torch.float64) * torch.tensor([[0.001], [0.5]], dtype=torch.float64)
    state = (torch.tensor([[3.0], [-7.0]], dtype=torch.float64), torch.randn(2, 60, dtype=torch.float64))
    with torch.no_grad():
        fast = lc.step(x, state)
        fast_step.set_compiled(False)
        try:
            ref = lc.step(x, state)
        finally:
            fast_step.set_compiled(True)
    for a, b in zip([fast[0], fast[1], *fast[2]], [ref[0], ref[1], *ref[2]]):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    assert not torch.equal(fast[0], x)  # the gains are at work


@pytest.mark.parametrize("name", list(MODELS))
def test_level_control_fused_into_the_compiled_hop(name, data_dir):
    """One hop without autograd: the compiled step runs the level control inside the same call;
    it equals the level control run separately around the PyTorch plan."""
    from snnse import fast_cpp, fast_step

    if not fast_step.compiled() or fast_cpp.load() is None:
        pytest.skip("compiled step not available")
    torch.manual_seed(0)
    model = make_fire(snnse.get(name, level_control=LC, **MODELS[name])).double().eval()
    x = speech(data_dir, 0.5, "p287_004").double()[None] * 0.05
    h = model.hop
    with torch.no_grad():
        st = model.initial_state(1)
        assert fast_step.plan_for(model).step(x[:, :h], st, None, level=model.level) is not None  # fused
        outs = {}
        for compiled in (True, False):
            fast_step.set_compiled(compiled)
            try:
                st, ys = model.initial_state(1), []
                for i in range(0, x.shape[-1] - h + 1, h):
                    y, st = model.step(x[:, i : i + h], st)
                    ys.append(y)
            finally:
                fast_step.set_compiled(True)
            outs[compiled] = (torch.cat(ys, -1), st["level"])
    assert torch.allclose(outs[True][0], outs[False][0], atol=1e-10, rtol=0)
    assert all(torch.allclose(a, b, atol=1e-10, rtol=0) for a, b in zip(outs[True][1], outs[False][1]))


def test_compiled_offline_gains_equal_the_pytorch_loop():
    from snnse import fast_cpp, fast_step

    if not fast_step.compiled() or fast_cpp.load() is None:
        pytest.skip("compiled step not available")
    lc = LevelControl(hop=128, delay=384, sample_rate=16000, target_db=-19.0, attack_s=0.5, release_s=5.0)
    torch.manual_seed(2)
    x = torch.randn(3, 5000, dtype=torch.float64) * torch.tensor([[1e-4], [0.01], [0.9]], dtype=torch.float64)
    x.requires_grad_(True)
    fast = lc.offline(x)
    fast_step.set_compiled(False)
    try:
        ref = lc.offline(x)
    finally:
        fast_step.set_compiled(True)
    assert fast.shape == ref.shape == x.shape and not fast.requires_grad
    assert torch.allclose(fast, ref, rtol=1e-12, atol=0)
