"""N-DNS layout reading and clip synthesis on real speech, noise and impulse responses."""

import argparse
import shutil

import numpy as np
import pytest
import soundfile as sf

from snnse.audio import read_audio
from snnse.data import ndns
from snnse.data.manifest import read_manifest
from snnse.data.mixing import apply_rir, rms_db, snr_db
from snnse.data.ndns import NDNSError, ndns_pairs, synthesize, write_ndns_manifest

LSB = 1 / 32768


def sources(data_dir):
    return data_dir / "voicebank_debug" / "clean", data_dir / "noise" / "speechbrain"


def make(data_dir, out, **kw):
    clean, noise = sources(data_dir)
    kw = {"n_clips": 3, "clip_seconds": 3.0, "seed": 7, "progress": False, **kw}
    return synthesize(clean, noise, out, **kw)


def load(path):
    x, sr = read_audio(path, dtype="float64")
    assert sr == 16000 and x.shape[0] == 1
    return x[0]


def snapshot(split_dir):
    return {p.relative_to(split_dir): p.read_bytes() for p in sorted(split_dir.rglob("*.wav"))}


@pytest.fixture(scope="module")
def tree(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ndns") / "a"
    summary = make(data_dir, out)
    assert summary == {"out": out / "training_set", "made": 3, "skipped": 0, "unreadable": []}
    return out


def check_truthful(split_dir, n_samples=48000):
    """Every clip's name states its measured SNR and level; noisy = clean + noise."""
    pairs = ndns_pairs(split_dir.parent, split_dir.name, strict=True)
    for p in pairs:
        c, z, y = load(p["clean"]), load(p["noise"]), load(p["noisy"])
        assert len(c) == len(z) == len(y) == n_samples
        assert sf.info(str(p["noisy"])).subtype == "PCM_16"
        assert p["snr"] == int(p["snr"]) and p["level"] == int(p["level"])
        assert abs(snr_db(c, z) - p["snr"]) < 0.5 and abs(rms_db(y) - p["level"]) < 0.5
        assert abs(snr_db(c, z) - p["snr"]) < 0.02 and abs(rms_db(y) - p["level"]) < 0.02
        assert np.abs(y - (c + z)).max() <= 2 * LSB
        assert np.abs(y).max() <= 0.99 + LSB and rms_db(c) > -60 and rms_db(z) > -80
    return pairs


def test_clips_are_truthful(tree):
    pairs = check_truthful(tree / "training_set")
    assert [p["fileid"] for p in pairs] == [0, 1, 2]
    for p in pairs:
        assert -5 <= p["snr"] <= 20 and -35 <= p["level"] <= -15
        assert p["noisy"].name.startswith("p287_00")  # named after its first source utterance


def test_loud_levels_are_scaled_down_and_named_truthfully(data_dir, tmp_path):
    make(data_dir, tmp_path, level_range=(-8, -6), n_clips=2)
    pairs = check_truthful(tmp_path / "training_set")
    assert all(p["level"] < -8 for p in pairs)  # real speech peaks well above its RMS


def test_rerun_skips_and_recreates_identically(data_dir, tree, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(tree, out)
    split = out / "training_set"
    before = snapshot(split)
    mtimes = {p: (split / p).stat().st_mtime_ns for p in before}
    assert make(data_dir, out)["skipped"] == 3
    assert {p: (split / p).stat().st_mtime_ns for p in before} == mtimes
    (noisy_1,) = (split / "noisy").glob("*_fileid_1.wav")
    noisy_1.unlink()  # as if interrupted before the noisy file was written
    (split / "clean" / "clean_fileid_2.wav").unlink()
    summary = make(data_dir, out, n_clips=4)
    assert (summary["made"], summary["skipped"]) == (3, 1)
    after = snapshot(split)
    assert {p: after[p] for p in before} == before and len(after) == 12


def test_seed_determines_the_clips(data_dir, tree, tmp_path):
    make(data_dir, tmp_path / "same")
    make(data_dir, tmp_path / "other", seed=8)
    ref = snapshot(tree / "training_set")
    assert snapshot(tmp_path / "same" / "training_set") == ref
    other = snapshot(tmp_path / "other" / "training_set")
    assert len(other) == 9 and not set(other.values()) & set(ref.values())


def test_settings_change_is_refused(data_dir, tree):
    with pytest.raises(NDNSError, match=r"other settings \(seed\)"):
        make(data_dir, tree, seed=99)


def test_reverberation(data_dir, tmp_path):
    speech = data_dir / "voicebank_debug" / "clean" / "p287_003.wav"  # 7.2 s: one utterance per clip
    rir = data_dir / "rir" / "rir3.wav"
    _, noise = sources(data_dir)
    synthesize([speech], [noise], tmp_path, 1, clip_seconds=3.0, rir_dir=[rir], rir_prob=1.0,
               progress=False)
    (p,) = check_truthful(tmp_path / "training_set")
    dry = load(speech)[:48000]
    wet = apply_rir(dry, load(rir))
    got = load(p["clean"])
    assert np.corrcoef(got, wet)[0, 1] > 0.999
    assert np.corrcoef(got, dry)[0, 1] < 0.9


def test_unreadable_sources_are_skipped(data_dir, tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    for name in ("p287_001", "p287_002"):
        shutil.copy(data_dir / "voicebank_debug" / "clean" / f"{name}.wav", clean)
    (clean / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    _, noise = sources(data_dir)
    with pytest.warns(UserWarning, match=r"skipping unreadable clean file: .*broken\.wav"):
        s = synthesize(clean, noise, tmp_path / "out", 3, clip_seconds=3.0, progress=False)
    assert s["made"] == 3 and s["unreadable"] == [str(clean / "broken.wav")]
    check_truthful(tmp_path / "out" / "training_set")


@pytest.mark.parametrize("kw, match", [
    ({"snr_range": (10, 5)}, "bad SNR range"),
    ({"level_range": (-10, 3)}, "bad level range"),
    ({"snr_range": (0.2, 0.8)}, "contains no integer"),
    ({"rir_prob": 0.5}, "needs rir_dir"),
    ({"clip_seconds": 0}, "clip_seconds > 0"),
])
def test_bad_settings(data_dir, tmp_path, kw, match):
    with pytest.raises(NDNSError, match=match):
        make(data_dir, tmp_path, **kw)


def test_missing_sources(data_dir, tmp_path):
    clean, noise = sources(data_dir)
    with pytest.raises(NDNSError, match="no clean audio files"):
        synthesize(tmp_path, noise, tmp_path / "o", 1, progress=False)
    with pytest.raises(NDNSError, match="no noise audio files"):
        synthesize(clean, [tmp_path / "missing"], tmp_path / "o", 1, progress=False)


def test_pairs_with_odd_names_and_a_missing_clean(tree, tmp_path):
    src = tree / "training_set"
    dst = tmp_path / "release" / "validation_set"
    for sub in ("clean", "noise", "noisy"):
        (dst / sub).mkdir(parents=True)
    renames = {0: (12, "book_00012_chp_0003_reader_11_x", "-3.5", "-27.25"), 1: (5, "a_b", "0", "-30"),
               2: (3, "", "20", "-15")}
    for old, (new, prefix, snr, tl) in renames.items():
        shutil.copy(src / "clean" / f"clean_fileid_{old}.wav", dst / "clean" / f"clean_fileid_{new}.wav")
        shutil.copy(src / "noise" / f"noise_fileid_{old}.wav", dst / "noise" / f"noise_fileid_{new}.wav")
        (noisy,) = (src / "noisy").glob(f"*_fileid_{old}.wav")
        shutil.copy(noisy, dst / "noisy" / f"{prefix}_snr{snr}_tl{tl}_fileid_{new}.wav")
    (dst / "clean" / "clean_fileid_5.wav").unlink()
    shutil.copy(dst / "noise" / "noise_fileid_3.wav", dst / "noisy" / "notes.wav")

    with pytest.warns(UserWarning) as caught:
        pairs = ndns_pairs(dst.parent, "validation_set")
    msg = "\n".join(str(w.message) for w in caught)
    assert "2 problem(s)" in msg and "noisy/notes.wav: name does not follow the N-DNS pattern" in msg
    assert "fileid 5: noisy/a_b_snr0_tl-30_fileid_5.wav has no clean/clean_fileid_5.wav" in msg
    assert [(p["fileid"], p["snr"], p["level"]) for p in pairs] == [(3, 20, -15), (12, -3.5, -27.25)]
    assert all(p["noise"].name == f"noise_fileid_{p['fileid']}.wav" for p in pairs)
    with pytest.raises(NDNSError, match="fileid 5"):
        ndns_pairs(dst.parent, "validation_set", strict=True)
    with pytest.raises(NDNSError, match="no such folder"):
        ndns_pairs(dst.parent, "training_set")


def test_manifest_round_trip(tree, tmp_path):
    csv = tmp_path / "lists" / "train.csv"
    assert write_ndns_manifest(tree, "training_set", csv) == 3
    rows = read_manifest(csv)
    for row, p in zip(rows, ndns_pairs(tree)):
        assert row["noisy"].resolve() == p["noisy"].resolve() and row["clean"].resolve() == p["clean"].resolve()
        assert row["id"] == f"fileid_{p['fileid']}" and row["fileid"] == str(p["fileid"])
        assert row["speaker"] == "unknown" and row["duration"] == pytest.approx(3.0)
        assert float(row["snr"]) == p["snr"] and float(row["level"]) == p["level"]
        assert (csv.parent / row["noise"]).resolve() == p["noise"].resolve()


def parse(argv):
    parser = argparse.ArgumentParser(prog="snnse data")
    ndns.add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_cli(data_dir, tree, tmp_path, capsys):
    clean, noise = sources(data_dir)
    out = tmp_path / "cli"
    args = parse(["synthesize", "--clean", str(clean), "--noise", str(noise), "--out", str(out),
                  "--clips", "2", "--seconds", "2", "--snr", "0", "10", "--level", "-30", "-20",
                  "--seed", "3", "--split", "validation_set", "-q"])
    assert args.func is ndns.run_synthesize and args.func(args) == 0
    assert "made 2 clips, 0 already there" in capsys.readouterr().out
    pairs = ndns_pairs(out, "validation_set")
    assert len(pairs) == 2 and all(0 <= p["snr"] <= 10 and -30 <= p["level"] <= -20 for p in pairs)

    args = parse(["synthesize", "--clean", str(clean), "--noise", str(noise), "--out", str(out),
                  "--clips", "1", "--rir", str(data_dir / "rir")])
    assert args.func(args) == 2 and "--rir needs --rir-prob" in capsys.readouterr().err
    args = parse(["synthesize", "--clean", str(tmp_path / "none"), "--noise", str(noise),
                  "--out", str(out), "--clips", "1"])
    assert args.func(args) == 2 and capsys.readouterr().err.startswith("error: no clean audio files")

    root = tmp_path / "root"
    shutil.copytree(tree / "training_set", root / "training_set")
    shutil.copytree(out / "validation_set", root / "validation_set")
    args = parse(["ndns", "--root", str(root), "--out", str(tmp_path / "lists")])
    assert args.func is ndns.run_ndns and args.func(args) == 0
    assert len(read_manifest(tmp_path / "lists" / "train.csv")) == 3
    assert len(read_manifest(tmp_path / "lists" / "valid.csv")) == 2
    args = parse(["ndns", "--root", str(tmp_path / "none"), "--out", str(tmp_path)])
    assert args.func(args) == 2 and "no training_set or validation_set folder" in capsys.readouterr().err
