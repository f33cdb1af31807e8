"""VoiceBank+DEMAND preparation on a small release-layout tree built from real recordings."""

import argparse
import os
import shutil
import warnings

import numpy as np
import pytest
import soundfile as sf

from snnse.audio import read_audio, resample, write_audio_atomic
from snnse.data import voicebank
from snnse.data.manifest import read_manifest
from snnse.data.voicebank import PairingError, prepare_voicebank

TRAIN = ["clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"]
TEST = ["clean_testset_wav", "noisy_testset_wav"]
# release file name -> debug recording it is made from (real audio, renamed to fake speakers)
TRAIN_FILES = {**{f"p287_00{i}": f"p287_00{i}" for i in (1, 2, 3, 4)},
               "p226_001": "p287_005", "p230_001": "p287_006", "p230_002": "p287_001"}
TEST_FILES = {"p232_001": "p287_005", "p257_001": "p287_006"}


def build_release(data_dir, root):
    """Write the official layout at 48 kHz (16-bit), upsampled from the debug set."""
    for folders, files in ((TRAIN, TRAIN_FILES), (TEST, TEST_FILES)):
        for folder in folders:
            kind = folder.split("_")[0]
            for name, src in files.items():
                x, sr = read_audio(data_dir / "voicebank_debug" / kind / f"{src}.wav")
                write_audio_atomic(root / folder / f"{name}.wav", resample(x, sr, 48000), 48000,
                                   subtype="PCM_16")


@pytest.fixture(scope="module")
def release(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("vb") / "release"
    build_release(data_dir, root)
    return root


@pytest.fixture(scope="module")
def prepared(release):
    with pytest.warns(UserWarning) as caught:
        summary = prepare_voicebank(release, workers=2, progress=False)
    return summary, [str(w.message) for w in caught]


def test_cache_is_16k_and_close_to_the_originals(data_dir, release, prepared):
    summary, _ = prepared
    out = release / "snnse_16k"
    assert summary["out"] == out and summary["trainset"] == "28spk"
    assert summary["resampled"] == 2 * (len(TRAIN_FILES) + len(TEST_FILES))
    for name, src in TRAIN_FILES.items():
        for kind, folder in zip(("clean", "noisy"), TRAIN):
            y, sr = read_audio(out / folder / f"{name}.wav", dtype="float64")
            x, _ = read_audio(data_dir / "voicebank_debug" / kind / f"{src}.wav", dtype="float64")
            assert sr == 16000 and y.shape == x.shape
            assert np.corrcoef(x[0], y[0])[0, 1] > 0.999
            assert np.sqrt(np.mean((x - y) ** 2) / np.mean(x ** 2)) < 0.02


def test_manifests_and_speaker_disjoint_validation(release, prepared):
    summary, _ = prepared
    out = summary["out"]
    rows = {s: read_manifest(out / f"{s}.csv") for s in ("train", "valid", "test")}
    assert {s: len(r) for s, r in rows.items()} == {"train": 2, "valid": 5, "test": 2}
    assert {s: summary[s] for s in rows} == {"train": 2, "valid": 5, "test": 2}
    spk = {s: {r["speaker"] for r in rs} for s, rs in rows.items()}
    assert spk == {"train": {"p230"}, "valid": {"p226", "p287"}, "test": {"p232", "p257"}}
    for split, rs in rows.items():
        for r in rs:
            assert r["id"] == r["clean"].stem == r["noisy"].stem
            assert r["clean"].parent.name.startswith("clean") and r["noisy"].parent.name.startswith("noisy")
            info = sf.info(str(r["clean"]))
            assert info.samplerate == 16000
            assert r["duration"] == pytest.approx(info.frames / 16000, abs=1e-4)


def test_count_mismatch_is_explained(prepared):
    summary, messages = prepared
    assert any("found 7 training pairs, the full 28-speaker release has 11,572: is this a subset?" in m
               for m in messages)
    assert any("found 2 test pairs, the full release has 824" in m for m in messages)
    assert len(summary["notes"]) == 2 and summary["problems"] == []


def test_rerun_does_not_reconvert(release, prepared):
    out = prepared[0]["out"]
    files = sorted(out.rglob("*.wav"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = prepare_voicebank(release, workers=0, progress=False)
    assert again["cached"] == len(files) and again["resampled"] == again["copied"] == 0
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert not list(out.rglob("*.part"))


def test_16k_copies_are_copied_without_resampling(data_dir, tmp_path):
    root = tmp_path / "vb16"
    for folders, files in ((TRAIN, TRAIN_FILES), (TEST, TEST_FILES)):
        for folder in folders:
            for name, src in files.items():
                (root / folder).mkdir(parents=True, exist_ok=True)
                shutil.copy(data_dir / "voicebank_debug" / folder.split("_")[0] / f"{src}.wav",
                            root / folder / f"{name}.wav")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = prepare_voicebank(root, out=tmp_path / "cache", workers=0, progress=False)
    assert s["copied"] == 2 * (len(TRAIN_FILES) + len(TEST_FILES)) and s["resampled"] == 0
    a, _ = sf.read(root / TRAIN[0] / "p230_001.wav", dtype="int16")
    b, _ = sf.read(tmp_path / "cache" / TRAIN[0] / "p230_001.wav", dtype="int16")
    np.testing.assert_array_equal(a, b)


@pytest.fixture
def small_release(release, tmp_path):
    """A copy of the release with only its p230 and test files (fast to convert)."""
    root = tmp_path / "small"
    for folder in TRAIN + TEST:
        (root / folder).mkdir(parents=True)
        for f in (release / folder).glob("p2[35]*.wav"):
            shutil.copy(f, root / folder / f.name)
    return root


def test_unpaired_and_mismatched_files_are_reported(small_release):
    root = small_release
    os.unlink(root / TRAIN[1] / "p230_002.wav")  # clean without noisy
    x, sr = sf.read(root / TEST[1] / "p232_001.wav", dtype="int16")
    sf.write(root / TEST[1] / "p232_001.wav", x[:-4800], sr)  # 0.1 s shorter
    kw = dict(valid_speakers=["p230"], workers=0, progress=False)
    with pytest.raises(PairingError, match=r"p230_002\.wav: no noisy file of that name"):
        prepare_voicebank(root, **kw)
    os.unlink(root / TRAIN[0] / "p230_002.wav")
    with pytest.raises(PairingError, match=r"p232_001\.wav: clean and noisy differ in length "
                                           r"after resampling \(\d+ vs \d+ samples\)"):
        prepare_voicebank(root, **kw)
    with pytest.warns(UserWarning) as caught:
        s = prepare_voicebank(root, strict=False, **kw)
    assert any(str(w.message).startswith("dropped 1 file(s)/pair(s):\n  p232_001.wav") for w in caught)
    assert s["test"] == 1 and len(s["problems"]) == 1
    assert [r["id"] for r in read_manifest(s["out"] / "test.csv")] == ["p257_001"]
    (root / TEST[1] / "p257_001.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    with pytest.raises(PairingError, match=r"noisy_testset_wav/p257_001\.wav: cannot read audio"):
        prepare_voicebank(root, **kw)  # a changed source is converted again, not taken from the cache


def test_valid_speakers_must_be_training_not_test_speakers(small_release):
    with pytest.raises(voicebank.LayoutError, match="p999.*not in the training set"):
        prepare_voicebank(small_release, valid_speakers=["p999"], workers=0, progress=False)
    for folder in TRAIN:  # a test speaker that also appears in the training folders
        shutil.copy(small_release / folder / "p230_001.wav", small_release / folder / "p232_900.wav")
    with pytest.raises(voicebank.LayoutError, match="p232 are test-set speakers"):
        prepare_voicebank(small_release, valid_speakers=["p232"], workers=0, progress=False)


def parse(argv):
    parser = argparse.ArgumentParser(prog="snnse data")
    voicebank.add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_cli(small_release, tmp_path, capsys):
    out = tmp_path / "cli_out"
    args = parse(["voicebank", "--root", str(small_release), "--out", str(out),
                  "--valid-speakers", "p230", "--workers", "0", "-q"])
    assert args.func is voicebank.run
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert "train 0, valid 2, test 2 pairs" in captured.out
    assert "warning: found 2 training pairs" in captured.err
    assert len(read_manifest(out / "valid.csv")) == 2

    args = parse(["voicebank", "--root", str(tmp_path / "nowhere")])
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no such folder" in err and "\n" not in err

    shutil.rmtree(small_release / TEST[1])
    args = parse(["voicebank", "--root", str(small_release), "-q"])
    assert args.func(args) == 2
    assert "missing release folder(s) noisy_testset_wav" in capsys.readouterr().err
