"""Running a fine-tune: the training configuration, the kept snapshots, the progress bar, and
:func:`finetune` itself (see :mod:`snnse.finetune`)."""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from snnse.audio import AudioError, load_mono
from snnse.messages import eprint

from .data import MIN_SPEECH_S, VALID_SHARE, Data, FinetuneError, start_model
from .judge import RULE, heldout_table, is_better, markdown_table

LR_WARN_FACTOR = 3.0       # a learning rate this far above the recipe's gets a warning
#: default SNR range (dB) of the held-out mixtures: the conditions to get better at. The training
#: mixes at the recipe's range (-5..40 dB for the bundled models), with its clean-only share, which
#: is what keeps the clean-input and 30/40 dB checks: training at the held-out range instead raised
#: the held-out score but lowered the clean-input one (measured: ``benchmarks/RESULTS.md``).
SNR_RANGE = (-5.0, 20.0)
CANDIDATES = 3             # the best validated steps judged against the start


def _progress_callback(max_steps: int | None, max_minutes: float | None, enabled: bool):
    import lightning.pytorch as pl
    from tqdm import tqdm

    class Progress(pl.Callback):
        """One bar over the whole budget (steps; time left when a time budget is set)."""

        bar, best, t0 = None, -math.inf, 0.0

        def on_train_start(self, trainer, task):
            self.t0 = time.time()
            self.bar = tqdm(total=max_steps, initial=trainer.global_step, unit="step", desc="finetune",
                            disable=not enabled, dynamic_ncols=True, file=sys.stderr)

        def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx):
            if self.bar is None:
                return
            self.bar.update(trainer.global_step - self.bar.n)
            post = {"loss": f"{float(outputs['loss']):.2f}" if isinstance(outputs, dict) else "?"}
            if self.best > -math.inf:
                post["best held-out SI-SNR"] = f"{self.best:.2f} dB"
            if max_minutes:
                timer = next((c for c in trainer.callbacks if type(c).__name__ == "Timer"), None)
                if timer is not None and timer.time_remaining() is not None:
                    post["time left"] = f"{timer.time_remaining() / 60:.1f} min"
            self.bar.set_postfix(post, refresh=False)

        def on_validation_end(self, trainer, task):
            score = trainer.callback_metrics.get("val/sisnr")
            if trainer.sanity_checking or score is None:
                return
            self.best = max(self.best, float(score))
            if enabled and self.bar is not None:
                self.bar.write(f"step {trainer.global_step}: held-out SI-SNR {float(score):.2f} dB "
                               f"(best {self.best:.2f})", file=sys.stderr)

        def on_train_end(self, trainer, task):
            if self.bar is not None:
                self.bar.close()

    return Progress()


class _Snapshots:
    """Keeps the weights of the ``keep`` best validations (by held-out SI-SNR) in ``folder``:
    ``step-NNNNNNN.pt`` and ``index.json`` (``{step: score}`` of every validation). A Lightning
    callback (made one lazily, so that importing this module does not import Lightning)."""

    def __new__(cls, folder: Path, keep: int):
        import lightning.pytorch as pl

        class Snapshots(pl.Callback):
            def on_validation_end(self, trainer, task):
                score = trainer.callback_metrics.get("val/sisnr")
                if trainer.sanity_checking or score is None or not trainer.is_global_zero:
                    return
                folder.mkdir(parents=True, exist_ok=True)
                index = cls.index(folder)
                index[trainer.global_step] = float(score)
                task.model.save(folder / f"step-{trainer.global_step:07d}.pt")
                top = {s for s, _ in cls.ranking(folder, keep, index)}
                for s in index:
                    if s not in top:
                        (folder / f"step-{s:07d}.pt").unlink(missing_ok=True)
                from snnse.atomic import atomic_write_text

                atomic_write_text(folder / "index.json", json.dumps({str(k): v for k, v in index.items()}))

        return Snapshots()

    @staticmethod
    def index(folder: Path) -> dict[int, float]:
        f = folder / "index.json"
        return {int(k): float(v) for k, v in json.loads(f.read_text()).items()} if f.is_file() else {}

    @classmethod
    def ranking(cls, folder: Path, keep: int | None = None, index: dict | None = None) -> list[tuple[int, float]]:
        """``[(step, score)]`` of the kept snapshots, best first (ties: the earlier step)."""
        index = cls.index(folder) if index is None else index
        ranked = sorted(index.items(), key=lambda kv: (-kv[1], kv[0]))
        if keep is None:
            return [(s, v) for s, v in ranked if (folder / f"step-{s:07d}.pt").is_file()]
        return ranked[:keep]


def _config(model, recipe: dict, data: Data, work: Path, *, start: str, rir, max_steps, max_minutes,
            eval_every: int, lr, batch_size, seed: int, threads) -> dict:
    """The ``snnse fit`` configuration of the fine-tune (written to ``work/run/config.yaml``)."""
    from snnse.config import DEFAULTS, merge
    from snnse.data.manifest import write_manifest

    cfg = merge(DEFAULTS, recipe)
    cfg["seed"] = int(seed)
    cfg["model"] = {"name": model.name, "init": start,
                    "kwargs": {k: v for k, v in model.kwargs.items() if k != "level_control"}}
    d = cfg["data"]
    if batch_size:
        d["batch_size"] = int(batch_size)
    if lr:
        cfg["optim"]["lr"] = float(lr)
        cfg["optim"]["lr_floor"] = min(float(cfg["optim"].get("lr_floor", 0.0)), float(lr))
    bs = int(d["batch_size"])
    opts = dict(d["train"])
    if data.mode == "mix":
        crops = int(opts.get("stream_crops", 1))
        per_epoch = -(-int(eval_every) // crops) * crops  # whole streams
        train = opts | {"clean": [str(data.clean_path(r).resolve()) for r in data.train],
                        "noise": [str(data.noise[r][0].resolve()) for r in data.noise_train],
                        "length": per_epoch * bs}
        aug = train.get("augment")
        if isinstance(aug, dict) and aug.get("sim_rir"):
            train["augment"] = aug | {"sim_rir": str(work.resolve() / "rir_sim")}
        if rir is not None:
            train["rir"] = str(Path(rir).resolve())
        elif not (isinstance(aug, dict) and aug.get("sim_rir")):
            train["rir_prob"] = 0.0  # the recipe's real RIRs are not the user's
        val_every = 1
    else:
        rows = [{"id": r, "noisy": data.pairs[r][0], "clean": data.pairs[r][1], "duration": data.pairs[r][2],
                 "speaker": "user"} for r in data.train]
        write_manifest(work / "train.csv", rows)
        train = {"manifest": str(work.resolve() / "train.csv")}
        val_every = max(1, round(int(eval_every) / max(1, len(rows) // bs)))
    d.update(root=str(work.resolve()), train=train, valid={"manifest": str(work.resolve() / "valid.csv")}, valid_limit=None,
             train_limit=None, metrics_subset=0)
    cfg["trainer"].update(max_epochs=1_000_000, max_steps=int(max_steps) if max_steps else -1,
                          enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                          check_val_every_n_epoch=val_every, log_every_n_steps=10)
    if max_minutes:
        cfg["trainer"]["max_time"] = {"minutes": float(max_minutes)}
    cfg["checkpoint"] = {"every_n_steps": max(1, min(50, int(eval_every))), "keep_steps": False}
    cfg["threads"] = threads or cfg.get("threads")
    cfg["run"] = {"dir": str(work.resolve()), "name": "run"}
    return cfg


def _start_sisnr(work: Path, model, rows: list[dict], resume: bool) -> float:
    """Mean SI-SNR of the start on the held-out pairs as the training's validation computes it
    (offline, without the level control): the line the training's scores are to beat. Kept in
    ``work/start.json``."""
    import torch

    from snnse.losses import si_snr

    f = work / "start.json"
    if resume and f.is_file():
        return float(json.loads(f.read_text())["valid_sisnr"])
    bare = copy.deepcopy(model)
    bare.set_level_control(None)
    vals = []
    with torch.no_grad():
        for r in rows:
            x = torch.from_numpy(load_mono(r["noisy"], model.sample_rate))[None]
            y = torch.from_numpy(load_mono(r["clean"], model.sample_rate))[None]
            n = min(x.shape[-1], y.shape[-1])
            vals.append(float(si_snr(bare(x[:, :n]), y[:, :n]).mean()))
    from snnse.atomic import atomic_write_text

    atomic_write_text(f, json.dumps({"valid_sisnr": float(np.mean(vals))}) + "\n")
    return float(np.mean(vals))


def default_work(out: str | os.PathLike) -> Path:
    """The work folder of ``out``: ``OUT`` without its suffix, plus ``.finetune``."""
    out = Path(out)
    return out.with_name(out.stem + ".finetune")


def finetune(start: str | os.PathLike, *, clean, out, noise=None, noisy=None, work=None, rir=None,
             recipe: str | os.PathLike | None = None, max_steps: int | None = None,
             max_minutes: float | None = None, eval_every: int = 100, lr: float | None = None,
             batch_size: int | None = None, valid_share: float = VALID_SHARE, seed: int = 0,
             snr: Sequence[float] = SNR_RANGE, valid_level: Sequence[float] = (-35.0, -15.0),
             min_speech_s: float = MIN_SPEECH_S, resume: bool = False, threads: int | None = None,
             overrides: Sequence[str] = (), candidates: int = CANDIDATES, progress: bool = True,
             notice: Callable[[str], None] | None = eprint) -> dict:
    """Fine-tune ``start`` on the user's data and write ``out``; see the module docstring.

    Returns ``{"accepted", "why_not", "table", "out", "work", "steps", "best_step", "meta"}``.

    Raises:
        FinetuneError: Bad or too little data, a start without a recipe, an existing run
            without ``resume``, an output that is an input.
    """
    import snnse
    from snnse.config import ConfigError, load_config
    from snnse.data.manifest import ManifestError, write_manifest
    from snnse.training import fit, recipe_of

    say = notice or (lambda _m: None)
    out = Path(out)
    if out.suffix != ".pt":
        raise FinetuneError(f"the output must be a model file ending in .pt, got {out}")
    work = Path(work) if work is not None else default_work(out)
    if max_steps is None and max_minutes is None:
        raise FinetuneError("give a budget: max_steps and/or max_minutes")
    model, start_recipe, source = start_model(start)
    if Path(str(start)).exists() and Path(str(start)).resolve() == out.resolve():
        raise FinetuneError(f"the output {out} is the start model; write the fine-tune elsewhere")
    if recipe is not None:
        try:
            start_recipe = recipe_of(load_config(recipe))
        except ConfigError as err:
            raise FinetuneError(str(err)) from None
        source["recipe_file"] = str(recipe)
    if not start_recipe:
        raise FinetuneError(f"{start} does not say how it was trained (no recipe in its metadata); "
                            "give the recipe it was trained with: --recipe configs/X.yaml")
    base_lr = float(start_recipe["optim"]["lr"])
    if lr and float(lr) > LR_WARN_FACTOR * base_lr:
        say(f"warning: learning rate {float(lr):g} is {float(lr) / base_lr:.0f}x the recipe's {base_lr:g}; "
            "fine-tuning at a from-scratch learning rate can wreck a trained model in a few dozen steps")
    data = Data(clean, noise, noisy, sample_rate=model.sample_rate, seed=seed, valid_share=valid_share,
                min_speech_s=min_speech_s, warn=say)
    split = {"seed": seed, "valid_share": valid_share, "train": data.train, "valid": data.valid,
             **({"noise_train": data.noise_train, "noise_valid": data.noise_valid} if data.mode == "mix" else {})}
    ckpt = work / "run" / "checkpoints" / "last.ckpt"
    if ckpt.is_file() and not resume:
        raise FinetuneError(f"{work} already holds a fine-tune; pass --resume to continue it, or "
                            "remove the folder (or give --work DIR) to start again")
    if resume and (work / "split.json").is_file():
        if json.loads((work / "split.json").read_text()) != split:
            raise FinetuneError(f"the data or the split changed since {work} was started (files added, "
                                "removed or skipped, or another seed); start a new fine-tune")
    work.mkdir(parents=True, exist_ok=True)
    from snnse.atomic import atomic_write_text

    atomic_write_text(work / "split.json", json.dumps(split, indent=1) + "\n")
    say(f"finetune: {model.name} from {start}; {len(data.train)} training files ({data.train_s / 60:.1f} min of "
        f"speech), {len(data.valid)} held out ({data.valid_s / 60:.1f} min)"
        + (f", {len(data.noise_train)}/{len(data.noise_valid)} noise files" if data.mode == "mix" else "")
        + (f", {len(data.skipped)} skipped" if data.skipped else ""))
    rows = data.heldout_pairs(work, snr, valid_level)
    write_manifest(work / "valid.csv", rows, extra=("noise",))
    start_valid = _start_sisnr(work, model, rows, resume)
    say(f"finetune: the start's held-out SI-SNR as training validates it (no level control): {start_valid:.2f} dB")
    cfg = _config(model, start_recipe, data, work, start=str(start), rir=rir, max_steps=max_steps,
                  max_minutes=max_minutes, eval_every=eval_every, lr=lr, batch_size=batch_size, seed=seed,
                  threads=threads)
    if overrides:  # --section.key VALUE, as for snnse fit (e.g. --data.train.snr_range [-5,20])
        from snnse.config import merge, parse_overrides

        try:
            cfg = merge(cfg, parse_overrides(overrides))
        except ConfigError as err:
            raise FinetuneError(str(err)) from None
    t0 = time.time()
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no GPU/TPU lines, no tips
    try:
        fit(cfg, resume=bool(resume and ckpt.is_file()),
            callbacks=[_progress_callback(max_steps, max_minutes, progress),
                       _Snapshots(work / "run" / "snapshots", candidates)])
    except (ConfigError, ManifestError, AudioError, ValueError, FileNotFoundError) as err:
        raise FinetuneError(f"training failed: {err}") from None
    timing = work / "time.json"
    spent = (json.loads(timing.read_text())["train_s"] if resume and timing.is_file() else 0.0) + time.time() - t0
    atomic_write_text(timing, json.dumps({"train_s": spent}) + "\n")
    import torch

    steps = int(torch.load(ckpt, map_location="cpu", weights_only=True).get("global_step", -1))
    ranked = _Snapshots.ranking(work / "run" / "snapshots")
    if not ranked:
        raise FinetuneError(f"no validated weights in {work / 'run' / 'snapshots'} (the budget ended "
                            "before the first validation?)")
    models = {"start": model}
    for step, _ in ranked:
        cand = snnse.load(work / "run" / "snapshots" / f"step-{step:07d}.pt")
        cand.set_level_control(model.kwargs.get("level_control"))  # trained without it, used with it
        models[f"step {step}"] = cand.eval()
    model.eval()
    say(f"finetune: judging the start and the {len(ranked)} best validated steps "
        f"({', '.join(str(s) for s, _ in ranked)}) on the held-out files")
    utts, noises = data.check_signals()
    full = heldout_table(models, rows, utts, noises, seed, say)
    verdicts = []
    for step, score in ranked:
        ok, reasons = is_better(full, new=f"step {step}")
        verdicts.append({"step": step, "valid_sisnr": round(score, 3), "accepted": ok, "why_not": reasons,
                         "heldout_sisnr": full["heldout"][f"step {step}"]["sisnr"]})
    passed = [v for v in verdicts if v["accepted"]]
    pick = max(passed, key=lambda v: v["heldout_sisnr"]) if passed else verdicts[0]
    accepted, why, best_step = bool(passed), pick["why_not"], pick["step"]
    cand = models[f"step {best_step}"]
    table = {p: {"input": t["input"], "start": t["start"], "finetuned": t[f"step {best_step}"]}
             for p, t in full.items()}
    used = recipe_of(cfg)
    record = {
        "from": source, "date": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "snnse_version": snnse.__version__, "data": data.describe(),
        "budget": {"max_steps": max_steps, "max_minutes": max_minutes, "eval_every": eval_every},
        "valid_snr_range": list(snr) if data.mode == "mix" else None,
        "steps": steps, "best_step": best_step, "train_time_s": round(spent, 1), "recipe": used,
        "start_valid_sisnr": round(start_valid, 3),
        "table": table, "candidates": verdicts, "rule": RULE, "accepted": accepted, "why_not": why}
    final = cand if accepted else model
    lineage = list(model.meta.get("lineage", [])) + ([source] if accepted else [])  # what the weights went through
    final.meta = {"recipe": used if accepted else start_recipe, "finetune": record, "lineage": lineage}
    final.save(out)
    report = {"out": str(out), **record}
    atomic_write_text(work / "report.json", json.dumps(report, indent=1, default=str) + "\n")
    atomic_write_text(work / "report.md", markdown_table(table))
    return {"accepted": accepted, "why_not": why, "table": table, "out": out, "work": work,
            "steps": steps, "best_step": best_step, "meta": final.meta}
