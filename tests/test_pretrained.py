"""Bundled models: loading by name, ``snnse models``, the default model of ``snnse enhance``,
``snnse demo``, and the noisereduce baseline of ``snnse evaluate``.

The plumbing tests point ``SNNSE_PRETRAINED_DIR`` at a folder of tiny models; the tests of
the shipped weights (``test_shipped_*``) use the real package folder.
"""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import snnse
from snnse import pretrained
from snnse.cli import main
from snnse.metrics.quality import si_snr

TINY = {"dpsnn-demo": ("dpsnn", {"N": 16, "B": 16, "H": 16}),
        "spiking-s4-demo": ("spiking_s4", {"d_model": 16, "d_state": 8, "n_layers": 1})}


@pytest.fixture
def tiny_bundle(tmp_path, monkeypatch):
    folder = tmp_path / "bundle"
    folder.mkdir()
    torch.manual_seed(0)
    for name, (arch, kwargs) in TINY.items():
        snnse.get(arch, **kwargs).save(folder / f"{name}.pt")
        (folder / f"{name}.md").write_text(f"# {name}\n\nA tiny test model.\n")
    (folder / "dpsnn-demo.json").write_text(json.dumps(
        {"demo_test": {"sisnr": {"noisy": 7.0, "model": 11.5}}}))
    monkeypatch.setenv("SNNSE_PRETRAINED_DIR", str(folder))
    return folder


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_load_by_name(tiny_bundle):
    model = snnse.load("spiking-s4-demo")
    assert model.name == "spiking_s4" and model.kwargs["d_model"] == 16
    assert pretrained.bundled() == ["dpsnn-demo", "spiking-s4-demo"]
    assert "tiny test model" in pretrained.card("dpsnn-demo")


def test_existing_file_wins_over_name(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    snnse.get("spiking_s4", d_model=8, d_state=4, n_layers=1).save(tmp_path / "dpsnn-demo")
    assert snnse.load("dpsnn-demo").name == "spiking_s4"


def test_missing_and_unknown_names(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SNNSE_PRETRAINED_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not installed"):
        snnse.load("dpsnn-demo")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        snnse.load("no-such-model")
    code, _, err = _run(capsys, "enhance", "x.wav", "-o", tmp_path / "o", "--model", "no-such-model")
    assert code == 2 and "no-such-model" in err


def test_models_command(tiny_bundle, capsys):
    code, out, _ = _run(capsys, "models")
    assert code == 0
    line = next(l for l in out.splitlines() if l.strip().startswith("dpsnn-demo"))
    assert "[default]" in line and "sisnr 7.00 -> 11.50" in line and "5 ms latency" in line
    assert "spiking-s4-demo" in out and "dpsnn, spiking_s4" in out
    code, out, _ = _run(capsys, "models", "--card", "spiking-s4-demo")
    assert code == 0 and out.startswith("# spiking-s4-demo")
    code, _, err = _run(capsys, "models", "--card", "nope")
    assert code == 2 and "unknown pretrained model" in err


def test_enhance_without_model_uses_default(tiny_bundle, data_dir, tmp_path, capsys):
    src = data_dir / "voicebank_debug" / "noisy"
    code, _, err = _run(capsys, "enhance", src, "-o", tmp_path / "out")
    assert code == 0
    assert err.count("using the bundled dpsnn-demo") == 1  # said once, not per file
    outs = sorted((tmp_path / "out").glob("*.wav"))
    assert len(outs) == len(list(src.glob("*.wav"))) == 6
    # the default is exactly the bundled dpsnn-demo
    x, sr = sf.read(src / outs[0].name)
    y, _ = sf.read(outs[0])
    with torch.inference_mode():
        ref = snnse.load(tiny_bundle / "dpsnn-demo.pt")(torch.from_numpy(x).float()[None])[0].numpy()
    assert np.abs(y - np.clip(ref, -1, 1)).max() < 2e-4  # PCM_16 rounding


def test_model_name_in_evaluate_and_profile(tiny_bundle, data_dir, tmp_path, capsys):
    d = data_dir / "voicebank_debug"
    code, out, _ = _run(capsys, "evaluate", "--noisy", d / "noisy", "--clean", d / "clean", "--limit", 2,
                        "--model", "spiking-s4-demo", "--metrics", "sisnr", "--workers", 1,
                        "-o", tmp_path / "ev", "--quiet")
    assert code == 0 and "| enhanced |" in out
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["model"]["path"] == "spiking-s4-demo"
    code, out, _ = _run(capsys, "profile", "--model", "dpsnn-demo", "--no-timing")
    assert code == 0 and "SynOps" in out


def test_demo_command(tiny_bundle, tmp_path, capsys):
    code, out, _ = _run(capsys, "demo", "-o", tmp_path / "demo")
    assert code == 0
    for needle in ("SI-SNR dB", "PESQ-WB", "STOI", "algorithmic", "real-time factor"):
        assert needle in out
    y, sr = sf.read(tmp_path / "demo" / "enhanced.wav")
    x, _ = sf.read(pretrained.FOLDER / "demo_noisy.wav")
    assert sr == 16000 and len(y) == len(x)
    assert (tmp_path / "demo" / "spectrogram.png").stat().st_size > 10_000
    report = json.loads((tmp_path / "demo" / "scores.json").read_text())
    # the printed scores are those of the written file (up to PCM_16 rounding)
    c, _ = sf.read(pretrained.FOLDER / "demo_clean.wav")
    assert abs(report["enhanced_scores"]["si_snr"] - si_snr(c, y)) < 0.05
    assert report["timing"]["algorithmic_ms"] == 5.0 and report["timing"]["rtf"] > 0


def test_demo_refuses_input_folder(tiny_bundle, capsys):
    code, _, err = _run(capsys, "demo", "-o", pretrained.FOLDER)
    assert code == 2 and "holds the input clip" in err


def test_evaluate_noisereduce_baseline(data_dir, tmp_path, capsys):
    d = data_dir / "voicebank_debug"
    code, out, _ = _run(capsys, "evaluate", "--noisy", d / "noisy", "--clean", d / "clean", "--limit", 2,
                        "--baseline", "noisereduce", "--metrics", "sisnr", "--workers", 1,
                        "-o", tmp_path / "ev", "--quiet")
    assert code == 0 and "| noisereduce |" in out and "| noisy |" in out
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert list(summary["systems"]) == ["noisy", "noisereduce"]
    assert "--baseline" in summary["command"]
    # the scored signal is noisereduce's output with its defaults, on the whole file: the same
    # score as noisereduce.reduce_noise called here directly
    import csv

    import noisereduce

    with open(tmp_path / "ev" / "per_file.csv", newline="") as f:
        rows = {(r["system"], r["file"]): float(r["sisnr"]) for r in csv.DictReader(f)}
    files = sorted({name for _, name in rows})
    assert len(files) == 2 and len(rows) == 4
    for name in files:
        x, sr = sf.read(d / "noisy" / name, dtype="float64")
        clean = sf.read(d / "clean" / name, dtype="float64")[0]
        y = noisereduce.reduce_noise(y=x, sr=sr, stationary=False, n_jobs=1)
        assert y.shape == x.shape
        assert rows[("noisereduce", name)] == pytest.approx(si_snr(clean, y), abs=1e-9), name
        assert abs(rows[("noisereduce", name)] - rows[("noisy", name)]) > 0.1, name
    code, _, err = _run(capsys, "evaluate", "--noisy", d / "noisy", "--clean", d / "clean",
                        "--baseline", "wiener", "-o", tmp_path / "ev2", "--quiet")
    assert code == 2 and "unknown baseline" in err


# ---- the shipped weights (the real package folder) ----------------------------------------------
@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.delenv("SNNSE_PRETRAINED_DIR", raising=False)
    return pretrained.FOLDER


def test_shipped_models_are_bundled_small_and_carded(shipped):
    assert pretrained.bundled() == list(pretrained.CATALOGUE)
    files = [p for p in shipped.iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 20e6  # package data under 20 MB
    for name in pretrained.CATALOGUE:
        ckpt = torch.load(pretrained.path(name), map_location="cpu", weights_only=True)
        assert ckpt["model"] in ("dpsnn", "spiking_s4") and ckpt["kwargs"]
        card = pretrained.card(name)
        for needle in ("noisereduce", "snnse fit", "seed", "SynOps", "licen"):
            assert needle in card, (name, needle)
        facts = json.loads((shipped / f"{name}.json").read_text())
        assert set(facts["demo_test"]) >= {"sisnr", "pesq_wb", "stoi"}
    assert (shipped / "demo_clip.txt").read_text().count("CC BY") >= 2


@pytest.mark.parametrize("name", [pretrained.DEFAULT])
def test_shipped_models_denoise_the_demo_clip(shipped, name):
    """The bundled clip (test split: unseen voice and noise) gets better on all three scores.

    Only for the default model, the one ``snnse demo`` runs: ``spiking-s4-demo`` makes this clip
    worse (SI-SNR 0.36 → -0.49 dB, STOI 0.658 → 0.530; its model card reports its weaknesses),
    so it is not claimed here.
    """
    from snnse.metrics.compute import compute_metrics
    from snnse.streaming import Streamer

    noisy, sr = sf.read(shipped / "demo_noisy.wav", dtype="float32")
    clean, _ = sf.read(shipped / "demo_clean.wav", dtype="float32")
    model = snnse.load(name).eval()
    streamer = Streamer(model)
    with torch.inference_mode():
        x = torch.from_numpy(noisy)
        out = [streamer.feed(x[i:i + 4000]) for i in range(0, len(x), 4000)] + [streamer.flush()]
    enhanced = torch.cat(out).numpy()
    assert enhanced.shape == noisy.shape and np.isfinite(enhanced).all()
    before = compute_metrics(clean, noisy, sr, ["sisnr", "pesq_wb", "stoi"])
    after = compute_metrics(clean, enhanced, sr, ["sisnr", "pesq_wb", "stoi"])
    for m in ("sisnr", "pesq_wb", "stoi"):
        assert after[m] > before[m], (name, m, before[m], after[m])


def test_snnse_demo_with_the_shipped_weights(shipped, capsys, tmp_path):
    """README command 1 for real: the bundled dpsnn-demo on the bundled clip. Figures of 2026-12-02:
    SI-SNR 0.36 -> 2.58 dB, PESQ-WB 1.028 -> 1.045, STOI 0.658 -> 0.671; asserted with margins."""
    code, out, _ = _run(capsys, "demo", "-o", tmp_path / "demo")
    assert code == 0 and "dpsnn-demo" in out
    report = json.loads((tmp_path / "demo" / "scores.json").read_text())
    before, after = report["noisy_scores"], report["enhanced_scores"]
    assert after["si_snr"] - before["si_snr"] >= 1.5
    assert after["pesq_wb"] - before["pesq_wb"] >= 0.005 and after["stoi"] - before["stoi"] >= 0.005
    assert report["timing"]["algorithmic_ms"] == 5.0 and report["timing"]["rtf"] < 1.0


@pytest.mark.parametrize("name, flash_kb, ram_kb", [("dpsnn-demo", 504, 27), ("spiking-s4-demo", 1440, 661)])
def test_shipped_models_quantize_to_the_readme_footprint(shipped, tmp_path, name, flash_kb, ram_kb):
    """README: both int8 graphs fit 2 MB / 786 KB, with these weight and RAM figures, and int8
    stays close to float32 on the bundled clip (SI-SNR within 0.5 dB)."""
    from snnse.deploy_commands import export_model
    from snnse.export import OnnxStreamer, session
    from snnse.metrics.compute import compute_metrics

    noisy, sr = sf.read(shipped / "demo_noisy.wav", dtype="float32")
    clean, _ = sf.read(shipped / "demo_clean.wav", dtype="float32")
    model = snnse.load(name).float().eval()
    scores = {}
    for kind in ("float32", "int8"):
        out = tmp_path / f"{kind}.onnx"
        rep = export_model(model, out, "int8" if kind == "int8" else None, None)
        verdict = rep[kind]["verdict"]
        if kind == "int8":
            assert verdict["fits"]
            assert abs(verdict["flash_needed"] / 1024 - flash_kb) <= 0.02 * flash_kb
            assert abs(verdict["ram_needed"] / 1024 - ram_kb) <= 0.05 * ram_kb + 1
        scores[kind] = compute_metrics(clean, OnnxStreamer(session(out))(noisy), sr, ["sisnr"])["sisnr"]
    assert abs(scores["int8"] - scores["float32"]) <= 0.5, scores
