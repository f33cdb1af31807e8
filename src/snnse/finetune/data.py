"""The user's data and the start: scan, split by file, held-out pairs, the start's recipe.

See :mod:`snnse.finetune` for the whole procedure."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from snnse.audio import AudioError, find_audio_files, load_mono

MIN_SPEECH_S = 60.0        # training speech needed (clean + noise mode; paired: clean side)
MIN_VALID_FILES = 4
VALID_SHARE = 0.15
MAX_CHECK_UTTERANCES = 20    # held-out utterances in the clean-input and 30/40 dB checks


class FinetuneError(Exception):
    """Fine-tuning cannot start or go on (bad data, too little of it, a bad start); one line."""


# ---------------------------------------------------------------- start model and recipe

def start_model(spec: str | os.PathLike):
    """``(model, recipe, source)`` of a bundled name, a model file or a ``snnse fit`` ``.ckpt``.

    The recipe comes from the checkpoint (``meta["recipe"]``) or, for a ``.ckpt``, from the
    ``config.yaml`` of its run folder. ``source`` describes the start for the metadata.
    """
    from snnse import pretrained
    from snnse.training import load_run_checkpoint, recipe_of

    spec = str(spec)
    try:
        if spec.endswith(".ckpt"):
            model, step = load_run_checkpoint(spec)
            cfg_file = Path(spec).resolve().parent.parent / "config.yaml"
            recipe = None
            if cfg_file.is_file():
                from snnse.config import load_config
                recipe = recipe_of(load_config(cfg_file))
        else:
            import snnse
            model, step = snnse.load(spec), -1
            recipe = model.meta.get("recipe")
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise FinetuneError(f"cannot load the start model {spec}: {err}") from None
    path = pretrained.path(spec) if pretrained.is_name(spec) else Path(spec)
    source = {"model": spec, "architecture": model.name, "bundled": pretrained.is_name(spec),
              "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "step": step}
    return model, recipe, source


# ---------------------------------------------------------------- data

def scan_audio(files: Sequence[Path], sample_rate: int, min_s: float = 0.5
               ) -> tuple[list[tuple[Path, float]], list[tuple[Path, str]]]:
    """Read every file once: ``(good [(path, seconds)], bad [(path, reason)])``.

    Bad: unreadable or truncated, NaN/Inf samples, shorter than ``min_s``, silent (below -60 dBFS).
    """
    from snnse.data.mixing import rms_db

    good, bad = [], []
    for f in files:
        try:
            x = load_mono(f, sample_rate)
        except (AudioError, RuntimeError, ValueError, OSError) as err:
            bad.append((f, " ".join(str(err).split())[:160]))
            continue
        if len(x) < min_s * sample_rate:
            bad.append((f, f"too short ({len(x) / sample_rate:.2f} s)"))
        elif rms_db(x) < -60.0:
            bad.append((f, "silent (below -60 dBFS)"))
        else:
            good.append((f, len(x) / sample_rate))
    return good, bad


def _unit(seed: int, rel: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and a file's relative path."""
    h = hashlib.sha256(f"{int(seed)}:{rel}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0 ** 64


def split_by_file(rels: Sequence[str], share: float = VALID_SHARE, seed: int = 0,
                  min_valid: int = MIN_VALID_FILES) -> tuple[list[str], list[str]]:
    """``(train, valid)``: the files whose hash falls below ``share`` (at least ``min_valid`` of
    them: the lowest hashes), reproducible per seed and stable when files are added."""
    if not 0.0 < share < 1.0:
        raise FinetuneError(f"the held-out share must be in (0, 1), got {share}")
    order = sorted(rels, key=lambda r: (_unit(seed, r), r))
    n = max(sum(_unit(seed, r) < share for r in rels), min(min_valid, len(rels) - 1))
    valid = set(order[:n])
    return [r for r in rels if r not in valid], [r for r in rels if r in valid]


def _files(folder, what: str) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FinetuneError(f"{what} folder not found: {folder}")
    files = find_audio_files([folder])
    if not files:
        raise FinetuneError(f"no audio files (.wav/.flac) in the {what} folder {folder}")
    return files


class Data:
    """The user's data after scanning and splitting (see the module docstring, steps 1–3)."""

    def __init__(self, clean, noise=None, noisy=None, *, sample_rate: int, seed: int,
                 valid_share: float, min_speech_s: float, warn: Callable[[str], None]):
        if (noise is None) == (noisy is None):
            raise FinetuneError("give clean speech with either --noise DIR (mixed on the fly) or "
                                "--noisy DIR (pairs with the same relative paths)")
        self.mode = "mix" if noise is not None else "pairs"
        self.sr, self.seed, self.skipped = sample_rate, seed, []
        self.roots = {"clean": str(clean), **({"noise": str(noise)} if noise else {"noisy": str(noisy)})}
        clean_root = Path(clean)
        cl, bad = scan_audio(_files(clean, "clean"), sample_rate)
        self.skipped += [(str(f), r) for f, r in bad]
        if self.mode == "pairs":
            noisy_root = Path(noisy)
            nz = {f.relative_to(noisy_root): f for f in _files(noisy, "noisy")}
            good = {f.relative_to(clean_root): (f, s) for f, s in cl}
            ok_noisy, bad_noisy = scan_audio([nz[r] for r in good if r in nz], sample_rate)
            self.skipped += [(str(f), r) for f, r in bad_noisy]
            ok = {f.relative_to(noisy_root) for f, _ in ok_noisy}
            lonely = sorted(set(good) ^ set(nz))
            self.skipped += [(str(clean_root / r if r in good else noisy_root / r),
                              "no partner in the other folder") for r in lonely]
            rels = sorted(str(r) for r in good if r in ok)
            self.pairs = {r: (noisy_root / r, good[Path(r)][0], good[Path(r)][1]) for r in rels}
            speech = {r: v[2] for r, v in self.pairs.items()}
        else:
            speech = {str(f.relative_to(clean_root)): s for f, s in cl}
            nz, bad = scan_audio(_files(noise, "noise"), sample_rate)
            self.skipped += [(str(f), r) for f, r in bad]
            self.noise = {str(f.relative_to(Path(noise))): (f, s) for f, s in nz}
            if len(self.noise) < 2:
                raise FinetuneError(f"need at least 2 usable noise files (one is held out), found "
                                    f"{len(self.noise)} in {noise}")
            # a few held-out noises (up to 3, a fifth of them at most), so that one recording does
            # not decide the held-out scores
            ntr, nva = split_by_file(sorted(self.noise), valid_share, seed + 1,
                                     max(1, min(3, len(self.noise) // 5)))
            self.noise_train, self.noise_valid = ntr, nva
        for f, reason in self.skipped:
            warn(f"warning: skipped {f}: {reason}")
        if len(speech) < MIN_VALID_FILES + 1:
            raise FinetuneError(f"need at least {MIN_VALID_FILES + 1} usable speech files "
                                f"({MIN_VALID_FILES} are held out), found {len(speech)}")
        self.speech = speech
        self.train, self.valid = split_by_file(sorted(speech), valid_share, seed, MIN_VALID_FILES)
        self.train_s = sum(speech[r] for r in self.train)
        self.valid_s = sum(speech[r] for r in self.valid)
        if self.train_s < min_speech_s:
            raise FinetuneError(
                f"too little speech to fine-tune on: {self.train_s:.0f} s in {len(self.train)} training "
                f"files (after holding out {len(self.valid)} files, {self.valid_s:.0f} s); give at least "
                f"{min_speech_s:.0f} s of speech for training, i.e. about "
                f"{min_speech_s / max(1.0 - valid_share, 1e-3):.0f} s in all")
        self.clean_root = clean_root

    def clean_path(self, rel: str) -> Path:
        return self.pairs[rel][1] if self.mode == "pairs" else self.clean_root / rel

    def describe(self) -> dict:
        out = {"mode": self.mode, "folders": self.roots, "seed": self.seed,
               "train_files": len(self.train), "valid_files": len(self.valid),
               "train_speech_s": round(self.train_s, 1), "valid_speech_s": round(self.valid_s, 1),
               "valid": self.valid, "skipped": [{"file": f, "reason": r} for f, r in self.skipped]}
        if self.mode == "mix":
            out |= {"noise_train_files": len(self.noise_train), "noise_valid": self.noise_valid,
                    "noise_train_s": round(sum(self.noise[r][1] for r in self.noise_train), 1)}
        return out

    def heldout_pairs(self, work: Path, snr: Sequence[float], level: Sequence[float]) -> list[dict]:
        """The held-out pairs (written under ``work/valid`` in mix mode): manifest rows."""
        from snnse.audio import write_audio_atomic
        from snnse.data.mixing import mix
        from snnse.data.streams import noise_crop

        rows = []
        if self.mode == "pairs":
            for r in self.valid:
                nz, cl, dur = self.pairs[r]
                rows.append({"id": r, "noisy": nz, "clean": cl, "duration": dur, "speaker": "user"})
            return rows
        noises = [load_mono(self.noise[r][0], self.sr).astype(np.float64) for r in self.noise_valid]
        for i, r in enumerate(self.valid):
            x = load_mono(self.clean_path(r), self.sr).astype(np.float64)
            rng = np.random.default_rng([self.seed, 0xF17E, i])
            k, crop = noise_crop(noises, len(x), rng)
            noisy, ref, _, lvl = mix(x, crop, rng.uniform(*snr), rng.uniform(*level))
            stem = Path(r).with_suffix("").as_posix().replace("/", "__")
            paths = {}
            for kind, sig in (("noisy", noisy), ("clean", ref)):
                paths[kind] = work / "valid" / kind / f"{stem}.wav"
                paths[kind].parent.mkdir(parents=True, exist_ok=True)
                write_audio_atomic(paths[kind], sig.astype(np.float32)[None], self.sr, subtype="FLOAT")
            rows.append({"id": stem, **paths, "duration": len(x) / self.sr, "speaker": "user",
                         "noise": self.noise_valid[k]})
        return rows

    def check_signals(self, limit: int = MAX_CHECK_UTTERANCES):
        """``(utterances, noises)`` for the clean-input and high-SNR check: ``(name, float64)`` lists."""
        from snnse.robustness_items import MIN_SPEECH_S

        utts = []
        for r in self.valid:
            x = load_mono(self.clean_path(r), self.sr).astype(np.float64)
            if len(x) >= MIN_SPEECH_S * self.sr:
                utts.append((r, x))
        utts = utts[:limit]
        if self.mode == "mix":
            noises = [(r, load_mono(self.noise[r][0], self.sr).astype(np.float64)) for r in self.noise_valid]
        else:  # the noise of each held-out pair
            noises = []
            for r in self.valid:
                nz, cl, _ = self.pairs[r]
                a, b = load_mono(nz, self.sr), load_mono(cl, self.sr)
                n = min(len(a), len(b))
                noises.append((r, (a[:n] - b[:n]).astype(np.float64)))
        return utts, noises
