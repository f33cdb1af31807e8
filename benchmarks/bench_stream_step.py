"""Time of one streaming hop on one thread, fast path against module path, measured in one run.

For each model (paper configurations) this times single hops of real audio through
``Streamer.feed`` (one hop per call) and through the raw ``model.step(chunk, state)``, with the
fast path of :mod:`snnse.fast_step` on and off (``fast_step.disabled()``: the module path, the
code before the fast path existed), with and without the compiled steps of :mod:`snnse.fast_cpp`
(``fast_step.set_compiled``). The variants run interleaved in short rounds so that background
load hits them alike; the table gives median and 99th percentile per hop, as µs and as a share
of the hop duration, and the speed-up of the median over the module path. ``--models`` takes
paper configurations (``dpsnn``, ``spiking_s4``) or bundled models (``dpsnn-demo``,
``spiking-s4-demo``). With ``--onnx`` it also times the exported ONNX step (:mod:`snnse.export`,
onnxruntime, one thread, one ``OnnxStreamer.step`` per hop, the call included): the graph as
the exporter writes it with one input per state tensor (``unpacked``, the layout before
packing) and the default export (``packed``: one flat state, the exact graph clean-up, bound
buffers); ``--int8`` adds both quantised (:func:`snnse.export.quantize_int8`, calibrated on the
bundled demo clip). ``--streamer-only`` times only ``Streamer.feed`` on the fast compiled path
among the PyTorch variants.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_stream_step.py [--models dpsnn spiking_s4]
       [--hops 3000] [--round 50] [--onnx [--int8]] [--streamer-only] [--profile]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

import snnse
from snnse import fast_step
from snnse.streaming import Streamer

SR = 16000
CONFIGS = {
    "dpsnn": dict(L=80, stride=40, N=256, B=256, H=256, context_dur=0.01, X=1),
    "spiking_s4": dict(n_fft=512, hop=128, window="rect", d_model=256, d_state=64, n_layers=4, unit="plif"),
}
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "voicebank_debug" / "noisy"


def audio(n: int) -> torch.Tensor:
    """``n`` samples of real noisy speech (repeated), or noise if the data is missing."""
    try:
        import soundfile as sf

        xs = [torch.from_numpy(sf.read(f, dtype="float32")[0]) for f in sorted(DATA.glob("*.wav"))]
        x = torch.cat(xs)
    except Exception:  # noqa: BLE001 - benchmark still runs without the data
        x = torch.randn(SR * 10) * 0.1
    return x.repeat(-(-n // x.numel()))[:n]


MODES = {"fast, compiled": (True, True), "fast, PyTorch": (True, False), "module": (False, False)}


def variants(model, x, onnx_steps=None, streamer_only=False):
    """name -> (mode, callable(i) that processes hop ``i``, the state carried inside)."""
    hop = model.hop
    with torch.no_grad():
        fast_step.set_compiled(True)
        has_compiled = getattr(fast_step.plan_for(model), "ops", None) is not None
    out = {}
    for label, mode in MODES.items():
        if label == "fast, compiled" and not has_compiled:
            continue
        st = Streamer(model)
        state = {"s": model.initial_state(1)}

        def feed(i, st=st):
            st.feed(x[i * hop:(i + 1) * hop])

        def step(i, state=state):
            _, state["s"] = model.step(x[None, i * hop:(i + 1) * hop], state["s"])

        out[f"Streamer.feed, {label}"] = (mode, feed)
        if streamer_only:
            break
        out[f"model.step, {label}"] = (mode, step)
    if has_compiled and not streamer_only:  # the bundled models carry an input level control (snnse.level_control): its cost per hop
        import copy

        with torch.inference_mode(False):  # a copy with ordinary tensors (version counters)
            lc = copy.deepcopy(model)
        lc.set_level_control({"target_db": -22.0})
        st_lc = Streamer(lc)
        out["Streamer.feed, fast, compiled, + level control"] = (
            MODES["fast, compiled"], lambda i, st=st_lc: st.feed(x[i * hop:(i + 1) * hop]))
    for name, f in (onnx_steps or {}).items():
        out[name] = (MODES["module"], lambda i, f=f: f(x[i * hop:(i + 1) * hop]))
    return out


def _set(mode):
    fast_step.set_enabled(mode[0])
    if fast_step.compiled() != mode[1]:
        fast_step.set_compiled(mode[1])


def measure(model, n_hops, round_len, onnx_steps=None, streamer_only=False):
    x = audio((n_hops + 200) * model.hop)
    fns = variants(model, x, onnx_steps, streamer_only)
    times = {k: [] for k in fns}
    try:
        for k, (mode, f) in fns.items():  # warm-up (plans, caches, allocator)
            _set(mode)
            for i in range(50):
                f(i)
        i0 = 50
        while i0 < n_hops + 50:
            for k, (mode, f) in fns.items():
                _set(mode)
                f(i0)  # the first hop after a switch rebuilds the plan: not timed
                for i in range(i0 + 1, i0 + round_len):
                    t = time.perf_counter()
                    f(i)
                    times[k].append(time.perf_counter() - t)
            i0 += round_len
    finally:
        fast_step.set_enabled(True)
        fast_step.set_compiled(True)
    return times


def onnx_steppers(model, int8=False):
    """``{name: per-hop step}`` of the exported ONNX step of ``model`` (one thread): unpacked as
    exported before packing, packed (the default export), and with ``int8`` both quantised; {}
    without onnxruntime."""
    try:
        import tempfile

        from snnse import export
        from snnse.deploy_commands import calibration_signals, default_calibration
    except Exception:  # noqa: BLE001 - onnx/onnxruntime not installed
        return {}
    tmp = Path(tempfile.mkdtemp())
    calib = calibration_signals(default_calibration(), int(model.sample_rate)) if int8 else None
    out = {}
    for label, packed in (("unpacked (before)", False), ("packed", True)):
        path = tmp / f"{packed}.onnx"
        export.export_onnx(model, path, packed=packed, optimize=packed)
        graphs = [("float32", path)]
        if int8:
            export.quantize_int8(path, tmp / f"{packed}-int8.onnx", calib)
            graphs.append(("int8", tmp / f"{packed}-int8.onnx"))
        for kind, p in graphs:
            st = export.OnnxStreamer(export.session(p))  # one thread, sequential, no spinning
            out[f"onnxruntime, {kind}, {label}"] = lambda hop, st=st: st.step(hop.numpy())
    return out


def times_med(ts):
    return sorted(ts)[len(ts) // 2] * 1e6


def profile(model, n=300):
    from torch.profiler import profile as prof

    x = audio((n + 1) * model.hop)
    st = Streamer(model)
    with prof() as p:
        for i in range(n):
            st.feed(x[i * model.hop:(i + 1) * model.hop])
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(CONFIGS))
    ap.add_argument("--hops", type=int, default=3000, help="timed hops per variant")
    ap.add_argument("--round", type=int, default=50, help="hops per variant before switching")
    ap.add_argument("--onnx", action="store_true", help="also time the exported ONNX step (onnxruntime)")
    ap.add_argument("--int8", action="store_true", help="with --onnx: also the int8 graphs")
    ap.add_argument("--streamer-only", action="store_true",
                    help="of the PyTorch variants only Streamer.feed on the fast compiled path")
    ap.add_argument("--profile", action="store_true", help="torch.profiler table of the fast Streamer path")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"# snnse {snnse.__version__}, torch {torch.__version__}, {platform.machine()}, 1 thread, "
          f"{args.hops} hops per variant in rounds of {args.round}{load}\n")
    print("| model | variant | median | p99 | median / hop | p99 / hop | speed-up over module path |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        model = (snnse.get(name, **CONFIGS[name]) if name in CONFIGS else snnse.load(name)).float().eval()
        hop_us = 1e6 * model.hop / SR
        onnx_steps = onnx_steppers(model, args.int8) if args.onnx else None
        with torch.inference_mode():
            times = measure(model, args.hops, args.round, onnx_steps, args.streamer_only)
            if args.profile:
                profile(model)
        med = {}
        for k, ts in times.items():
            ts = sorted(ts)
            med[k] = ts[len(ts) // 2] * 1e6
            p99 = ts[min(len(ts) - 1, int(0.99 * len(ts)))] * 1e6
            base = k.split(", ")[0] + ", module"
            ratio = f"{times_med(times[base]) / med[k]:.2f}×" if k != base and base in times else ""
            print(f"| {name} | {k} | {med[k]:.0f} µs | {p99:.0f} µs | {100 * med[k] / hop_us:.1f} % | "
                  f"{100 * p99 / hop_us:.1f} % | {ratio} |")


if __name__ == "__main__":
    main()
