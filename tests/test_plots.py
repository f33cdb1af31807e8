"""Figures (snnse.plots) and ``snnse plot``: valid, non-blank PNGs from real speech and models."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import snnse
from snnse import plots
from snnse.cli import main
from snnse.models import get
from tests.helpers import make_fire, speech

DPI = 150  # the lowest allowed; keeps the tests quick


def png(path, min_width=500):
    """Read a PNG back; check it is wide enough and not blank; return the pixels."""
    from matplotlib.image import imread

    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.ndim == 3 and img.shape[1] > min_width and img.shape[0] > 200
    assert img[..., :3].std() > 0.05  # not blank
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # no temp file left
    return img


def summary(systems=("noisy", "enhanced")):
    """A small summary.json dict following the ``snnse evaluate`` schema."""
    means = {"noisy": {"sisnr": 8.4, "segsnr": -1.5, "pesq_wb": 1.97, "csig": 3.35, "stoi": 0.92},
             "enhanced": {"sisnr": 17.1, "sisnri": 8.7, "segsnr": 7.9, "pesq_wb": 2.81, "csig": 3.9,
                          "stoi": 0.94, "estoi": 0.83}}
    out = {"systems": {}, "implementations": {"pesq": "pesq 0.0.4"}}
    for s in systems:
        out["systems"][s] = {m: {"mean": v, "std": 0.3, "ci95": [v - 0.1 * abs(v) - 0.02, v + 0.1 * abs(v) + 0.02],
                                 "n": 12} for m, v in means[s].items()}
    return out


@pytest.fixture(scope="module")
def clips(data_dir):
    noisy, sr = sf.read(data_dir / "voicebank_debug" / "noisy" / "p287_002.wav")
    clean, _ = sf.read(data_dir / "voicebank_debug" / "clean" / "p287_002.wav")
    return noisy[: 2 * sr], clean[: 2 * sr], sr


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    make_fire(get("dpsnn", N=16, B=16, H=16)).save(d / "dpsnn.pt")
    make_fire(get("spiking_s4", d_model=16, d_state=8, n_layers=2)).save(d / "s4.pt")
    return d / "dpsnn.pt", d / "s4.pt"


# ------------------------------------------------------------------ functions

def test_log_spectrogram_full_scale_sine_reads_0_db():
    sr = 16000
    t = np.arange(sr) / sr
    S, hop_s, bin_hz = plots.log_spectrogram(np.sin(2 * np.pi * 1000 * t), sr)
    assert (hop_s, bin_hz) == (0.008, 31.25)
    assert S.shape == (257, sr // 128 + 1)
    mid = S[:, 10:-10]
    assert np.all(np.abs(mid.max(axis=0)) < 0.05)  # 1 kHz is bin 32 exactly
    assert np.all(mid.argmax(axis=0) == 32)


def test_spectrograms_three_panels_and_subsets(tmp_path, clips):
    noisy, clean, sr = clips
    enhanced = torch.from_numpy(noisy * 0.5 + clean * 0.5)  # tensors are accepted too
    out = plots.spectrograms(noisy, enhanced, clean, sr, tmp_path / "a" / "spec.png", title="p287_002", dpi=DPI)
    assert out == tmp_path / "a" / "spec.png"
    three = png(out)
    one = png(plots.spectrograms(noisy, sample_rate=sr, path=tmp_path / "noisy.png", dpi=DPI))
    two = png(plots.spectrograms(noisy[None], None, clean, sr, tmp_path / "nc.png", dpi=DPI))
    assert three.shape[0] > two.shape[0] > one.shape[0]  # stacked panels
    assert three.shape[1] == two.shape[1] == one.shape[1] >= 7 * DPI * 0.95


def test_spectrograms_errors(tmp_path, clips):
    noisy, _, sr = clips
    with pytest.raises(ValueError, match="at least one"):
        plots.spectrograms(path=tmp_path / "x.png")
    with pytest.raises(ValueError, match="mono"):
        plots.spectrograms(np.stack([noisy, noisy]), sample_rate=sr, path=tmp_path / "x.png")
    with pytest.raises(ValueError, match="dpi"):
        plots.spectrograms(noisy, sample_rate=sr, path=tmp_path / "x.png", dpi=72)
    assert list(tmp_path.iterdir()) == []


def test_format_rate():
    assert [plots.format_rate(r) for r in (0, 0.169, 0.0004, 0.00004, 1.0)] == ["0.0", "16.9", "0.04", "0.004", "100.0"]


def test_select_units_even_and_fixed():
    assert plots.select_units(10, 64).tolist() == list(range(10))
    u = plots.select_units(256, 64)
    assert len(u) == 64 and u[0] == 0 and u[-1] == 255 and np.all(np.diff(u) >= 4)
    assert plots.select_units(5, 3).tolist() == [0, 2, 4]
    with pytest.raises(ValueError):
        plots.select_units(5, 0)


@pytest.mark.parametrize("name, kwargs, layers", [
    ("dpsnn", dict(N=16, B=16, H=16), ["proj", "scnn", "srnn", "readout"]),
    ("dpsnn", dict(N=16, B=16, H=16, X=2), ["proj", "scnn0", "srnn0", "scnn1", "srnn1", "readout"]),
    ("spiking_s4", dict(d_model=16, d_state=8, n_layers=2), ["s4_0", "s4_1"]),
])
def test_spike_raster_rates_match_record(tmp_path, data_dir, name, kwargs, layers):
    torch.manual_seed(0)
    model = make_fire(get(name, **kwargs)).eval()
    with torch.no_grad():
        _, aux = model(speech(data_dir, 1.0).float(), return_aux=True)
    record = aux["record"]
    assert list(record) == layers
    path, rates = plots.spike_raster(record, model.hop, model.sample_rate, tmp_path / "r.png",
                                     max_neurons=8, title=name, dpi=DPI)
    png(path)
    assert list(rates) == layers
    for k, v in record.items():
        assert rates[k] == pytest.approx(float((v != 0).double().mean()), abs=1e-9)
    assert 0 < rates[layers[0]] < 1


def test_spike_raster_batch_numpy_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    rec = {"a": (rng.random((2, 300, 100)) < 0.1).astype(np.float32),  # batch of 2
           "graded": np.where(rng.random((300, 40)) < 0.3, rng.random((300, 40)), 0.0)}  # [frames, units]
    path, rates = plots.spike_raster(rec, 40, 16000, tmp_path / "r.png", rate_bars=False, dpi=DPI)
    png(path)
    assert rates["a"] == pytest.approx(np.count_nonzero(rec["a"]) / rec["a"].size)
    assert rates["graded"] == pytest.approx(np.count_nonzero(rec["graded"]) / rec["graded"].size)
    png(plots.spike_raster({"a": rec["a"]}, 40, 16000, tmp_path / "r1.png", item=1, dpi=DPI)[0])
    with pytest.raises(ValueError, match="empty"):
        plots.spike_raster({}, 40, 16000, tmp_path / "x.png")
    with pytest.raises(ValueError, match="item"):
        plots.spike_raster(rec, 40, 16000, tmp_path / "x.png", item=1)  # "graded" has one item
    assert not (tmp_path / "x.png").exists()


def test_metric_bars_noisy_only_and_both(tmp_path):
    only = png(plots.metric_bars(summary(("noisy",)), tmp_path / "n.png", dpi=DPI))
    both = png(plots.metric_bars(summary(), tmp_path / "b.png", title="VoiceBank", dpi=DPI))
    assert both.shape[1] > only.shape[1]  # more metrics, two bars each
    # the two systems' colours (Okabe-Ito orange and blue) appear; only orange without "enhanced"
    blue = np.array([0, 0x72, 0xB2]) / 255

    def has(img, rgb):
        return bool(np.any(np.all(np.abs(img[..., :3] - rgb) < 0.02, axis=-1)))
    assert has(both, blue) and not has(only, blue)


def test_metric_bars_odd_summaries(tmp_path):
    s = summary()
    s["systems"]["enhanced"]["my_score"] = {"mean": 0.4}  # unknown metric: "Other" panel, no CI
    s["systems"]["enhanced"]["csig"] = {"mean": float("nan")}  # failed metric: skipped
    s["systems"]["enhanced"]["covl"] = {"mean": None, "std": None, "ci95": [None, None], "n": 0}
    s["systems"]["noisy"]["stoi"]["ci95"] = [None, None]  # bar without error bar
    assert plots._stat(s["systems"]["noisy"]["stoi"]) == (0.92, 0.92, 0.92, 12)
    png(plots.metric_bars(s, tmp_path / "o.png", dpi=DPI))
    for bad in ({}, {"systems": {}}, {"systems": {"noisy": {"pesq_wb": {"mean": None}}}}, []):
        with pytest.raises(ValueError):
            plots.metric_bars(bad, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_writes_are_atomic_replacing_old_file(tmp_path):
    out = tmp_path / "m.png"
    out.write_bytes(b"old")
    plots.metric_bars(summary(), out, dpi=DPI)
    png(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png"]


# ------------------------------------------------------------------ command line

def run_cli(capsys, *argv):
    code = main(["plot", *map(str, argv), "--dpi", str(DPI)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_spectrogram_with_model_and_files(tmp_path, capsys, data_dir, ckpts):
    vb = data_dir / "voicebank_debug"
    noisy, clean = vb / "noisy" / "p287_003.wav", vb / "clean" / "p287_003.wav"
    code, out, err = run_cli(capsys, "spectrogram", "--noisy", noisy, "--model", ckpts[0], "--clean", clean,
                             "-o", tmp_path / "s.png")
    assert code == 0, err
    png(tmp_path / "s.png")
    # an enhanced file at another rate and in stereo: resampled; stereo needs --downmix
    x, sr = sf.read(noisy)
    sf.write(tmp_path / "enh.wav", np.stack([x, 0.5 * x], 1)[::2], sr // 2)
    args = ["spectrogram", "--noisy", noisy, "--enhanced", tmp_path / "enh.wav", "-o", tmp_path / "e.png"]
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "2 channels" in err and "--downmix" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, *args, "--downmix")
    assert code == 0, err
    png(tmp_path / "e.png")


@pytest.mark.parametrize("which", [0, 1])
def test_cli_raster_dpsnn_and_spiking_s4(tmp_path, capsys, data_dir, ckpts, which):
    audio = data_dir / "voicebank_debug" / "noisy" / "p287_004.wav"
    code, out, err = run_cli(capsys, "raster", "--model", ckpts[which], "--audio", audio,
                             "--max-neurons", 12, "--seconds", 1, "-o", tmp_path / "r.png")
    assert code == 0, err
    png(tmp_path / "r.png")
    assert ("scnn" in out and "srnn" in out) if which == 0 else ("s4_0" in out and "s4_1" in out)
    # the rates printed are those of the model on the first second of the file
    m = snnse.load(ckpts[which]).eval()
    x, sr = sf.read(audio, dtype="float32")
    with torch.no_grad():
        rec = m(torch.from_numpy(x[:sr]), return_aux=True)[1]["record"]
    for k, v in rec.items():
        assert f"{k} {plots.format_rate(float((v != 0).double().mean()))} %" in out


def test_cli_metrics_from_dir_and_file(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(summary()))
    code, _, err = run_cli(capsys, "metrics", run, "-o", tmp_path / "m1.png")
    assert code == 0, err
    png(tmp_path / "m1.png")
    code, _, err = run_cli(capsys, "metrics", run / "summary.json", "-o", tmp_path / "m2.png", "--title", "T")
    assert code == 0, err
    png(tmp_path / "m2.png")


def test_cli_errors_exit_2_with_one_line(tmp_path, capsys, data_dir, ckpts):
    audio = data_dir / "voicebank_debug" / "noisy" / "p287_005.wav"
    (tmp_path / "bad.wav").write_text("not audio")
    (tmp_path / "nosys.json").write_text(json.dumps({"implementations": {}}))
    (tmp_path / "broken.json").write_text("{")
    summ = tmp_path / "summary.json"
    summ.write_text(json.dumps(summary()))
    before = summ.read_bytes()
    o = tmp_path / "o.png"
    cases = [
        (["spectrogram", "--noisy", tmp_path / "missing.wav", "-o", o], "not found"),
        (["spectrogram", "--noisy", tmp_path / "bad.wav", "-o", o], "cannot read audio"),
        (["spectrogram", "--noisy", audio, "--model", tmp_path / "none.pt", "-o", o], "not found"),
        (["spectrogram", "--noisy", audio, "-o", audio], "overwrite"),
        (["spectrogram", "--noisy", audio, "-o", tmp_path / "o.jpg"], ".png"),
        (["raster", "--model", ckpts[0], "--audio", audio, "--seconds", 0, "-o", o], "--seconds"),
        (["raster", "--model", ckpts[0], "--audio", audio, "--max-neurons", 0, "-o", o], "--max-neurons"),
        (["raster", "--model", ckpts[0], "--audio", audio, "-o", ckpts[0]], "overwrite"),
        (["metrics", tmp_path / "nosys.json", "-o", o], "systems"),
        (["metrics", tmp_path / "broken.json", "-o", o], "JSON"),
        (["metrics", tmp_path / "nothing", "-o", o], "not found"),
        (["metrics", summ, "-o", summ], "overwrite"),
    ]
    for argv, msg in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, (argv, err)
        assert msg in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert summ.read_bytes() == before and not o.exists()
    empty = tmp_path / "empty_run"
    empty.mkdir()
    code, _, err = run_cli(capsys, "metrics", empty, "-o", o)
    assert code == 2 and "no summary.json" in err
    assert main(["plot"]) == 2 and "name a figure" in capsys.readouterr().err
    assert main(["plot", "--help"]) == 0 and "raster" in capsys.readouterr().out
    code = main(["plot", "raster", "--help"])
    assert code == 0 and "barely fires" in " ".join(capsys.readouterr().out.split())
