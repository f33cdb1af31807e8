"""``snnse evaluate --robustness``: how a denoiser treats clean, mildly noisy, quiet and long input.

The test split of the demo corpus (short mixtures at -5..20 dB) hides what users meet: a
denoiser can make clean, mildly noisy, quiet or long recordings worse. This suite measures it in
four parts, built from a folder of clean speech and a folder of noise recordings (default: the
demo corpus' test split, ``data/demo/test/{clean,noise}``):

1. ``clean``: every utterance alone, at a level drawn in -35..-15 dBFS, scored against itself;
2. ``snr``: the utterances mixed (:func:`snnse.data.mixing.mix`) with a noise crop (made
   zero-mean: a DC offset is inaudible but would count in the SNR) at -5, 0, 5,
   10, 15, 20, 30 and 40 dB, mixture level drawn in -35..-15 dBFS (as the demo corpus);
3. ``level``: the utterances at 10 dB SNR played at -55, -45, -35, -25, -15 and -6 dBFS (mixture
   and reference scaled together, no peak guard: the float signals may pass full scale at -6);
4. ``stream``: one long stream (:func:`build_long_stream`) enhanced in one go (a model keeps its
   state over the whole stream) and scored in windows (30 s; 10 s with ``--quick``).

The systems are ``input`` (the unprocessed input), each baseline of :mod:`snnse.baselines` and
the model, run exactly as ``snnse evaluate`` runs it (default ``stream``: a
:class:`~snnse.streaming.Streamer` fed 0.5 s chunks), with its level control as loaded. Scores:
SI-SNR, PESQ-WB and STOI of :func:`snnse.metrics.compute.compute_metrics`, computed in worker
processes and kept in the metric cache as ``snnse evaluate`` does. Means are taken over the items
scored in every system. Everything random is drawn from ``np.random.default_rng([seed, part,
index...])``, so a seed gives the same mixtures on any machine. :data:`TARGETS` (the project's
shipping bar) are checked per system by :func:`check_targets`.

``robustness.json`` holds ``seed``, ``settings``, ``command``, ``model``, ``versions``, ``inputs``,
``systems``, ``targets_definition``, ``targets`` (``{system: {"pass", "checks": [...]}}``) and
``parts``: ``clean`` (``items``, ``means``), ``snr`` and ``level`` (``items``, ``bins``: one per
SNR or level with its ``means``), ``stream`` (``segments``, ``windows``, ``means``, ``head``,
``tail``: the means of the first and last ``head_s`` seconds). Every item and window has
``scores`` (``{system: {metric: value}}``, None where not scored) and ``errors``; every ``means``
is ``{system: {"sisnr", "pesq_wb", "stoi", "sisnr_gain", "n"}}``. Python use::

    from snnse.robustness import Settings, run_suite, write_report
    report = run_suite("clean_dir", "noise_dir", model="dpsnn-demo", settings=Settings.quick())
    write_report(report, "rb_out")       # robustness.json, robustness.md, robustness.png

The suite's parts live, by idea, in :mod:`snnse.robustness_items` (:class:`Settings`, the
folders, the items of the sweeps, the systems) and :mod:`snnse.robustness_scoring` (the metric
jobs, the means, :data:`TARGETS` and :func:`check_targets`); this module runs them
(:func:`run_suite`), writes the report (:func:`write_report`) and is the command (:func:`run`).
It re-exports their public names and the long-stream helpers of :mod:`snnse.data.streams`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from snnse.data.mixing import rms_db
from snnse.data.streams import at_level, build_long_stream, noise_crop, windows
from snnse.messages import eprint
from snnse.robustness_items import (DEFAULT_CLEAN, DEFAULT_NOISE, MIN_SPEECH_S, PARTS, Settings, SuiteError, _rng,
                                    build_items, load_folder, make_systems, select)
from snnse.robustness_scoring import INPUT, LABELS, METRICS, TARGETS, _means, _rows, _Scorer, check_targets

__all__ = ["DEFAULT_CLEAN", "DEFAULT_NOISE", "INPUT", "LABELS", "METRICS", "MIN_SPEECH_S", "OUTPUTS", "PARTS",
           "SILENT_DB", "TARGETS", "Settings", "SuiteError", "at_level", "build_items", "build_long_stream",
           "check_targets", "load_folder", "make_systems", "noise_crop", "run", "run_suite", "select", "windows",
           "write_report"]

SILENT_DB = -70.0  # a window whose clean reference is quieter than this is not scored


def run_suite(clean=DEFAULT_CLEAN, noise=DEFAULT_NOISE, *, model=None, baselines: Sequence[str] = (),
              seed: int = 0, settings: Settings | None = None, mode: str = "stream",
              device: str = "cpu", workers: int | None = None, cache: bool = True, cache_dir=None,
              model_name: str | None = None, progress: Callable[[str], None] | None = eprint,
              command: Sequence[str] | None = None, keep_signals: bool = False) -> dict:
    """Run the suite; return the report (the content of ``robustness.json``).

    Args:
        clean, noise: Folders of clean speech and of noise recordings.
        model: An :class:`~snnse.models.base.Enhancer`, a checkpoint or a bundled name, or None.
        baselines: Names of :mod:`snnse.baselines`.
        seed: Seed of every draw (>= 0).
        settings: Sizes (default :class:`Settings`, the full suite).
        mode: How the model runs: ``stream`` (default) or ``offline``, as in ``snnse evaluate``.
        workers: Metric processes (default ``os.cpu_count()``; 1: in this process).
        cache, cache_dir: Use the metric cache of ``snnse evaluate``.
        progress: Receives one line per part (None: silent).
        keep_signals: Also return the built items and the stream under ``"_signals"``.

    Raises:
        SuiteError: Missing folders, no usable audio, a bad seed or mode, no system to test.
        ValueError: An unknown baseline.
    """
    from snnse.cli_common import UsageError, load_model
    from snnse.evaluation_pipeline import _model_desc

    settings = settings or Settings()
    if seed < 0 or mode not in ("stream", "offline"):
        raise SuiteError("the seed must be >= 0 and the mode stream or offline (chunk1s resets "
                         "the model's state, which a long stream must never do)")
    if model is None and not baselines:
        raise SuiteError("nothing to test: give a model and/or baselines")
    from snnse import baselines as known

    for name in baselines:  # ValueError for unknown names (or missing packages), before any work
        (getattr(known, "check", None) or known.get)(name)
    model_path = None
    if isinstance(model, (str, os.PathLike)):
        model_path = str(model)
        try:
            model = load_model(model_path, device)
        except UsageError as err:
            raise SuiteError(str(err)) from None
        model_name = model_name or Path(model_path).stem
    sr = int(model.sample_rate) if model is not None else 16000
    clean_all, noise_all = load_folder(clean, sr, "clean", MIN_SPEECH_S), load_folder(noise, sr, "noise")
    chosen = select(len(clean_all), settings, seed)
    utts = [clean_all[i] for i in chosen]
    items = build_items(utts, noise_all, settings, seed)
    stream = build_long_stream([x for _, x in utts], [x for _, x in noise_all], settings.stream_s,
                               _rng(seed, "stream"), sample_rate=sr, pause_s=settings.pause_s,
                               segment_s=settings.segment_s, snrs=settings.stream_snrs,
                               level_db=settings.level_range, level_period_s=settings.level_period_s)
    systems = make_systems(model, baselines, sr, mode, device, model_name, progress)
    names = list(systems)
    bounds = windows(len(stream["clean"]), int(round(settings.window_s * sr)))
    items["stream"] = [{"start_s": a / sr, "end_s": b / sr, "clean": stream["clean"][a:b],
                        "skipped": ("clean reference silent" if rms_db(stream["clean"][a:b]) < SILENT_DB
                                    else None)} for a, b in bounds]
    n_jobs = sum(len(v) for v in items.values()) * len(names)
    workers = min((os.cpu_count() or 1) if workers is None else int(workers), n_jobs)
    scorer, errors = _Scorer(workers, sr, cache, cache_dir), {}

    def run(s: str, x: np.ndarray):
        try:
            return systems[s](x), None
        except (RuntimeError, ValueError) as err:  # one failing item must not stop the suite
            return None, f"{s} failed ({type(err).__name__}: {' '.join(str(err).split())[:200]})"

    try:
        for part in PARTS:
            t0 = time.time()
            outs = {s: run(s, stream["noisy"]) for s in names} if part == "stream" else {}
            errors.update({s: e for s, (_, e) in outs.items() if e})
            for i, it in enumerate(items[part]):
                for s in [] if it.get("skipped") else names:
                    if part != "stream":
                        est, err = run(s, it["noisy"])
                    else:  # a window of the stream's output
                        est, err = outs[s][0][slice(*bounds[i])] if s not in errors else None, errors.get(s)
                    if err is None:
                        scorer.submit((part, i, s), it["clean"], est)
                    else:
                        scorer.results[(part, i, s)] = (None, err)
            scorer.drain()
            if progress is not None:
                n_skip = sum(1 for it in items[part] if it.get("skipped"))
                bad = sum(1 for k, v in scorer.results.items() if k[0] == part and v[1] is not None)
                what = "windows" if part == "stream" else "items"
                progress(f"robustness: {part}: {len(items[part])} {what} x {len(names)} systems scored in "
                         f"{time.time() - t0:.1f} s" + (f", {bad} scores failed" if bad else "")
                         + (f", {n_skip} skipped (silent reference)" if n_skip else ""))
    finally:
        scorer.close()
    res, store, parts = scorer.results, scorer.store, {}
    for part, key, values in (("clean", None, ()), ("snr", "snr_db", settings.snrs),
                              ("level", "level_db", settings.levels)):
        rows = _rows(part, items[part], res, names)
        parts[part] = {"items": rows, "means": _means(rows, names)} if key is None else {
            "items": rows, "bins": [{key: float(v), "means": _means([r for r in rows if r[key] == v], names)}
                                    for v in values]}
    wins = _rows("stream", items["stream"], res, names)
    dur = len(stream["clean"]) / sr
    head = settings.head_s if settings.head_s is not None else dur / 3
    mid = [(r["start_s"] + r["end_s"]) / 2 for r in wins]
    parts["stream"] = {
        "duration_s": dur, "window_s": settings.window_s, "head_s": head,
        "segments": [{"start_s": g["start"] / sr, "end_s": g["end"] / sr, "snr_db": g["snr_db"],
                      "noise": noise_all[g["noise"]][0]} for g in stream["segments"]],
        "n_utterances": len(stream["utterances"]), "level_knots": stream["level_knots"],
        "gain_db": stream["gain_db"], "errors": errors, "windows": wins, "means": _means(wins, names),
        "head": _means([w for w, c in zip(wins, mid) if c < head], names),
        "tail": _means([w for w, c in zip(wins, mid) if c > dur - head], names)}
    report = {
        "snnse_version": _versions()["snnse"], "command": list(command or []), "seed": int(seed),
        "created": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "suite": {Settings(): "full", Settings.quick(): "quick"}.get(settings, "custom"),
        "settings": dataclasses.asdict(settings), "sample_rate": sr,
        "inputs": {"clean": str(clean), "noise": str(noise), "n_clean_files": len(clean_all),
                   "utterances": [u for u, _ in utts], "noises": [u for u, _ in noise_all]},
        "systems": names, "baselines": list(dict.fromkeys(baselines)),
        "model": None if model is None else dict(_model_desc(model, model_path), system=names[-1], mode=mode),
        "metrics": list(METRICS), "versions": _versions(), "targets_definition": TARGETS,
        "cache": store and {"dir": str(store.root), "hits": store.hits, "misses": store.misses},
        "parts": parts}
    report["targets"] = check_targets(parts, names)
    if keep_signals:
        report["_signals"] = {"items": items, "stream": stream}
    return report


def _versions() -> dict:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from snnse.evaluation_pipeline import _implementations

    def ver(pkg: str) -> str | None:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    return {"python": platform.python_version(),
            **{p: ver(p) for p in ("snnse", "numpy", "torch", "pesq", "pystoi", "soxr", "noisereduce")},
            "metrics": _implementations(METRICS)}



# ---------------------------------------------------------------- outputs and command line

OUTPUTS = ("robustness.json", "robustness.md", "robustness.png")


def write_report(report: dict, out, dpi: int = 200) -> list[Path]:
    """Write :data:`OUTPUTS` to folder ``out``, each atomically; return their paths."""
    from snnse.atomic import atomic_write_text
    from snnse.plots.robustness import figure, markdown

    out = Path(out)
    data = {k: v for k, v in report.items() if not k.startswith("_")}
    paths = [atomic_write_text(out / OUTPUTS[0], json.dumps(data, indent=1, allow_nan=False) + "\n"),
             atomic_write_text(out / OUTPUTS[1], markdown(data))]
    return paths + [figure(data, out / OUTPUTS[2], dpi=dpi)]


def run(args) -> int:
    """``snnse evaluate --robustness``: 0 on success, 2 (UsageError) for bad input."""
    from snnse.cli_common import UsageError

    bad = [f"--{k.replace('_', '-')}" for k in ("noisy", "manifest", "enhanced", "save_enhanced",
                                                  "limit", "metrics") if getattr(args, k, None)]
    if bad:
        raise UsageError(f"{', '.join(bad)} cannot be used with --robustness (it builds its own "
                         "mixtures from --clean DIR and --noise DIR)")
    if args.model is None and not args.baseline:
        raise UsageError("--robustness needs --model NAME|CKPT and/or --baseline NAME")
    if args.mode == "chunk1s":
        raise UsageError("--robustness runs models in stream or offline mode (chunk1s resets "
                         "the state every second)")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    found = [n for n in OUTPUTS if (Path(args.output) / n).exists()]
    if found and not args.overwrite:
        raise UsageError(f"{args.output} already holds {found[0]}; use --overwrite or another -o")
    command = ["snnse", *sys.argv[1:]] if Path(sys.argv[0]).name == "snnse" else [
        "snnse", "evaluate", "--robustness", *[a for b in args.baseline for a in ("--baseline", b)],
        *[a for k in ("model", "clean", "noise", "seed", "mode", "workers", "output")
          if getattr(args, k) is not None for a in (f"--{k}", str(getattr(args, k)))],
        *["--quick"] * bool(args.quick)]
    try:
        report = run_suite(args.clean or DEFAULT_CLEAN, args.noise or DEFAULT_NOISE,
                           model=args.model, baselines=args.baseline, seed=args.seed,
                           settings=Settings.quick() if args.quick else Settings(), mode=args.mode,
                           device=args.device, workers=args.workers, cache=not args.no_cache,
                           progress=None if args.quiet else eprint, command=command)
    except (SuiteError, ValueError) as err:
        raise UsageError(str(err)) from None
    try:
        write_report(report, args.output)
    except OSError as err:
        eprint(f"error: {args.output}: cannot write the outputs ({err})")
        return 1
    from snnse.plots.robustness import markdown

    print("\n\n".join(t for t in markdown(report).split("\n\n") if t.startswith("|")))
    verdict = ", ".join(f"{s}: {'pass' if v['pass'] else 'FAIL'}" for s, v in report["targets"].items())
    print(f"targets: {verdict}\nwrote {', '.join(OUTPUTS)} to {args.output}")
    return 0
