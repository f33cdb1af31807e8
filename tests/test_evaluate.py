"""Tests for ``snnse evaluate`` and :mod:`snnse.evaluate` on the real VoiceBank debug pairs."""

import csv
import json
import math
import shutil

import numpy as np
import pytest
import soundfile as sf

from snnse.cli import main

from .helpers import REF_TOL  # the README's figures against reference_metrics.json

NAMES = [f"p287_00{i}.wav" for i in range(1, 7)]


def _run(capsys, *argv):
    """``snnse evaluate`` without the metric cache: every test here computes its scores."""
    code = main(["evaluate", "--no-cache", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _errors(err):
    return [line for line in err.splitlines() if line.startswith("error: ")]


def _rows(outdir):
    with open(outdir / "per_file.csv", newline="") as f:
        return list(csv.DictReader(f))


def _values(outdir, system, metric):
    return {r["file"]: float(r[metric]) if r[metric] else None
            for r in _rows(outdir) if r["system"] == system}


def _summary(outdir):
    return json.loads((outdir / "summary.json").read_text())


@pytest.fixture(scope="module")
def vb(data_dir):
    return data_dir / "voicebank_debug"


@pytest.fixture(scope="module")
def full_run(vb, tmp_path_factory):
    """All metrics on the noisy files, 2 worker processes."""
    import snnse.cli

    out = tmp_path_factory.mktemp("full") / "eval"
    code = snnse.cli.main(["evaluate", "--noisy", str(vb / "noisy"), "--clean", str(vb / "clean"),
                           "-o", str(out), "--workers", "2", "--quiet", "--no-cache"])
    return code, out


def test_reference_metrics(full_run, data_dir):
    code, out = full_run
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["per_file.csv", "summary.json", "summary.md"]
    ref = json.loads((data_dir / "reference_metrics.json").read_text())
    rows = _rows(out)
    assert len(rows) == 6 and {r["system"] for r in rows} == {"noisy"}
    assert all(r["error"] == "" for r in rows)
    summary = _summary(out)
    assert summary["n_pairs"] == 6 and summary["n_failed"] == 0 and summary["model"] is None
    assert summary["mode"] is None and list(summary["systems"]) == ["noisy"]
    stats = summary["systems"]["noisy"]
    assert set(stats) == {"sisnr", "sisnri", "pesq_wb", "pesq_nb", "stoi", "estoi", "csig",
                          "cbak", "covl", "segsnr", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"}
    assert set(REF_TOL) == set(ref[NAMES[0]]) and set(REF_TOL) < set(stats)
    for key, tol in REF_TOL.items():  # every reference score, per file and as the mean
        per_file = _values(out, "noisy", key)
        for name in NAMES:
            assert abs(per_file[name] - ref[name][key]) <= tol, (name, key, per_file[name], ref[name][key])
        want = np.mean([ref[name][key] for name in NAMES])
        assert abs(stats[key]["mean"] - want) <= tol, (key, stats[key]["mean"], want)
        assert stats[key]["n"] == 6
    s = stats["sisnr"]  # Student-t interval around the mean
    vals = list(_values(out, "noisy", "sisnr").values())
    half = 2.570581835636314 * np.std(vals, ddof=1) / math.sqrt(6)  # t(0.975, 5)
    assert s["ci95"] == pytest.approx([s["mean"] - half, s["mean"] + half], rel=1e-9)
    assert s["std"] == pytest.approx(np.std(vals, ddof=1))
    assert all(v == 0.0 for v in _values(out, "noisy", "sisnri").values())
    assert set(summary["implementations"]) == set(stats) - {
        "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"} | {"dnsmos"}
    assert summary["command"][:2] == ["snnse", "evaluate"] and summary["created"]
    md = (out / "summary.md").read_text()
    assert "| noisy |" in md and " ± " in md and "pystoi" in md and "sig_bak_ovr" in md


def test_one_worker_gives_identical_results(full_run, vb, tmp_path, capsys):
    metrics = ["sisnr", "sisnri", "pesq_wb", "estoi", "covl", "dnsmos_ovrl"]
    code, _, err = _run(capsys, "--noisy", vb / "noisy", "--clean", vb / "clean", "-o", tmp_path,
                        "--workers", "1", "--metrics", ",".join(metrics))
    assert code == 0, err
    assert list(_summary(tmp_path)["systems"]["noisy"]) == metrics
    for m in metrics:  # equal up to float rounding (ESTOI's numpy sums vary in the last bit)
        one, two = _values(tmp_path, "noisy", m), _values(full_run[1], "noisy", m)
        assert one == pytest.approx(two, rel=1e-12, abs=1e-12), m


def test_model_modes(vb, ckpt, tmp_path, capsys):
    common = ["--noisy", vb / "noisy", "--clean", vb / "clean", "--model", ckpt,
              "--metrics", "sisnr,sisnri", "--workers", "1"]
    code, _, err = _run(capsys, *common, "-o", tmp_path / "s", "--save-enhanced", tmp_path / "e")
    assert code == 0, err
    code, _, err = _run(capsys, *common, "-o", tmp_path / "o", "--mode", "offline")
    assert code == 0, err
    stream, offline = (_values(tmp_path / k, "enhanced", "sisnr") for k in "so")
    assert set(stream) == set(NAMES)
    for name in NAMES:
        assert stream[name] == pytest.approx(offline[name], abs=1e-4)
    summary = _summary(tmp_path / "s")
    assert list(summary["systems"]) == ["noisy", "enhanced"] and summary["mode"] == "stream"
    assert summary["model"]["name"] == "dpsnn" and summary["model"]["kwargs"]["N"] == 16
    assert summary["model"]["path"] == str(ckpt)
    noisy, sisnri = _values(tmp_path / "s", "noisy", "sisnr"), _values(tmp_path / "s", "enhanced", "sisnri")
    for name in NAMES:
        assert sisnri[name] == pytest.approx(stream[name] - noisy[name], abs=1e-9)
    means = {s: v["sisnr"]["mean"] for s, v in summary["systems"].items()}
    assert summary["systems"]["enhanced"]["sisnri"]["mean"] == pytest.approx(
        means["enhanced"] - means["noisy"], abs=1e-9)
    # saved outputs: one per input, input length and rate, scored again to the same values
    saved = sorted((tmp_path / "e").iterdir())
    assert [p.name for p in saved] == NAMES
    for p in saved:
        a, b = sf.info(str(vb / "noisy" / p.name)), sf.info(str(p))
        assert (b.frames, b.samplerate, b.channels) == (a.frames, a.samplerate, 1)
    code, _, err = _run(capsys, "--noisy", vb / "noisy", "--clean", vb / "clean", "--enhanced",
                        tmp_path / "e", "--metrics", "sisnr", "-o", tmp_path / "again", "--workers", "1")
    assert code == 0, err
    again = _values(tmp_path / "again", "enhanced", "sisnr")
    assert all(again[n] == pytest.approx(stream[n], abs=1e-4) for n in NAMES)

    code, _, err = _run(capsys, *common, "-o", tmp_path / "c", "--mode", "chunk1s",
                        "--save-enhanced", tmp_path / "ce")
    assert code == 0, err
    chunked = _values(tmp_path / "c", "enhanced", "sisnr")
    assert "chunk1s" in (tmp_path / "c" / "summary.md").read_text()
    # chunk1s == the model run offline on independent 1 s pieces, each from a fresh state,
    # computed here piece by piece (the files are at the model's 16 kHz)
    import torch

    import snnse
    from snnse.metrics.quality import si_snr

    model = snnse.load(ckpt).eval()
    for name in NAMES:
        x, sr = sf.read(str(vb / "noisy" / name), dtype="float32")
        assert sr == 16000
        with torch.inference_mode():
            want = np.concatenate([model(torch.from_numpy(x[i:i + sr])[None])[0].numpy()
                                   for i in range(0, len(x), sr)])
        got = sf.read(str(tmp_path / "ce" / name), dtype="float32")[0]
        assert got.shape == want.shape == x.shape
        assert np.abs(got - want).max() < 1e-6, (name, np.abs(got - want).max())
        clean = sf.read(str(vb / "clean" / name))[0]
        assert chunked[name] == pytest.approx(si_snr(clean, want.astype(np.float64)), abs=1e-4)
    # and the fresh state each second shows: chunk1s is not the streaming (or offline) result
    assert max(abs(chunked[n] - stream[n]) for n in NAMES) > 1e-3
    # never over an input
    code, _, err = _run(capsys, *common, "-o", tmp_path / "x", "--save-enhanced", vb / "noisy")
    assert code == 2 and "overwrite input" in err


def test_model_resamples_other_rates(vb, ckpt, tmp_path, capsys):
    for sub in ("noisy", "clean"):
        (tmp_path / sub).mkdir()
        for name in NAMES[:2]:
            x, sr = sf.read(str(vb / sub / name))
            sf.write(str(tmp_path / sub / name), x[::2], sr // 2, subtype="FLOAT")  # 8 kHz
    code, _, err = _run(capsys, "--noisy", tmp_path / "noisy", "--clean", tmp_path / "clean",
                        "--model", ckpt, "--metrics", "sisnr,stoi", "--workers", "1",
                        "-o", tmp_path / "o", "--save-enhanced", tmp_path / "e")
    assert code == 0, err
    notices = [line for line in err.splitlines() if "resampled" in line]
    assert len(notices) == 1 and "8000" in notices[0] and "16000" in notices[0]
    assert sf.info(str(tmp_path / "e" / NAMES[0])).samplerate == 8000


def test_enhanced_folder(vb, tmp_path, capsys):
    metrics = "sisnr,sisnri,stoi"
    code, _, err = _run(capsys, "--noisy", vb / "noisy", "--clean", vb / "clean", "--enhanced",
                        vb / "clean", "--metrics", metrics, "-o", tmp_path / "c", "--workers", "1")
    assert code == 0, err
    summary = _summary(tmp_path / "c")
    assert list(summary["systems"]) == ["noisy", "enhanced"] and summary["model"] is None
    enh = summary["systems"]["enhanced"]
    assert enh["sisnr"]["mean"] > 100 and enh["stoi"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert enh["sisnri"]["mean"] > 90
    # the noisy files as "enhanced" score exactly as the noisy system
    code, _, err = _run(capsys, "--noisy", vb / "noisy", "--clean", vb / "clean", "--enhanced",
                        vb / "noisy", "--metrics", metrics, "-o", tmp_path / "n", "--workers", "2")
    assert code == 0, err
    for m in metrics.split(","):
        assert _values(tmp_path / "n", "enhanced", m) == _values(tmp_path / "n", "noisy", m)
    # without noisy files: enhanced only, sisnri skipped with a notice
    code, _, err = _run(capsys, "--clean", vb / "clean", "--enhanced", vb / "noisy",
                        "--metrics", metrics, "-o", tmp_path / "e", "--workers", "1")
    assert code == 0, err
    assert "sisnri skipped" in err
    summary = _summary(tmp_path / "e")
    assert list(summary["systems"]) == ["enhanced"] and summary["metrics"] == ["sisnr", "stoi"]
    assert _values(tmp_path / "e", "enhanced", "sisnr") == _values(tmp_path / "n", "noisy", "sisnr")


def test_ndns_names_pair_by_fileid(vb, tmp_path, capsys):
    for sub in ("noisy", "clean", "enh"):
        (tmp_path / sub).mkdir()
    for i, name in enumerate(NAMES[:3]):
        shutil.copy(vb / "clean" / name, tmp_path / "clean" / f"clean_fileid_{i}.wav")
        shutil.copy(vb / "noisy" / name, tmp_path / "noisy" / f"book_snr{i}_tl-20_fileid_{i}.wav")
        shutil.copy(vb / "noisy" / name, tmp_path / "enh" / f"enhanced_fileid_{i}.wav")
    shutil.copy(vb / "noisy" / NAMES[3], tmp_path / "noisy" / "book_snr3_tl-20_fileid_7.wav")
    code, _, err = _run(capsys, "--noisy", tmp_path / "noisy", "--clean", tmp_path / "clean",
                        "--enhanced", tmp_path / "enh", "--metrics", "sisnr", "-o", tmp_path / "o",
                        "--workers", "1")
    assert code == 1
    errors = _errors(err)
    assert len(errors) == 1 and "fileid_7" in errors[0] and "no clean file" in errors[0]
    noisy = _values(tmp_path / "o", "noisy", "sisnr")
    assert noisy["book_snr1_tl-20_fileid_1.wav"] == _values(tmp_path / "o", "enhanced", "sisnr")[
        "book_snr1_tl-20_fileid_1.wav"]
    assert _summary(tmp_path / "o")["systems"]["noisy"]["sisnr"]["n"] == 3


def test_usage_errors(vb, tmp_path, capsys):
    code, _, err = _run(capsys, "--noisy", vb / "noisy", "--clean", vb / "clean", "-o", tmp_path,
                        "--metrics", "sisnr,bogus")
    assert code == 2 and "bogus" in err and "pesq_wb" in err and "dnsmos_ovrl" in err
    code, _, err = _run(capsys, "--noisy", vb / "noisy", "-o", tmp_path)
    assert code == 2 and "--clean" in err
    code, _, err = _run(capsys, "--noisy", vb / "noisy", "--clean", vb / "clean", "-o", tmp_path,
                        "--manifest", tmp_path / "m.csv")
    assert code == 2
    code, _, err = _run(capsys, "--noisy", vb / "noisy", "--clean", tmp_path / "nowhere", "-o", tmp_path)
    assert code == 2 and "nowhere" in err
    code, _, _ = _run(capsys, "--noisy", vb / "noisy", "--clean", vb / "clean", "-o", tmp_path,
                      "--enhanced", vb / "clean", "--model", tmp_path / "m.pt")
    assert code == 2
    code, _, err = _run(capsys, "--noisy", vb / "noisy", "--clean", vb / "clean", "-o", tmp_path,
                        "--model", tmp_path / "m.pt")
    assert code == 2 and "not found" in err
    assert list(tmp_path.iterdir()) == []
    # an existing summary is kept unless --overwrite
    args = ["--noisy", vb / "noisy", "--clean", vb / "clean", "--metrics", "sisnr", "--limit", "2",
            "--workers", "1", "-o", tmp_path / "o"]
    assert _run(capsys, *args)[0] == 0
    assert len(_rows(tmp_path / "o")) == 2
    before = (tmp_path / "o" / "summary.json").read_text()
    code, _, err = _run(capsys, *args)
    assert code == 2 and "summary" in err and "--overwrite" in err
    assert (tmp_path / "o" / "summary.json").read_text() == before
    assert _run(capsys, *args, "--overwrite")[0] == 0


def test_bad_files_are_reported_and_skipped(vb, tmp_path, capsys):
    noisy = tmp_path / "noisy"
    shutil.copytree(vb / "noisy", noisy)
    (noisy / NAMES[1]).write_bytes((vb / "noisy" / NAMES[1]).read_bytes()[:30])  # truncated
    x, sr = sf.read(str(vb / "noisy" / NAMES[3]))
    x[1000:1010] = np.nan
    sf.write(str(noisy / NAMES[3]), x, sr, subtype="FLOAT")
    x, sr = sf.read(str(vb / "noisy" / NAMES[4]))
    sf.write(str(noisy / NAMES[4]), np.stack([x, x], axis=1), sr)  # stereo
    args = ["--noisy", noisy, "--clean", vb / "clean", "--metrics", "sisnr,stoi", "--workers", "2"]
    code, out, err = _run(capsys, *args, "-o", tmp_path / "o")
    assert code == 1
    errors = _errors(err)
    assert len(errors) == 3
    assert [n for n in NAMES if any(n in e for e in errors)] == [NAMES[1], NAMES[3], NAMES[4]]
    assert "NaN" in errors[1] and "channels" in errors[2] and "--downmix" in errors[2]
    rows = {r["file"]: r for r in _rows(tmp_path / "o")}
    assert len(rows) == 6
    for name in (NAMES[1], NAMES[3], NAMES[4]):
        assert rows[name]["error"] and rows[name]["sisnr"] == "" and rows[name]["stoi"] == ""
    good = [n for n in NAMES if n not in (NAMES[1], NAMES[3], NAMES[4])]
    assert all(rows[n]["error"] == "" and rows[n]["sisnr"] != "" for n in good)
    summary = _summary(tmp_path / "o")
    assert summary["n_failed"] == 3 and summary["systems"]["noisy"]["sisnr"]["n"] == 3
    assert summary["systems"]["noisy"]["sisnr"]["mean"] == pytest.approx(
        np.mean([float(rows[n]["sisnr"]) for n in good]))
    code, _, err = _run(capsys, *args, "--downmix", "-o", tmp_path / "d")
    assert code == 1 and len(_errors(err)) == 2 and _summary(tmp_path / "d")["n_failed"] == 2


def test_manifest(vb, tmp_path, capsys):
    from snnse.data.manifest import write_manifest

    rows = [{"id": n[:-4], "noisy": vb / "noisy" / n, "clean": vb / "clean" / n,
             "duration": sf.info(str(vb / "clean" / n)).duration, "speaker": "p287"} for n in NAMES]
    write_manifest(tmp_path / "corpus" / "test.csv", rows)
    code, _, err = _run(capsys, "--manifest", tmp_path / "corpus" / "test.csv", "--metrics",
                        "sisnr,stoi", "-o", tmp_path / "m", "--workers", "1")
    assert code == 0, err
    code, _, err = _run(capsys, "--noisy", vb / "noisy", "--clean", vb / "clean", "--metrics",
                        "sisnr,stoi", "-o", tmp_path / "f", "--workers", "1")
    assert code == 0, err
    for m in ("sisnr", "stoi"):
        by_manifest = _values(tmp_path / "m", "noisy", m)
        assert len(by_manifest) == 6
        assert sorted(by_manifest.values()) == sorted(_values(tmp_path / "f", "noisy", m).values())
    assert _summary(tmp_path / "m")["inputs"]["manifest"] == str(tmp_path / "corpus" / "test.csv")


def test_python_api(vb, ckpt, tmp_path):
    from snnse.evaluate import compute_metrics, evaluate, write_outputs
    from snnse.evaluation_report import mean_ci, read_per_file
    from snnse.metrics.quality import MetricError

    res = evaluate((vb / "noisy", vb / "clean"), metrics=["sisnr", "sisnri"], model=ckpt,
                   mode="offline", workers=1, progress=False, limit=2, notice=None, cache=False)
    assert res.n_failed == 0 and len(res.rows) == 4
    assert res.summary["model"]["path"] == str(ckpt)
    paths = write_outputs(res, tmp_path)
    back = read_per_file(paths["per_file.csv"])
    assert [r["sisnr"] for r in back] == [r["sisnr"] for r in res.rows]
    with pytest.raises(FileExistsError):
        write_outputs(res, tmp_path)
    clean, sr = sf.read(str(vb / "clean" / NAMES[0]))
    noisy, _ = sf.read(str(vb / "noisy" / NAMES[0]))
    got = compute_metrics(clean, noisy, sr, "sisnr,sisnri,stoi", noisy=noisy)
    assert list(got) == ["sisnr", "sisnri", "stoi"] and got["sisnri"] == 0.0
    assert got["sisnr"] == res.values("noisy", "sisnr")[NAMES[0]]
    with pytest.raises(ValueError, match="sisnri"):
        compute_metrics(clean, noisy, sr, ["sisnri"])
    bad = noisy.copy()
    bad[5] = np.inf
    with pytest.raises(MetricError):
        compute_metrics(clean, bad, sr, ["sisnr"])
    with pytest.raises(MetricError):  # PESQ on a silent reference
        compute_metrics(np.zeros_like(clean), noisy, sr, ["pesq_wb"])
    assert mean_ci([2.0]) == {"mean": 2.0, "std": 0.0, "ci95": [2.0, 2.0], "n": 1}
    assert mean_ci([])["n"] == 0
