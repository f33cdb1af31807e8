"""Tests for ``snnse evaluate --robustness`` (:mod:`snnse.robustness`) on real speech and noise.

Short VoiceBank clips and SpeechBrain noises from ``../shared/data``, a tiny untrained DPSNN and
the unprocessed input; reduced sizes (``Settings.quick`` and smaller) keep the file quick.
"""

import copy
import json

import numpy as np
import pytest
import soundfile as sf

from snnse import robustness as rb
from snnse.cli import main
from snnse.data.mixing import rms_db, snr_db
from snnse.metrics.quality import si_snr

# 2 utterances (1.5 s), a 24 s stream in 6 s windows; pauses of 6.2-6.6 s leave the first window
# silent and put one utterance in each of the others
SETTINGS = rb.Settings.quick(max_utterances=2, stream_s=24.0, window_s=6.0, head_s=12.0,
                             segment_s=(5.0, 8.0), pause_s=(6.2, 6.6), level_period_s=8.0)
SR = 16000


@pytest.fixture(scope="module")
def clips(data_dir, tmp_path_factory):
    """Three clean VoiceBank clips cut to 1.5 s and two SpeechBrain noises cut to 4 s."""
    root = tmp_path_factory.mktemp("clips")
    for sub, files, seconds in (("clean", [f"voicebank_debug/clean/p287_00{i}.wav" for i in (1, 2, 3)], 1.5),
                                ("noise", [f"noise/speechbrain/noise{i}.wav" for i in (1, 4)], 4.0)):
        (root / sub).mkdir()
        for f in files:
            x, sr = sf.read(data_dir / f, dtype="float64")
            sf.write(root / sub / f.split("/")[-1], x[:int(seconds * sr)], sr, subtype="FLOAT")
    return root / "clean", root / "noise"


@pytest.fixture(scope="module")
def suite(clips, ckpt, tmp_path_factory):
    """The reduced suite on the tiny model (and the input), seed 3, scores cached in a folder of its own."""
    cache = tmp_path_factory.mktemp("cache")
    report = rb.run_suite(*clips, model=str(ckpt), settings=SETTINGS, seed=3, workers=1,
                          cache_dir=cache, progress=None, keep_signals=True)
    return report, cache


def _numbers(report):
    return {k: report[k] for k in ("parts", "targets", "inputs", "settings", "seed", "systems")}


def test_report_layout(suite):
    report, _ = suite
    assert report["systems"] == ["input", "m"] and report["model"]["system"] == "m"
    assert report["model"]["mode"] == "stream" and report["seed"] == 3 and report["suite"] == "custom"
    assert report["inputs"]["n_clean_files"] == 3 and len(report["inputs"]["utterances"]) == 2
    parts = report["parts"]
    assert [b["snr_db"] for b in parts["snr"]["bins"]] == [-5, 0, 5, 10, 15, 20, 30, 40]
    assert [b["level_db"] for b in parts["level"]["bins"]] == [-55, -45, -35, -25, -15, -6]
    assert len(parts["clean"]["items"]) == 2 and len(parts["snr"]["items"]) == 16
    for part in ("clean", "snr", "level"):
        for it in parts[part]["items"]:
            assert set(it["scores"]) == {"input", "m"} and not it["errors"], it
            assert set(it["scores"]["m"]) == {"sisnr", "pesq_wb", "stoi"}
    for b in parts["snr"]["bins"]:
        assert b["means"]["m"]["n"] == 2
        mean = np.mean([it["scores"]["m"]["sisnr"] for it in parts["snr"]["items"]
                        if it["snr_db"] == b["snr_db"]])
        assert b["means"]["m"]["sisnr"] == pytest.approx(mean, abs=1e-5)
    clean = parts["clean"]["means"]["input"]  # the input scored against itself
    assert clean["sisnr"] > 99 and clean["stoi"] == pytest.approx(1.0) and clean["pesq_wb"] > 4.5
    assert set(report["targets"]) == {"input", "m"} and len(report["targets"]["m"]["checks"]) == 12
    assert report["targets"]["input"]["checks"][3]["value"] == 0  # input vs input: margin 0
    json.dumps({k: v for k, v in report.items() if k != "_signals"}, allow_nan=False)


def test_sweeps_at_the_requested_snrs_and_levels(suite):
    items = suite[0]["_signals"]["items"]
    for it in items["clean"]:
        assert it["noisy"] is it["clean"] and -35 - 1e-9 <= rms_db(it["clean"]) <= -15 + 1e-9
    snrs = [it["snr_db"] for it in items["snr"]]
    assert snrs == [-5, 0, 5, 10, 15, 20, 30, 40] * 2
    for it in items["snr"]:
        noise = it["noisy"] - it["clean"]
        assert snr_db(it["clean"], noise) == pytest.approx(it["snr_db"], abs=1e-5)  # float32 values
        assert abs(noise.mean()) < 1e-7  # zero-mean noise crops
        assert rms_db(it["noisy"]) == pytest.approx(it["level_db"], abs=1e-9)
        assert -35 - 1e-9 <= it["level_db"] <= -15 + 1e-9 or np.max(np.abs(it["noisy"])) == pytest.approx(0.99)
    assert [it["level_db"] for it in items["level"]] == [-55, -45, -35, -25, -15, -6] * 2
    for it in items["level"]:
        assert rms_db(it["noisy"]) == pytest.approx(it["level_db"], abs=1e-5)
        assert snr_db(it["clean"], it["noisy"] - it["clean"]) == pytest.approx(10.0, abs=1e-5)
    a, b = items["level"][0], items["level"][5]  # one mixture, scaled: reference and input together
    assert np.allclose(a["noisy"] * 10 ** (49 / 20), b["noisy"], rtol=1e-6, atol=0)
    assert np.allclose(a["clean"] * 10 ** (49 / 20), b["clean"], rtol=1e-6, atol=0)
    for part in (items[p] for p in ("clean", "snr", "level")):  # float32: a 32-bit float file holds them
        assert all(np.array_equal(it["noisy"], it["noisy"].astype(np.float32)) for it in part)


def test_same_seed_same_numbers_other_seed_other_mixtures(suite, clips, ckpt):
    report, cache = suite
    again = rb.run_suite(*clips, model=str(ckpt), settings=SETTINGS, seed=3, workers=1,
                         cache_dir=cache, progress=None)
    assert _numbers(again) == _numbers(report)
    assert again["cache"]["misses"] == 0 and again["cache"]["hits"] > 0  # byte-identical signals
    clean = rb.load_folder(clips[0], SR, "clean")
    noise = rb.load_folder(clips[1], SR, "noise")
    one, two = (rb.build_items(clean, noise, SETTINGS, seed) for seed in (3, 3))
    other = rb.build_items(clean, noise, SETTINGS, 4)
    for part in ("clean", "snr", "level"):
        for x, y, z in zip(one[part], two[part], other[part]):
            assert np.array_equal(x["noisy"], y["noisy"]) and np.array_equal(x["clean"], y["clean"])
            assert not np.array_equal(x["noisy"], z["noisy"])
    assert rb.select(10, SETTINGS, 3) == rb.select(10, SETTINGS, 3) != rb.select(10, SETTINGS, 4)
    assert len(rb.select(10, SETTINGS, 3)) == 2 and rb.select(2, SETTINGS, 3) == [0, 1]


def test_long_stream(clips):
    clean = [x for _, x in rb.load_folder(clips[0], SR, "clean")]
    noise = [x for _, x in rb.load_folder(clips[1], SR, "noise")]
    kept = copy.deepcopy(clean)
    snrs = (0, 5, 10, 30, 40)
    s = rb.build_long_stream(clean, noise, 60.0, np.random.default_rng(7), pause_s=(0.5, 2.0),
                             segment_s=(5.0, 8.0), snrs=snrs, level_db=(-35, -15), level_period_s=20.0)
    n = 60 * SR
    assert all(len(s[k]) == n for k in ("noisy", "clean", "noise"))
    assert np.allclose(s["noisy"], s["clean"] + s["noise"], rtol=0, atol=1e-15)
    assert all(np.array_equal(a, b) for a, b in zip(clean, kept))  # inputs untouched
    utts = s["utterances"]
    assert len(utts) >= 15 and {u["index"] for u in utts} == {0, 1, 2}
    gaps = [(a["end"], b["start"]) for a, b in zip([{"end": 0}] + utts, utts)]
    for a, b in gaps:  # a pause of 0.5-2 s before every utterance, silent in the reference
        assert 0.5 * SR - 1 <= b - a <= 2.0 * SR + 1 and not s["clean"][a:b].any()
    segs = s["segments"]
    assert segs[0]["start"] == 0 and segs[-1]["end"] == n
    assert all(a["end"] == b["start"] for a, b in zip(segs, segs[1:]))
    assert all(5 * SR - 1 <= g["end"] - g["start"] <= 8 * SR + 1 for g in segs[:-1])
    assert sorted(g["snr_db"] for g in segs[:len(snrs)]) == sorted(snrs)  # every SNR once per round
    for g in segs:
        a, b = g["start"], g["end"]
        assert snr_db(s["clean"][a:b], s["noise"][a:b]) == pytest.approx(g["snr_db"], abs=1e-6)
    assert len({g["noise"] for g in segs}) == 2
    assert np.max(np.abs(s["noisy"])) <= 0.99 + 1e-12
    knots = np.array(s["level_knots"])
    assert np.all((knots[:, 1] >= -35) & (knots[:, 1] <= -15)) and knots[1, 0] == 20.0
    again = rb.build_long_stream(clean, noise, 60.0, np.random.default_rng(7), pause_s=(0.5, 2.0),
                                 segment_s=(5.0, 8.0), snrs=snrs, level_period_s=20.0)
    assert np.array_equal(again["noisy"], s["noisy"]) and again["segments"] == segs
    other = rb.build_long_stream(clean, noise, 60.0, np.random.default_rng(8), pause_s=(0.5, 2.0),
                                 segment_s=(5.0, 8.0), snrs=snrs, level_period_s=20.0)
    assert not np.array_equal(other["noisy"], s["noisy"])
    assert rb.windows(100, 30) == [(0, 30), (30, 60), (60, 100)]
    assert rb.windows(120, 30)[-1] == (90, 120) and rb.windows(20, 30) == [(0, 20)]


def test_stream_windows_of_the_input_and_silent_windows(suite):
    report = suite[0]
    st, sig = report["parts"]["stream"], report["_signals"]["stream"]
    assert st["duration_s"] == 24.0 and len(st["windows"]) == 4 and len(st["segments"]) >= 3
    first = st["windows"][0]  # inside the first pause: skipped with a note, not scored
    assert first["skipped"] == "clean reference silent" and first["scores"] == {"input": None, "m": None}
    assert first["errors"]["m"] == "clean reference silent"
    scored = st["windows"][1:]
    assert all(w["skipped"] is None and w["scores"]["m"] for w in scored)
    for w in scored:
        a, b = int(w["start_s"] * SR), int(w["end_s"] * SR)
        want = si_snr(sig["clean"][a:b], sig["noisy"][a:b])
        assert w["scores"]["input"]["sisnr"] == pytest.approx(want, abs=5.1e-7)
    assert st["means"]["m"]["n"] == 3 and st["means"]["input"]["sisnr_gain"] == 0
    assert st["head"]["m"]["n"] == 1 and st["tail"]["m"]["n"] == 2  # first 12 s: windows 1 (0 skipped)
    assert st["head_s"] == 12.0


def test_snr_sweep_scores_equal_snnse_evaluate(suite, ckpt, tmp_path):
    from snnse.evaluate import evaluate

    report = suite[0]
    items = report["_signals"]["items"]["snr"][:6]
    for k, it in enumerate(items):
        for kind in ("noisy", "clean"):
            (tmp_path / kind).mkdir(exist_ok=True)
            sf.write(tmp_path / kind / f"{k}.wav", it[kind], SR, subtype="FLOAT")
    res = evaluate((tmp_path / "noisy", tmp_path / "clean"), metrics="sisnr,pesq_wb,stoi", model=str(ckpt),
                   workers=1, progress=False, notice=None, cache=False)
    assert res.n_failed == 0
    rows = {(r["file"], r["system"]): r for r in res.rows}
    for k, it in enumerate(report["parts"]["snr"]["items"][:6]):
        for ours, theirs in (("input", "noisy"), ("m", "enhanced")):
            for m in ("sisnr", "pesq_wb", "stoi"):
                # equal up to the 6 decimals of the report
                want = rows[(f"{k}.wav", theirs)][m]
                assert it["scores"][ours][m] == pytest.approx(want, abs=5.1e-7), (k, ours, m)


def _parts(**over):
    """Hand-made means of one system ``m`` (and the input) that pass every target."""
    def means(sisnr, pesq, stoi, gain=0.0):
        return {"sisnr": sisnr, "pesq_wb": pesq, "stoi": stoi, "sisnr_gain": gain, "n": 5}

    snr = [{"snr_db": s, "means": {"input": means(s, 1 + s / 20, 0.7 + s / 100),
                                   "m": means(s + 1, 1.1 + s / 20, 0.71 + s / 100, 1.0)}}
           for s in (-5, 0, 5, 10, 15, 20)]
    snr += [{"snr_db": s, "means": {"input": means(s, 4.0, 0.99), "m": means(21, 3.6, 0.975, 21 - s)}}
            for s in (30, 40)]
    level = [{"level_db": lv, "means": {"input": means(10, 2, 0.9), "m": means(12, 2, 0.9, g)}}
             for lv, g in ((-55, 2.0), (-45, 2.5), (-35, 2.9), (-25, 3.0), (-15, 2.2), (-6, -9.0))]
    win = [{"start_s": 30.0 * k, "scores": {"input": {"sisnr": i}, "m": {"sisnr": o}}}
           for k, (i, o) in enumerate(((30, 20), (10, 10.5), (5, 5)))]
    parts = {"clean": {"means": {"input": means(140, 4.64, 1.0), "m": means(20, 3.5, 0.97)}},
             "snr": {"bins": snr}, "level": {"bins": level},
             "stream": {"windows": win, "head_s": 120.0,
                        "head": {"input": means(0, 0, 0), "m": means(0, 0, 0, 2.0)},
                        "tail": {"input": means(0, 0, 0), "m": means(0, 0, 0, 3.0)}}}
    for path, value in over.items():
        *keys, last = path.split(".")
        node = parts
        for key in keys:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value
    return parts


def _failed(parts):
    res = rb.check_targets(parts, ["input", "m"])
    assert res["input"]["pass"]
    return sorted(c["id"] for c in res["m"]["checks"] if not c["pass"]), res["m"]["pass"]


def test_targets_pass_fail_logic():
    assert _failed(_parts()) == ([], True)  # every bound met exactly (>= 20, >= 0.97, spread 1, drift 1)
    assert _failed(_parts(**{"clean.means.m.sisnr": 19.99})) == (["clean_sisnr"], False)
    assert _failed(_parts(**{"clean.means.m.stoi": 0.969}))[0] == ["clean_stoi"]
    assert _failed(_parts(**{"clean.means.m.pesq_wb": None}))[0] == ["clean_pesq_wb"]  # unmeasured fails
    assert _failed(_parts(**{"snr.bins.5.means.m.sisnr": 19.9}))[0] == ["snr_sisnr"]  # 20 dB bin below input
    assert _failed(_parts(**{"snr.bins.0.means.m.stoi": 0.64}))[0] == ["snr_stoi"]
    assert _failed(_parts(**{"snr.bins.7.means.m.pesq_wb": 3.4}))[0] == ["floor_pesq_wb"]
    assert _failed(_parts(**{"snr.bins.6.means.m.sisnr": 19.0}))[0] == ["floor_sisnr"]
    assert _failed(_parts(**{"snr.bins.6.means.m.sisnr": 25.0}))[0] == []  # 30 dB: floor, not the input's 30
    assert _failed(_parts(**{"level.bins.0.means.m.sisnr_gain": 1.9}))[0] == ["level_spread"]
    assert _failed(_parts(**{"level.bins.5.means.m.sisnr_gain": 30.0}))[0] == []  # -6 dBFS not in the spread
    assert _failed(_parts(**{"stream.windows.0.scores.m.sisnr": 19.9}))[0] == ["stream_windows"]  # cap 20 dB
    assert _failed(_parts(**{"stream.windows.1.scores.m.sisnr": 9.9}))[0] == ["stream_windows"]  # below input
    assert _failed(_parts(**{"stream.windows.1.scores.m": None}))[0] == []  # an unscored window is left out
    assert _failed(_parts(**{"stream.tail.m.sisnr_gain": 0.9}))[0] == ["stream_drift"]
    assert _failed(_parts(**{"stream.tail.m.sisnr_gain": 1.0}))[0] == []  # |1 - 2| = 1: within 1 dB
    res = rb.check_targets(_parts(**{"snr.bins.3.means.m.sisnr": 9.5}), ["input", "m"])["m"]["checks"]
    snr_check = next(c for c in res if c["id"] == "snr_sisnr")
    assert snr_check["value"] == -0.5 and snr_check["where"] == "10 dB" and not snr_check["pass"]


def test_cli_end_to_end(clips, ckpt, tmp_path, capsys):
    out = tmp_path / "rb"
    argv = ["evaluate", "--robustness", "--model", str(ckpt), "--baseline", "noisereduce",
            "--clean", str(clips[0]), "--noise", str(clips[1]), "--quick", "--seed", "1",
            "-o", str(out), "--workers", "2"]
    assert main(argv) == 0
    stdout, stderr = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["robustness.json", "robustness.md", "robustness.png"]
    report = json.loads((out / "robustness.json").read_text())
    assert report["systems"] == ["input", "noisereduce", "m"] and report["suite"] == "quick"
    assert report["command"][:5] == ["snnse", "evaluate", "--robustness", "--baseline", "noisereduce"]
    assert "--quick" in report["command"] and report["seed"] == 1
    assert len(report["parts"]["clean"]["items"]) == 3 and report["parts"]["stream"]["duration_s"] == 40.0
    assert len(report["parts"]["stream"]["windows"]) == 4
    assert {"numpy", "torch", "pesq", "pystoi", "metrics"} <= set(report["versions"])
    assert report["model"]["name"] == "dpsnn" and report["model"]["path"] == str(ckpt)
    lines = [line for line in stderr.splitlines() if line.startswith("robustness: ")]
    assert [line.split(":")[1].strip() for line in lines] == ["clean", "snr", "level", "stream"]
    md = (out / "robustness.md").read_text()
    rows = [line.split(" | ")[0] for line in md.splitlines() if line.startswith("| ")]
    assert rows.count("| input") == 4 and rows.count("| m") == 4 and "**Targets**" in md
    assert "| **all targets** |" in md and "| system | SI-SNR (dB) | PESQ-WB | STOI |" in stdout
    from matplotlib.image import imread

    img = imread(out / "robustness.png")
    assert img.shape[0] > 800 and img.shape[1] > 1000 and img[..., :3].std() > 0.05
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err  # never over a report


@pytest.mark.parametrize("extra, message", [
    (["--baseline", "noisereduce"], "snnse data demo data/demo"),  # default corpus missing
    (["--baseline", "nope", "--clean", "x", "--noise", "y"], "unknown baseline"),
    (["--model", "no-such-model.pt", "--clean", "x", "--noise", "y"], "no-such-model.pt"),
    ([], "--robustness needs --model"),
    (["--baseline", "noisereduce", "--noisy", "x"], "--noisy cannot be used with --robustness"),
    (["--baseline", "noisereduce", "--mode", "chunk1s"], "chunk1s"),
])
def test_cli_errors(extra, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--robustness", *extra, "-o", "out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not (tmp_path / "out").exists()


def test_robustness_options_need_robustness(tmp_path, capsys):
    argv = ["evaluate", "--clean", str(tmp_path), "--noise", str(tmp_path), "-o", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "--robustness" in capsys.readouterr().err


def test_too_short_utterances_are_left_out(clips, tmp_path):
    """STOI cannot score ~1 s utterances (a 1e-5 placeholder): the suite's speech is >= MIN_SPEECH_S."""
    x, sr = sf.read(next(clips[0].iterdir()), dtype="float64")
    sf.write(tmp_path / "long.wav", x, sr)
    sf.write(tmp_path / "short.wav", x[:int((rb.MIN_SPEECH_S - 0.3) * sr)], sr)
    assert [n for n, _ in rb.load_folder(tmp_path, SR, "clean", rb.MIN_SPEECH_S)] == ["long"]
    assert sorted(n for n, _ in rb.load_folder(tmp_path, SR, "noise")) == ["long", "short"]
