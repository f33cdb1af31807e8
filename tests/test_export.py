"""ONNX export of one streaming step, int8 quantisation, footprint, and ``snnse stream`` on real audio."""

import json

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch

import snnse
from snnse.cli import main
from snnse.deploy_commands import agreement_db
from snnse.export import (OnnxStreamer, export_onnx, initial_flat_state, metadata, metadata_json, pack_state,
                          quantize_int8, session, state_layout, unpack_state)
from snnse.models import count_parameters
from snnse.state import flatten_state
from snnse.footprint import graph_footprint, model_footprint, parse_bytes, verdict
from snnse.streaming import Streamer

from .helpers import make_fire, speech

# every family: both masker types, their ANN twins, and the front-end/masker cross-combinations
CONFIGS = {
    "dpsnn": ("dpsnn", dict(N=64, B=64, H=64)),
    "dpsnn_ann": ("dpsnn", dict(spiking=False, N=64, B=64, H=64)),
    "spiking_s4": ("spiking_s4", dict(d_model=64, d_state=16, n_layers=2)),
    "spiking_s4_ann": ("spiking_s4", dict(spiking=False, d_model=64, d_state=16, n_layers=2)),
    "dpsnn_stft": ("dpsnn", dict(frontend="stft", L=512, stride=128, context_dur=0.032, B=64, H=64)),
    "s4_conv": ("spiking_s4", dict(frontend="conv", n_fft=80, hop=40, d_model=32, d_state=8, n_layers=1)),
    # with the causal input level control of snnse.level_control (its state and gains are part of the graph)
    "s4_level": ("spiking_s4", dict(d_model=64, d_state=16, n_layers=2,
                                    level_control={"target_db": -20.0, "attack_s": 0.05, "release_s": 0.5})),
}
STANDARD_DOMAINS = ("", "ai.onnx")


def _model(key):
    torch.manual_seed(0)
    name, kw = CONFIGS[key]
    return make_fire(snnse.get(name, **kw)).float().eval()


@pytest.fixture(scope="module")
def clip(data_dir):
    return speech(data_dir, 1.0, "p287_004").float()


@pytest.mark.parametrize("key", list(CONFIGS))
def test_onnx_step_streams_like_torch(key, clip, tmp_path):
    model = _model(key)
    with torch.no_grad():
        _, aux = model(clip[None], return_aux=True)
        st, h = Streamer(model), model.hop  # hop by hop, as deployed
        ref = torch.cat([st.feed(clip[i : i + h]) for i in range(0, clip.numel(), h)] + [st.flush()]).numpy()
    if model.spiking:  # the spiking layers really fire (spikes exported as GreaterOrEqual + Cast)
        for layer, s in aux["record"].items():
            if layer != "readout":
                assert 0.01 <= s.mean() <= 0.6, (layer, s.mean().item())
    path = tmp_path / "step.onnx"
    meta = export_onnx(model, path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    ops = {n.op_type for n in proto.graph.node}
    assert all(n.domain in STANDARD_DOMAINS for n in proto.graph.node)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    assert "GreaterOrEqual" in ops or not model.spiking
    # inputs/outputs: audio + one packed float32 state [1, S], the new state in the same layout
    ins, outs = proto.graph.input, proto.graph.output
    size = sum(t.numel() for t in initial_flat_state(model)[0])
    assert [i.name for i in ins] == ["audio", "state"] and [o.name for o in outs] == ["enhanced", "new_state"]
    assert [_shape(v) for v in ins] == [[1, model.hop], [1, size]] == [_shape(v) for v in outs]
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in [*ins, *outs])
    # metadata
    md = metadata(path)
    assert md == {p.key: p.value for p in proto.metadata_props} == meta and md["opset"] == "17"
    assert md["model"] == CONFIGS[key][0] and md["snnse_version"] == snnse.__version__
    assert int(md["sample_rate"]) == 16000 and int(md["hop"]) == model.hop
    assert int(md["delay_samples"]) == model.frame_length - model.hop
    assert float(md["latency_ms"]) == model.latency_ms
    assert md["state_format"] == "packed" and int(md["state_size"]) == size
    assert json.loads(md["state_layout"]) == state_layout(model)
    # hop by hop in onnxruntime over the whole clip == the PyTorch Streamer
    y = OnnxStreamer(session(path))(clip.numpy())
    assert y.shape == ref.shape == clip.shape
    assert np.abs(y - ref).max() < 1e-4, np.abs(y - ref).max()
    assert agreement_db(ref, y) >= 100


def _shape(v):
    return [d.dim_value for d in v.type.tensor_type.shape.dim]


@pytest.mark.parametrize("key", ["dpsnn", "spiking_s4", "s4_level"])
def test_unpacked_layout_still_works(key, clip, tmp_path):
    """``packed=False``: one input and output per state tensor (the layout before packing),
    streamed by the same OnnxStreamer (which reads the format from the metadata)."""
    model = _model(key)
    path = tmp_path / "unpacked.onnx"
    export_onnx(model, path, packed=False)
    proto = onnx.load(str(path))
    ins, outs = proto.graph.input, proto.graph.output
    flat, _, names = initial_flat_state(model)
    assert ins[0].name == "audio" and outs[0].name == "enhanced"
    assert [i.name for i in ins[1:]] == names and [o.name for o in outs[1:]] == [f"new_{n}" for n in names]
    assert [_shape(i) for i in ins[1:]] == [_shape(o) for o in outs[1:]] == [list(t.shape) for t in flat]
    md = metadata_json(path)
    assert md["state_format"] == "unpacked" and md["state_names"] == names
    assert [e["shape"] for e in md["state_layout"]] == [list(t.shape) for t in flat]  # complex as [..., 2] pairs
    st = OnnxStreamer(session(path))
    assert not st.packed and len(st.state) == len(names)
    y_unpacked = st(clip.numpy())
    export_onnx(model, tmp_path / "packed.onnx")
    y_packed = OnnxStreamer(session(tmp_path / "packed.onnx"))(clip.numpy())
    assert agreement_db(y_unpacked, y_packed) >= 100


@pytest.mark.parametrize("key", ["dpsnn", "s4_level", "dpsnn_stft"])
def test_graph_clean_up_is_exact(key, clip, tmp_path):
    """The exact clean-up (snnse.export_simplify, onnxruntime's basic passes) removes nodes and
    changes no number: the same samples, bit for bit, as the exporter's graph."""
    model = _model(key)
    export_onnx(model, tmp_path / "raw.onnx", optimize=False)
    meta = export_onnx(model, tmp_path / "opt.onnx")
    assert meta["graph_passes"] == "onnxruntime-basic,simplify" and metadata(tmp_path / "raw.onnx")["graph_passes"] == "none"
    n_raw, n_opt = (len(onnx.load(str(tmp_path / f)).graph.node) for f in ("raw.onnx", "opt.onnx"))
    assert n_opt < 0.7 * n_raw, (n_raw, n_opt)
    x = clip.numpy()
    # bit for bit as ONNX defines the graphs (onnxruntime's basic passes only); with all its passes
    # onnxruntime fuses by shape pattern (Add + LayerNormalization of a 3-D tensor into
    # SkipLayerNormalization, not of a 2-D one), which rounds differently: within float rounding
    raw, opt = (OnnxStreamer(_session(tmp_path / f, basic=True))(x) for f in ("raw.onnx", "opt.onnx"))
    assert np.array_equal(raw, opt)
    raw, opt = (OnnxStreamer(session(tmp_path / f))(x) for f in ("raw.onnx", "opt.onnx"))
    assert np.abs(raw - opt).max() < 1e-6 and agreement_db(raw, opt) >= 100


def _session(path, basic=False):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if basic else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("key", ["spiking_s4", "s4_level", "dpsnn"])
def test_state_layout_metadata(key, clip, tmp_path):
    """The layout in the metadata: contiguous, sizes summing to S, shapes matching sizes; the
    packed state unpacks to the model's state leaves and packs back; zeros start a stream."""
    model = _model(key)
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    md = metadata_json(path)
    json.dumps(md)  # shippable beside the graph as it is
    assert isinstance(md["hop"], int) and isinstance(md["state_size"], int) and isinstance(md["latency_ms"], float)
    assert isinstance(md["state_layout"], list) and CONFIGS[key][1].items() <= md["model_kwargs"].items()
    layout, size = md["state_layout"], md["state_size"]
    leaves = flatten_state(model.initial_state(1))[0]
    assert [e["name"] for e in layout] == md["state_names"] and len(layout) == len(leaves)
    offset = 0
    for e, leaf in zip(layout, leaves):
        assert e["offset"] == offset and e["size"] == int(np.prod(e["shape"])) > 0
        assert e["dtype"] == str(leaf.dtype).replace("torch.", "")
        if leaf.is_complex():  # planes: [..., 2, M], real then imaginary
            assert e["dtype"] == "complex64" and e["complex_axis"] == -2
            assert e["shape"] == [*leaf.shape[:-1], 2, leaf.shape[-1]]
        else:
            assert e["shape"] == list(leaf.shape) and "complex_axis" not in e
        offset += e["size"]
    assert offset == size
    # a state reached by streaming unpacks into the Streamer's leaves (up to float rounding) and packs back
    st = OnnxStreamer(session(path))
    st.feed(clip.numpy()[: 40 * model.hop])
    flat = st.state[0]
    assert flat.shape == (1, size) and flat.dtype == np.float32 and flat.any()
    parts = unpack_state(flat, layout)
    assert np.array_equal(pack_state(parts, layout), flat)
    with torch.no_grad():
        ts = Streamer(model)
        ts.feed(clip[: 40 * model.hop])
        ref = flatten_state(ts.state)[0]
    for e, p, r in zip(layout, parts, ref):
        r = torch.view_as_real(r).transpose(-1, -2) if r.is_complex() else r
        assert p.shape == tuple(r.shape) and np.allclose(p, r.numpy(), atol=1e-4), e["name"]
    # zeros are the initial state
    st.reset()
    assert not st.state[0].any()
    assert np.array_equal(st(clip.numpy()), OnnxStreamer(session(path))(clip.numpy()))


def test_initial_state_is_zero_and_checked(tmp_path):
    model = _model("spiking_s4")
    flat, _, names = initial_flat_state(model)
    assert all(not t.any() for t in flat) and any(t.shape[-1] == 2 for t in flat)  # complex S4D state as pairs
    sess = session(export_onnx(model, tmp_path / "a.onnx") and tmp_path / "a.onnx")
    assert [tuple(i.shape) for i in sess.get_inputs()[1:]] == [(1, sum(t.numel() for t in flat))]
    assert not OnnxStreamer(sess).state[0].any()  # a new stream starts from zeros
    real = model.initial_state
    model.initial_state = lambda *a, **k: torch.utils._pytree.tree_map(torch.ones_like, real(*a, **k))
    with pytest.raises(ValueError, match="not all zeros"):
        export_onnx(model, tmp_path / "b.onnx")
    assert not (tmp_path / "b.onnx").exists()


def test_int8_is_smaller_and_close(tmp_path, data_dir, clip):
    model = _model("dpsnn")
    f32, q8 = tmp_path / "f.onnx", tmp_path / "q.onnx"
    export_onnx(model, f32)
    calib = [speech(data_dir, 2.0, "p287_001").float().numpy()]  # not the clip it is scored on
    info = quantize_int8(f32, q8, calib, max_hops=300)
    assert info["calibration_hops"] == 300 and info["nodes"] and all(n.startswith("/masker/") for n in info["nodes"])
    assert q8.stat().st_size < f32.stat().st_size
    assert metadata(q8)["hop"] == metadata(f32)["hop"] and "quantization" in metadata(q8)
    assert metadata(q8)["state_format"] == "packed" and metadata(q8)["state_layout"] == metadata(f32)["state_layout"]
    g = onnx.load(str(q8)).graph  # the state in and out stays float32 [1, S]
    assert [(v.name, v.type.tensor_type.elem_type, _shape(v)) for v in [*g.input, *g.output]] == [
        (n, onnx.TensorProto.FLOAT, s) for n, s in (("audio", [1, model.hop]), ("state", [1, int(metadata(f32)["state_size"])]),
                                                  ("enhanced", [1, model.hop]), ("new_state", [1, int(metadata(f32)["state_size"])]))]
    x = clip.numpy()
    y_f, y_q = OnnxStreamer(session(f32))(x), OnnxStreamer(session(q8))(x)
    assert y_q.shape == x.shape and np.isfinite(y_q).all()
    assert agreement_db(y_f, y_q) > 15
    fq = graph_footprint(q8)
    assert fq["weights"].get("int8", 0) > 0 and fq["weight_bytes"] < graph_footprint(f32)["weight_bytes"]


def test_footprint_is_consistent(tmp_path):
    for key in ("dpsnn", "spiking_s4"):
        model = _model(key)
        fp = model_footprint(model)
        assert fp["weight_bytes"] == sum(p.numel() * p.element_size() for p in model.parameters())
        assert fp["weight_bytes"] == sum(fp["weights"].values()) == 4 * count_parameters(model)
        assert fp["buffer_bytes"] == sum(b.numel() * b.element_size() for b in model.buffers())
        path = tmp_path / f"{key}.onnx"
        export_onnx(model, path)
        g = graph_footprint(path)
        assert g["state_bytes"] == fp["state_bytes"] > 0  # complex64 = two float32
        assert g["weight_bytes"] == sum(g["weights"].values()) and g["weight_bytes"] <= g["file_bytes"]
        assert 0 < g["peak_activation_bytes"] and g["io_bytes"] == 2 * 4 * model.hop
        v = verdict(g)
        assert v["flash_budget"] == 2 * 1024**2 and v["ram_budget"] == 786 * 1024 and v["fits_ram"]
        # the STFT is ONNX DFT operators, not two dense [514, 512] Fourier matrices (2 MB): the graph's
        # weights are about the model's parameters (plus derived constants), and the tiny models fit 2 MB
        assert g["weight_bytes"] < fp["weight_bytes"] + 256 * 1024  # the two matrices alone: 2.1 MB
        assert v["fits_flash"] and v["flash_needed"] == g["weight_bytes"]
        if key == "spiking_s4":
            assert {n.op_type for n in onnx.load(str(path)).graph.node} >= {"DFT"}
        assert not verdict(g, ram="1KB")["fits_ram"]
    assert parse_bytes("786KB") == 804864 and parse_bytes("2MB") == 2097152 and parse_bytes(1000) == 1000
    with pytest.raises(ValueError):
        parse_bytes("lots")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "dpsnn.pt"
    _model("dpsnn").save(path)
    return path


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_cli(ckpt, tmp_path, capsys):
    code, out, err = _run(capsys, "export", ckpt, "-o", tmp_path / "m.onnx", "--quantize", "int8",
                          "--json", tmp_path / "m.json", "--ram", "64KB")
    assert code == 0, err
    assert "float32 graph" in out and "int8 graph" in out and "budget: flash" in out and "fits" in out
    rep = json.loads((tmp_path / "m.json").read_text())
    assert rep["int8"]["file_bytes"] == (tmp_path / "m.onnx").stat().st_size < rep["float32"]["file_bytes"]
    assert rep["int8"]["verdict"]["ram_budget"] == 64 * 1024
    assert rep["model_footprint"]["weight_bytes"] == 4 * count_parameters(snnse.load(ckpt))
    assert _run(capsys, "export", ckpt, "-o", tmp_path / "m.txt")[0] == 2
    assert _run(capsys, "export", ckpt, "-o", tmp_path / "n.onnx", "--ram", "lots")[0] == 2
    assert _run(capsys, "export", tmp_path / "missing.pt", "-o", tmp_path / "n.onnx")[0] == 2


def test_stream_cli_both_backends(ckpt, data_dir, tmp_path, capsys):
    src = data_dir / "voicebank_debug" / "noisy" / "p287_002.wav"
    x, sr = sf.read(src)
    outs = {}
    for backend in ("onnx", "torch"):
        dst = tmp_path / f"{backend}.wav"
        code, out, err = _run(capsys, "stream", src, "-o", dst, "--model", ckpt, "--backend", backend,
                              "--json", tmp_path / f"{backend}.json")
        assert code == 0, err
        for what in ("per-hop compute: median", "µs", "% of the hop", "p99", "real-time factor", "total latency"):
            assert what in out
        r = json.loads((tmp_path / f"{backend}.json").read_text())
        assert r["hops"] == len(x) // 40 and r["algorithmic_latency_ms"] == 5 and r["median_us"] > 0
        assert r["total_latency_ms"] == pytest.approx(5 + r["median_us"] / 1000)
        # steady-state RTF: the hops after the first, whose time (loading, constants) is reported apart
        hops_s = (r["hops"] - 1) * 40 / sr
        assert r["rtf"] > 0 and r["first_hop_ms"] > 0 and r["rtf_with_first_hop"] > 0
        assert r["rtf"] * hops_s <= r["rtf_with_first_hop"] * len(x) / sr
        outs[backend], sr_out = sf.read(dst)
        assert sr_out == sr and outs[backend].shape == x.shape and sf.info(str(dst)).subtype == "PCM_16"
    assert np.abs(outs["onnx"] - outs["torch"]).max() <= 2 / 32768
    onnx_path = tmp_path / "m.onnx"
    export_onnx(snnse.load(ckpt), onnx_path)  # an exported graph is accepted as --model too
    assert _run(capsys, "stream", src, "-o", tmp_path / "g.wav", "--model", onnx_path)[0] == 0
    assert np.abs(sf.read(tmp_path / "g.wav")[0] - outs["onnx"]).max() == 0
    # without --backend: onnx for a graph (above), the PyTorch Streamer for a checkpoint
    code, out, _ = _run(capsys, "stream", src, "-o", tmp_path / "d.wav", "--model", ckpt)
    assert code == 0 and "(torch, " in out
    assert np.abs(sf.read(tmp_path / "d.wav")[0] - outs["torch"]).max() == 0


def test_stream_cli_input_handling(ckpt, data_dir, tmp_path, capsys, monkeypatch):
    x, sr = sf.read(data_dir / "voicebank_debug" / "noisy" / "p287_003.wav", dtype="float32")
    x = x[: sr // 2]
    stereo, low, empty, nan, junk = (tmp_path / n for n in ("st.wav", "8k.wav", "e.wav", "nan.wav", "junk.wav"))
    sf.write(stereo, np.stack([x, 0.5 * x], 1), sr)
    sf.write(low, x[::2], sr // 2)
    sf.write(empty, np.zeros(0), sr)
    sf.write(nan, np.where(np.arange(x.size) == 100, np.nan, x), sr, subtype="FLOAT")
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    run = lambda src, *a: _run(capsys, "stream", src, "-o", tmp_path / "out.wav", "--model", ckpt, *a)  # noqa
    code, _, err = run(stereo)
    assert code == 1 and "channels" in err and "--downmix" in err and not (tmp_path / "out.wav").exists()
    assert run(stereo, "--downmix")[0] == 0 and sf.info(str(tmp_path / "out.wav")).channels == 1
    code, _, err = run(low, "--backend", "torch")
    assert code == 0 and "resampled 8000 Hz -> 16000 Hz" in err
    info = sf.info(str(tmp_path / "out.wav"))
    assert info.samplerate == 8000 and info.frames == x.size // 2
    for bad, why in ((empty, "empty"), (nan, "NaN"), (junk, "cannot read"), (tmp_path / "none.wav", "not found")):
        code, _, err = run(bad)
        assert code == 1 and why in err, err
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    before = low.read_bytes()
    assert _run(capsys, "stream", low, "-o", low, "--model", ckpt)[0] == 2 and low.read_bytes() == before
    assert run(low, "--model", tmp_path / "none.pt")[0] == 2
    assert run(low, "--model", tmp_path / "none.onnx")[0] == 2
    export_onnx(snnse.load(ckpt), tmp_path / "g.onnx")
    assert run(low, "--model", tmp_path / "g.onnx", "--backend", "torch")[0] == 2
    monkeypatch.setenv("SNNSE_PRETRAINED_DIR", str(tmp_path / "no-weights"))
    code, _, err = _run(capsys, "stream", low, "-o", tmp_path / "d.wav")
    assert code == 2 and "not installed" in err


def test_plain_onnxruntime_loop_of_the_readme(ckpt, data_dir, tmp_path):
    """The README's loop (onnxruntime only, no snnse) gives the samples of OnnxStreamer."""
    import onnxruntime as ort

    export_onnx(snnse.load(ckpt), tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    hop, delay = int(meta["hop"]), int(meta["delay_samples"])
    names = [i.name for i in sess.get_inputs()]
    state = [np.zeros(i.shape, np.float32) for i in sess.get_inputs()[1:]]
    x = speech(data_dir, 0.7, "p287_005").float().numpy()
    n = len(x)
    xp = np.pad(x, (0, -(-(n + delay) // hop) * hop - n))
    out = []
    for i in range(0, len(xp), hop):
        y, *state = sess.run(None, dict(zip(names, [xp[None, i : i + hop], *state])))
        out.append(y[0])
    enhanced = np.concatenate(out)[delay : delay + n]
    assert np.array_equal(enhanced, OnnxStreamer(session(tmp_path / "m.onnx"))(x))


@pytest.mark.parametrize("name", ["dpsnn-demo", "spiking-s4-demo"])
def test_bundled_models_export_and_stream_like_torch(name, tmp_path, monkeypatch):
    """The shipped weights: ONNX step hop by hop over the bundled real clip == the Streamer,
    within the README's max abs diff < 1e-4 (measured: 3.4e-8 for both, 130 dB agreement; a spike
    flipped by the float32 rounding of the two runtimes would show as a far larger difference)."""
    from snnse import pretrained

    monkeypatch.delenv("SNNSE_PRETRAINED_DIR", raising=False)
    model = snnse.load(name).float().eval()
    x = sf.read(pretrained.FOLDER / "demo_noisy.wav", dtype="float32")[0]
    with torch.no_grad():
        st, h, xt = Streamer(model), model.hop, torch.from_numpy(x)
        ref = torch.cat([st.feed(xt[i : i + h]) for i in range(0, xt.numel(), h)] + [st.flush()]).numpy()
        _, aux = model(xt[None], return_aux=True)
    rates = {k: v.float().mean().item() for k, v in aux["record"].items() if k != "readout"}
    assert any(r > 0.001 for r in rates.values()), rates  # the trained network really spikes
    for packed in (True, False):
        path = tmp_path / f"{name}-{packed}.onnx"
        export_onnx(model, path, packed=packed)
        for graph in ("float32", "int8") if packed else ("float32",):
            if graph == "int8":  # calibrated on the clip it is scored on: the agreement is int8's own error
                quantize_int8(path, tmp_path / "q.onnx", [x], max_hops=300)
                path = tmp_path / "q.onnx"
            y = OnnxStreamer(session(path))(x)
            diff, agree = float(np.abs(y - ref).max()), agreement_db(ref, y)
            print(f"{name} {graph} packed={packed}: max abs diff {diff:.2e}, agreement {agree:.1f} dB")
            if graph == "float32":
                assert diff < 1e-4 and agree >= 100, (diff, agree)
            else:
                assert agree > 15, agree


def test_peak_activations_take_the_better_schedule(tmp_path):
    """Nodes hoisted to the start of the file (as the quantiser does with state-only products) do
    not inflate the RAM estimate: a runtime may run each node just before it is needed."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1000])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])
    nodes = [helper.make_node("Mul", ["x", "x"], ["a"]), helper.make_node("Add", ["x", "x"], ["b"]),
             helper.make_node("Sub", ["x", "x"], ["c"]), helper.make_node("Relu", ["x"], ["d"]),
             helper.make_node("Add", ["d", "a"], ["e"]), helper.make_node("Add", ["e", "b"], ["f"]),
             helper.make_node("Add", ["f", "c"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "hoisted.onnx"
    onnx.save(model, str(path))
    # file order: a, b, c and d alive together (16 KB); lazily: at most three 4 KB tensors at once
    assert graph_footprint(path)["peak_activation_bytes"] == 3 * 4000
