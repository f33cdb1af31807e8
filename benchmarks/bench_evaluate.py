"""Speed of ``snnse.evaluate`` on 100 real pairs: one process against a worker pool.

Builds ``--pairs`` distinct pairs of ``--seconds`` each from the six real VoiceBank debug pairs
(all six concatenated, noisy and clean aligned, then crops at evenly spaced offsets, wrapping
around), writes them to a temporary folder, and times

* ``evaluate`` with all metrics, ``workers=1`` (in-process) and ``workers=os.cpu_count()``;
* each metric alone on all pairs, in this process (``compute_metrics``). Metrics that share one
  computation are timed once: csig, cbak, covl and segsnr are one composite call each, and the
  three DNSMOS scores are one network run.

Usage: python benchmarks/bench_evaluate.py [--pairs 100] [--seconds 3] [--workers N]
Wall-clock seconds on this machine; compare ratios within one run only.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from snnse.evaluate import compute_metrics, evaluate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "voicebank_debug"
GROUPS = {"sisnr": ["sisnr"], "sisnri": ["sisnri"], "pesq_wb": ["pesq_wb"],
          "pesq_nb": ["pesq_nb"], "stoi": ["stoi"], "estoi": ["estoi"],
          "composite (csig/cbak/covl/segsnr, each)": ["covl"],
          "dnsmos (sig/bak/ovrl together)": ["dnsmos_ovrl"]}


def build_pairs(folder: Path, n: int, seconds: float) -> list[dict]:
    """``n`` distinct noisy/clean crops of ``seconds`` written to ``folder/{noisy,clean}``."""
    names = sorted(p.name for p in (DATA / "clean").glob("*.wav"))
    clean = np.concatenate([sf.read(str(DATA / "clean" / f))[0] for f in names])
    noisy = np.concatenate([sf.read(str(DATA / "noisy" / f))[0] for f in names])
    sr = sf.info(str(DATA / "clean" / names[0])).samplerate
    length = int(seconds * sr)
    clean, noisy = np.concatenate([clean, clean[:length]]), np.concatenate([noisy, noisy[:length]])
    total = len(clean) - length
    pairs = []
    for sub in ("noisy", "clean"):
        (folder / sub).mkdir(parents=True)
    for k in range(n):
        start = k * total // n
        name = f"crop{k:03d}.wav"
        sf.write(str(folder / "clean" / name), clean[start:start + length], sr, subtype="FLOAT")
        sf.write(str(folder / "noisy" / name), noisy[start:start + length], sr, subtype="FLOAT")
        pairs.append({"file": name, "noisy": folder / "noisy" / name, "clean": folder / "clean" / name})
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        pairs = build_pairs(Path(tmp), args.pairs, args.seconds)
        audio_s = args.pairs * args.seconds
        runs = {}
        for workers in sorted({1, args.workers}):
            t = time.perf_counter()
            res = evaluate(pairs, workers=workers, progress=False, notice=None, cache=False)
            runs[workers] = time.perf_counter() - t
            assert res.n_failed == 0, res.n_failed
        loaded = [(sf.read(str(p["clean"]))[0], sf.read(str(p["noisy"]))[0]) for p in pairs]
        sr = sf.info(str(pairs[0]["clean"])).samplerate
        compute_metrics(*loaded[0], sr, ["dnsmos_ovrl", "pesq_wb"])  # load the ONNX session
        alone = {}
        for label, metric in GROUPS.items():
            t = time.perf_counter()
            for clean, noisy in loaded:
                compute_metrics(clean, noisy, sr, metric, noisy=noisy)
            alone[label] = time.perf_counter() - t

    print(f"{args.pairs} pairs × {args.seconds:g} s ({audio_s:g} s of audio), all 13 metrics; "
          f"{platform.machine()}, {os.cpu_count()} CPUs\n")
    print("| run | wall time | per pair | audio s per s | speed-up |")
    print("|---|---|---|---|---|")
    for workers, sec in runs.items():
        what = "workers=1 (in-process)" if workers == 1 else f"workers={workers} (pool)"
        print(f"| evaluate, {what} | {sec:.1f} s | {1000 * sec / args.pairs:.0f} ms | "
              f"{audio_s / sec:.1f} | {runs[1] / sec:.2f}× |")
    print("\n| metric alone, in one process | time for all pairs | per pair | share of workers=1 run |")
    print("|---|---|---|---|")
    for label, sec in sorted(alone.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {sec:.2f} s | {1000 * sec / args.pairs:.1f} ms | "
              f"{100 * sec / runs[1]:.0f} % |")


if __name__ == "__main__":
    main()
