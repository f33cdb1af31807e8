"""Tests for :mod:`snnse.metrics.efficiency` / :mod:`snnse.metrics.opcount` and ``snnse profile``."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

import snnse
from snnse.cli import main
from snnse.metrics.efficiency import DEFINITIONS, flop_count, metricsboard, parameter_stats, profile
from snnse.metrics.dpsnn_paper import count_ops_dpsnn_paper
from snnse.metrics.opcount import (count_ops, energy, firing_rates, op_graph)
from snnse.streaming import Streamer

from .helpers import make_fire

PAPER_RATES = {"proj": 0.463, "scnn": 0.169, "srnn": 0.138, "readout": 0.079}
TINY = {"dpsnn": dict(N=16, B=16, H=16), "spiking_s4": dict(d_model=16, d_state=8, n_layers=1)}


@pytest.fixture(scope="module")
def dpsnn_readme():
    torch.manual_seed(0)
    return snnse.get("dpsnn").eval()


@pytest.fixture
def noisy_dir(data_dir):
    return data_dir / "voicebank_debug" / "noisy"


# ------------------------------------------------------------------ the published DPSNN figure
def test_dpsnn_ndns_accounting_hand_value(dpsnn_readme):
    ops = count_ops(op_graph(dpsnn_readme), PAPER_RATES)
    p, s, r, ro = PAPER_RATES.values()
    # encoder L·N, proj N·B (dense); SCNN H·K on proj spikes; SRNN in on SCNN, recurrent on SRNN,
    # readout on SRNN spikes; mask on the readout; decoder N·L (dense).
    synops = 20480 + 65536 + p * 1280 + s * 65536 + r * 65536 + r * 65536 + ro * 65536 + 20480
    neuronops = 256 + 256 + 256  # PLIF H + ALIF B + leaky integrators B; proj thresholds are stateless
    assert ops["per_step"]["synops"] == pytest.approx(synops, rel=1e-9)
    assert synops == pytest.approx(141429.5, abs=0.01)
    assert ops["synops_per_s"] == pytest.approx(synops * 400, rel=1e-9)
    assert ops["synops_per_s"] == pytest.approx(56.5718e6, rel=1e-6)
    assert ops["per_step"]["neuronops"] == neuronops
    assert ops["power_proxy_per_s"] == pytest.approx((synops + 10 * neuronops) * 400, rel=1e-9)
    assert ops["power_proxy_per_s"] == pytest.approx(59.64e6, rel=1e-3)
    spike = p * 1280 + s * 65536 + 2 * r * 65536
    assert ops["spike_synops_per_s"] == pytest.approx(spike * 400, rel=1e-9)
    assert ops["graded_synops_per_s"] == pytest.approx(ro * 65536 * 400, rel=1e-9)
    en = energy(ops)  # spikes: AC 0.9 pJ; graded + dense: MAC 4.6 pJ; µJ/s
    assert en["power_uw"] == pytest.approx((spike * 0.9 + (synops - spike) * 4.6) * 400 * 1e-6, rel=1e-9)
    assert en["ann_equivalent_uw"] == pytest.approx(369920 * 400 * 4.6e-6, rel=1e-9)


def test_dpsnn_paper_accounting_reproduces_61_5M(dpsnn_readme):
    paper = count_ops_dpsnn_paper(dpsnn_readme, PAPER_RATES)
    p, s, r, ro = PAPER_RATES.values()
    event = p * 1280 + s * (65536 + 65536) + r * 65536 + ro * 65536
    fixed = 20480 + (6 * 256 + 5) + 65536 + 4 * 256 + 20480
    assert paper["per_step"]["total"] == pytest.approx(event + fixed + 10 * 768, rel=1e-12)
    assert paper["power_proxy_per_s"] == pytest.approx(61.48e6, rel=1e-3)
    assert paper["power_proxy_per_s"] == pytest.approx(61.5e6, rel=5e-3)
    report = profile(dpsnn_readme, rates=PAPER_RATES, accounting="dpsnn-paper", measure_time=False)
    assert report["ops"]["power_proxy_per_s"] == pytest.approx(61.48e6, rel=1e-3)
    assert report["ops"]["ndns"]["synops_per_s"] == pytest.approx(56.5718016e6, rel=1e-9)
    assert report["metricsboard"]["power_proxy_mops_per_s"] == pytest.approx(61.48, rel=1e-3)
    with pytest.raises(TypeError, match="DPSNN"):
        count_ops_dpsnn_paper(snnse.get("spiking_s4", **TINY["spiking_s4"]), {"s4_0": 0.1})


# ------------------------------------------------------------------ graphs
def test_op_graph_synapse_totals_match_hand_counts(dpsnn_readme):
    g = op_graph(dpsnn_readme)
    syn = {layer.name: layer.synapses for layer in g.layers}
    assert syn == {"encoder": 80 * 256, "proj": 256 * 256, "scnn": 256 * 5, "srnn_in": 256 * 256,
                   "srnn_rec": 256 * 256, "readout": 256 * 256, "mask": 256 * 256, "decoder": 256 * 80}
    assert g.synapses == 369920 and g.neuron_units == 768 and g.steps_per_second == 400
    drivers = {layer.name: layer.driver for layer in g.layers}
    assert drivers == {"encoder": "dense", "proj": "dense", "scnn": "proj", "srnn_in": "scnn",
                       "srnn_rec": "srnn", "readout": "srnn", "mask": "readout", "decoder": "dense"}

    s4 = op_graph(snnse.get("spiking_s4"))  # paper configuration
    stft = 2 * 257 * 512  # real and imaginary rows × window
    per_layer = 256 * (8 * 32 + 1) + 256 * 256 + 256  # S4D step + emission + residual
    assert s4.synapses == 2 * stft + 2 * 257 * 256 + 4 * per_layer == 1184256
    assert s4.neuron_units == 4 * 256 and s4.steps_per_second == 125
    assert [lay.name for lay in s4.layers if lay.event == "spike"] == [f"s4_{i}.residual" for i in range(4)]

    g2 = op_graph(snnse.get("dpsnn", X=2, **TINY["dpsnn"]))  # chained blocks
    d2 = {layer.name: layer.driver for layer in g2.layers}
    assert d2["scnn0"] == "proj" and d2["scnn1"] == "srnn0" and d2["srnn_rec1"] == "srnn1"
    assert d2["readout0"] == "srnn0" and d2["readout1"] == "srnn1"
    assert g2.neuron_units == 2 * (16 + 16) + 16

    with pytest.raises(TypeError, match="cannot build an operation graph"):
        op_graph(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="unknown rate key"):
        count_ops(g, {**PAPER_RATES, "bogus": 0.1})
    with pytest.raises(ValueError, match="no event rate"):
        count_ops(g, {"proj": 0.5})


def test_graph_dense_macs_agree_with_flop_counter(dpsnn_readme):
    """FlopCounterMode sees every Linear (as mm/addmm) but not the depthwise SCNN, which DPSNN
    computes as an elementwise product and sum: per frame they differ by exactly its H·K weights."""
    g = op_graph(dpsnn_readme)
    fc = flop_count(dpsnn_readme, seconds=1.0)
    assert fc["frames"] == dpsnn_readme.frontend.n_frames(16000) == 401  # 400 steps + window padding
    scnn = next(layer.synapses for layer in g.layers if layer.name == "scnn")
    assert fc["macs_per_frame"] == pytest.approx(g.dense_macs_per_step - scnn, rel=1e-12)
    assert set(fc["by_op"]) <= {"aten.mm", "aten.addmm"}


# ------------------------------------------------------------------ firing rates
def test_measured_rates_equal_record_means(data_dir, noisy_dir):
    torch.manual_seed(0)
    model = make_fire(snnse.get("dpsnn", **TINY["dpsnn"])).eval()
    files = sorted(noisy_dir.glob("*.wav"))[:3]
    stats = {}
    rates = firing_rates(model, files, stats=stats)
    nz, tot = {}, {}
    frames = 0
    with torch.no_grad():
        for f in files:
            x, _ = sf.read(f, dtype="float32")
            _, aux = model(torch.from_numpy(x), return_aux=True)
            for k, v in aux["record"].items():
                nz[k] = nz.get(k, 0) + int((v != 0).sum())
                tot[k] = tot.get(k, 0) + v.numel()
            frames += aux["mask"].shape[1]
    assert set(rates) == {"proj", "scnn", "srnn", "readout"}
    for k in rates:
        assert rates[k] == pytest.approx(nz[k] / tot[k], rel=1e-12)
        assert 0.0 < rates[k] < 1.0
    assert stats["files"] == 3 and stats["frames"] == frames
    # streaming with record=True gives the same activity
    x, _ = sf.read(files[0], dtype="float32")
    st = Streamer(model, record=True)
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            st.feed(torch.from_numpy(x[i:i + 1000]))
        st.flush()
    one = firing_rates(model, [torch.from_numpy(x)])
    for k, v in st.records().items():
        assert one[k] == pytest.approx(float((v != 0).double().mean()), rel=1e-12)


# ------------------------------------------------------------------ ANN twins
@pytest.mark.parametrize("name", ["dpsnn", "spiking_s4"])
def test_ann_twin_is_all_dense(name, noisy_dir):
    torch.manual_seed(0)
    model = snnse.get(name, spiking=False, **TINY[name])
    report = profile(model, [sorted(noisy_dir.glob("*.wav"))[0]], measure_time=False)
    ops, g = report["ops"], report["graph"]
    assert not report["model"]["spiking"] and report["metricsboard"]["neuromorphic"] == "no"
    assert all(layer["event"] == "dense" for layer in g["layers"])
    assert ops["spike_synops_per_s"] == 0 and ops["ndns"]["graded_synops_per_s"] == 0
    assert ops["synops_per_s"] == pytest.approx(ops["dense_macs_per_s"], rel=1e-12)
    en = report["energy"]
    assert en["ac_ops_per_s"] == 0
    assert en["power_uw"] == pytest.approx(ops["dense_macs_per_s"] * 4.6e-6, rel=1e-12)
    assert en["power_uw"] == pytest.approx(en["ann_equivalent_uw"], rel=1e-12)
    assert report["rates"]["values"]  # activation sparsity is still measured and reported


def test_parameter_stats_and_metricsboard():
    s4 = snnse.get("spiking_s4")
    ps = parameter_stats(s4)
    assert ps["trainable"] == 530437 and sum(ps["by_module"].values()) == ps["total"]
    assert ps["buffers"]["items"]["frontend.analysis_weight"] == 257 * 2 * 512
    assert ps["size_kb"] == pytest.approx(530437 * 4 / 1024)
    assert parameter_stats(snnse.get("dpsnn"))["trainable"] == 372996
    report = profile(snnse.get("dpsnn", **TINY["dpsnn"]), rates={"proj": 0.5, "scnn": 0.2, "srnn": 0.1,
                                                                 "readout": 0.1}, hops=200)
    lat = report["latency"]
    assert lat["hops_timed"] >= 200 and lat["threads"] == 1
    assert lat["compute_per_hop_ms"] > 0 and lat["rtf_streaming"] > 0 and lat["rtf_offline"] > 0
    assert lat["total_ms"] == pytest.approx(5.0 + lat["compute_per_hop_ms"])
    assert report["ops"]["pdp_ops"] == pytest.approx(report["ops"]["power_proxy_per_s"] * lat["total_ms"] / 1000)
    summary = {"systems": {"enhanced": {"sisnr": {"mean": 14.1}, "sisnri": {"mean": 6.5},
                                        "dnsmos_ovrl": {"mean": 2.77}, "dnsmos_sig": {"mean": 3.16}}}}
    mb = metricsboard(report, summary)
    assert mb["si_snr_db"] == 14.1 and mb["dnsmos_sig"] == 3.16 and mb["dnsmos_bak"] is None
    assert mb["latency_total_ms"] == lat["total_ms"] and mb["params"] == report["parameters"]["trainable"]
    assert metricsboard(report)["si_snr_db"] is None


# ------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def tiny_ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    out = {}
    for name, kw in TINY.items():
        torch.manual_seed(0)
        out[name] = make_fire(snnse.get(name, **kw)).save(folder / f"{name}.pt")
    return out


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


MB_FIELDS = {"si_snr_db", "si_snri_db", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "latency_enc_dec_ms",
             "latency_total_ms", "power_proxy_mops_per_s", "pdp_mops", "params", "size_kb", "neuromorphic"}


@pytest.mark.parametrize("name", list(TINY))
def test_profile_cli_writes_json_and_yaml(name, tiny_ckpts, noisy_dir, tmp_path, capsys):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"systems": {"enhanced": {"sisnr": {"mean": 12.0}, "dnsmos_bak": {"mean": 3.5}}}}))
    js, ym = tmp_path / "out" / "p.json", tmp_path / "out" / "p.yaml"
    code, out, err = _run(capsys, "profile", "--model", tiny_ckpts[name], "--audio", noisy_dir,
                          "--eval", summary, "--json", js, "--yaml", ym)
    assert code == 0, err
    assert "power proxy" in out and "SynOps/s" in out and "latency" in out and "UNTRAINED" not in out
    rep = json.loads(js.read_text())
    board = yaml.safe_load(ym.read_text())
    assert board.pop("entry").startswith(rep["model"]["name"])
    assert board.pop("snnse_version") == rep["snnse_version"] == snnse.__version__
    assert board == rep["metricsboard"]
    assert not [p for p in js.parent.iterdir() if p.name.endswith(".part")]
    for section in ("model", "parameters", "flop_counter", "graph", "rates", "ops", "latency", "energy",
                    "metricsboard", "definitions"):
        assert section in rep
    assert set(rep["definitions"]) == set(DEFINITIONS)
    assert set(rep["metricsboard"]) == MB_FIELDS
    assert rep["metricsboard"]["si_snr_db"] == 12.0 and rep["metricsboard"]["dnsmos_bak"] == 3.5
    assert rep["rates"]["files"] == 6 and rep["rates"]["source"] == "measured on audio"
    assert set(rep["rates"]["values"]) == set(rep["graph"]["record_keys"])
    for key in ("synops_per_s", "neuronops_per_s", "power_proxy_per_s", "pdp_ops", "dense_macs_per_s",
                "spike_synops_per_s"):
        assert rep["ops"][key] > 0
    for key in ("algorithmic_ms", "compute_per_hop_ms", "enc_dec_per_hop_ms", "total_ms", "rtf_streaming",
                "rtf_offline"):
        assert rep["latency"][key] > 0
    for key in ("e_ac_pj", "e_mac_pj", "power_uw", "ann_equivalent_uw"):
        assert rep["energy"][key] > 0
    assert rep["energy"]["e_ac_pj"] == 0.9 and rep["energy"]["e_mac_pj"] == 4.6
    assert rep["flop_counter"]["macs_per_s"] > 0 and rep["parameters"]["trainable"] > 0


def test_profile_cli_registered_name_and_paper_accounting(capsys, tmp_path):
    js = tmp_path / "p.json"
    code, out, err = _run(capsys, "profile", "--model", "dpsnn", "--rates",
                          "proj=0.463,scnn=0.169,srnn=0.138,readout=0.079", "--accounting", "dpsnn-paper",
                          "--no-timing", "--json", js)
    assert code == 0, err
    assert "UNTRAINED" in out and "UNTRAINED" in err and "61.48" in out
    rep = json.loads(js.read_text())
    assert rep["model"]["untrained"] and rep["latency"]["total_ms"] is None
    assert rep["ops"]["power_proxy_per_s"] == pytest.approx(61.48e6, rel=1e-3)
    assert rep["ops"]["pdp_ops"] == pytest.approx(rep["ops"]["power_proxy_per_s"] * 0.005)


def test_profile_cli_bad_inputs(tiny_ckpts, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    ck = tiny_ckpts["dpsnn"]
    bad = [
        ("--model", tmp_path / "missing.pt"),
        ("--model", "no_such_model"),
        ("--model", ck, "--audio", empty),
        ("--model", ck, "--audio", tmp_path / "nowhere"),
        ("--model", ck, "--rates", "proj=abc"),
        ("--model", ck, "--rates", "bogus=0.1", "--no-timing"),
        ("--model", ck, "--rates", "proj=1.5", "--no-timing"),
        ("--model", tiny_ckpts["spiking_s4"], "--accounting", "dpsnn-paper", "--no-timing"),
        ("--model", ck, "--eval", tmp_path / "missing.json"),
        ("--model", ck, "--accounting", "other"),
    ]
    for argv in bad:
        code, _, err = _run(capsys, "profile", *argv)
        assert code == 2, (argv, err)
        assert "error" in err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert _run(capsys, "profile", "--model", tmp_path / "junk.pt")[0] == 2


def test_profile_cli_skips_unreadable_files(tiny_ckpts, noisy_dir, tmp_path, capsys):
    folder = tmp_path / "audio"
    folder.mkdir()
    shutil.copy(noisy_dir / "p287_001.wav", folder / "a.wav")
    (folder / "b.wav").write_bytes(b"RIFF garbage")
    sf.write(folder / "c.flac", np.zeros(0, np.float32), 16000)  # empty
    js = tmp_path / "p.json"
    code, out, err = _run(capsys, "profile", "--model", tiny_ckpts["dpsnn"], "--audio", folder,
                          "--no-timing", "--json", js)
    assert code == 1
    assert "b.wav" in err and "c.flac" in err and "2 of 3 audio files skipped" in err
    rep = json.loads(js.read_text())
    assert rep["rates"]["files"] == 1 and len(rep["rates"]["skipped"]) == 2
    (folder / "a.wav").unlink()
    code, _, err = _run(capsys, "profile", "--model", tiny_ckpts["dpsnn"], "--audio", folder, "--no-timing")
    assert code == 2 and "no usable audio" in err
