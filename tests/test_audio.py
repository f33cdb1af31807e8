"""Tests for snnse.audio: reading, resampling, atomic writing, output planning."""

import os
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snnse.audio import (AtomicAudioWriter, AudioError, StreamResampler, TruncatedAudioWarning,
                         find_audio_files, plan_outputs, read_audio, resample, wav_truncation,
                         write_audio_atomic)


@pytest.fixture
def noisy(data_dir):
    return sorted((data_dir / "voicebank_debug" / "noisy").glob("*.wav"))


def _leftovers(folder: Path):
    return [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_read_real_wav(noisy):
    x, sr = read_audio(noisy[0])
    info = sf.info(str(noisy[0]))
    assert sr == 16000 and x.shape == (1, info.frames) and x.dtype == np.float32
    assert np.isfinite(x).all() and 0 < np.abs(x).max() <= 1


def test_read_flac_and_float64(noisy, tmp_path):
    x, sr = read_audio(noisy[1])
    write_audio_atomic(tmp_path / "a.flac", x, sr, subtype="PCM_16")
    y, sr2 = read_audio(tmp_path / "a.flac", dtype="float64")
    assert sr2 == sr and y.dtype == np.float64
    np.testing.assert_allclose(y, x, atol=1e-6)


@pytest.mark.parametrize("kind,msg", [
    ("missing", "file not found"), ("folder", "not a file"), ("random", "cannot read audio"),
    ("empty", "empty"), ("header_only", "empty"), ("nan", "NaN or Inf"), ("inf", "NaN or Inf"),
])
def test_read_errors(tmp_path, noisy, kind, msg):
    p = tmp_path / "bad.wav"
    if kind == "folder":
        p.mkdir()
    elif kind == "random":
        p.write_bytes(np.random.default_rng(0).bytes(4000))
    elif kind == "empty":
        sf.write(str(p), np.zeros((0, 1)), 16000)
    elif kind == "header_only":
        p.write_bytes(noisy[0].read_bytes()[:44])
    elif kind in ("nan", "inf"):
        x, sr = read_audio(noisy[0])
        x[0, 1000] = np.nan if kind == "nan" else np.inf
        sf.write(str(p), x.T, sr, subtype="FLOAT")
    with pytest.raises(AudioError, match=msg) as exc:
        read_audio(p)
    text = str(exc.value)
    assert "\n" not in text and str(p) in text


def test_truncated_wav_reads_what_is_there_with_a_warning(noisy, tmp_path):
    data = noisy[0].read_bytes()  # p287_001: 44-byte header, 31367 frames of PCM_16
    p = tmp_path / "trunc.wav"
    p.write_bytes(data[:44 + 2 * 5000 + 1])  # header claims many more frames
    assert wav_truncation(p) == (31367, 5000)
    with pytest.warns(TruncatedAudioWarning) as caught:
        x, _ = read_audio(p)
    assert len(caught) == 1
    assert str(caught[0].message) == (
        f"{p}: truncated WAV file: its header declares 31367 frames (1.96 s), the file holds 5000 "
        "(0.31 s); the last 26367 frames (1.65 s) are missing")
    ref, _ = read_audio(noisy[0])
    assert x.shape == (1, 5000)
    np.testing.assert_array_equal(x, ref[:, :5000])


def test_truncated_float_stereo_wav(noisy, tmp_path):
    x, sr = read_audio(noisy[2])
    full = tmp_path / "full.wav"
    sf.write(str(full), np.stack([x[0], -x[0]], 1), sr, subtype="FLOAT")  # fmt, fact, PEAK, data
    data = full.read_bytes()
    start = data.index(b"data") + 8
    (tmp_path / "cut.wav").write_bytes(data[:start + 8 * 1000 + 5])  # 1000 frames and 5 bytes
    assert wav_truncation(tmp_path / "cut.wav") == (x.shape[1], 1000)
    with pytest.warns(TruncatedAudioWarning, match="the last"):
        y, _ = read_audio(tmp_path / "cut.wav")
    np.testing.assert_array_equal(y, np.stack([x[0], -x[0]])[:, :1000])


def test_complete_wav_files_are_not_truncated(noisy, tmp_path):
    x, sr = read_audio(noisy[2])
    stereo = tmp_path / "stereo.wav"
    sf.write(str(stereo), np.stack([x[0], -x[0]], 1), sr, subtype="FLOAT")
    # a chunk after the samples, cut short: the samples are all there
    tail = tmp_path / "tail.wav"
    data = noisy[0].read_bytes()
    tail.write_bytes(data + b"LIST" + struct.pack("<I", 100) + b"INFO")
    # a streaming writer's open length (0xFFFFFFFF) says nothing about what is missing
    open_len = tmp_path / "open.wav"
    open_len.write_bytes(data[:40] + struct.pack("<I", 0xFFFFFFFF) + data[44:])
    write_audio_atomic(tmp_path / "a.flac", x, sr, subtype="PCM_16")
    for p in [*noisy, stereo, tail, open_len, tmp_path / "a.flac", tmp_path / "missing.wav"]:
        assert wav_truncation(p) is None, p
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for p in [*noisy, stereo, tail]:
            read_audio(p)


def test_truncated_flac_is_an_error(noisy, tmp_path):
    x, sr = read_audio(noisy[2])
    write_audio_atomic(tmp_path / "full.flac", x, sr, subtype="PCM_16")
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="cut.flac"):
        read_audio(tmp_path / "cut.flac")


def test_resample_identity_and_lengths(data_dir):
    x, sr = read_audio(sorted((data_dir / "noise" / "esc50").glob("*.wav"))[0])
    assert sr == 44100
    assert resample(x, sr, sr) is x
    y = resample(x, sr, 16000)
    assert y.shape == (1, round(x.shape[1] * 16000 / 44100)) and y.dtype == x.dtype
    stereo = np.concatenate([x, -x])
    y2 = resample(stereo, sr, 16000)
    np.testing.assert_allclose(y2[0], y[0], atol=1e-6)
    np.testing.assert_allclose(y2[1], -y[0], atol=1e-6)
    assert resample(x[0], sr, 16000).shape == (y.shape[1],)


def test_stream_resampler_matches_one_shot(data_dir):
    x, sr = read_audio(sorted((data_dir / "noise" / "esc50").glob("*.wav"))[1])
    x = np.concatenate([x, x[:, ::-1]])[:, :60000]
    rs = StreamResampler(sr, 16000, 2)
    parts = [rs.process(x[:, i:i + 7001]) for i in range(0, x.shape[1], 7001)]
    parts.append(rs.flush())
    y = np.concatenate(parts, axis=1)
    ref = resample(x, sr, 16000)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=1e-5)
    same = StreamResampler(16000, 16000, 2)
    assert same.process(x[:, :10]).shape == (2, 10) and same.flush().shape == (2, 0)


def test_write_keeps_subtype_and_clips(tmp_path):
    x = np.array([[0.5, 1.5, -2.0, 0.25]], np.float32)
    out = tmp_path / "sub" / "dir" / "o.wav"
    assert write_audio_atomic(out, x, 16000, subtype="PCM_16") == 2
    info = sf.info(str(out))
    assert info.subtype == "PCM_16" and info.samplerate == 16000 and info.frames == 4
    y, _ = read_audio(out)
    np.testing.assert_allclose(y, np.clip(x, -1, 1), atol=1e-4)
    assert write_audio_atomic(tmp_path / "f.wav", x, 8000, subtype="FLOAT") == 0
    np.testing.assert_array_equal(read_audio(tmp_path / "f.wav")[0], x)
    # FLAC cannot hold FLOAT: falls back to the format's default subtype
    write_audio_atomic(tmp_path / "f.flac", x, 8000, subtype="FLOAT")
    assert sf.info(str(tmp_path / "f.flac")).format == "FLAC"
    assert not _leftovers(tmp_path) and not _leftovers(out.parent)


def test_atomic_write_failure_leaves_nothing(tmp_path):
    out = tmp_path / "o.wav"
    write_audio_atomic(out, np.full((1, 10), 0.5), 16000, subtype="PCM_16")
    before = out.read_bytes()
    with pytest.raises(ValueError):
        write_audio_atomic(out, np.zeros((2, 3, 4)), 16000)
    with pytest.raises(RuntimeError):
        with AtomicAudioWriter(out, 16000, 1, subtype="PCM_16") as w:
            w.write(np.zeros((1, 100)))
            raise RuntimeError("boom")
    with pytest.raises(ValueError):
        with AtomicAudioWriter(out, 16000, 1) as w:
            w.write(np.zeros((2, 100)))  # wrong channel count
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.wav"]


def test_atomic_write_unwritable_target(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    with pytest.raises(AudioError, match="cannot create output"):
        write_audio_atomic(blocker / "o.wav", np.zeros((1, 10)), 16000)


def test_find_audio_files(tmp_path):
    for rel in ["b/2.WAV", "b/1.flac", "a.wav", "notes.txt", "b/c/3.wav"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = find_audio_files([str(tmp_path)])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.wav", "b/1.flac", "b/2.WAV", "b/c/3.wav"]
    # explicit files kept (even missing / other extensions), duplicates removed
    got = find_audio_files([tmp_path / "notes.txt", tmp_path / "a.wav", tmp_path / "nope.wav",
                            tmp_path / "b"])
    assert [p.name for p in got] == ["notes.txt", "a.wav", "nope.wav", "1.flac", "2.WAV", "3.wav"]


def test_plan_outputs(tmp_path):
    src = tmp_path / "in"
    (src / "x").mkdir(parents=True)
    for rel in ["a.wav", "x/b.flac"]:
        (src / rel).write_bytes(b"")
    out = tmp_path / "out"
    pairs = plan_outputs([str(src)], out)
    assert [(s.name, d.relative_to(out).as_posix()) for s, d in pairs] == [
        ("a.wav", "a.wav"), ("b.flac", "x/b.flac")]
    assert plan_outputs([src / "a.wav"], tmp_path / "e.flac") == [(src / "a.wav", tmp_path / "e.flac")]
    assert plan_outputs([src / "a.wav"], out)[0][1] == out / "a.wav"
    with pytest.raises(AudioError, match="overwrite input"):
        plan_outputs([src / "a.wav"], src / "a.wav")
    with pytest.raises(AudioError, match="overwrite input"):
        plan_outputs([str(src)], src)
    with pytest.raises(AudioError, match="overwrite input"):
        plan_outputs([src / "a.wav", src / "x" / "b.flac"], src / "x")
    with pytest.raises(AudioError, match="both be written"):
        plan_outputs([src / "a.wav", tmp_path / "other" / "a.wav"], out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioError, match="no audio files"):
        plan_outputs([tmp_path / "empty"], out)


def test_plan_outputs_refuses_hardlink_to_input(tmp_path):
    src = tmp_path / "a.wav"
    src.write_bytes(b"")
    (tmp_path / "out").mkdir()
    os.link(src, tmp_path / "out" / "a.wav")
    with pytest.raises(AudioError, match="overwrite input"):
        plan_outputs([src], tmp_path / "out")
