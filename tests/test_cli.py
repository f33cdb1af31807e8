"""Tests for the ``snnse`` command line tool (create, enhance, --version, fit --print_config) on real audio."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from snnse.cli import main, parse_sets, parse_value

TINY = {
    "dpsnn": ["--set", "N=16", "--set", "B=16", "--set", "H=16"],
    "spiking_s4": ["--set", "d_model=16", "--set", "d_state=8", "--set", "n_layers=1"],
}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Tiny untrained checkpoints created through ``snnse create``."""
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for name, sets in TINY.items():
        paths[name] = folder / f"{name}.pt"
        assert main(["create", name, "-o", str(paths[name]), "--seed", "0", *sets]) == 0
    return paths


@pytest.fixture
def noisy_dir(data_dir):
    return data_dir / "voicebank_debug" / "noisy"


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _error_lines(err):
    return [line for line in err.splitlines() if line.startswith("error: ")]


def _no_temp_files(folder: Path):
    return not [p for p in folder.rglob("*") if p.name.endswith(".part")]


def test_parse_set_values():
    assert parse_value("16") == 16 and parse_value("0.5") == 0.5
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("stft") == "stft" and parse_value("[1, 2]") == [1, 2]
    assert parse_sets(["a=1", "b = x"]) == {"a": 1, "b": "x"}


def test_create_message_and_reload(tmp_path, capsys):
    import snnse

    code, out, _ = _run(capsys, "create", "dpsnn", "-o", tmp_path / "sub" / "m.pt",
                        "--seed", "1", *TINY["dpsnn"])
    assert code == 0 and "UNTRAINED" in out and "random weights" in out
    model = snnse.load(tmp_path / "sub" / "m.pt")
    assert model.sample_rate == 16000


def test_create_unknown_name(tmp_path, capsys):
    code, _, err = _run(capsys, "create", "nope", "-o", tmp_path / "m.pt")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "unknown model 'nope'" in err and "dpsnn" in err and "spiking_s4" in err
    assert not (tmp_path / "m.pt").exists()


def test_create_bad_settings(tmp_path, capsys):
    assert _run(capsys, "create", "dpsnn", "-o", tmp_path / "m.pt", "--set", "N16")[0] == 2
    code, _, err = _run(capsys, "create", "dpsnn", "-o", tmp_path / "m.pt", "--set", "bogus=1")
    assert code == 2 and "bogus" in err
    assert _run(capsys, "frobnicate")[0] == 2
    assert _run(capsys)[0] == 2


def test_enhance_folder(noisy_dir, ckpts, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = _run(capsys, "enhance", noisy_dir, "-o", out, "--model", ckpts["dpsnn"])
    assert code == 0, err
    inputs = sorted(noisy_dir.glob("*.wav"))
    assert len(inputs) == 6 and sorted(p.name for p in out.iterdir()) == [p.name for p in inputs]
    for src in inputs:
        a, b = sf.info(str(src)), sf.info(str(out / src.name))
        assert (b.frames, b.samplerate, b.channels, b.subtype, b.format) == (
            a.frames, a.samplerate, a.channels, a.subtype, a.format)
        y, _ = sf.read(str(out / src.name))
        assert np.isfinite(y).all() and np.abs(y).max() > 0
    assert "resampled" not in err and _no_temp_files(out)


def test_enhance_resamples_44k(data_dir, ckpts, tmp_path, capsys):
    src = sorted((data_dir / "noise" / "esc50").glob("*.wav"))[0]
    dst = tmp_path / "e.wav"
    code, _, err = _run(capsys, "enhance", src, "-o", dst, "--model", ckpts["spiking_s4"],
                        "--chunk-seconds", "0.7")
    assert code == 0, err
    notices = [line for line in err.splitlines() if "resampled" in line]
    assert len(notices) == 1 and str(src) in notices[0] and "44100" in notices[0]
    a, b = sf.info(str(src)), sf.info(str(dst))
    assert (b.frames, b.samplerate, b.channels, b.subtype) == (a.frames, 44100, 1, a.subtype)
    code, _, err = _run(capsys, "enhance", src, "-o", tmp_path / "q.wav", "--model",
                        ckpts["spiking_s4"], "--quiet")
    assert code == 0 and err == ""


def _stereo(noisy_dir, path, subtype):
    a, sr = sf.read(str(noisy_dir / "p287_001.wav"), dtype="float32")
    b, _ = sf.read(str(noisy_dir / "p287_002.wav"), dtype="float32")
    x = np.stack([a, b[: len(a)]], axis=1)
    sf.write(str(path), x, sr, subtype=subtype)
    return x, sr


def test_enhance_stereo_and_downmix(noisy_dir, ckpts, tmp_path, capsys):
    x, sr = _stereo(noisy_dir, tmp_path / "st.wav", "FLOAT")
    mono = tmp_path / "mono.wav"
    sf.write(str(mono), x[:, 0], sr, subtype="FLOAT")
    code, _, err = _run(capsys, "enhance", tmp_path / "st.wav", mono, "-o", tmp_path / "o",
                        "--model", ckpts["dpsnn"], "--chunk-seconds", "0.5")
    assert code == 0, err
    y, sr2 = sf.read(str(tmp_path / "o" / "st.wav"), dtype="float32", always_2d=True)
    assert y.shape == x.shape and sr2 == sr
    # channels are enhanced independently: channel 0 equals the mono file's result
    m, _ = sf.read(str(tmp_path / "o" / "mono.wav"), dtype="float32")
    np.testing.assert_allclose(y[:, 0], m, atol=1e-5)
    assert np.abs(y[:, 0] - y[:, 1]).max() > 1e-3

    code, _, err = _run(capsys, "enhance", tmp_path / "st.wav", "-o", tmp_path / "d",
                        "--model", ckpts["dpsnn"], "--downmix")
    assert code == 0, err
    info = sf.info(str(tmp_path / "d" / "st.wav"))
    assert (info.channels, info.frames, info.samplerate) == (1, len(x), sr)


def test_enhance_stereo_flac_pcm(noisy_dir, ckpts, tmp_path, capsys):
    x, sr = _stereo(noisy_dir, tmp_path / "st.flac", "PCM_24")
    code, _, err = _run(capsys, "enhance", tmp_path / "st.flac", "-o", tmp_path / "o",
                        "--model", ckpts["spiking_s4"])
    assert code == 0, err
    info = sf.info(str(tmp_path / "o" / "st.flac"))
    assert (info.format, info.subtype, info.channels, info.frames) == ("FLAC", "PCM_24", 2, len(x))


@pytest.mark.parametrize("name", sorted(TINY))
def test_streaming_cli_matches_offline_model(name, noisy_dir, ckpts, tmp_path, capsys):
    import snnse

    x, sr = sf.read(str(noisy_dir / "p287_003.wav"), dtype="float32")
    src = tmp_path / "f32.wav"
    sf.write(str(src), x, sr, subtype="FLOAT")
    code, _, err = _run(capsys, "enhance", src, "-o", tmp_path / "out.wav", "--model",
                        ckpts[name], "--chunk-seconds", "0.37")
    assert code == 0, err
    y, _ = sf.read(str(tmp_path / "out.wav"), dtype="float32")
    model = snnse.load(ckpts[name]).eval()
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)[None])[0].numpy()
    assert y.shape == ref.shape == x.shape
    assert np.abs(y - ref).max() < 1e-4


def test_enhance_bad_files_reported_per_file(noisy_dir, ckpts, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    good = ["p287_001.wav", "p287_002.wav"]
    for g in good:
        (inp / g).write_bytes((noisy_dir / g).read_bytes())
    (inp / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(6000))
    sf.write(str(inp / "empty.wav"), np.zeros((0, 1)), 16000)
    x, sr = sf.read(str(noisy_dir / "p287_003.wav"), dtype="float32")
    x[int(5.2 * sr)] = np.nan  # several chunks in: detected while streaming
    sf.write(str(inp / "nan.wav"), x, sr, subtype="FLOAT")
    out = tmp_path / "out"
    code, _, err = _run(capsys, "enhance", inp, inp / "missing.wav", "-o", out,
                        "--model", ckpts["dpsnn"], "--chunk-seconds", "0.5")
    assert code == 1
    errors = _error_lines(err)
    assert len(errors) == 4, err
    reasons = {"corrupt.wav": "cannot read audio", "empty.wav": "empty",
               "nan.wav": "NaN", "missing.wav": "not found"}
    for fname, reason in reasons.items():
        line = next(e for e in errors if fname in e)
        assert line.startswith(f"error: {inp / fname}: ") and reason in line
    assert sorted(p.name for p in out.iterdir()) == good
    for g in good:
        assert sf.info(str(out / g)).frames == sf.info(str(noisy_dir / g)).frames
    assert _no_temp_files(out)


def test_enhance_truncated_wav_warns_and_enhances_what_is_there(noisy_dir, ckpts, tmp_path, capsys):
    """A WAV file cut short (an interrupted copy): its samples up to the cut are enhanced, with
    one warning line naming the file and what is missing; exit status 0, the other files written."""
    inp, whole = tmp_path / "in", tmp_path / "whole"
    inp.mkdir()
    whole.mkdir()
    good = ["p287_001.wav", "p287_002.wav"]
    for g in good:
        (inp / g).write_bytes((noisy_dir / g).read_bytes())
    data = (noisy_dir / "p287_003.wav").read_bytes()
    x, sr = sf.read(str(noisy_dir / "p287_003.wav"), dtype="float32")
    n = 40_000  # 2.5 s of 7.23 s are left, and half a sample
    start = data.index(b"data") + 8
    (inp / "cut.wav").write_bytes(data[:start + 2 * n + 1])
    sf.write(str(whole / "cut.wav"), x[:n], sr, subtype="PCM_16")  # what is there, as a whole file
    missing = len(x) - n
    want = (f"warning: {inp / 'cut.wav'}: truncated WAV file: its header declares {len(x)} frames "
            f"({len(x) / sr:.2f} s), the file holds {n} (2.50 s); the last {missing} frames "
            f"({missing / sr:.2f} s) are missing; enhanced the 2.50 s that are there into ")
    for quiet in ([], ["--quiet"]):  # a warning, not a notice: --quiet keeps it
        out = tmp_path / f"out{len(quiet)}"
        code, _, err = _run(capsys, "enhance", inp, "-o", out, "--model", ckpts["dpsnn"],
                            "--chunk-seconds", "0.5", *quiet)
        assert code == 0, err
        assert not _error_lines(err)
        assert [line for line in err.splitlines() if line.startswith("warning: ")] == [
            want + str(out / "cut.wav")], err
        assert sorted(p.name for p in out.iterdir()) == ["cut.wav", *good]
        for g in good:
            assert sf.info(str(out / g)).frames == sf.info(str(noisy_dir / g)).frames
        info = sf.info(str(out / "cut.wav"))
        assert (info.frames, info.samplerate, info.subtype) == (n, sr, "PCM_16")
        assert _no_temp_files(out)
    # the output is the enhancement of the samples that were there
    code, _, err = _run(capsys, "enhance", whole / "cut.wav", "-o", tmp_path / "ref.wav",
                        "--model", ckpts["dpsnn"], "--chunk-seconds", "0.5")
    assert code == 0 and "warning" not in err, err
    assert np.array_equal(sf.read(str(out / "cut.wav"))[0], sf.read(str(tmp_path / "ref.wav"))[0])


def test_enhance_missing_input(ckpts, tmp_path, capsys):
    code, _, err = _run(capsys, "enhance", tmp_path / "nope.wav", "-o", tmp_path / "o",
                        "--model", ckpts["dpsnn"])
    assert code == 1 and _error_lines(err) == [f"error: {tmp_path / 'nope.wav'}: file not found"]


def test_enhance_refuses_to_overwrite_input(noisy_dir, ckpts, tmp_path, capsys):
    src = tmp_path / "a.wav"
    src.write_bytes((noisy_dir / "p287_001.wav").read_bytes())
    before = src.read_bytes()
    for out in (src, tmp_path):
        code, _, err = _run(capsys, "enhance", src, "-o", out, "--model", ckpts["dpsnn"])
        assert code == 2 and "overwrite input" in err and len(err.strip().splitlines()) == 1
    assert src.read_bytes() == before and sorted(tmp_path.iterdir()) == [src]


def test_enhance_usage_errors(noisy_dir, ckpts, tmp_path, capsys):
    src = noisy_dir / "p287_001.wav"
    code, _, err = _run(capsys, "enhance", src, "-o", tmp_path / "o", "--model", tmp_path / "no.pt")
    assert code == 2 and "not found" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    code, _, err = _run(capsys, "enhance", src, "-o", tmp_path / "o", "--model", bad)
    assert code == 2 and str(bad) in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "enhance", tmp_path / "empty", "-o", tmp_path / "o",
                        "--model", ckpts["dpsnn"])
    assert code == 2 and "no audio files" in err
    code, _, _ = _run(capsys, "enhance", src, "-o", tmp_path / "o", "--model", ckpts["dpsnn"],
                      "--chunk-seconds", "0")
    assert code == 2
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- snnse --version, fit --print_config

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(str(p.relative_to(REPO / "configs")) for p in (REPO / "configs").rglob("*.yaml"))


def test_version(capsys):
    import importlib.metadata

    import snnse

    code, out, err = _run(capsys, "--version")
    assert code == 0 and err == ""
    assert out == f"snnse {snnse.__version__}\n"
    assert snnse.__version__ == importlib.metadata.version("snnse")  # the installed distribution
    res = subprocess.run([sys.executable, "-m", "snnse.cli", "--version"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout == out


def test_recipes_found():
    assert len(RECIPES) >= 6 and "dpsnn_demo.yaml" in RECIPES


@pytest.mark.parametrize("flag", ["--print_config", "--print-config"])
@pytest.mark.parametrize("recipe", RECIPES)
def test_fit_print_config_every_recipe(recipe, flag, tmp_path, capsys, monkeypatch):
    import yaml

    import snnse
    from snnse.config import load_config

    # printing must not train: importing the training module (Lightning) is already an error here
    monkeypatch.setitem(sys.modules, "snnse.training", None)
    runs = tmp_path / "runs"
    path = REPO / "configs" / recipe
    code, out, err = _run(capsys, "fit", "--config", path, "--run.dir", runs, flag)
    assert code == 0, err
    assert out.startswith(f"# snnse {snnse.__version__}\n")
    printed = yaml.safe_load(out)
    assert printed == load_config(path, ["--run.dir", str(runs)])
    assert printed["run"]["name"] == path.stem and printed["run"]["dir"] == str(runs)
    assert printed["model"]["name"] in snnse.available()
    assert not runs.exists()
    # the printed text is itself a recipe that resolves to the same configuration
    again = tmp_path / "printed.yaml"
    again.write_text(out)
    assert load_config(again) == printed


def test_fit_print_config_with_overrides_on_either_side(tmp_path, capsys, monkeypatch):
    import yaml

    monkeypatch.setitem(sys.modules, "snnse.training", None)
    recipe = REPO / "configs" / "dpsnn_demo.yaml"
    code, out, err = _run(capsys, "fit", "--print_config", "--config", recipe, "--trainer.max_steps", "7",
                          "--optim.lr=3e-4")
    assert code == 0, err
    cfg = yaml.safe_load(out)
    assert cfg["trainer"]["max_steps"] == 7 and cfg["optim"]["lr"] == 3e-4
    code, out, err = _run(capsys, "fit", "--config", recipe, "--trainer.max_steps", "7", "--print_config")
    assert code == 0, err
    assert yaml.safe_load(out)["trainer"]["max_steps"] == 7
    # a bad override is still a usage error, and nothing is printed
    code, out, err = _run(capsys, "fit", "--config", recipe, "--optim.nope", "1", "--print_config")
    assert code == 2 and out == "" and "optim.nope" in err


def test_evaluate_summary_names_the_version(data_dir, tmp_path, capsys):
    import json

    import snnse

    vb = data_dir / "voicebank_debug"
    code, _, err = _run(capsys, "evaluate", "--noisy", vb / "noisy", "--clean", vb / "clean", "--limit", 2,
                        "--metrics", "sisnr", "--no-cache", "--quiet", "--workers", 1, "-o", tmp_path / "eval")
    assert code == 0, err
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["snnse_version"] == snnse.__version__
    assert summary["n_pairs"] == 2


def _peak_rss_mib(cmd, cwd):
    """Run ``cmd`` to its end: (exit status, peak resident set size of that process in MiB, stderr).

    The peak comes from ``os.wait4``'s resource usage of this one child (not RUSAGE_CHILDREN, which
    keeps the largest child the test process ever waited for); ``ru_maxrss`` is in KiB on Linux.
    """
    import os

    with open(cwd / "stderr.txt", "w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=cwd,
                                env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: leave no process behind
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return proc.returncode, usage.ru_maxrss / 1024, err.read()


def _tone_in_noise(path, seconds, sr=16000):
    """A 16-bit WAV of a 440 Hz tone at -23 dBFS RMS in white noise at -40 dBFS, written a minute at a time."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", sr, 1, subtype="PCM_16") as f:
        for start in range(0, seconds, 60):
            t = np.arange(start * sr, min(start + 60, seconds) * sr) / sr
            f.write((0.1 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32))


# Peak RSS of `snnse enhance` with the bundled dpsnn-demo, measured (torch 2.13, one thread): 372-376 MiB
# for 5 s or 10 s of audio, 377-379 MiB for 20 min (+3 to +6 MiB), 378 MiB for 30 min; 20 min take ~12 s.
# The budget is the short file's peak plus this margin, a third of the long file's samples as float32
# (73 MiB; 146 MiB as float64): keeping the input or the output in memory would exceed it.
RSS_MARGIN_MIB = 24
LONG_MINUTES = 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in KiB on Linux only")
def test_enhance_streams_a_long_file_in_bounded_memory(tmp_path):
    """README: `enhance` streams long files in bounded memory. The peak RSS of `snnse enhance` on 20 min of
    audio stays within RSS_MARGIN_MIB of its peak on 10 s, far below the file's decoded size."""
    short, long = tmp_path / "short.wav", tmp_path / "long.wav"
    _tone_in_noise(short, 10)
    _tone_in_noise(long, LONG_MINUTES * 60)
    peaks = {}
    for src in (short, long):
        dst = tmp_path / f"enhanced_{src.name}"
        code, peaks[src.name], err = _peak_rss_mib(
            [sys.executable, "-m", "snnse.cli", "enhance", str(src), "-o", str(dst), "--quiet"], tmp_path)
        assert code == 0, err[-2000:]
        assert sf.info(str(dst)).frames == sf.info(str(src)).frames  # the whole file was enhanced
    decoded_mib = LONG_MINUTES * 60 * 16000 * 4 / 2**20
    assert decoded_mib > 3 * RSS_MARGIN_MIB
    assert peaks["long.wav"] < peaks["short.wav"] + RSS_MARGIN_MIB, (peaks, decoded_mib)
