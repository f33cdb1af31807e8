"""The metric cache: content-keyed, code-salted, shared safely, never needed for correctness."""

import json

import numpy as np
import soundfile as sf

import snnse.evaluate as ev
from snnse.metric_cache import MetricCache, code_salt, default_cache_dir


def test_keys_depend_on_every_input(tmp_path):
    rng = np.random.default_rng(0)
    a, b, n = rng.standard_normal((3, 1000))
    c = MetricCache(tmp_path, "salt")
    k = c.key(a, b, 16000)
    assert k == c.key(a.copy(), b.copy(), 16000)
    others = {c.key(b, a, 16000), c.key(a, b, 8000), c.key(a, b, 16000, n), c.key(a[:-1], b[:-1], 16000),
              MetricCache(tmp_path, "other").key(a, b, 16000)}
    assert k not in others and len(others) == 5


def test_get_put_merge(tmp_path):
    c = MetricCache(tmp_path / "c", "s")
    assert c.get("ab12", ["sisnr"]) is None and c.misses == 1
    c.put("ab12", {"sisnr": 3.5})
    c.put("ab12", {"stoi": 0.9})
    assert c.get("ab12", ["sisnr", "stoi"]) == {"sisnr": 3.5, "stoi": 0.9} and c.hits == 1
    assert c.get("ab12", ["sisnr", "pesq_wb"]) is None  # partial entries are misses
    (tmp_path / "c" / "ab" / "ab12.json").write_text("{broken")
    assert c.get("ab12", ["sisnr"]) is None  # a damaged entry is a miss, not an error


def test_salt_follows_implementations():
    assert code_salt({"pesq_wb": "pesq 0.0.4"}) != code_salt({"pesq_wb": "pesq 0.0.5"})


def test_default_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SNNSE_CACHE_DIR", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"


def test_second_evaluation_is_served_from_the_cache(data_dir, tmp_path, monkeypatch):
    pairs = (data_dir / "voicebank_debug" / "noisy", data_dir / "voicebank_debug" / "clean")
    kw = dict(metrics="sisnr,stoi,pesq_wb", workers=1, progress=False, notice=None, error=None,
              cache_dir=tmp_path / "cache")
    first = ev.evaluate(pairs, **kw)
    assert first.summary["cache"]["hits"] == 0 and first.summary["cache"]["misses"] == 6

    def boom(*a, **k):
        raise AssertionError("computed although cached")

    monkeypatch.setattr(ev, "compute_metrics", boom)
    second = ev.evaluate(pairs, **kw)
    assert second.summary["cache"]["hits"] == 6
    assert second.summary["systems"] == first.summary["systems"]
    assert [r["sisnr"] for r in second.rows] == [r["sisnr"] for r in first.rows]
    # a metric not in the cache yet is computed (all of the set, once)
    monkeypatch.undo()
    third = ev.evaluate(pairs, **{**kw, "metrics": "sisnr,estoi"})
    assert third.summary["cache"]["misses"] == 6


def test_changed_audio_misses_and_no_cache_recomputes(data_dir, tmp_path):
    src = data_dir / "voicebank_debug"
    noisy, clean = tmp_path / "noisy", tmp_path / "clean"
    noisy.mkdir(), clean.mkdir()
    for name in ("p287_001.wav", "p287_002.wav"):
        (clean / name).write_bytes((src / "clean" / name).read_bytes())
        (noisy / name).write_bytes((src / "noisy" / name).read_bytes())
    kw = dict(metrics="sisnr", workers=1, progress=False, notice=None, error=None, cache_dir=tmp_path / "c")
    ev.evaluate((noisy, clean), **kw)
    x, sr = sf.read(noisy / "p287_001.wav")
    sf.write(noisy / "p287_001.wav", x * 0.5 + 0.01 * x[::-1], sr)
    again = ev.evaluate((noisy, clean), **kw)
    assert again.summary["cache"] == {"dir": str(tmp_path / "c"), "hits": 1, "misses": 1}
    assert ev.evaluate((noisy, clean), **{**kw, "cache": False}).summary["cache"] is None


def test_unwritable_cache_is_only_a_notice(data_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    notes = []
    res = ev.evaluate((data_dir / "voicebank_debug" / "noisy", data_dir / "voicebank_debug" / "clean"),
                      metrics="sisnr", workers=1, progress=False, notice=notes.append, error=None,
                      cache_dir=blocker / "cache")
    assert res.n_failed == 0 and len(res.rows) == 6
    assert sum("metric cache not written" in n for n in notes) == 1


def test_cli_reports_reuse(data_dir, tmp_path, capsys):
    from snnse.cli import main

    args = ["evaluate", "--noisy", str(data_dir / "voicebank_debug" / "noisy"), "--clean",
            str(data_dir / "voicebank_debug" / "clean"), "--metrics", "sisnr", "--workers", "1"]
    assert main(args + ["-o", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main(args + ["-o", str(tmp_path / "b")]) == 0
    assert "6 of 6 score sets reused" in capsys.readouterr().err
    assert main(args + ["-o", str(tmp_path / "c"), "--no-cache"]) == 0
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["cache"] is None
    assert "reused" not in capsys.readouterr().err
