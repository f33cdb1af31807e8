"""Demo corpus of real read speech, music, noise and RIRs that any Debian machine can fetch.

Speech comes from Debian's Asterisk prompt packages (G.722 at 16 kHz, five voices) and, for
training only, from the game and language packages of :mod:`snnse.data.demo_sources`; music
from Debian's music-on-hold package; noise recordings from the game and sound packages of
:mod:`snnse.data.demo_sources` and from the shared data folder, with its RIRs. The split is by
speaker and by noise recording (the :data:`README` template explains it). Validation and test
are pre-mixed once; training mixes ``train/clean`` with ``train/noise`` on the fly with
:class:`~snnse.data.mixing.MixingDataset`. The packages are downloaded, unpacked and decoded by
:mod:`snnse.data.demo_fetch` (its names re-exported here); this module builds the corpus and holds
the ``snnse data demo`` command.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from snnse.audio import AudioError, load_mono, write_audio_atomic
from snnse.data import demo_sources as extra
from snnse.data.demo_fetch import DemoError, _unpack, decode_g722, fetch_debs
from snnse.data.manifest import write_manifest
from snnse.data.mixing import apply_rir, loop_crop, mix, rms_db
from snnse.atomic import atomic_write_text

__all__ = ["BABBLE_FILES", "COLOURS", "ESC", "EXTRA", "LANGUAGES", "LEVEL_RANGE", "MIN_SECONDS", "MOH", "MUSIC",
           "NOISE_DB", "NOISE_SECONDS", "PREFIX", "README", "RIR_PROB", "SB", "SHARED", "SNR_RANGE", "SOURCES",
           "SPLITS", "SR", "TEST_LANGUAGE", "VALID_FRACTION", "VERSION", "DemoError", "add_parser", "build_demo",
           "coloured_noise", "decode_g722", "fetch_debs", "run"]

SR = 16000
VERSION = 2            # corpus layout; 2: extra speech and Debian noise recordings
LANGUAGES = ("en", "es", "fr", "it", "ru")
TEST_LANGUAGE = "fr"
SPLITS = ("train", "valid", "test")
MOH = "asterisk-moh-opsound-g722"
VALID_FRACTION = 0.1   # share of prompt names held out for validation
MIN_SECONDS = 1.0      # shorter prompts (beeps, single letters) are skipped
NOISE_DB = -25.0       # RMS level of synthesised noises (babble, coloured)
NOISE_SECONDS = 30
BABBLE_FILES = {"train": 6, "valid": 2, "test": 2}
RIR_PROB = 0.25        # share of reverberated pre-mixed pairs
SNR_RANGE, LEVEL_RANGE = (-5.0, 20.0), (-35.0, -15.0)
COLOURS = ("white", "pink", "brown")
MUSIC = {"train": ("macroform-cold_day", "macroform-the_simplicity", "reno_project-system"),
         "valid": ("macroform-robot_dity",), "test": ("manolo_camp-morning_coffee",)}
SB, ESC = "noise/speechbrain/noise{}.wav", "noise/esc50/{}.wav"
SHARED = {  # files of the shared data folder; ESC-50 split by fold
    "train": (SB.format(1), SB.format(2), SB.format(3), ESC.format("1-100032-A-0"),
              ESC.format("2-100648-A-43"), ESC.format("3-103051-C-19"),
              "rir/rir1.wav", "rir/rir2.wav"),
    "valid": (SB.format(4), ESC.format("4-156993-A-19"), "rir/rir3.wav"),
    "test": (SB.format(5), ESC.format("5-156999-C-19"), "rir/rir4.wav")}
PREFIX = {"speechbrain": "sb", "esc50": "esc50"}
EXTRA = tuple(extra.EXTRA_SPEECH)  # extra training voices: fillets-nl, klettres

SOURCES = """- Speech: Debian packages `asterisk-core-sounds-{en,es,fr,it,ru}-g722` (Asterisk
  core sounds 1.6), recorded by Allison Smith (en, es; CC BY-SA 3.0), June Wallack (fr; CC BY-SA
  3.0), Carlo Flora (it; CC BY 3.0 per the Debian copyright file), Maxim Topal (ru; CC BY 3.0).
- Music: Debian package `asterisk-moh-opsound-g722` (Asterisk music on hold: Macroform, Manolo
  Camp, Reno Project; CC BY-SA 3.0).
- Noise `sb_*` and `rir/*`: SpeechBrain test samples, Apache-2.0.
- Noise `esc50_*`: ESC-50 (K. J. Piczak) via SpeechBrain, **CC BY-NC 3.0: non-commercial use
  only**; leave these files out of anything used commercially.
- Babble (`babble_*`) is made of the corpus' own speech; coloured noise (`white`, `pink`,
  `brown`) is synthesised.
""" + extra.SOURCES

README = """# snnse demo corpus

Built by `snnse data demo` (seed {seed}). Everything is 16 kHz mono PCM_16.

| split | speakers | clean min | noise files | noise min | RIRs |
| --- | --- | --- | --- | --- | --- |
{table}

Noise files (minutes) by category:

| split | {categories} |
| --- | {dashes} |
{cat_table}

- `{{train,valid,test}}/clean/*.wav`: speech; `noise/*.wav`: noise recordings (category
  `shared`: the SpeechBrain and ESC-50 noises of the shared data folder); `rir/*.wav`: room
  impulse responses. Train by mixing `train/clean` with `train/noise` (and `train/rir`, e.g. with
  probability {rir_prob}) on the fly (`snnse.data.mixing.MixingDataset`).
- `valid.csv`, `test.csv` (read with `snnse.data.manifest.read_manifest`): fixed pairs in
  `{{valid,test}}/mix/{{noisy,clean}}/`, SNR uniform in [{snr[0]:g}, {snr[1]:g}] dB, mixture level
  uniform in [{level[0]:g}, {level[1]:g}] dBFS, extra columns `snr`, `level` (reached), `noise`,
  `rir`. {rir_pct:g} % of the pairs are reverberated; their clean target is the reverberant speech.

## Split

By speaker and by noise recording. Test: the French voice (June Wallack), the hold music of
an artist unseen elsewhere, SpeechBrain `noise5`, the ESC-50 fold-5 clip, `rir4`, babble of test
utterances (the target's own voice: a hard case), coloured noise of its own seed and
{share_pct:g} % of the Debian noise recordings of every package and category. Validation: the
prompts whose name falls in a seeded {valid_pct:g} % share, in every training voice (no
validation text is in training, in any language), with noise recordings (another
{share_pct:g} % of the Debian ones), babble, coloured noise and RIR of its own. A held-out
validation voice would leave too few training voices; the test split measures generalisation to
an unseen voice. The English and Spanish prompts are read by the same person (Allison Smith).
The extra voices (Fish Fillets NG, KLettres) are in train and valid only. Prompts shorter than
{min_s:g} s are skipped.

The Debian noise recordings are split by unit: the takes of one recording (`fire03`..`fire06`,
the cuts of one freesound.org file, press and release of one key) go to one split, so no test
recording is in train or valid, not even cut differently. Recordings shorter than
{long_s:g} s of one package and category are joined, with short gaps, into noise files of about
{medley_s:g} s; longer ones are files of their own (at most {max_s:g} s). `corpus.json` lists
the source files (with SHA-1) of every such noise file under `noise_sources`.

## Sources and licences (full texts in `LICENSES/`)

{sources}"""


def _key(*parts) -> list[int]:
    """Integer seed list for ``np.random.default_rng`` (strings hashed with CRC-32)."""
    return [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]


def _utterances(root: Path, lang: str, seed: int, limit: int | None
                ) -> tuple[str, dict[str, list[tuple[str, Path]]]]:
    """Voice name and the ``(id, g722 file)`` pairs of each split for one language."""
    voice = next((root / f"asterisk-core-sounds-{lang}-g722/usr/share/asterisk/sounds").iterdir())
    prompts = {}
    for f in sorted(voice.rglob("*.g722")):
        rel = f.relative_to(voice).with_suffix("")
        if "silence" not in rel.parts and f.stat().st_size >= MIN_SECONDS * SR / 2:
            prompts["-".join(rel.parts)] = f  # G.722 at 16 kHz: two samples per byte
    ranks = {name: np.random.default_rng(_key(seed, name)).random() for name in prompts}
    names = sorted(prompts, key=ranks.get)
    if lang == TEST_LANGUAGE:
        split = {"test": names[:limit]}
    else:
        valid = [n for n in names if ranks[n] < VALID_FRACTION]
        train = [n for n in names if ranks[n] >= VALID_FRACTION]
        n_valid = len(valid) if limit is None else max(1, round(limit * VALID_FRACTION))
        split = {"valid": valid[:n_valid],
                 "train": train if limit is None else train[:max(0, limit - n_valid)]}
    return voice.name, {s: [(f"{lang}_{n}", prompts[n]) for n in sorted(v)]
                        for s, v in split.items()}


def _write_wav(path: Path, x: np.ndarray) -> None:
    write_audio_atomic(path, x[None], SR, subtype="PCM_16")


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically, leaving the file untouched if it already holds it."""
    if path.is_file() and path.read_text() == text:
        return
    atomic_write_text(path, text)


def _normalise(x: np.ndarray, db: float = NOISE_DB) -> np.ndarray:
    x = x * 10.0 ** ((db - rms_db(x)) / 20.0)
    return x * min(1.0, 0.99 / np.max(np.abs(x)))


def coloured_noise(colour: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f^2 power) noise at :data:`NOISE_DB`."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = np.inf  # no DC
    return _normalise(np.fft.irfft(spec / f ** (COLOURS.index(colour) / 2), n))


def _babble_plan(uids: list[str], sizes: np.ndarray, n: int, rng: np.random.Generator
                 ) -> list[list[str]]:
    """3-5 talkers, each a random sequence of utterances (of ``sizes`` samples) covering ``n``."""
    talkers = []
    for _ in range(int(rng.integers(3, 6))):
        picks = rng.integers(len(uids), size=n // int(sizes.min()) + 2)
        stop = int(np.searchsorted(np.cumsum(sizes[picks]), n)) + 1
        talkers.append([uids[k] for k in picks[:stop]])
    return talkers


def _babble(talkers: list[list[str]], n: int, clean_dir: Path) -> np.ndarray:
    """Sum of talkers, each a concatenation of level-normalised utterances."""
    streams = [np.concatenate([_normalise(load_mono(clean_dir / f"{u}.wav", SR)) for u in t])[:n]
               for t in talkers]
    return _normalise(np.sum(streams, axis=0))


def _noises(split: str, out: Path, unpacked: Path, shared: Path, utts, seed: int,
            debian: dict[str, list[extra.Clip]]) -> dict[str, set[str]]:
    """Write the split's noise and RIR files; return the utterance ids in each babble file.

    ``debian`` is the split's :func:`~snnse.data.demo_sources.noise_plan`.
    """
    code, noise_dir, n = SPLITS.index(split), out / split / "noise", NOISE_SECONDS * SR
    moh = unpacked / MOH / "usr/share/asterisk/moh"
    jobs = {f"music_{t}": lambda t=t: decode_g722(moh / f"{t}.g722") for t in MUSIC[split]}
    for rel in map(Path, SHARED[split]):
        name = rel.stem if rel.parts[0] == "rir" else f"{PREFIX[rel.parent.name]}_{rel.stem}"
        jobs[name] = lambda rel=rel: load_mono(shared / rel, SR)
    for c, colour in enumerate(COLOURS):
        jobs[colour] = lambda c=c, colour=colour: coloured_noise(
            colour, n, np.random.default_rng(_key(seed, code, 1, c)))
    for name, clips in debian.items():
        jobs[name] = lambda name=name, clips=clips: extra.render(
            clips, np.random.default_rng(_key(seed, code, 4, name)), _normalise)
    uids = [u for u, _ in utts]
    sizes = np.array([sf.info(str(out / split / "clean" / f"{u}.wav")).frames for u in uids])
    babble = {}
    for b in range(BABBLE_FILES[split]):
        plan = _babble_plan(uids, sizes, n, np.random.default_rng(_key(seed, code, 2, b)))
        babble[f"babble_{b:02d}"] = {u for t in plan for u in t}
        jobs[f"babble_{b:02d}"] = lambda plan=plan: _babble(plan, n, out / split / "clean")
    for name, make in jobs.items():
        path = (out / split / "rir" if name.startswith("rir") else noise_dir) / f"{name}.wav"
        if not path.is_file():
            _write_wav(path, make())
    return babble


def _premix(split: str, out: Path, utts, speaker: dict[str, str], babble: dict[str, set[str]],
            seed: int, progress: bool) -> list[dict]:
    """Write the split's fixed noisy/clean pairs; return the manifest rows."""
    noise = {p.stem: load_mono(p, SR) for p in sorted((out / split / "noise").glob("*.wav"))}
    rirs = {p.stem: load_mono(p, SR) for p in sorted((out / split / "rir").glob("*.wav"))}
    rows = []
    for uid, _ in tqdm(utts, desc=f"{split} mixtures", disable=not progress, leave=False):
        rng = np.random.default_rng(_key(seed, SPLITS.index(split), 3, uid))
        names = [k for k in noise if uid not in babble.get(k, ())]
        name = names[int(rng.integers(len(names)))]
        snr, level = rng.uniform(*SNR_RANGE), rng.uniform(*LEVEL_RANGE)
        rir = sorted(rirs)[int(rng.integers(len(rirs)))] if rng.random() < RIR_PROB else ""
        clean = load_mono(out / split / "clean" / f"{uid}.wav", SR)
        if rir:
            clean = apply_rir(clean, rirs[rir])
        for _ in range(100):  # sparse noises (a dog barking) may have silent stretches
            nz = loop_crop(noise[name], len(clean), rng)
            if rms_db(nz) > -60:
                break
        noisy, clean, _, reached = mix(clean, nz, snr, level)
        paths = {k: out / split / "mix" / k / f"{uid}.wav" for k in ("noisy", "clean")}
        for k, x in (("noisy", noisy), ("clean", clean)):
            if not paths[k].is_file():
                _write_wav(paths[k], x)
        rows.append({"id": uid, **paths, "duration": len(clean) / SR, "speaker": speaker[uid],
                     "snr": f"{snr:.2f}", "level": f"{reached:.2f}", "noise": name, "rir": rir})
    return rows


def _category(name: str, plan: dict[str, list[extra.Clip]]) -> str:
    """Category of a noise file of the corpus (by its name, or its Debian clips)."""
    if name in plan:
        return plan[name][0].category
    for prefix, cat in (("music_", "music"), ("babble_", "babble"), ("sb_", "shared"),
                        ("esc50_", "shared")):
        if name.startswith(prefix):
            return cat
    return "coloured" if name in COLOURS else "other"


def _speech(x: np.ndarray) -> np.ndarray:
    return _normalise(x, extra.SPEECH_DB)


def build_demo(out, languages=LANGUAGES, limit: int | None = None, seed: int = 0,
               debs=None, shared=None, progress: bool = True, extra_speech=EXTRA) -> dict:
    """Build (or complete) the demo corpus in ``out``; finished files are kept as they are.

    Args:
        out: Corpus folder.
        languages: Voices among :data:`LANGUAGES`; must include :data:`TEST_LANGUAGE`
            and one other.
        limit: At most this many utterances per voice (Asterisk language, or extra speech
            source) (for quick tests).
        seed: Seed of the split, the synthesised noises and the pre-mixed pairs.
        debs: Cache folder of the ``.deb`` packages (default ``~/.cache/snnse/debs``); they
            are unpacked in its ``unpacked/`` folder, which later builds reuse.
        shared: Shared data folder (default ``../shared/data`` from the current folder).
        progress: Show progress bars.
        extra_speech: Extra training voices among :data:`EXTRA` (train and valid only).

    Returns:
        The summary written to ``out/corpus.json``, plus ``seconds`` (build time).

    Raises:
        DemoError: Bad options, ``out`` built with other options, missing shared data,
            packages that can be neither found nor downloaded, or no G.722 decoder.
    """
    t0, out = time.time(), Path(out)
    languages, extra_speech = list(dict.fromkeys(languages)), list(dict.fromkeys(extra_speech))
    if set(languages) - set(LANGUAGES) or TEST_LANGUAGE not in languages or len(languages) < 2:
        raise DemoError(f"languages must be among {','.join(LANGUAGES)} and include "
                        f"{TEST_LANGUAGE} (the test voice) and another one")
    if set(extra_speech) - set(EXTRA):
        raise DemoError(f"extra voices must be among {','.join(EXTRA)} (or none)")
    if seed < 0 or (limit is not None and limit < 2):
        raise DemoError("the seed must be >= 0 and the limit >= 2")
    shared = Path(shared) if shared else Path.cwd().parent / "shared" / "data"
    lost = [r for s in SHARED.values() for r in s if not (shared / r).is_file()]
    if lost:
        raise DemoError(f"shared data not found: {shared / lost[0]} (pass --shared DIR)")
    options = {"version": VERSION, "seed": seed, "languages": languages,
               "extra_speech": extra_speech, "limit": limit}
    old = json.loads((out / "corpus.json").read_text()) if (out / "corpus.json").is_file() else {}
    if old and {k: old.get(k) for k in options} != options:
        raise DemoError(f"{out} was built with other options or by another version "
                        f"(version {old.get('version', 1)}, {old.get('languages')}, extra "
                        f"{old.get('extra_speech')}, limit {old.get('limit')}, seed "
                        f"{old.get('seed')}); use another folder")
    names = ([f"asterisk-core-sounds-{lang}-g722" for lang in languages] + [MOH]
             + [extra.EXTRA_SPEECH[e] for e in extra_speech] + list(extra.NOISE_PACKAGES))
    debs_dir = Path(debs) if debs else Path.home() / ".cache/snnse/debs"
    debs = fetch_debs(names, debs_dir)
    summary = {**options, "sample_rate": SR,
               "packages": {n: p.name for n, p in debs.items()}, "splits": {},
               "noise_sources": {}}
    unpacked = debs_dir / "unpacked"
    _unpack(debs, unpacked)
    with tempfile.TemporaryDirectory() as tmp:
        utts, speaker = {s: [] for s in SPLITS}, {}
        for lang in languages:
            voice, split = _utterances(unpacked, lang, seed, limit)
            for s, items in split.items():
                utts[s] += items
                speaker.update((uid, voice) for uid, _ in items)
        for e in extra_speech:
            for s, items in extra.speech_split(e, unpacked, lambda *u: _key(seed, *u), limit,
                                               VALID_FRACTION, MIN_SECONDS).items():
                utts[s] += items
                speaker.update((uid, c.speaker) for uid, c in items)
        if not all(utts.values()):
            raise DemoError("a split came out empty; use a larger --limit")
        for s in SPLITS:
            for uid, src in tqdm(utts[s], desc=f"{s} speech", disable=not progress, leave=False):
                if not (out / s / "clean" / f"{uid}.wav").is_file():
                    x = (decode_g722(src) if isinstance(src, Path)
                         else _speech(load_mono(src.path, SR)))
                    _write_wav(out / s / "clean" / f"{uid}.wav", x)
        (out / "LICENSES").mkdir(parents=True, exist_ok=True)
        for n in names:
            text = (unpacked / n / f"usr/share/doc/{n}/copyright").read_text()
            _write_text(out / "LICENSES" / f"{n}.copyright", text)
        clips = extra.split_units(extra.noise_clips(unpacked, Path(tmp) / "clips"),
                                  lambda u: _key(seed, "noise", u))
        _write_text(out / "LICENSES" / "opensfx-files.txt",
                    (Path(tmp) / "clips" / "opensfx-files.txt").read_text())
        for s in tqdm(SPLITS, desc="noise", disable=not progress, leave=False):
            plan = extra.noise_plan(clips[s], s)
            babble = _noises(s, out, unpacked, shared, utts[s], seed, plan)
            if s != "train":
                rows = _premix(s, out, utts[s], speaker, babble, seed, progress)
                new = out / f".{s}.csv.new"  # same folder: the paths are relative to it
                write_manifest(new, rows, extra=("snr", "level", "noise", "rir"))
                _write_text(out / f"{s}.csv", new.read_text())
                new.unlink()
            noise = {p.stem: sf.info(str(p)).duration for p in (out / s / "noise").glob("*.wav")}
            cats: dict[str, list[float]] = {}
            for k, sec in noise.items():
                cats.setdefault(_category(k, plan), []).append(sec)
            clean = [sf.info(str(out / s / "clean" / f"{u}.wav")).duration for u, _ in utts[s]]
            per_voice: dict[str, float] = {}
            for (u, _), sec in zip(utts[s], clean):
                per_voice[speaker[u]] = per_voice.get(speaker[u], 0.0) + sec
            summary["splits"][s] = {
                "speakers": sorted({speaker[u] for u, _ in utts[s]}), "utterances": len(utts[s]),
                "clean_minutes": round(sum(clean) / 60, 2),
                "voice_minutes": {v: round(t / 60, 2) for v, t in sorted(per_voice.items())},
                "noise": sorted(noise), "noise_minutes": round(sum(noise.values()) / 60, 2),
                "noise_categories": {c: {"files": len(v), "minutes": round(sum(v) / 60, 2)}
                                     for c, v in sorted(cats.items())},
                "rir": sorted(p.stem for p in (out / s / "rir").glob("*.wav"))}
            summary["noise_sources"][s] = {
                k: [f"{c.package}:{c.member}@{c.sha1}" for c in v] for k, v in sorted(plan.items())}
    _write_text(out / "LICENSES" / "SOURCES.md", SOURCES)
    try:
        summary["snnse_version"] = importlib.metadata.version("snnse")
    except importlib.metadata.PackageNotFoundError:
        summary["snnse_version"] = None
    _write_text(out / "corpus.json", json.dumps(summary, indent=2) + "\n")
    table = "\n".join(f"| {s} | {', '.join(v['speakers'])} | {v['clean_minutes']} | "
                      f"{len(v['noise'])} | {v['noise_minutes']} | {', '.join(v['rir'])} |"
                      for s, v in summary["splits"].items())
    categories = sorted({c for v in summary["splits"].values() for c in v["noise_categories"]})
    cat_table = "\n".join(
        f"| {s} | " + " | ".join(
            "{files} ({minutes})".format(**v["noise_categories"].get(c, {"files": 0, "minutes": 0}))
            for c in categories) + " |" for s, v in summary["splits"].items())
    _write_text(out / "README.md", README.format(
        seed=seed, table=table, categories=" | ".join(categories),
        dashes=" | ".join("---" for _ in categories), cat_table=cat_table, rir_prob=RIR_PROB,
        snr=SNR_RANGE, level=LEVEL_RANGE, rir_pct=100 * RIR_PROB, valid_pct=100 * VALID_FRACTION,
        share_pct=100 * extra.SPLIT_SHARE, min_s=MIN_SECONDS, long_s=extra.LONG_SECONDS,
        medley_s=extra.MEDLEY_SECONDS, max_s=extra.MAX_SECONDS, sources=SOURCES))
    return dict(summary, seconds=round(time.time() - t0, 1))


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``demo`` subcommand (``snnse data demo DIR``)."""
    p = subparsers.add_parser(
        "demo", help="build the demo corpus of real speech and noise",
        description="Download Debian's Asterisk prompt and music packages, game and sound "
                    "packages with speech and noise recordings, and build a split corpus "
                    "(train/valid/test) of real speech, noise and RIRs in DIR.")
    p.add_argument("dir", help="corpus folder to create or complete")
    p.add_argument("--languages", default=",".join(LANGUAGES),
                   help=f"comma-separated voices (default %(default)s; {TEST_LANGUAGE}, the test "
                        "voice, is required)")
    p.add_argument("--extra-voices", default=",".join(EXTRA),
                   help="comma-separated extra training voices (default %(default)s; 'none' "
                        "for none)")
    p.add_argument("--limit", type=int, help="at most N utterances per voice (quick tests)")
    p.add_argument("--seed", type=int, default=0, help="seed (default %(default)s)")
    p.add_argument("--debs", help="cache folder of the .deb files (default ~/.cache/snnse/debs)")
    p.add_argument("--shared", help="shared data folder with noise/ and rir/ "
                                    "(default ../shared/data from the current folder)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``snnse data demo``; 0 on success, 2 with one ``error:`` line on stderr."""
    try:
        languages = [x.strip() for x in args.languages.split(",") if x.strip()]
        voices = [x.strip() for x in args.extra_voices.split(",") if x.strip() not in ("", "none")]
        s = build_demo(args.dir, languages=languages, limit=args.limit, seed=args.seed,
                       debs=args.debs, shared=args.shared, extra_speech=voices)
    except (DemoError, AudioError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    minutes = ", ".join(f"{k} {v['clean_minutes']} min" for k, v in s["splits"].items())
    print(f"{args.dir}: {minutes} of speech ({s['seconds']} s)")
    return 0
