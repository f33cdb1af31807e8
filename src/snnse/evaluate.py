"""``snnse evaluate``: score noisy, enhanced or model-enhanced speech against clean references.

Sources of pairs (exactly one): two folders paired by file name (or by N-DNS ``fileid`` when
the names differ), or a manifest written by ``snnse data``. Systems scored per pair:

* ``noisy``: the noisy input itself (the baseline);
* ``enhanced``: files of an ``--enhanced`` folder, or the output of ``--model`` run over the
  noisy input (``stream``: :class:`snnse.streaming.Streamer` fed 0.5 s chunks; ``offline``:
  the whole file at once; ``chunk1s``: independent 1 s pieces from a fresh state each, the
  DPSNN papers' protocol, for comparison with their numbers only).

Metrics are computed by :func:`compute_metrics` in worker processes (each with its own DNSMOS
session and one torch thread) while the main process reads files and runs the model. A pair
that fails in any system (unreadable file, NaN, silent reference, missing partner) gets one
``error: <file>: <reason>`` line and is left out of every mean, so that systems are compared
on the same files. Python use::

    from snnse.evaluate import evaluate, write_outputs
    result = evaluate(("noisy_dir", "clean_dir"), metrics="sisnr,pesq_wb", model="m.pt")
    write_outputs(result, "eval_out")
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from snnse.cli_common import UsageError, load_model
from snnse.evaluation_pipeline import (LENGTH_SLACK_SECONDS, MODES, STREAM_CHUNK_SECONDS,  # noqa: F401
                                       _implementations, _init_worker, _model_desc, _Pipeline,
                                       _reason, _score)
from snnse.evaluation_report import (EvaluationResult, as_pairs, attach_enhanced,  # noqa: F401
                                     existing_outputs, pairs_from_folders, plan_saves,
                                     pairs_from_manifest, summarize, write_outputs)
from snnse.metrics.compute import (DNSMOS_METRICS, METRICS,  # noqa: F401 (re-exported)
                                   compute_metrics, parse_metrics)
from snnse.messages import eprint


def evaluate(pairs, *, metrics: str | Sequence[str] | None = None, model=None,
             mode: str = "stream", enhanced: str | os.PathLike | None = None,
             workers: int | None = None, progress: bool = True,
             save_enhanced: str | os.PathLike | None = None, downmix: bool = False,
             device: str = "cpu", limit: int | None = None,
             notice: Callable[[str], None] | None = eprint,
             error: Callable[[str], None] | None = eprint,
             command: Sequence[str] | None = None, inputs: dict | None = None,
             cache: bool = True, cache_dir: str | os.PathLike | None = None,
             baselines: Sequence[str] = ()) -> EvaluationResult:
    """Score every pair; see the module docstring for the systems and the failure rules.

    Args:
        pairs: A manifest path, a ``(noisy_dir, clean_dir)`` tuple, or dicts with ``clean``
            and ``noisy`` (and optionally ``enhanced``, ``file``) paths.
        metrics: Names from :data:`METRICS` (list or ``"a,b"``; None: all).
        model: An :class:`~snnse.models.base.Enhancer` or a checkpoint path; its output is
            the ``enhanced`` system.
        mode: ``"stream"``, ``"offline"`` or ``"chunk1s"`` (how the model runs).
        enhanced: Folder of already-enhanced files (the ``enhanced`` system).
        workers: Metric processes (default ``os.cpu_count()``; 1 computes in this process).
        progress: Show a tqdm bar on stderr.
        save_enhanced: Folder for the model's outputs: 32-bit float WAV files named after
            the inputs (suffix ``.wav``), at the rate of the clean references.
        downmix: Average multichannel files to mono instead of failing them.
        device: Torch device of the model.
        limit: Evaluate only the first ``limit`` pairs.
        notice: Receives one-line notices (None: silent).
        error: Receives the ``error: <file>: <reason>`` lines (None: silent).
        command: Recorded in the summary.
        inputs: Recorded in the summary (default: a description of ``pairs``).
        cache: Reuse scores of signals already scored with the same metric code
            (:class:`snnse.metric_cache.MetricCache`); hits and misses go to the summary.
        cache_dir: Cache folder (default :func:`snnse.metric_cache.default_cache_dir`).
        baselines: Classical enhancers run over the noisy input and scored as systems of
            their own (names in :data:`snnse.baselines.BASELINES`, e.g. ``"noisereduce"``).

    Returns:
        An :class:`~snnse.evaluation_report.EvaluationResult`; ``summary["n_failed"]`` counts
        the failed pairs.

    Raises:
        ValueError: Bad metrics, mode, options or pairs (before any work).
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from datetime import datetime, timezone

    from tqdm import tqdm

    import snnse

    names = parse_metrics(metrics)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
    if model is not None and enhanced is not None:
        raise ValueError("give a model or an enhanced folder, not both")
    if save_enhanced is not None and model is None:
        raise ValueError("save_enhanced needs a model")
    if inputs is None:
        inputs = {"pairs": str(pairs) if isinstance(pairs, (str, os.PathLike, tuple)) else "list",
                  "enhanced": str(enhanced) if enhanced is not None else None}
    pairs = as_pairs(pairs)
    if limit is not None:
        pairs = pairs[:max(0, int(limit))]
    if not pairs:
        raise ValueError("no pairs to evaluate")
    if enhanced is not None:
        pairs = attach_enhanced(pairs, enhanced)
    has_noisy = any(p.get("noisy") is not None for p in pairs)
    if model is not None or not any(p.get("enhanced") is not None or p.get("enhanced_error")
                                    for p in pairs):
        systems = ["noisy", "enhanced"] if model is not None else ["noisy"]
        if not has_noisy:
            raise ValueError("the pairs have no noisy files to evaluate or enhance")
    else:
        systems = (["noisy"] if has_noisy else []) + ["enhanced"]
    baselines = list(dict.fromkeys(baselines or ()))
    if baselines:
        from snnse.baselines import check as check_baseline

        for name in baselines:
            check_baseline(name)  # ValueError for unknown names or missing packages, before any work
        if not has_noisy:
            raise ValueError("baselines need noisy files to enhance")
        systems = systems[:1] + baselines + systems[1:]
    if "sisnri" in names and not has_noisy:
        names.remove("sisnri")
        if notice is not None:
            notice("notice: sisnri skipped: there is no noisy input to compare with")
        if not names:
            raise ValueError("no metric left to compute")
    model_path = None
    if isinstance(model, (str, os.PathLike)):
        model_path, model = model, load_model(str(model), device)
    saves = plan_saves(pairs, save_enhanced) if save_enhanced is not None else [None] * len(pairs)
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    workers = min(workers, len(pairs) * len(systems))

    impl = _implementations(names)
    store = None
    if cache:
        from snnse.metric_cache import MetricCache, code_salt, default_cache_dir

        store = MetricCache(cache_dir if cache_dir is not None else default_cache_dir(), code_salt(impl))
    ckeys: dict[tuple[int, str], str] = {}
    pipe = _Pipeline(names, systems, model, mode, device, downmix, notice, baselines)
    rows: dict[tuple[int, str], dict] = {}
    left = {i: len(systems) for i in range(len(pairs))}
    printed: set[tuple[int, str]] = set()
    bar = tqdm(total=len(pairs), desc="evaluate", unit="pair", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)

    def finish(key, values, reason) -> None:
        i, system = key
        if reason is not None:
            rows[key]["error"] = reason
            if error is not None and (i, reason) not in printed:
                printed.add((i, reason))
                error(f"error: {reason}")
        else:
            rows[key].update(values)
            if store is not None and key in ckeys:
                try:
                    store.put(ckeys.pop(key), values)
                except OSError as err:
                    pipe.say_once("cache", f"notice: metric cache not written ({err}); going on without it")
        left[i] -= 1
        if not left[i]:
            bar.update(1)

    pool, pending = None, {}
    if workers > 1:
        import multiprocessing as mp

        ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        if ctx.get_start_method() == "forkserver":
            ctx.set_forkserver_preload(["snnse.evaluate", "snnse.metrics.quality",
                                        "snnse.metrics.dnsmos"])
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)

    def collect(block: bool) -> None:
        if not pending:
            return
        done, _ = wait(list(pending), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for fut in done:
            key, label = pending.pop(fut)
            try:
                _, values, reason = fut.result()
            except Exception as err:  # a worker died (BrokenProcessPool, out of memory, ...)
                values, reason = None, _reason(err)
            finish(key, values, None if reason is None else f"{label}: {reason}")

    try:
        for i, (pair, save) in enumerate(zip(pairs, saves)):
            ests, failures, duration, clean, noisy, sr = pipe.prepare(pair, save)
            for system in systems:
                rows[(i, system)] = {"file": pair["file"], "system": system,
                                     "duration_s": duration, **{m: None for m in names},
                                     "error": None}
            for system, reason in failures.items():
                finish((i, system), None, reason)
            for system, est in ests.items():
                label = f"{pair.get(system) or pair['noisy']}: {system}"
                with_noisy = noisy if "sisnri" in names else None
                if store is not None:
                    ckeys[(i, system)] = store.key(clean, est, sr, with_noisy)
                    hit = store.get(ckeys[(i, system)], names)
                    if hit is not None:
                        del ckeys[(i, system)]
                        finish((i, system), hit, None)
                        continue
                job = ((i, system), clean, est, sr, names, with_noisy)
                if pool is not None:
                    try:
                        pending[pool.submit(_score, job)] = ((i, system), label)
                    except RuntimeError as err:  # the pool broke (a worker was killed)
                        if notice is not None:
                            notice(f"notice: metric workers failed ({_reason(err)}); "
                                   "going on in this process")
                        pool.shutdown(wait=False, cancel_futures=True)
                        pool = None
                if pool is None:
                    key, values, reason = _score(job)
                    finish(key, values, None if reason is None else f"{label}: {reason}")
                while len(pending) >= 2 * workers:
                    collect(block=True)
                collect(block=False)
        while pending:
            collect(block=True)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()

    ordered = [rows[(i, s)] for i in range(len(pairs)) for s in systems]
    failed = {i for (i, _), r in rows.items() if r["error"]}
    kept = [rows[(i, s)] for i in range(len(pairs)) if i not in failed for s in systems]
    summary = {
        "snnse_version": snnse.__version__,
        "created": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "command": list(command) if command is not None else None,
        "inputs": inputs,
        "model": _model_desc(model, model_path),
        "mode": mode if model is not None else None,
        "metrics": names,
        "n_pairs": len(pairs),
        "n_failed": len(failed),
        "implementations": impl,
        "cache": None if store is None else {"dir": str(store.root), "hits": store.hits,
                                             "misses": store.misses},
        "systems": summarize(kept, systems, names),
    }
    return EvaluationResult(rows=ordered, summary=summary, metrics=names)


# ---------------------------------------------------------------- command line

def add_parser(subparsers) -> None:
    """Register ``snnse evaluate`` (``func=run``)."""
    p = subparsers.add_parser(
        "evaluate", help="score noisy, enhanced or model outputs against clean speech",
        description="Score speech against clean references: the noisy input (baseline), an "
                    "--enhanced folder, or a --model run over the noisy input. Writes "
                    "per_file.csv, summary.json and summary.md to OUT. Pairs that fail in any "
                    "system are reported, left out of the means, and make the exit status 1.")
    src = p.add_argument_group("pairs (folders or a manifest)")
    src.add_argument("--noisy", metavar="DIR", help="noisy files (paired with --clean by name, "
                     "or by N-DNS fileid)")
    src.add_argument("--clean", metavar="DIR", help="clean reference files")
    src.add_argument("--manifest", metavar="CSV", help="manifest with noisy and clean columns "
                     "(as written by `snnse data ...`)")
    src.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N pairs")
    sys_ = p.add_argument_group("what to score besides the noisy input")
    sys_.add_argument("--enhanced", metavar="DIR", help="already enhanced files, matched to the "
                      "pairs by name (or fileid)")
    sys_.add_argument("--model", metavar="MODEL", help="model checkpoint or bundled model name "
                      "(dpsnn-demo, spiking-s4-demo) run over the noisy files")
    sys_.add_argument("--baseline", action="append", default=[], metavar="NAME",
                      help="also score a baseline enhancer run over the noisy files "
                           "(repeatable): noisereduce (spectral gating, offline), rnnoise "
                           "(RNNoise, streaming; needs pip install \"snnse[baselines]\")")
    sys_.add_argument("--mode", choices=MODES, default="stream",
                      help="how the model runs: stream (default; Streamer fed 0.5 s chunks, equal "
                           "to offline up to float rounding), offline (the whole file at once), "
                           "chunk1s (independent 1 s pieces, each from a fresh state, as the "
                           "DPSNN papers evaluate: for comparison with published DPSNN numbers "
                           "only)")
    sys_.add_argument("--save-enhanced", metavar="DIR",
                      help="write the model's outputs there (32-bit float WAV named after the "
                           "input; never over an input file)")
    sys_.add_argument("--device", default="cpu", help="torch device of the model (default cpu)")
    sys_.add_argument("--downmix", action="store_true",
                      help="average multichannel files to mono (default: such files fail)")
    rob = p.add_argument_group("robustness suite (snnse.robustness)")
    rob.add_argument("--robustness", action="store_true",
                     help="run the robustness suite instead (clean input, SNR sweep -5..40 dB, level "
                          "sweep -55..-6 dBFS, a long stream; targets): writes robustness.json, .md "
                          "and .png to OUT; --clean DIR (default data/demo/test/clean) and --noise DIR "
                          "(default data/demo/test/noise) give the speech and the noise")
    rob.add_argument("--noise", metavar="DIR", help="noise recordings of the robustness suite")
    rob.add_argument("--quick", action="store_true", help="robustness suite: a quick, small version")
    rob.add_argument("--seed", type=int, default=0, help="robustness suite: seed (default 0)")
    p.add_argument("--metrics", metavar="A,B", default=None,
                   help=f"metrics to compute (default all): {', '.join(METRICS)}")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing summary in OUT")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="metric processes (default: number of CPUs; 1 = no subprocesses)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no notices")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute every score (default: reuse scores of identical signals "
                        "computed by the same metric code, in $SNNSE_CACHE_DIR or ~/.cache/snnse/metrics)")
    p.set_defaults(func=run)


def _command(args: argparse.Namespace) -> list[str]:
    """The command line: sys.argv when run as ``snnse evaluate``, else rebuilt from ``args``."""
    if Path(sys.argv[0]).name == "snnse" and sys.argv[1:2] == ["evaluate"]:
        return ["snnse", *sys.argv[1:]]
    argv = ["snnse", "evaluate"]
    for name in ("noisy", "clean", "manifest", "limit", "enhanced", "model", "mode",
                 "save_enhanced", "device", "metrics", "output", "workers"):
        value = getattr(args, name, None)
        if value is not None and not (name == "mode" and args.model is None):
            argv += [f"--{name.replace('_', '-')}", str(value)]
    for name in getattr(args, "baseline", None) or ():
        argv += ["--baseline", name]
    argv += [f"--{n}" for n in ("downmix", "overwrite", "quiet") if getattr(args, n, False)]
    return argv


def run(args: argparse.Namespace) -> int:
    """Run ``snnse evaluate``; 0 if every pair was scored, 1 if some failed."""
    from snnse.data.manifest import ManifestError

    if args.robustness:
        from snnse.robustness import run as run_robustness

        return run_robustness(args)
    if args.noise is not None or args.quick:
        raise UsageError("--noise and --quick belong to --robustness")

    try:
        names = parse_metrics(args.metrics)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.manifest is not None and (args.noisy is not None or args.clean is not None):
        raise UsageError("give either --manifest or --noisy/--clean, not both")
    if args.manifest is None and args.clean is None:
        raise UsageError("no pairs: give --clean DIR (with --noisy DIR or --enhanced DIR) "
                         "or --manifest CSV")
    if args.manifest is None and args.noisy is None and args.enhanced is None:
        raise UsageError("--clean needs --noisy DIR (or --enhanced DIR) to score against it")
    if args.model is not None and args.enhanced is not None:
        raise UsageError("give --model or --enhanced, not both")
    if args.save_enhanced is not None and args.model is None:
        raise UsageError("--save-enhanced needs --model")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    found = existing_outputs(args.output)
    if found and not args.overwrite:
        raise UsageError(f"{args.output} already holds an evaluation summary ({found[0].name}); "
                         "use --overwrite or another -o")
    try:
        if args.manifest is not None:
            pairs = pairs_from_manifest(args.manifest)
        else:
            pairs = pairs_from_folders(args.noisy, args.clean)
    except (ValueError, ManifestError) as err:
        raise UsageError(str(err)) from None
    model = load_model(args.model, args.device) if args.model is not None else None
    inputs = {k: (str(getattr(args, k)) if getattr(args, k) is not None else None)
              for k in ("noisy", "clean", "manifest", "enhanced")}
    inputs.update(limit=args.limit, downmix=bool(args.downmix))
    try:
        result = evaluate(
            pairs, metrics=names, model=model, mode=args.mode, enhanced=args.enhanced,
            workers=args.workers, progress=not args.quiet and sys.stderr.isatty(),
            save_enhanced=args.save_enhanced, downmix=args.downmix, device=args.device,
            limit=args.limit, notice=None if args.quiet else eprint, error=eprint,
            command=_command(args), inputs=inputs, cache=not args.no_cache,
            baselines=args.baseline)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if result.summary["model"] is not None:
        result.summary["model"]["path"] = str(args.model)
    try:
        write_outputs(result, args.output, overwrite=args.overwrite)
    except (OSError, FileExistsError) as err:
        eprint(f"error: {args.output}: cannot write the outputs ({err})")
        return 1
    cached = result.summary.get("cache") or {}
    if cached.get("hits") and not args.quiet:
        eprint(f"notice: {cached['hits']} of {cached['hits'] + cached['misses']} score sets reused from "
               f"the metric cache {cached['dir']} (--no-cache recomputes them)")
    table = result.markdown().split("\n\n")
    print("\n\n".join(t for t in table if t.startswith("|")))
    print(f"wrote per_file.csv, summary.json, summary.md to {args.output}")
    n_failed = result.n_failed
    if n_failed and not args.quiet:
        eprint(f"{n_failed} of {result.summary['n_pairs']} pairs failed")
    return 1 if n_failed else 0
