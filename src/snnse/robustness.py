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

from snnse.audio import AudioError, find_audio_files, load_mono
from snnse.data.mixing import mix, rms_db
from snnse.data.streams import at_level, build_long_stream, noise_crop, windows  # noqa: F401 (re-exported)
from snnse.messages import eprint

METRICS = ("sisnr", "pesq_wb", "stoi")
LABELS = {"sisnr": "SI-SNR", "pesq_wb": "PESQ-WB", "stoi": "STOI"}
PARTS = ("clean", "snr", "level", "stream")
_CODES = {"select": 0, "clean": 1, "snr": 2, "level": 3, "stream": 4}
INPUT = "input"
DEFAULT_CLEAN, DEFAULT_NOISE = "data/demo/test/clean", "data/demo/test/noise"
MIN_SPEECH_S = 1.5  # shorter utterances are left out (see load_folder)
SILENT_DB = -70.0  # a window whose clean reference is quieter than this is not scored
#: The shipping bar: the clean-input floor, and the limits of the sweeps and the stream.
TARGETS = {"floor": {"sisnr": 20.0, "stoi": 0.97, "pesq_wb": 3.5}, "sweep_max_snr": 20.0,
           "floor_min_snr": 30.0, "level_max_db": -10.0, "level_spread_db": 1.0,
           "window_cap_db": 20.0, "drift_db": 1.0}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of the suite (the defaults are the full suite; :meth:`quick` a smoke test)."""

    max_utterances: int = 60          # utterances used (chosen by the seed when there are more)
    snrs: tuple = (-5, 0, 5, 10, 15, 20, 30, 40)
    levels: tuple = (-55, -45, -35, -25, -15, -6)
    level_snr: float = 10.0           # SNR of the level sweep's mixtures
    level_range: tuple = (-35.0, -15.0)   # drawn levels (clean input, SNR sweep, stream speech)
    stream_s: float = 300.0
    window_s: float = 30.0
    head_s: float | None = 120.0      # "first/last two minutes"; None: a third of the stream
    segment_s: tuple = (20.0, 40.0)   # the stream's noise and SNR change after this long
    pause_s: tuple = (0.5, 4.0)       # silence between the stream's utterances
    stream_snrs: tuple = (0, 5, 10, 20, 30, 40)
    level_period_s: float = 60.0      # the stream's level envelope: a new knot this often

    @classmethod
    def quick(cls, **changes) -> "Settings":
        return dataclasses.replace(cls(max_utterances=4, stream_s=40.0, window_s=10.0, head_s=None,
                                       segment_s=(8.0, 14.0), level_period_s=15.0), **changes)


class SuiteError(Exception):
    """The suite cannot run (missing folders, no audio, ...); ``str(err)`` is one line."""


def _rng(seed: int, part: str, *index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _CODES[part], *map(int, index)])


def load_folder(folder, sample_rate: int, what: str, min_s: float = 0.5) -> list[tuple[str, np.ndarray]]:
    """``(name, float64 mono signal)`` of every audio file under ``folder``, at ``sample_rate``,
    of at least ``min_s`` seconds and not silent.

    Speech is loaded with ``min_s`` = :data:`MIN_SPEECH_S`: STOI needs about 0.4 s of active
    speech and returns a placeholder (1e-5, with a warning) on less, which would count as a
    collapse of intelligibility (single letters read aloud, in the validation voices, do that).
    """
    folder = Path(folder)
    if not folder.is_dir():
        hint = (" (build the demo corpus with `snnse data demo data/demo`, or give --clean DIR "
                "--noise DIR)" if str(folder) in (DEFAULT_CLEAN, DEFAULT_NOISE) else "")
        raise SuiteError(f"{what} folder not found: {folder}{hint}")
    out = []
    for f in find_audio_files([folder]):
        try:
            x = load_mono(f, sample_rate).astype(np.float64)
        except (AudioError, RuntimeError) as err:
            raise SuiteError(f"{f}: {err}") from None
        if len(x) >= min_s * sample_rate and rms_db(x) > -60:  # shorter or silent files are unusable
            out.append((str(f.relative_to(folder).with_suffix("")), x))
    if not out:
        raise SuiteError(f"no usable {what} audio (.wav/.flac, at least {min_s:g} s, not silent) in {folder}")
    return out


def select(n: int, settings: Settings, seed: int) -> list[int]:
    """Indices of the utterances used: all, or ``max_utterances`` chosen by the seed."""
    if n <= settings.max_utterances:
        return list(range(n))
    return sorted(int(i) for i in _rng(seed, "select").choice(n, settings.max_utterances, replace=False))


def build_items(clean: Sequence[tuple[str, np.ndarray]], noise: Sequence[tuple[str, np.ndarray]],
                settings: Settings, seed: int) -> dict[str, list[dict]]:
    """The items of the parts ``clean``, ``snr`` and ``level``: dicts with ``clean`` (the
    reference), ``noisy`` (the input) and their description (``utterance``, ``snr_db``,
    ``level_db``, ``noise``). Item ``i`` of a part draws from ``[seed, part, i, j]`` only. The
    signals are rounded to float32 values (float64 arrays), so that a 32-bit float file holds
    them exactly and ``snnse evaluate`` scores the files as the suite scores the arrays."""
    def f32(*xs):
        return [x.astype(np.float32).astype(np.float64) for x in xs]

    nz = [x for _, x in noise]
    parts: dict[str, list[dict]] = {"clean": [], "snr": [], "level": []}
    for i, (name, x) in enumerate(clean):
        ref, = f32(at_level(x, _rng(seed, "clean", i).uniform(*settings.level_range)))
        parts["clean"].append({"id": name, "utterance": name, "level_db": rms_db(ref),
                               "clean": ref, "noisy": ref})
        for j, snr in enumerate(settings.snrs):
            rng = _rng(seed, "snr", i, j)
            k, crop = noise_crop(nz, len(x), rng)
            noisy, ref, _, level = mix(x, crop, snr, rng.uniform(*settings.level_range))
            noisy, ref = f32(noisy, ref)
            parts["snr"].append({"id": f"{name}@{snr:g}dB", "utterance": name, "snr_db": float(snr),
                                 "noise": noise[k][0], "level_db": rms_db(noisy), "clean": ref, "noisy": noisy})
        k, crop = noise_crop(nz, len(x), _rng(seed, "level", i))
        noisy, ref, _, _ = mix(x, crop, settings.level_snr, None, peak=None)
        for level in settings.levels:
            g = 10.0 ** ((level - rms_db(noisy)) / 20.0)
            scaled_ref, scaled = f32(ref * g, noisy * g)
            parts["level"].append({"id": f"{name}@{level:g}dBFS", "utterance": name,
                                   "snr_db": float(settings.level_snr), "noise": noise[k][0],
                                   "level_db": float(level), "clean": scaled_ref, "noisy": scaled})
    return parts


def make_systems(model=None, baselines: Sequence[str] = (), sample_rate: int = 16000,
                 mode: str = "stream", device: str = "cpu", model_name: str | None = None,
                 notice: Callable[[str], None] | None = None) -> dict[str, Callable]:
    """``{name: f(input [T]) -> output [T]}``: ``input`` (identity), the baselines, the model."""
    from snnse.baselines import get as baseline
    from snnse.evaluation_pipeline import _Pipeline

    systems: dict[str, Callable] = {INPUT: lambda x: x}
    for name in dict.fromkeys(baselines):
        f = baseline(name)
        systems[name] = lambda x, f=f: np.asarray(f(x, sample_rate), dtype=np.float64)
    if model is not None:
        pipe = _Pipeline(list(METRICS), [INPUT, "enhanced"], model, mode, device, False, notice)
        name = model_name or getattr(model, "name", None) or "model"
        name = "model:" + name if name in systems else name
        systems[name] = lambda x: pipe.enhance(x, sample_rate, "robustness")
    return systems


class _Scorer:
    """Metric jobs ``key -> (values | None, error | None)`` in worker processes, with the cache."""

    def __init__(self, workers: int, sample_rate: int, cache: bool, cache_dir=None):
        from snnse.evaluation_pipeline import _implementations

        self.sr, self.results, self.pending, self.pool, self.store = sample_rate, {}, {}, None, None
        self.workers = max(1, int(workers))
        if cache:
            from snnse.metric_cache import MetricCache, code_salt, default_cache_dir

            self.store = MetricCache(cache_dir or default_cache_dir(), code_salt(_implementations(METRICS)))
        if self.workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            from snnse.evaluation_pipeline import _init_worker

            ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
            self.pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker)

    def submit(self, key, clean: np.ndarray, est: np.ndarray) -> None:
        from snnse.evaluation_pipeline import _score

        ckey = self.store.key(clean, est, self.sr) if self.store is not None else None
        hit = self.store.get(ckey, METRICS) if ckey is not None else None
        if hit is not None:
            self.results[key] = (hit, None)
        elif self.pool is None:
            self._done(key, ckey, *_score((key, clean, est, self.sr, METRICS, None))[1:])
        else:
            try:
                self.pending[self.pool.submit(_score, (key, clean, est, self.sr, METRICS, None))] = (key, ckey)
            except RuntimeError:  # the pool broke (a worker was killed): go on in this process
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = None
                return self.submit(key, clean, est)
            while len(self.pending) >= 2 * self.workers:
                self.drain(all_=False)

    def _done(self, key, ckey, values, reason) -> None:
        self.results[key] = (values, reason)
        if values is not None and ckey is not None:
            try:
                self.store.put(ckey, values)
            except OSError:
                pass  # the cache is an optimisation only

    def drain(self, all_: bool = True) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait

        while self.pending:
            done, _ = wait(list(self.pending), return_when=FIRST_COMPLETED)
            for fut in done:
                key, ckey = self.pending.pop(fut)
                try:
                    values, reason = fut.result()[1:]
                except Exception as err:  # a worker died (out of memory, ...): this score fails
                    values, reason = None, f"metric worker failed ({type(err).__name__}: {err})"
                self._done(key, ckey, values, reason)
            if not all_:
                return

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _r(x):
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def _means(rows: list[dict], systems: Sequence[str]) -> dict:
    """Per system: metric means, mean SI-SNR gain over the input and ``n``, over the rows
    scored in every system."""
    ok = [r for r in rows if all(r["scores"].get(s) for s in systems)]
    out = {}
    for s in systems:
        m = {k: _r(np.mean([r["scores"][s][k] for r in ok])) if ok else None for k in METRICS}
        m["sisnr_gain"] = _r(np.mean([r["scores"][s]["sisnr"] - r["scores"][INPUT]["sisnr"]
                                      for r in ok])) if ok else None
        out[s] = dict(m, n=len(ok))
    return out


def _rows(part: str, items: list[dict], results: dict, systems: Sequence[str]) -> list[dict]:
    """The JSON rows of a part: the item's description, ``scores`` and ``errors`` per system."""
    keep, rows = ("id", "utterance", "snr_db", "noise", "level_db", "start_s", "end_s", "skipped"), []
    for i, it in enumerate(items):
        got = {s: results.get((part, i, s), (None, it.get("skipped") or "not scored")) for s in systems}
        rows.append({**{k: it[k] for k in keep if k in it},
                     "scores": {s: v and {k: _r(x) for k, x in v.items()} for s, (v, _) in got.items()},
                     "errors": {s: e for s, (_, e) in got.items() if e is not None}})
    return rows


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


# ---------------------------------------------------------------- targets

def check_targets(parts: dict, systems: Sequence[str]) -> dict:
    """Pass/fail of every system against :data:`TARGETS`, from the means of ``parts``.

    Each check is ``{"id", "target", "value", "bound", "op", "where", "pass"}``; ``value`` is the
    worst case (a margin for the comparisons with the input); a check with nothing measured
    (``value`` None) fails. Returns ``{system: {"pass": bool, "checks": [...]}}``.
    """
    t, floor, out = TARGETS, TARGETS["floor"], {}
    for s in systems:
        checks = []

        def add(cid, target, value, op, bound, where=None):
            ok = value is not None and (value >= bound - 1e-9 if op == ">=" else value <= bound + 1e-9)
            checks.append({"id": cid, "target": target, "value": _r(value), "op": op, "bound": bound,
                           "where": where, "pass": bool(ok)})

        cm = parts["clean"]["means"][s]
        for m in METRICS:
            add(f"clean_{m}", f"clean input: {LABELS[m]} >= {floor[m]:g}", cm[m], ">=", floor[m])
        bins = parts["snr"]["bins"]
        for m in METRICS:
            worst = [(b["means"][s][m] - b["means"][INPUT][m], f"{b['snr_db']:g} dB") for b in bins
                     if b["snr_db"] <= t["sweep_max_snr"] and b["means"][s][m] is not None
                     and b["means"][INPUT][m] is not None]
            value, where = min(worst) if worst else (None, None)
            add(f"snr_{m}", f"SNR sweep <= {t['sweep_max_snr']:g} dB: output {LABELS[m]} >= input's "
                "(worst margin)", value, ">=", 0.0, where)
        for m in METRICS:
            worst = [(b["means"][s][m], f"{b['snr_db']:g} dB") for b in bins
                     if b["snr_db"] >= t["floor_min_snr"] and b["means"][s][m] is not None]
            add(f"floor_{m}", f"SNR sweep >= {t['floor_min_snr']:g} dB: {LABELS[m]} >= {floor[m]:g} (worst)",
                min(worst)[0] if worst else None, ">=", floor[m], min(worst)[1] if worst else None)
        gains = [(b["means"][s]["sisnr_gain"], b["level_db"]) for b in parts["level"]["bins"]
                 if b["level_db"] <= t["level_max_db"] and b["means"][s]["sisnr_gain"] is not None]
        add("level_spread", f"level sweep: SI-SNR gain spread (max - min) <= {t['level_spread_db']:g} dB",
            max(gains)[0] - min(gains)[0] if gains else None, "<=", t["level_spread_db"],
            f"{min(g[1] for g in gains):g}..{max(g[1] for g in gains):g} dBFS" if gains else None)
        st, margins = parts["stream"], []
        for w in st["windows"]:
            if w["scores"].get(s) and w["scores"].get(INPUT):
                cap = min(w["scores"][INPUT]["sisnr"], t["window_cap_db"])
                margins.append((w["scores"][s]["sisnr"] - cap, f"{w['start_s']:g} s"))
        add("stream_windows", f"long stream: every window's output SI-SNR >= min(input's, "
            f"{t['window_cap_db']:g} dB) (worst margin)", min(margins)[0] if margins else None,
            ">=", 0.0, min(margins)[1] if margins else None)
        h, tl = st["head"][s]["sisnr_gain"], st["tail"][s]["sisnr_gain"]
        add("stream_drift", f"long stream: mean SI-SNR gain of the last {st['head_s']:.0f} s within "
            f"{t['drift_db']:g} dB of the first {st['head_s']:.0f} s'",
            abs(tl - h) if h is not None and tl is not None else None, "<=", t["drift_db"])
        out[s] = {"pass": all(c["pass"] for c in checks), "checks": checks}
    return out


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
