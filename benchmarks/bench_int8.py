"""Float32 vs int8 ONNX step graphs of the bundled models: size, footprint and quality.

    python benchmarks/bench_int8.py [--models dpsnn-demo spiking-s4-demo] [--corpus data/demo] [--n 20]

Each model is exported with ``snnse.deploy_commands.export_model`` (float32, then int8 QDQ of the masker's
matrix products), calibrated on the first validation mixtures of the demo corpus (never on the
test split), and both graphs are run hop by hop in onnxruntime over the first ``--n`` test
mixtures, scored with SI-SNR and PESQ-WB against the clean references beside the noisy input.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

import snnse
from snnse.deploy_commands import export_model
from snnse.export import OnnxStreamer, session
from snnse.metrics.compute import compute_metrics


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["dpsnn-demo", "spiking-s4-demo"])
    ap.add_argument("--corpus", type=Path, default=Path("data/demo"))
    ap.add_argument("--n", type=int, default=20, help="test mixtures scored")
    ap.add_argument("--calibration", type=int, default=8, help="validation mixtures for calibration")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = list(csv.DictReader(open(args.corpus / "test.csv")))[: args.n]
    calib = [str(args.corpus / r["noisy"]) for r in list(csv.DictReader(open(args.corpus / "valid.csv")))[: args.calibration]]
    pairs = [(sf.read(args.corpus / r["noisy"], dtype="float32")[0], sf.read(args.corpus / r["clean"], dtype="float32")[0])
             for r in rows]
    metrics = ["sisnr", "pesq_wb"]
    results = {}
    noisy = {m: float(np.mean([compute_metrics(c, x, 16000, metrics)[m] for x, c in pairs])) for m in metrics}
    for name in args.models:
        model = snnse.load(name).float().eval()
        res = {}
        with tempfile.TemporaryDirectory() as tmp:
            for kind in ("float32", "int8"):
                out = Path(tmp) / f"{kind}.onnx"
                rep = export_model(model, out, "int8" if kind == "int8" else None, calib if kind == "int8" else None)
                fp = rep[kind]
                sess = session(out)
                scores = [compute_metrics(c, OnnxStreamer(sess)(x), 16000, metrics) for x, c in pairs]
                res[kind] = {"file_bytes": out.stat().st_size, "footprint": fp,
                             **{m: float(np.mean([s[m] for s in scores])) for m in metrics}}
                if kind == "int8":
                    res[kind]["agreement_db"] = rep["quantization"]["agreement_db"]
        results[name] = res
    print(f"# float32 vs int8 ONNX step, first {args.n} mixtures of {args.corpus}/test.csv "
          f"(noisy input: SI-SNR {noisy['sisnr']:.2f} dB, PESQ-WB {noisy['pesq_wb']:.3f}); "
          f"int8 calibrated on {len(calib)} validation mixtures\n")
    print("| model | graph | file size | SI-SNR (dB) | PESQ-WB | weights (flash) | state + peak activations (RAM) | fits 2 MB / 786 KB |")
    print("|---|---|---|---|---|---|---|---|")
    for name, res in results.items():
        for kind, r in res.items():
            v = r["footprint"]["verdict"]
            fits = "yes" if v["fits"] else ("flash: no" if not v["fits_flash"] else "") + \
                (", " if not v["fits_flash"] and not v["fits_ram"] else "") + ("RAM: no" if not v["fits_ram"] else "")
            print(f"| {name} | {kind} | {r['file_bytes'] / 1024:,.0f} KB | {r['sisnr']:.2f} | {r['pesq_wb']:.3f} | "
                  f"{v['flash_needed'] / 1024:,.0f} KB | {v['ram_needed'] / 1024:,.0f} KB | {fits} |")
    if args.json:
        args.json.write_text(json.dumps({"noisy": noisy, "models": results}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
