"""Per-hop compute time of the exported ONNX step (onnxruntime) vs the PyTorch Streamer, and the
size and quality of the int8 graph.

    OMP_NUM_THREADS=1 python benchmarks/bench_stream.py                      # paper-size, random weights
    OMP_NUM_THREADS=1 python benchmarks/bench_stream.py --model ckpt.pt ...  # trained checkpoints: also quality

Both backends run one stream with one thread, one hop per call, on a real VoiceBank clip from
``../shared/data``; the first hop is excluded from the figures. With trained checkpoints the script
also exports an int8 graph (calibrated on the bundled demo clip) and scores float32 and int8 on
the VoiceBank clips (SI-SNR and PESQ-WB against the clean references). Timings depend on the
machine and its load.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import snnse
from snnse.deploy_commands import agreement_db, calibration_signals, default_calibration
from snnse.export import OnnxStreamer, export_onnx, quantize_int8, session
from snnse.streaming import Streamer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "voicebank_debug"
PAPER = {"dpsnn": {"L": 80, "stride": 40, "N": 256, "B": 256, "H": 256, "context_dur": 0.01, "X": 1},
         "spiking_s4": {"n_fft": 512, "hop": 128, "window": "rect", "d_model": 256, "d_state": 64,
                        "n_layers": 4, "unit": "plif"}}


def per_hop_torch(model, x: np.ndarray) -> np.ndarray:
    st, hop, times = Streamer(model), model.hop, []
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        for i in range(0, x.size - hop + 1, hop):
            t0 = time.perf_counter()
            st.feed(xt[i : i + hop])
            times.append(time.perf_counter() - t0)
    return np.asarray(times[1:]) * 1e6


def per_hop_onnx(path, x: np.ndarray) -> np.ndarray:
    st = OnnxStreamer(session(path))
    st.feed(x[: x.size - x.size % st.hop])
    return np.asarray(st.times[1:]) * 1e6


def quality(path, names) -> dict:
    from snnse.metrics.quality import pesq, si_snr

    st = OnnxStreamer(session(path))
    out = {"si_snr": [], "pesq_wb": []}
    for n in names:
        noisy, sr = sf.read(DATA / "noisy" / f"{n}.wav", dtype="float32")
        clean, _ = sf.read(DATA / "clean" / f"{n}.wav", dtype="float32")
        y = st(noisy)
        out["si_snr"].append(si_snr(clean, y))
        out["pesq_wb"].append(pesq(clean, y, sr, "wb"))
    return {k: float(np.mean(v)) for k, v in out.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="*", default=[], help="checkpoints (default: both models, paper size, random)")
    p.add_argument("--clips", type=int, default=3, help="VoiceBank clips scored for quality")
    p.add_argument("--json", help="write the results as JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    names = sorted(f.stem for f in (DATA / "noisy").glob("*.wav"))
    x, _ = sf.read(DATA / "noisy" / f"{names[0]}.wav", dtype="float32")
    models = [(m, snnse.load(m)) for m in args.model] or [(k, snnse.get(k, **kw)) for k, kw in PAPER.items()]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in models:
            model = model.float().eval()
            f32 = Path(tmp) / "f32.onnx"
            export_onnx(model, f32)
            r = {"torch_us": per_hop_torch(model, x), "onnx_us": per_hop_onnx(f32, x)}
            r = {k: {"median": float(np.median(v)), "p99": float(np.percentile(v, 99))} for k, v in r.items()}
            r["hop_us"] = 1e6 * model.hop / model.sample_rate
            r["float32_bytes"] = f32.stat().st_size
            if args.model:
                q8 = Path(tmp) / "int8.onnx"
                quantize_int8(f32, q8, calibration_signals(default_calibration(), model.sample_rate))
                r["int8_bytes"] = q8.stat().st_size
                r["int8_onnx_us"] = float(np.median(per_hop_onnx(q8, x)))
                r["float32_quality"] = quality(f32, names[: args.clips])
                r["int8_quality"] = quality(q8, names[: args.clips])
                r["int8_vs_float32_db"] = agreement_db(OnnxStreamer(session(f32))(x), OnnxStreamer(session(q8))(x))
            results[label] = r
            print(label, json.dumps(r, indent=1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
