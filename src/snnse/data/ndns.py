"""Intel N-DNS Challenge data: the one import path, and the ``snnse data ndns`` and ``synthesize`` commands.

The names are defined, by idea, in

* :mod:`snnse.data.ndns_layout` — the release layout: :func:`ndns_pairs` (pairing a split's
  noisy, clean and noise files by fileid), :func:`write_ndns_manifest`, the file-name patterns,
  :data:`SPLITS` and :class:`NDNSError`;
* :mod:`snnse.data.ndns_synth` — :func:`synthesize` (N-DNS look-alike clips from any clean-speech
  and noise folders, deterministic and resumable);

and re-exported here, so that ``from snnse.data.ndns import ...`` reaches every one of them. This
module holds the two subcommands of ``snnse data`` (:func:`add_parser`).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from snnse.audio import AudioError
from snnse.data.ndns_layout import (CLEAN_RE, NOISE_RE, NOISY_RE, SPLITS, NDNSError, ndns_pairs,
                                    write_ndns_manifest)
from snnse.data.ndns_synth import GAP_SECONDS, PEAK, TRIES, synthesize
from snnse.messages import eprint

__all__ = ["CLEAN_RE", "GAP_SECONDS", "NDNSError", "NOISE_RE", "NOISY_RE", "PEAK", "SPLITS", "TRIES",
           "add_parser", "ndns_pairs", "run_ndns", "run_synthesize", "synthesize", "write_ndns_manifest"]


def _report(fn, *args, **kwargs):
    """Call ``fn``, printing its warnings as ``warning:`` and its errors as ``error:`` lines.

    Returns:
        ``(status, result)``: status 0, or 2 after an :class:`NDNSError`
        (usage) or 1 after an :class:`AudioError` (an output), with result None.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return 0, fn(*args, **kwargs)
        except (NDNSError, AudioError) as err:
            eprint(f"error: {err}")
            return (2 if isinstance(err, NDNSError) else 1), None
        finally:
            for w in caught:
                eprint(f"warning: {w.message}")


def add_parser(subparsers) -> None:
    """Register ``synthesize`` (``func=run_synthesize``) and ``ndns`` (``func=run_ndns``)."""
    p = subparsers.add_parser(
        "synthesize", help="synthesize N-DNS-style noisy/clean/noise clips",
        description="Mix random clean utterances with random noise into N-DNS-style clips "
                    "(deterministic per seed and fileid, resumable).")
    p.add_argument("--clean", nargs="+", required=True, metavar="DIR", help="clean speech folders")
    p.add_argument("--noise", nargs="+", required=True, metavar="DIR", help="noise folders")
    p.add_argument("--out", required=True, help="output root (clips go to OUT/SPLIT/...)")
    p.add_argument("--clips", type=int, required=True, help="number of clips")
    p.add_argument("--seconds", type=float, default=30.0, help="clip length (default 30)")
    p.add_argument("--snr", type=float, nargs=2, default=(-5, 20), metavar=("LO", "HI"),
                   help="SNR range in dB, integers drawn (default -5 20)")
    p.add_argument("--level", type=float, nargs=2, default=(-35, -15), metavar=("LO", "HI"),
                   help="level range in dBFS, integers drawn (default -35 -15)")
    p.add_argument("--rir", nargs="+", metavar="DIR", help="room impulse response folders")
    p.add_argument("--rir-prob", type=float, default=None, help="probability of reverberating a clip")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--split", default="training_set", help="split folder (default training_set)")
    p.add_argument("--sample-rate", type=int, default=16000, help="output rate (default 16000)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_synthesize)

    q = subparsers.add_parser(
        "ndns", help="write manifests for an N-DNS release",
        description="Pair the files of ROOT/training_set and ROOT/validation_set by fileid and "
                    "write OUT/train.csv and OUT/valid.csv.")
    q.add_argument("--root", required=True, help="folder holding training_set/ and validation_set/")
    q.add_argument("--out", required=True, help="manifest folder")
    q.set_defaults(func=run_ndns)


def run_synthesize(args: argparse.Namespace) -> int:
    """Run ``snnse data synthesize``; 0 ok, 1 an output could not be written, 2 usage problems."""
    if args.rir and args.rir_prob is None:
        eprint("error: --rir needs --rir-prob P (the probability of reverberating a clip)")
        return 2
    status, s = _report(synthesize, args.clean, args.noise, args.out, args.clips,
                        clip_seconds=args.seconds, snr_range=args.snr, level_range=args.level,
                        rir_dir=args.rir, rir_prob=args.rir_prob or 0.0, seed=args.seed,
                        split=args.split, sample_rate=args.sample_rate, progress=not args.quiet)
    if status == 0:
        print(f"{s['out']}: made {s['made']} clips, {s['skipped']} already there")
    return status


def run_ndns(args: argparse.Namespace) -> int:
    """Run ``snnse data ndns``; 0 ok, 2 if no split is usable."""
    splits = [s for s in SPLITS if (Path(args.root) / s).is_dir()]
    if not splits:
        eprint(f"error: {args.root}: no {' or '.join(SPLITS)} folder")
        return 2
    for s in splits:
        out_csv = Path(args.out) / f"{SPLITS[s]}.csv"
        status, n = _report(write_ndns_manifest, args.root, s, out_csv)
        if status:
            return status
        print(f"{out_csv}: {n} pairs from {s}")
    return 0
