"""Extra real speech and noise recordings of the demo corpus, from Debian game and sound packages.

Each entry names a Debian package, the recordings kept from it (sound effects that are
recordings: no synthetic tones, jingles or voices among the noises) and a category. A
recording belongs to a *unit* (the original recording it was cut from, or a family of numbered
takes such as ``fire03``..``fire06``); whole units are assigned to one split, so the test
split's noise recordings appear in neither train nor valid, not even as another cut.
:func:`split_units` makes the assignment; :func:`medley_plan` packs the short clips of one
package and category into noise files of about :data:`MEDLEY_SECONDS`.

References:
    OpenSFX (openttd-opensfx), UFO: Alien Invasion (ufoai-sound), Sonic Pi (sonic-pi-samples),
    Word War vi (wordwarvi-sound), bucklespring (bucklespring-data), Fish Fillets NG
    (fillets-ng-data-nl), KLettres (klettres-data): the Debian copyright files in the corpus'
    ``LICENSES/`` folder name the authors and licence of every file.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from snnse.audio import load_mono

SR = 16000
MEDLEY_SECONDS = 30.0   # short clips are packed into noise files of about this length
LONG_SECONDS = 20.0     # a recording at least this long is a noise file of its own ...
MAX_SECONDS = 120.0     # ... cut to at most this long
MIN_CLIP_SECONDS = 0.25
MIN_FILE_SECONDS = 2.0  # packs shorter than this are left out (their clips stay unused)
SPLIT_SHARE = 0.15      # share of each package-and-category group's units in valid, and in test
SPEECH_DB = -23.0       # RMS level of the extra speech
TYPING_FILES = {"train": 3, "valid": 1, "test": 1}  # typing files of MEDLEY_SECONDS per split

OPENSFX = {  # index in opensfx.cat -> category (Toyland cartoon mixes, jingles, beeps left out)
    3: "machinery", 4: "traffic", 5: "traffic", 6: "traffic", 7: "traffic", 8: "traffic",
    9: "traffic", 10: "traffic", 11: "machinery", 12: "machinery", 13: "machinery",
    14: "traffic", 15: "impacts", 16: "impacts", 17: "impacts", 18: "impacts", 19: "impacts",
    20: "household", 24: "traffic", 25: "traffic", 26: "traffic", 27: "traffic", 28: "traffic",
    29: "crowd", 30: "crowd", 33: "machinery", 35: "traffic", 36: "nature", 37: "nature",
    38: "nature", 39: "machinery", 40: "machinery", 52: "nature", 54: "nature", 55: "nature",
    56: "machinery", 57: "nature", 59: "traffic", 61: "traffic", 65: "traffic", 66: "nature",
    67: "nature", 68: "nature", 71: "traffic", 72: "nature"}
UFOAI = {  # folder/stem pattern in 0snd.pk3 -> category (alien, weapon, voice, UI sounds left out)
    r"ambience/(fire\d*|firesoft|smallfire|water\d*|waterfontain|thunder\d|arcticwind|"
    r"cricket_loop|ufo_night_atm)": "nature",
    r"ambience/city_abnd_ufoai_atm": "city",
    r"ambience/(minepump\d+|steam|sparks|sparks_short|wind_turbine|machine1)": "machinery",
    r"footsteps/[\w-]+": "footsteps", r"doors/[\w-]+": "household", r"misc/break\w+": "impacts",
    r"impact/(bullet|knife|nail|water|waterbullet)-\w+": "impacts", r"ugv/diesel-\w+": "traffic"}
SONIC_PI = {  # stem pattern -> category (synthesised sounds, and the breakbeats sampled from
    # records, whose CC0 is doubtful, left out)
    r"loop_(compus|safari|tabla|garzul|mika|industrial)|"
    r"drum_\w+|tabla_\w+|guit_\w+|perc_bell2?|ambi_piano": "music",
    r"vinyl_\w+|perc_(till|door)|ambi_(glass_rub|glass_hum|sauna)": "household",
    r"loop_3d_printer": "machinery", r"misc_crow": "nature"}
WORDWARVI = {  # stem pattern -> category (voices, synthetic shots and alarms left out)
    r"destiny_facedown|dtox3monomix|lucky-holiday-cornbread-stuffing-mono|"
    r"lucky13-steve-mono-mix|highscoremusic": "music",
    r"(metal|stone)bang\d|clang|toyota_celica_cardoor_sample|us_quarter": "impacts"}
NOISE_PACKAGES = {  # package -> file name prefix
    "openttd-opensfx": "opensfx", "ufoai-sound": "ufoai", "sonic-pi-samples": "sonicpi",
    "wordwarvi-sound": "wordwarvi", "bucklespring-data": "buckle"}
KLETTRES_LANGUAGES = ("da", "de", "en", "en_GB", "es", "fr", "lt", "ml", "nb", "nds", "nl",
                      "pt_BR", "ru", "tn", "uk")  # cs, he, hu, it, ar: hiss or hum under 25 dB SNR
KLETTRES_MAX = 100      # utterances per KLettres voice at most (Malayalam has 521)
EXTRA_SPEECH = {"fillets-nl": "fillets-ng-data-nl", "klettres": "klettres-data"}

SOURCES = """- Extra training speech (train and valid only): Debian package `fillets-ng-data-nl`
  (Fish Fillets NG, Dutch dialogue of the two fish, real voice actors, GPL-2; 22 kHz Ogg Vorbis
  with little energy above 4 kHz) and `klettres-data` (KLettres letters and syllables read by
  native speakers of da, de, en, en_GB, es, fr, lt, ml, nb, nds, nl, pt_BR, ru, tn, uk; GPL-2+).
- Noise `opensfx_*`: Debian package `openttd-opensfx` (OpenSFX 1.0.3: freesound.org recordings
  of vehicles, machines, animals and crowds, each under CC0 1.0, CC BY 3.0 or CC BY-SA 3.0, the
  collection under CC BY-SA 3.0; the authors of each file are in `LICENSES/opensfx-files.txt`).
- Noise `ufoai_*`: Debian package `ufoai-sound` (UFO: Alien Invasion 2.5; fire, water, wind,
  thunder, night, city, machines, footsteps, doors, breaking glass/metal/wood, diesel engine;
  GPL-2+, CC BY 3.0, CC BY-SA 3.0 or public domain per file, see the copyright file).
- Noise `sonicpi_*`: Debian package `sonic-pi-samples` (Sonic Pi 3.2.2 samples from
  freesound.org: acoustic drums, tabla, guitar, percussion loops, vinyl, a 3D printer, a crow;
  CC0 1.0).
- Noise `wordwarvi_*`: Debian package `wordwarvi-sound` (Word War vi: music and metal/stone
  impacts; CC BY-SA 3.0).
- Noise `buckle_*`: typing made of the IBM Model M key recordings of Debian package
  `bucklespring-data` (GPL-2+); each split has keys of its own.
"""


@dataclass(frozen=True)
class Clip:
    """One recording of a package.

    Attributes:
        package: Debian package.
        member: Its name inside the package (a path, or ``opensfx.cat#NN``).
        path: Extracted file (WAV, Ogg or FLAC).
        category: Noise category (``speech`` for speech).
        unit: Split atom: recordings of one unit go to the same split.
        seconds: Duration of the file.
        sha1: SHA-1 of the file's bytes.
        speaker: Speaker label (speech only).
    """

    package: str
    member: str
    path: Path
    category: str
    unit: str
    seconds: float
    sha1: str
    speaker: str = ""


def _clip(package: str, member: str, path: Path, category: str, unit: str,
          speaker: str = "") -> Clip:
    info = sf.info(str(path))
    return Clip(package, member, path, category, unit, info.frames / info.samplerate,
                hashlib.sha1(path.read_bytes()).hexdigest(), speaker)


def _family(stem: str) -> str:
    """Numbered or graded takes of one recording (``fire03``, ``drum_snare_hard``) share a unit."""
    stem = re.sub(r"-(open|close|idle|move|stop|impact|bodyimpact)$", "", stem)
    return re.sub(r"(_?\d+|_full|_hard|_soft|_short|_long)$", "", stem)


def _matching(files, root: Path, table: dict[str, str]) -> list[tuple[Path, str, str]]:
    """``(file, name relative to root without suffix, category)`` of the files the table keeps."""
    out = []
    for f in sorted(files):
        rel = f.relative_to(root).with_suffix("").as_posix()
        cat = next((c for pat, c in table.items() if re.fullmatch(pat, rel)), None)
        if cat:
            out.append((f, rel, cat))
    return out


def _opensfx(root: Path, work: Path) -> list[Clip]:
    """The WAV files of OpenSFX's ``opensfx.cat`` (a table of offsets, then name + RIFF data)."""
    pkg = "openttd-opensfx"
    data = (root / "usr/share/games/openttd/baseset/opensfx/opensfx.cat").read_bytes()
    out, credits = [], []
    for i in range((struct.unpack("<I", data[:4])[0] & 0x7FFFFFFF) // 8):
        off, size = struct.unpack("<II", data[8 * i:8 * i + 8])
        off &= 0x7FFFFFFF
        n = data[off]
        desc = data[off + 1:off + 1 + n].rstrip(b"\0").decode("latin-1")
        credits.append(f"{i:02d} {desc}")
        if i not in OPENSFX:
            continue
        path = work / f"opensfx_{i:02d}.wav"
        path.write_bytes(data[off + 1 + n:off + size])
        orig = re.search(r'Original "([^"]+)"', desc)
        out.append(_clip(pkg, f"opensfx.cat#{i:02d}", path, OPENSFX[i],
                         orig.group(1) if orig else f"{i:02d}"))
    (work / "opensfx-files.txt").write_text("\n".join(credits) + "\n")
    return out


def _ufoai(root: Path, work: Path) -> list[Clip]:
    pk3 = zipfile.ZipFile(root / "usr/share/games/ufoai/base/0snd.pk3")
    names = [n for n in pk3.namelist() if n.startswith("sound/") and n.endswith(".ogg")]
    keep = _matching([work / "ufoai" / n for n in names], work / "ufoai" / "sound", UFOAI)
    for f, _, _ in keep:
        pk3.extract(f.relative_to(work / "ufoai").as_posix(), work / "ufoai")
    return [_clip("ufoai-sound", f"0snd.pk3:sound/{rel}.ogg", f, cat,
                  f"{Path(rel).parent}/{_family(Path(rel).name)}") for f, rel, cat in keep]


def _by_stem(pkg: str, folder: Path, table: dict[str, str]) -> list[Clip]:
    files = [f for f in folder.iterdir() if f.suffix in (".flac", ".ogg", ".wav")]
    return [_clip(pkg, f"{folder.name}/{f.name}", f, cat, _family(rel))
            for f, rel, cat in _matching(files, folder, table)]


def noise_clips(unpacked: Path, work: Path) -> list[Clip]:
    """All kept noise recordings of :data:`NOISE_PACKAGES` (unpacked in ``unpacked/NAME``)."""
    work.mkdir(parents=True, exist_ok=True)
    clips = _opensfx(unpacked / "openttd-opensfx", work) + _ufoai(unpacked / "ufoai-sound", work)
    clips += _by_stem("sonic-pi-samples",
                      unpacked / "sonic-pi-samples/usr/share/sonic-pi/samples", SONIC_PI)
    clips += _by_stem("wordwarvi-sound",
                      unpacked / "wordwarvi-sound/usr/share/wordwarvi/sounds", WORDWARVI)
    keys = unpacked / "bucklespring-data/usr/share/buckle/wav"
    clips += [_clip("bucklespring-data", f"wav/{f.name}", f, "typing", f.stem.split("-")[0])
              for f in sorted(keys.glob("*.wav"))]
    return [c for c in clips if c.seconds >= MIN_CLIP_SECONDS or c.category == "typing"]


def speech_clips(name: str, unpacked: Path) -> list[Clip]:
    """Utterances of an extra speech source (:data:`EXTRA_SPEECH`); ``unit`` is the text's name.

    Fish Fillets: the lines of the two fish (``-v-`` the big one, ``-m-`` the small one);
    KLettres: the letters and syllables of :data:`KLETTRES_LANGUAGES`.
    """
    pkg = EXTRA_SPEECH[name]
    out = []
    if name == "fillets-nl":
        root = unpacked / pkg / "usr/share/games/fillets-ng/sound"
        for f in sorted(root.rglob("*.ogg")):
            m = re.fullmatch(r"[^-]+-([vm])-.+", f.stem)
            if m:
                spk = "fillets_nl_" + {"v": "big", "m": "small"}[m.group(1)]
                out.append(_clip(pkg, f.relative_to(root).as_posix(), f, "speech",
                                 f"{f.parts[-3]}-{f.stem}", spk))
    else:
        root = unpacked / pkg / "usr/share/klettres"
        for lang in KLETTRES_LANGUAGES:
            for f in sorted((root / lang).rglob("*.ogg")):
                out.append(_clip(pkg, f.relative_to(root).as_posix(), f, "speech",
                                 f"{lang}-{f.parent.name}-{f.stem}", f"klettres_{lang}"))
    return out


def speech_split(name: str, unpacked: Path, seed_key, limit: int | None, valid_fraction: float,
                 min_seconds: float) -> dict[str, list[tuple[str, Clip]]]:
    """Train and valid ``(id, clip)`` pairs of an extra speech source (no test: unseen voices).

    Utterances shorter than ``min_seconds`` are skipped; KLettres keeps at most
    :data:`KLETTRES_MAX` per voice (by a seeded draw). Validation takes the texts whose seeded
    rank falls under ``valid_fraction``, as for the Asterisk voices; ``limit`` caps the
    utterances of the source. ``seed_key(*parts)`` makes a seed list.
    """
    clips = [c for c in speech_clips(name, unpacked) if c.seconds >= min_seconds]
    ranks = {c: rank(seed_key, c.unit) for c in clips}
    by_voice: dict[str, list[Clip]] = {}
    for c in sorted(clips, key=lambda c: rank(lambda u: seed_key("keep", u), c.unit)):
        by_voice.setdefault(c.speaker, []).append(c)
    cap = KLETTRES_MAX if name == "klettres" else None
    keep = sorted((c for v in by_voice.values() for c in v[:cap]), key=ranks.get)
    valid = [c for c in keep if ranks[c] < valid_fraction]
    train = [c for c in keep if ranks[c] >= valid_fraction]
    if limit is not None:
        n_valid = max(1, round(limit * valid_fraction))
        valid, train = valid[:n_valid], train[:max(0, limit - n_valid)]
    prefix = "fillets_nl" if name == "fillets-nl" else "klettres"
    return {s: [(f"{prefix}_{c.unit}", c) for c in sorted(v, key=lambda c: c.unit)]
            for s, v in (("train", train), ("valid", valid))}


def rank(seed_key, unit: str) -> float:
    """Seeded uniform rank in [0, 1) of a unit name (``seed_key(...)`` makes the seed list)."""
    return float(np.random.default_rng(seed_key(unit)).random())


def split_units(clips: list[Clip], seed_key) -> dict[str, list[Clip]]:
    """Assign whole units to train, valid and test, per package and category.

    In each group the units are ordered by their seeded rank; the first
    ``round(SPLIT_SHARE * n)`` (at least one) go to test, as many to valid, the rest to
    train. Groups of fewer than three units stay in train. Units holding byte-identical
    files (bucklespring ships some keys twice) are merged first.
    """
    parent: dict[tuple[str, str, str], tuple[str, str, str]] = {}

    def root(u):
        while parent.get(u, u) != u:
            u = parent[u]
        return u

    first: dict[str, tuple[str, str, str]] = {}
    for c in clips:
        u = (c.package, c.category, c.unit)
        if root(u) != root(first.setdefault(c.sha1, u)):
            parent[root(u)] = root(first[c.sha1])
    groups: dict[tuple[str, str], dict[str, list[Clip]]] = {}
    for c in clips:
        pkg, cat, unit = root((c.package, c.category, c.unit))
        groups.setdefault((pkg, cat), {}).setdefault(unit, []).append(c)
    out = {"train": [], "valid": [], "test": []}
    for (pkg, cat), units in sorted(groups.items()):
        names = sorted(units, key=lambda u: rank(seed_key, f"{pkg}:{cat}:{u}"))
        k = max(1, round(SPLIT_SHARE * len(names))) if len(names) >= 3 else 0
        for i, u in enumerate(names):
            out["test" if i < k else "valid" if i < 2 * k else "train"] += units[u]
    return out


def medley_plan(clips: list[Clip], prefix: str, split: str) -> dict[str, list[Clip]]:
    """Noise file name -> its clips, for one split's clips of one package.

    A clip of at least :data:`LONG_SECONDS` is a file of its own (named after it); shorter
    clips of a category are packed in order into files of about :data:`MEDLEY_SECONDS`
    (``PREFIX_CATEGORY_SPLIT00``); a pack under :data:`MIN_FILE_SECONDS` is left out.
    """
    plan: dict[str, list[Clip]] = {}
    by_cat: dict[str, list[Clip]] = {}
    for c in clips:
        if c.seconds >= LONG_SECONDS:
            stem = re.sub(r"\W+", "_", Path(c.member).stem).strip("_").lower()
            plan[f"{prefix}_{stem}"] = [c]
        else:
            by_cat.setdefault(c.category, []).append(c)
    for cat, items in sorted(by_cat.items()):
        packs, total = [[]], 0.0
        for c in items:
            if total >= MEDLEY_SECONDS:
                packs.append([])
                total = 0.0
            packs[-1].append(c)
            total += c.seconds
        if len(packs) > 1 and total < MEDLEY_SECONDS / 3:  # a short tail joins the pack before
            tail = packs.pop()
            packs[-1] += tail
        packs = [p for p in packs if sum(c.seconds for c in p) >= MIN_FILE_SECONDS]
        for k, pack in enumerate(packs):
            plan[f"{prefix}_{cat}_{split}{k:02d}"] = pack
    return plan


def noise_plan(clips: list[Clip], split: str) -> dict[str, list[Clip]]:
    """Noise file name -> its clips, for all of a split's clips (see :func:`medley_plan`).

    The key recordings of bucklespring make :data:`TYPING_FILES` typing files per split.
    """
    plan: dict[str, list[Clip]] = {}
    for pkg, prefix in NOISE_PACKAGES.items():
        mine = [c for c in clips if c.package == pkg]
        if mine and pkg == "bucklespring-data":
            plan.update({f"{prefix}_typing_{split}{k:02d}": mine
                         for k in range(TYPING_FILES[split])})
        elif mine:
            plan.update(medley_plan(mine, prefix, split))
    return plan


def render(clips: list[Clip], rng: np.random.Generator, normalise) -> np.ndarray:
    """The noise file of a :func:`noise_plan` entry at 16 kHz."""
    if clips[0].category == "typing":
        return render_typing(clips, MEDLEY_SECONDS, rng, normalise)
    return render_medley(clips, rng, normalise)


def _trim(x: np.ndarray, floor_db: float = 40.0) -> np.ndarray:
    """``x`` without the leading and trailing 10 ms frames ``floor_db`` below its loudest one."""
    n = len(x) // 160
    if n < 2:
        return x
    e = 10 * np.log10(np.mean(x[:n * 160].reshape(n, 160) ** 2, axis=1) + 1e-12)
    keep = np.flatnonzero(e > e.max() - floor_db)
    return x[keep[0] * 160:(keep[-1] + 1) * 160]


def _fade(x: np.ndarray, n: int = 80) -> np.ndarray:
    n = min(n, len(x) // 2)
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    x = x.copy()
    x[:n] *= ramp
    x[len(x) - n:] *= ramp[::-1]
    return x


def render_medley(clips: list[Clip], rng: np.random.Generator, normalise) -> np.ndarray:
    """The clips (trimmed, without DC, faded, each at the noise level) with 0.05-0.4 s gaps."""
    parts = []
    for c in clips:
        x = load_mono(c.path, SR)[:int(MAX_SECONDS * SR)]
        x = _trim(x) if len(clips) > 1 else x
        x = x - x.mean()  # some recordings (the diesel engine) have a DC offset
        if np.any(x):
            parts += [np.zeros(int(rng.uniform(0.05, 0.4) * SR), np.float32), _fade(normalise(x))]
    if not parts:
        raise ValueError(f"silent recordings: {', '.join(c.member for c in clips)}")
    return normalise(np.concatenate(parts[1:]))


def render_typing(keys: list[Clip], seconds: float, rng: np.random.Generator, normalise
                  ) -> np.ndarray:
    """Typing on a keyboard: key press and release recordings at human intervals.

    Keystrokes come every 80-400 ms (gamma-distributed), a press held 40-120 ms before
    its release; a pause of 0.5-2 s follows one keystroke in thirty.
    """
    by_key: dict[str, dict[str, np.ndarray]] = {}
    for c in keys:
        by_key.setdefault(c.unit, {})[Path(c.member).stem.split("-")[1]] = load_mono(c.path, SR)
    strokes = [v for _, v in sorted(by_key.items()) if {"0", "1"} <= set(v)]
    n = int(seconds * SR)
    out = np.zeros(n + SR, dtype=np.float32)
    t = int(rng.uniform(0, 0.2) * SR)
    while t < n:
        k = strokes[int(rng.integers(len(strokes)))]
        release = t + int(rng.uniform(0.04, 0.12) * SR)
        for start, x in ((t, k["0"]), (release, k["1"])):
            x = x[:len(out) - start]
            out[start:start + len(x)] += x
        t += int(min(rng.gamma(4.0, 0.045), 0.4) * SR) + int(0.08 * SR)
        if rng.random() < 1 / 30:
            t += int(rng.uniform(0.5, 2.0) * SR)
    return normalise(out[:n])
