import pytest
import torch
from torch.utils import _pytree as pytree

import snnse
from snnse import fast_step
from snnse.streaming import Streamer

from .helpers import make_fire, speech
from .test_streaming import CONFIGS

SMALL = {"dpsnn": dict(N=32, B=32, H=32), "spiking_s4": dict(n_fft=64, hop=16, d_model=32, d_state=8, n_layers=2)}


def _hops(model, x, record=True):
    """Run ``x [B, T]`` hop by hop through ``model.step``; returns output, final state and records.

    Without ``record`` DPSNN takes the compiled step (when allowed), with it the PyTorch plan.
    """
    state = model.initial_state(x.shape[0], x.device, x.dtype)
    outs, recs = [], {}
    with torch.no_grad():
        for i in range(0, x.shape[1] - model.hop + 1, model.hop):
            rec = {} if record else None
            y, state = model.step(x[:, i:i + model.hop], state, rec)
            outs.append(y)
            for k, v in (rec or {}).items():
                recs.setdefault(k, []).append(v)
    return torch.cat(outs, -1), state, {k: torch.cat(v, 1) for k, v in recs.items()}


def _both(model, x, record=True):
    fast = _hops(model, x, record)
    with fast_step.disabled():
        ref = _hops(model, x, record)
    return fast, ref


@pytest.fixture(params=["compiled", "pytorch"])
def plan_kind(request):
    """Run a test with the compiled DPSNN step allowed (the default) and with the PyTorch plan only."""
    old = fast_step.compiled()
    fast_step.set_compiled(request.param == "compiled")
    yield request.param
    fast_step.set_compiled(old)


@pytest.mark.parametrize("key", list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_step_equals_module_step_on_speech(key, dtype, data_dir):
    torch.manual_seed(0)
    name, kw = CONFIGS[key]
    model = make_fire(snnse.get(name, **kw)).to(dtype).eval()
    x = torch.stack([speech(data_dir, 1.0, "p287_001"), speech(data_dir, 1.0, "p287_004")]).to(dtype)
    supported = key != "dpsnn_ann"
    assert (fast_step.plan_for(model) is not None) == supported
    (y, st, rec), (y_ref, st_ref, rec_ref) = _both(model, x)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert (y - y_ref).abs().max() <= tol * max(1.0, y_ref.abs().max().item())
    assert pytree.tree_structure(st) == pytree.tree_structure(st_ref)
    for a, b in zip(pytree.tree_leaves(st), pytree.tree_leaves(st_ref)):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    assert rec.keys() == rec_ref.keys()
    for k in rec:
        if dtype == torch.float64 and model.spiking and k != "readout":
            assert torch.equal(rec[k], rec_ref[k]), k
        else:
            torch.testing.assert_close(rec[k], rec_ref[k], atol=tol, rtol=tol)


@pytest.mark.parametrize("name", list(SMALL))
def test_paths_can_be_mixed_and_streamer_uses_the_same_state(name, plan_kind):
    torch.manual_seed(1)
    model = make_fire(snnse.get(name, **SMALL[name])).double().eval()
    x = torch.randn(1, 40 * model.hop, dtype=torch.float64) * 0.3
    (y_fast, _, _), (y_ref, _, _) = _both(model, x, record=False)
    state, outs = model.initial_state(1), []
    with torch.no_grad():
        for j, i in enumerate(range(0, x.shape[1], model.hop)):
            with (fast_step.disabled() if j % 2 else torch.no_grad()):
                y, state = model.step(x[:, i:i + model.hop], state)
            outs.append(y)
    torch.testing.assert_close(torch.cat(outs, -1), y_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(y_fast, y_ref, atol=1e-12, rtol=0)


def _changed(model, name):
    p = dict(model.named_parameters())[name]
    with torch.no_grad():
        p.add_(0.5 * torch.randn_like(p))


@pytest.mark.parametrize("name", list(SMALL))
def test_cache_is_rebuilt_when_the_weights_change(name, plan_kind):
    torch.manual_seed(2)
    model = make_fire(snnse.get(name, **SMALL[name])).double().eval()
    other = make_fire(snnse.get(name, **SMALL[name])).double().eval()
    x = torch.randn(1, 20 * model.hop, dtype=torch.float64) * 0.3

    def check():
        (y, _, _), (y_ref, _, _) = _both(model, x, record=False)
        torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=0)
        return y

    y0 = check()
    plan = fast_step.plan_for(model)
    assert fast_step.plan_for(model) is plan  # cached while nothing changes
    # in place, e.g. an optimizer step of a training run
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    model(x).pow(2).mean().backward()
    opt.step()
    model.eval()
    y1 = check()
    assert not torch.allclose(y0, y1)
    # load_state_dict (in place, and assigning new parameters)
    model.load_state_dict(other.state_dict())
    y2 = check()
    with torch.no_grad():
        torch.testing.assert_close(y2, _hops(other, x)[0], atol=1e-12, rtol=0)
    model.load_state_dict(make_fire(snnse.get(name, **SMALL[name])).double().state_dict(), assign=True)
    check()
    # every parameter, one at a time
    for pname, _ in list(model.named_parameters()):
        _changed(model, pname)
        check()
    # .data assignment, a replaced parameter, a replaced submodule, a dtype conversion
    p = next(model.masker.parameters())
    p.data = p.data + 0.1
    check()
    mod = next(m for m in model.masker.modules() if isinstance(m, torch.nn.Linear))
    mod.weight = torch.nn.Parameter(mod.weight.detach() * 1.5)
    check()
    mod.bias = torch.nn.Parameter(mod.bias.detach() + 0.2)
    check()
    model.float()
    (y, _, _), (y_ref, _, _) = _both(model, x.float(), record=False)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)


def test_module_path_with_autograd_multiple_hops_and_when_disabled():
    model = snnse.get("dpsnn", **SMALL["dpsnn"]).eval()
    x = torch.randn(1, 3 * model.hop)
    state = model.initial_state(1)
    y, _ = model.step(x[:, :model.hop], state)  # autograd on: the module path, differentiable
    assert y.requires_grad
    y.sum().backward()
    assert model.masker.proj.weight.grad is not None
    with torch.no_grad():
        y3, _ = model.step(x, state)  # three hops at once: the vectorised module path
        with fast_step.disabled():
            ref, _ = model.step(x, state)
        assert torch.equal(y3, ref)
        assert fast_step.enabled()
    fast_step.set_enabled(False)
    try:
        assert fast_step.plan_for(model) is None
    finally:
        fast_step.set_enabled(True)


def test_real_valued_s4_state_falls_back_to_the_module_path():
    """An export wrapper may hand S4D a real ``[..., 2]`` state: the plan declines, the module decides."""
    model = snnse.get("spiking_s4", **SMALL["spiking_s4"]).eval()
    state = model.initial_state(1)
    state["masker"] = tuple((torch.view_as_real(s), u) for s, u in state["masker"])
    with torch.no_grad():
        assert fast_step.plan_for(model).step(torch.zeros(1, model.hop), state) is None


def test_streamer_one_hop_chunks_equal_offline(data_dir, plan_kind):
    model = make_fire(snnse.get("dpsnn")).double().eval()
    x = speech(data_dir, 0.5, "p287_001")
    st = Streamer(model)
    with torch.no_grad():
        y = torch.cat([st.feed(x[i:i + model.hop]) for i in range(0, len(x), model.hop)] + [st.flush()])
        torch.testing.assert_close(y, model(x), atol=1e-12, rtol=0)


def test_copies_and_pickles_of_a_model_rebuild_their_own_plan():
    import copy
    import pickle

    model = snnse.get("dpsnn", **SMALL["dpsnn"]).double().eval()
    x = torch.randn(1, 10 * model.hop, dtype=torch.float64)
    y = _hops(model, x)[0]
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert fast_step.plan_for(clone) is not fast_step.plan_for(model)
        torch.testing.assert_close(_hops(clone, x)[0], y, atol=0, rtol=0)
        with torch.no_grad():
            next(clone.masker.parameters()).add_(1.0)
        (yc, _, _), (yc_ref, _, _) = _both(clone, x, record=False)
        torch.testing.assert_close(yc, yc_ref, atol=1e-12, rtol=0)
        assert torch.equal(_hops(model, x)[0], y)


COMPILED = {
    "dpsnn": ("dpsnn", {}),
    "dpsnn_x2": ("dpsnn", dict(N=32, B=16, H=16, X=2)),
    "dpsnn_k1": ("dpsnn", dict(N=24, B=8, H=8, context_dur=0.0)),
    "spiking_s4": ("spiking_s4", {}),
    "s4_hann": ("spiking_s4", dict(window="hann", d_model=64, d_state=16, n_layers=2)),
    "s4_conv_lif": ("spiking_s4", dict(frontend="conv", n_fft=80, hop=40, d_model=64, d_state=16, n_layers=2,
                                       unit="lif")),
}


@pytest.mark.parametrize("key", list(COMPILED))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_step_equals_module_step(key, dtype, plan_kind, data_dir):
    """Without a record (the Streamer's usual call) the compiled step runs when it builds."""
    from snnse import fast_cpp

    torch.manual_seed(3)
    name, kw = COMPILED[key]
    model = make_fire(snnse.get(name, **kw)).to(dtype).eval()
    with torch.no_grad():
        plan = fast_step.plan_for(model)
    assert (plan.ops is not None) == (plan_kind == "compiled" and fast_cpp.load() is not None)
    x = torch.stack([speech(data_dir, 1.0, "p287_001"), speech(data_dir, 1.0, "p287_004")]).to(dtype)
    (y, st, _), (y_ref, st_ref, _) = _both(model, x, record=False)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert (y - y_ref).abs().max() <= tol * max(1.0, y_ref.abs().max().item())
    assert pytree.tree_structure(st) == pytree.tree_structure(st_ref)
    for a, b in zip(pytree.tree_leaves(st), pytree.tree_leaves(st_ref)):
        assert a.shape == b.shape and a.dtype == b.dtype
        scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
        assert a.numel() == 0 or (a - b).abs().max() <= tol * scale
    if dtype == torch.float64 and name == "dpsnn":  # the spikes in the state (previous SRNN output)
        assert torch.equal(st["masker"]["blocks"][0][3], st_ref["masker"]["blocks"][0][3])


@pytest.mark.parametrize("name", list(SMALL))
def test_fast_step_leaves_its_input_state_alone(name, plan_kind):
    model = make_fire(snnse.get(name, **SMALL[name])).double().eval()
    x = torch.randn(1, 5 * model.hop, dtype=torch.float64)
    with torch.no_grad():
        state = model.step(x[:, :model.hop], model.initial_state(1))[1]
        state = model.step(x[:, model.hop:2 * model.hop], state)[1]
        before = [t.clone() for t in pytree.tree_leaves(state)]
        a = model.step(x[:, 2 * model.hop:3 * model.hop], state)[0]
        b = model.step(x[:, 2 * model.hop:3 * model.hop], state)[0]
        assert torch.equal(a, b)
        assert all(torch.equal(p, q) for p, q in zip(before, pytree.tree_leaves(state)))
        with pytest.raises(RuntimeError):  # another dtype: the module path decides (and refuses)
            model.step(x[:, :model.hop].float(), model.initial_state(1, dtype=torch.float32))


# ---- no compiler, and the SNNSE_FAST_STEP settings ------------------------------------------------
LEVEL = {"target_db": -20.0, "attack_s": 0.05, "release_s": 0.5}


def stream_and_step(model, x):
    """``x [1, T]`` through a Streamer fed one hop per call (the rest, then flush) and through ``model.step``
    hop by hop on the zero-padded input, both aligned to the offline output; and the Streamer."""
    hop, T = model.hop, x.shape[1]
    d = model.frame_length - hop
    with torch.no_grad():
        st = Streamer(model)
        outs = [st.feed(x[:, i:i + hop]) for i in range(0, T - T % hop, hop)]
        hop_after_feeds = st._hop  # the compiled Hop, if one ran the one-hop feeds
        ys = torch.cat(outs + [st.feed(x[:, T - T % hop:]), st.flush()], -1)
        padded = torch.nn.functional.pad(x, (0, -(-(T + d) // hop) * hop - T))
        state, steps = model.initial_state(1, dtype=x.dtype), []
        for i in range(0, padded.shape[1], hop):
            y, state = model.step(padded[:, i:i + hop], state)
            steps.append(y)
        zs = torch.cat(steps, -1)[:, d:d + T]
    return ys, zs, hop_after_feeds


@pytest.mark.parametrize("name, level", [("dpsnn", False), ("dpsnn", True), ("spiking_s4", False),
                                         ("spiking_s4", True)])
def test_streaming_and_step_work_when_no_compiled_code_builds(name, level, data_dir, monkeypatch):
    """The C++ builds fail (no compiler, simulated): one warning each, then the PyTorch plan (or the module
    path, with a level control) streams hop by hop and steps with the offline samples."""
    from torch.utils import cpp_extension

    from snnse import fast_cpp, kernels

    tried = []

    def no_compiler(*args, **kwargs):
        tried.append(kwargs.get("name"))
        raise RuntimeError("error: command 'g++' not found (simulated)")

    monkeypatch.setattr(cpp_extension, "load", no_compiler)  # what snnse.kernels.build calls
    monkeypatch.setattr(fast_step, "_compiled", True)  # compiled code allowed (whatever SNNSE_FAST_STEP says)
    monkeypatch.setattr(fast_cpp, "_state", {"tried": False, "ops": None})  # forget earlier builds
    monkeypatch.setattr(kernels, "_state", {"tried": False, "ops": None, "error": None})
    with pytest.warns(UserWarning, match="compiled streaming step unavailable, using the PyTorch plan"):
        assert fast_cpp.load() is None
    with pytest.warns(RuntimeWarning, match="C\\+\\+ neuron kernel unavailable.*g\\+\\+.*PyTorch loops"):
        assert kernels.load() is None
    assert len(tried) == 2  # both builds were tried, and failed
    torch.manual_seed(0)
    model = make_fire(snnse.get(name, **SMALL[name], level_control=LEVEL if level else None)).double().eval()
    x = speech(data_dir, 0.5)[None]
    with torch.no_grad():
        y = model(x)
        plan = fast_step.plan_for(model)
    assert plan is not None and plan.ops is None  # the PyTorch plan
    ys, zs, hop = stream_and_step(model, x)
    assert hop is None  # no compiled Hop
    assert ys.shape == zs.shape == y.shape
    assert (ys - y).abs().max() < 1e-10 and (zs - y).abs().max() < 1e-10
    assert len(tried) == 2  # nothing tried to build again


FAST_STEP_SCRIPT = r"""
import json, sys
from pathlib import Path

import torch

import snnse
from snnse import fast_cpp, fast_step
from tests.helpers import make_fire, speech
from tests.test_fast_step import SMALL, stream_and_step

report = {"enabled": fast_step.enabled(), "compiled": fast_step.compiled(), "models": {}}
for name in SMALL:
    torch.manual_seed(0)
    model = make_fire(snnse.get(name, **SMALL[name])).double().eval()
    x = speech(Path(sys.argv[1]), 0.5)[None]
    with torch.no_grad():
        y = model(x)
    ys, zs, hop = stream_and_step(model, x)
    cache = model.__dict__.get("_fast_step_cache")  # the plan, once one was built
    report["models"][name] = {
        "stream": (ys - y).abs().max().item(), "step": (zs - y).abs().max().item(),
        "plan_built": cache is not None, "plan_ops": cache is not None and cache.plan.ops is not None,
        "hop": hop is not None}
report["step_build_tried"] = fast_cpp._state["tried"]
print(json.dumps(report))
"""


@pytest.mark.parametrize("setting", ["0", "torch", "auto"])
def test_snnse_fast_step_settings(setting, data_dir):
    """SNNSE_FAST_STEP (read at import, so in a fresh process): every setting gives the offline samples
    streaming one hop per call and stepping (float64, 1e-10); 0 builds no plan and never loads the
    compiled step (the module path), torch builds the PyTorch plan only, auto the compiled one where it builds."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from snnse import fast_cpp

    env = {**os.environ, "SNNSE_FAST_STEP": setting, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    res = subprocess.run([sys.executable, "-c", FAST_STEP_SCRIPT, str(data_dir)], capture_output=True, text=True,
                         env=env, cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.splitlines()[-1])
    builds = fast_cpp.load() is not None
    assert report["enabled"] == (setting != "0")
    assert setting == "0" or report["compiled"] == (setting == "auto")
    assert report["step_build_tried"] == (setting == "auto")
    for name, r in report["models"].items():
        assert r["stream"] < 1e-10 and r["step"] < 1e-10, (name, r)
        assert r["plan_built"] == (setting != "0"), (name, r)
        assert r["plan_ops"] == r["hop"] == (setting == "auto" and builds), (name, r)
