"""Tests for snnse.data.demo: a small demo corpus built from the real Debian packages.

The packages (about 180 MB for en, fr, the music, the extra voices and the noise packages) are
downloaded once with ``apt-get download`` into ``~/.cache/snnse/debs`` and unpacked once in its
``unpacked/`` folder; later runs work offline.
"""

import argparse
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snnse.data import demo
from snnse.data import demo_sources as extra
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
    train = summary["splits"]["train"]["speakers"]
    assert "en_US_f_Allison" in train
    assert any(v.startswith("fillets_nl_") for v in train)
    assert any(v.startswith("klettres_") for v in train)
    # limit 6 per voice source: en, fillets-nl, klettres give 5 + 1 each, fr 6 (test)
    assert [summary["splits"][s]["utterances"] for s in demo.SPLITS] == [15, 3, 6]
    assert summary["limit"] == 6 and summary["seed"] == 0 and summary["sample_rate"] == 16000
    assert summary["version"] == demo.VERSION and summary["extra_speech"] == list(demo.EXTRA)
    for s in demo.SPLITS:
        v = summary["splits"][s]
        assert sum(v["voice_minutes"].values()) == pytest.approx(v["clean_minutes"], abs=0.02)
        cats = v["noise_categories"]
        assert sum(c["files"] for c in cats.values()) == len(v["noise"])
        # every split has real recordings of several kinds, besides babble and coloured noise
        assert {"music", "nature", "machinery", "impacts", "typing"} <= set(cats), (s, cats)
    readme = (corpus / "README.md").read_text()
    assert "| split | babble |" in readme and "fillets_nl_" in readme


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
        if f.stem.startswith("fillets_"):  # a dull recording: little above 4 kHz (-40 dB)
            assert spec[len(spec) // 4:].sum() > 1e-4 * spec.sum()  # energy above 2 kHz
        else:
            assert spec[len(spec) // 2:].sum() > 1e-4 * spec.sum()  # wideband: above 4 kHz


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
    # the packages were unpacked once, beside the .deb cache, and marked with their .deb
    packages = json.loads((corpus / "corpus.json").read_text())["packages"]
    assert all((UNPACKED / n / ".deb").read_text() == deb for n, deb in packages.items())


def test_licences(corpus):
    lic = corpus / "LICENSES"
    for name in ("asterisk-core-sounds-en-g722", "asterisk-core-sounds-fr-g722", demo.MOH):
        assert "Creative Commons" in (lic / f"{name}.copyright").read_text() or \
            "CC-BY" in (lic / f"{name}.copyright").read_text()
    readme = (corpus / "README.md").read_text()
    assert "CC BY-NC 3.0" in readme and "Apache-2.0" in readme and "CC BY-NC 3.0" in \
        (lic / "SOURCES.md").read_text()
    packages = [*extra.NOISE_PACKAGES, *extra.EXTRA_SPEECH.values()]
    for name in packages:  # the Debian copyright file of every package, named in the README
        text = (lic / f"{name}.copyright").read_text()
        assert re.search(r"GPL-2|CC-BY|CC0|Creative Commons|General Public License", text), name
        assert f"`{name}`" in readme and f"`{name}`" in (lic / "SOURCES.md").read_text()
    summary = json.loads((corpus / "corpus.json").read_text())
    assert set(packages) <= set(summary["packages"])
    credits = dict(line.split(" ", 1) for line in
                   (lic / "opensfx-files.txt").read_text().splitlines())
    used = {s.split("#")[1][:2] for v in summary["noise_sources"].values() for f in v.values()
            for s in f if s.startswith("openttd-opensfx:")}
    assert used and all("License: Creative Commons" in credits[i] for i in used)
    assert not any("Non" in credits[i] or "NC" in credits[i].split("License:")[1] for i in used)


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


UNPACKED = Path.home() / ".cache/snnse/debs/unpacked"  # where the corpus fixture unpacked


def _sources(corpus: Path) -> dict[str, dict[str, list[str]]]:
    return json.loads((corpus / "corpus.json").read_text())["noise_sources"]


def test_debian_noises_arrive_in_every_split(corpus):
    for split, files in _sources(corpus).items():
        on_disk = {p.stem for p in (corpus / split / "noise").glob("*.wav")}
        assert set(files) <= on_disk
        assert {n.split("_")[0] for n in files} == set(extra.NOISE_PACKAGES.values()), split
        assert {n for n in on_disk if n.split("_")[0] in extra.NOISE_PACKAGES.values()} == \
            set(files)
        for name in files:
            x, sr = sf.read(corpus / split / "noise" / f"{name}.wav")
            assert sr == 16000 and len(x) >= 16000 and np.abs(x).max() < 1
            # at the noise level, or below it where the peak limit (0.99) held it back
            assert rms_db(x) <= demo.NOISE_DB + 0.01, name
            assert rms_db(x) > demo.NOISE_DB - 0.5 or np.abs(x).max() > 0.98, name
            spec = np.abs(np.fft.rfft(x)) ** 2
            assert spec.max() < 0.5 * spec.sum(), name  # not a tone
        for name in (n for n in files if "_typing_" in n):
            assert all(s.startswith("bucklespring-data:wav/") for s in files[name])


def test_debian_noise_recordings_of_test_unseen(corpus):
    """Test recordings (by name, content hash and recording unit) are in neither train nor valid."""
    members, digests = {}, {}
    for split, files in _sources(corpus).items():
        srcs = [s for v in files.values() for s in v]
        members[split] = {s.rsplit("@", 1)[0] for s in srcs}
        digests[split] = {s.rsplit("@", 1)[1] for s in srcs}
        assert all(re.fullmatch(r"[0-9a-f]{40}", d) for d in digests[split])
    for a, b in (("test", "train"), ("test", "valid"), ("valid", "train")):
        assert not members[a] & members[b] and not digests[a] & digests[b], (a, b)
    split_of = {m: s for s, ms in members.items() for m in ms}
    # the takes of one recording stay together: numbered families, and OpenSFX cuts of one file
    fam = {}
    for m, s in split_of.items():
        if m.startswith("openttd-opensfx:"):
            continue  # checked by original recording below
        stem = re.sub(r"-(open|close|idle|move|stop|impact|bodyimpact)$", "", Path(m).stem)
        key = re.sub(r"(_?\d+|_full|_hard|_soft|_short)$", "", stem)
        if m.startswith("bucklespring-data:"):
            key = stem.split("-")[0]  # press and release of one key
        fam.setdefault((m.split(":")[0], key), set()).add(s)
    assert all(len(v) == 1 for v in fam.values()), {k: v for k, v in fam.items() if len(v) > 1}
    credits = (corpus / "LICENSES" / "opensfx-files.txt").read_text().splitlines()
    originals = {}
    for line in credits:
        orig = re.search(r'Original "([^"]+)"', line)
        member = f"openttd-opensfx:opensfx.cat#{line[:2]}"
        if orig and member in split_of:
            originals.setdefault(orig.group(1), set()).add(split_of[member])
    assert originals and all(len(v) == 1 for v in originals.values())
    assert len(fam) > 60 and len(split_of) > 300  # the corpus really uses many recordings


def test_extra_voices_train_and_valid_only(corpus):
    ids = {s: {p.stem for p in (corpus / s / "clean").glob("*.wav")} for s in demo.SPLITS}
    for prefix in ("fillets_nl_", "klettres_"):
        assert any(i.startswith(prefix) for i in ids["train"])
        assert not any(i.startswith(prefix) for i in ids["test"])
    assert not ids["train"] & ids["valid"]
    for s in ("train", "valid"):
        for f in (corpus / s / "clean").glob("*.wav"):
            if not f.stem.startswith(("fillets_", "klettres_")):
                continue
            info = sf.info(str(f))
            assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
            x, _ = sf.read(f)
            assert len(x) >= 16000 and np.abs(x).max() < 1
            assert -30 < rms_db(x) <= extra.SPEECH_DB + 0.1
            spec = np.abs(np.fft.rfft(x)) ** 2
            band = np.fft.rfftfreq(len(x), 1 / 16000)
            assert spec[band > 1000].sum() > 1e-3 * spec.sum()  # not a hum: speech formants


def test_medley_plan_packs_short_clips_and_keeps_long_ones():
    def clip(i, sec, cat="nature"):
        return extra.Clip("pkg", f"dir/c{i}.ogg", Path(f"c{i}.ogg"), cat, f"u{i}", sec, "0" * 40)
    clips = [clip(0, 25.0)] + [clip(i, 4.0) for i in range(1, 11)] + [clip(11, 3.0, "music")]
    plan = extra.medley_plan(clips, "pfx", "valid")
    assert plan["pfx_c0"] == [clips[0]]  # at least LONG_SECONDS: a file of its own
    # eight 4 s clips reach 30 s; the 8 s tail is under a third of that and joins them
    assert plan["pfx_nature_valid00"] == clips[1:11] and plan["pfx_music_valid00"] == [clips[11]]
    assert len(plan) == 3
    more = extra.medley_plan([clip(i, 4.0) for i in range(1, 21)], "pfx", "test")
    assert [len(v) for v in more.values()] == [8, 8, 4]  # a 16 s tail is a file of its own
    assert list(more) == ["pfx_nature_test00", "pfx_nature_test01", "pfx_nature_test02"]


def test_split_units_keeps_units_whole():
    def key(seed):
        return lambda u: [seed, zlib_crc(u)]
    clips = [extra.Clip("pkg", f"m{u}_{k}", Path("x"), "nature", f"u{u}", 1.0, f"{u}{k}")
             for u in range(20) for k in range(3)]
    clips += [extra.Clip("pkg", f"few{u}", Path("x"), "crowd", f"f{u}", 1.0, f"f{u}")
              for u in range(2)]
    out = extra.split_units(clips, key(0))
    units = {s: {c.unit for c in v if c.category == "nature"} for s, v in out.items()}
    assert [len(units[s]) for s in ("train", "valid", "test")] == [14, 3, 3]
    assert not (units["test"] & units["train"]) and not (units["valid"] & units["train"])
    assert all(len([c for c in out[s] if c.unit == u]) == 3 for s in out for u in units[s])
    assert {c.unit for c in out["train"] if c.category == "crowd"} == {"f0", "f1"}
    assert extra.split_units(clips, key(0)) == out  # deterministic
    assert extra.split_units(clips, key(1))["test"] != out["test"]  # and seeded


def zlib_crc(text: str) -> int:
    import zlib
    return zlib.crc32(text.encode())


def test_typing_is_keystrokes_with_pauses(tmp_path):
    rng = np.random.default_rng(0)
    keys = []
    for k in range(4):
        for part in ("0", "1"):
            path = tmp_path / f"{k:02x}-{part}.wav"
            burst = rng.standard_normal(800) * np.exp(-np.arange(800) / 100)
            sf.write(path, 0.3 * burst / np.abs(burst).max(), 16000)
            keys.append(extra.Clip("bucklespring-data", f"wav/{path.name}", path, "typing",
                                   f"{k:02x}", 0.05, ""))
    x = extra.render_typing(keys, 20.0, np.random.default_rng(1), demo._normalise)
    assert len(x) == 20 * 16000 and rms_db(x) == pytest.approx(demo.NOISE_DB, abs=0.01)
    frames = (x[:len(x) // 160 * 160].reshape(-1, 160) ** 2).mean(axis=1)
    onsets = np.flatnonzero((frames[1:] > 1e-6) & (frames[:-1] <= 1e-6))
    assert 40 < len(onsets) < 250  # keystrokes every 80-400 ms, with pauses
    assert (frames <= 1e-6).mean() > 0.2  # the keys are short: silence between them


def test_old_corpus_and_bad_voices_are_refused(tmp_path, data_dir, capsys):
    old = tmp_path / "old"
    old.mkdir()
    (old / "corpus.json").write_text(json.dumps({"seed": 0, "languages": ["en", "fr"],
                                                 "limit": None}))
    assert _run(old, "--shared", data_dir) == 2
    err = capsys.readouterr().err
    assert "another version" in err and "version 1" in err
    assert _run(tmp_path / "new", "--extra-voices", "fillets-nl,bogus", "--shared", data_dir) == 2
    assert "extra voices must be among fillets-nl,klettres" in capsys.readouterr().err


def test_split_units_merges_identical_files():
    """A file shipped twice under two names (two units) cannot end up in two splits."""
    clips = [extra.Clip("pkg", f"m{u}", Path("x"), "typing", f"k{u}", 0.1, f"h{u}")
             for u in range(40)]
    clips += [extra.Clip("pkg", f"dup{u}", Path("x"), "typing", f"d{u}", 0.1, f"h{u}")
              for u in range(40)]
    out = extra.split_units(clips, lambda u: [zlib_crc(u)])
    where = {}
    for s, v in out.items():
        for c in v:
            where.setdefault(c.sha1, set()).add(s)
    assert all(len(v) == 1 for v in where.values()) and len(where) == 40
    assert all(out[s] for s in ("train", "valid", "test"))
