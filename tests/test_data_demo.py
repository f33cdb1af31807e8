"""Tests for snnse.data.demo: a small demo corpus built from the real Debian packages.

The packages (about 45 MB for en, fr and the music) are downloaded once with
``apt-get download`` into ``~/.cache/snnse/debs``; later runs work offline.
"""

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snnse.data import demo
from snnse.data.manifest import read_manifest
from snnse.data.mixing import rms_db, snr_db


def _run(*argv):
    parser = argparse.ArgumentParser()
    demo.add_parser(parser.add_subparsers())
    args = parser.parse_args(["demo", *map(str, argv)])
    return args.func(args)


def _snapshot(root: Path) -> dict:
    return {p: (p.stat().st_mtime_ns, hashlib.md5(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(demo_corpus):
    """Built by the session fixture in conftest.py; the CLI path is run again below (idempotence)."""
    return demo_corpus


def test_layout_and_summary(corpus):
    for split in demo.SPLITS:
        for sub in ("clean", "noise", "rir"):
            assert list((corpus / split / sub).glob("*.wav")), (split, sub)
    for split in ("valid", "test"):
        assert (corpus / f"{split}.csv").is_file()
        assert len(list((corpus / split / "mix" / "noisy").glob("*.wav"))) == \
            len(list((corpus / split / "clean").glob("*.wav")))
    summary = json.loads((corpus / "corpus.json").read_text())
    assert summary["splits"]["test"]["speakers"] == ["fr_CA_f_June"]
    assert summary["splits"]["train"]["speakers"] == ["en_US_f_Allison"]
    assert [summary["splits"][s]["utterances"] for s in demo.SPLITS] == [5, 1, 6]
    assert summary["limit"] == 6 and summary["seed"] == 0 and summary["sample_rate"] == 16000


def test_test_speaker_and_noises_unseen(corpus):
    ids = {s: {p.stem for p in (corpus / s / "clean").glob("*.wav")} for s in demo.SPLITS}
    assert all(i.startswith("fr_") for i in ids["test"])
    assert not any(i.startswith("fr_") for i in ids["train"] | ids["valid"])
    assert not ids["train"] & ids["valid"]  # validation holds out prompts of the training voice

    def digests(split, sub):
        return {hashlib.md5(p.read_bytes()).hexdigest(): p.stem
                for p in (corpus / split / sub).glob("*.wav")}
    for sub in ("noise", "rir"):
        test, valid, train = (digests(s, sub) for s in ("test", "valid", "train"))
        assert not set(test) & set(train) and not set(test) & set(valid) and not set(valid) & set(train)
    recorded = {s: {p.stem for p in (corpus / s / "noise").glob("*.wav")
                    if not p.stem.startswith(("babble", "white", "pink", "brown"))}
                for s in demo.SPLITS}
    assert not recorded["test"] & (recorded["train"] | recorded["valid"])
    assert not recorded["valid"] & recorded["train"]
    assert {"music_manolo_camp-morning_coffee", "sb_noise5"} <= recorded["test"]


def test_decoded_speech_is_real(corpus):
    files = sorted((corpus / "train" / "clean").glob("*.wav"))
    for f in files:
        info = sf.info(str(f))
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        x, _ = sf.read(f)
        assert len(x) >= 16000 and -35 < rms_db(x) < -8 and np.abs(x).max() < 1
        spec = np.abs(np.fft.rfft(x)) ** 2
        assert spec[len(spec) // 2:].sum() > 1e-4 * spec.sum()  # wideband: energy above 4 kHz


def test_manifests(corpus):
    for split in ("valid", "test"):
        rows = read_manifest(corpus / f"{split}.csv")
        noises = {p.stem for p in (corpus / split / "noise").glob("*.wav")}
        rirs = {p.stem for p in (corpus / split / "rir").glob("*.wav")} | {""}
        for row in rows:
            assert row["noise"] in noises and row["rir"] in rirs
            assert -5 <= float(row["snr"]) <= 20 and -35.01 <= float(row["level"]) <= -14.99
            noisy, sr = sf.read(row["noisy"])
            clean, _ = sf.read(row["clean"])
            assert sr == 16000 and len(noisy) == len(clean)
            assert len(clean) / sr == pytest.approx(row["duration"], abs=1e-4)
            assert snr_db(clean, noisy - clean) == pytest.approx(float(row["snr"]), abs=0.05)
            assert rms_db(noisy) == pytest.approx(float(row["level"]), abs=0.05)


def test_rerun_is_idempotent(corpus, data_dir):
    before = _snapshot(corpus)
    assert _run(corpus, "--languages", "en,fr", "--limit", "6", "--shared", data_dir) == 0
    assert _snapshot(corpus) == before


def test_licences(corpus):
    lic = corpus / "LICENSES"
    for name in ("asterisk-core-sounds-en-g722", "asterisk-core-sounds-fr-g722", demo.MOH):
        assert "Creative Commons" in (lic / f"{name}.copyright").read_text() or \
            "CC-BY" in (lic / f"{name}.copyright").read_text()
    readme = (corpus / "README.md").read_text()
    assert "CC BY-NC 3.0" in readme and "Apache-2.0" in readme and "CC BY-NC 3.0" in \
        (lic / "SOURCES.md").read_text()


def test_download_failure_is_reported(tmp_path, data_dir, monkeypatch, capsys):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apt-get").write_text("#!/bin/sh\necho 'E: no network here' >&2\nexit 100\n")
    (fake / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    rc = _run(tmp_path / "out", "--debs", tmp_path / "debs", "--shared", data_dir)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: cannot download")
    assert "no network here" in err[0] and "apt-get download" in err[0]


def test_bad_arguments(tmp_path, data_dir, capsys):
    assert _run(tmp_path, "--languages", "en,es", "--shared", data_dir) == 2
    assert "include fr" in capsys.readouterr().err
    assert _run(tmp_path, "--shared", tmp_path) == 2
    assert "shared data not found" in capsys.readouterr().err
