"""``snnse export`` and ``snnse stream``: deployable step graphs and hop-by-hop streaming of a file.

``snnse export MODEL -o F.onnx [--quantize int8]`` writes one streaming step as a static ONNX
graph (see :mod:`snnse.export`) and prints its footprint against a microcontroller budget
(:mod:`snnse.footprint`). ``snnse stream IN -o OUT`` runs a file hop by hop through the exported
graph (onnxruntime) or through :class:`snnse.streaming.Streamer` (PyTorch) and reports the
per-hop compute time, the real-time factor and the total latency.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from .audio import AudioError, plan_outputs, read_audio, resample, write_audio_atomic
from .cli_common import UsageError, load_model
from .messages import eprint


# ---------------------------------------------------------------- export
def default_calibration() -> list[Path]:
    """Real speech in real noise for calibration: the bundled demo clip (always installed)."""
    return [Path(__file__).resolve().parent / "pretrained" / "demo_noisy.wav"]


def calibration_signals(paths, sample_rate: int, seconds: float = 30.0) -> list[np.ndarray]:
    """Mono float32 signals at ``sample_rate`` from audio files/folders (at most ``seconds`` in all)."""
    from .audio import find_audio_files

    try:
        files = find_audio_files([str(p) for p in paths])
    except AudioError as err:
        raise UsageError(str(err)) from None
    out, total = [], 0
    for f in files:
        x, sr = read_audio(f)
        out.append(resample(x.mean(0), sr, sample_rate).astype(np.float32))
        total += out[-1].size
        if total >= seconds * sample_rate:
            break
    return out


def agreement_db(ref: np.ndarray, est: np.ndarray) -> float:
    """``10 log10(Σ ref² / Σ (ref − est)²)``: how closely ``est`` follows ``ref`` (inf if equal)."""
    err = float(np.sum((np.asarray(ref, np.float64) - est) ** 2))
    return float("inf") if err == 0 else 10 * np.log10(float(np.sum(np.asarray(ref, np.float64) ** 2)) / err)


def export_model(model, out: Path, quantize: str | None = None, calibration=None, opset: int | None = None,
                 flash: str = "2MB", ram: str = "786KB", packed: bool = True) -> dict:
    """Export (and optionally quantise) ``model`` to ``out``; return the report dict of ``snnse export``.

    ``packed``: one flat ``state [1, S]`` input and output (default), else one per state tensor."""
    from . import export as ex
    from . import footprint as fp

    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict = {"model": getattr(model, "name", None), "output": str(out)}
    report["model_footprint"] = fp.model_footprint(model)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".snnse-export-") as tmp:
        float_path = Path(tmp) / "float32.onnx" if quantize else out
        report["metadata"] = ex.export_onnx(model, float_path, opset or ex.DEFAULT_OPSET, packed=packed)
        report["float32"] = fp.graph_footprint(float_path)
        report["float32"]["verdict"] = fp.verdict(report["float32"], flash, ram)
        if quantize:
            signals = calibration_signals(calibration or default_calibration(), int(model.sample_rate))
            report["quantization"] = ex.quantize_int8(float_path, out, signals)
            report["int8"] = fp.graph_footprint(out)
            report["int8"]["verdict"] = fp.verdict(report["int8"], flash, ram)
            x = signals[0][: 10 * int(model.sample_rate)]
            y_f = ex.OnnxStreamer(ex.session(float_path))(x)
            y_q = ex.OnnxStreamer(ex.session(out))(x)
            report["quantization"]["agreement_db"] = agreement_db(y_f, y_q)
    return report


def _state_line(meta: dict) -> str:
    n = len(meta["state_names"].split(","))
    if meta.get("state_format") == "packed":
        return f"state: {n} tensors packed into one float32 [1, {meta['state_size']}] input/output (layout in the metadata)"
    return f"{n} state tensors"


def cmd_export(args: argparse.Namespace) -> int:
    from . import footprint as fp

    out = Path(args.output)
    if out.suffix != ".onnx":
        raise UsageError(f"{out}: the output must end in .onnx")
    try:
        flash, ram = fp.parse_bytes(args.flash), fp.parse_bytes(args.ram)
    except ValueError as err:
        raise UsageError(str(err)) from None
    model = load_model(args.model, "cpu")
    try:
        report = export_model(model, out, args.quantize, args.calibration, args.opset, flash, ram,
                              packed=not args.unpacked)
    except ValueError as err:
        raise UsageError(f"cannot export {args.model}: {err}") from None
    meta = report["metadata"]
    print(f"wrote {out}: {meta['model']} step graph, hop {meta['hop']} samples at {meta['sample_rate']} Hz, "
          f"output delayed by {meta['delay_samples']} samples, {meta['latency_ms']} ms algorithmic latency, "
          f"opset {meta['opset']}, {_state_line(meta)}")
    print("float32 graph " + f"({report['float32']['file_bytes']:,} bytes):")
    print("  " + fp.format_footprint(report["float32"], report["float32"]["verdict"]).replace("\n", "\n  "))
    if args.quantize:
        q = report["quantization"]
        print(f"int8 graph ({report['int8']['file_bytes']:,} bytes, {q['calibration_hops']} calibration hops; "
              f"quantised: {', '.join(q['op_types'])}; neurons, S4D recurrence, norms and state stay float32):")
        print("  " + fp.format_footprint(report["int8"], report["int8"]["verdict"]).replace("\n", "\n  "))
        print(f"  int8 output vs float32 output on the calibration audio: {q['agreement_db']:.1f} dB SNR")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


# ---------------------------------------------------------------- stream
def _percent(us: float, hop_us: float) -> str:
    return f"{us:,.0f} µs ({100 * us / hop_us:.1f}% of the hop)"


def stream_file(src: Path, dst: Path, model_spec: str, backend: str | None = None, downmix: bool = False,
                notice=eprint) -> dict:
    """Stream ``src`` hop by hop through ``model_spec`` and write ``dst``; return the timing figures.

    ``backend``: ``"onnx"`` (the exported step in onnxruntime) or ``"torch"`` (the PyTorch
    :class:`~snnse.streaming.Streamer`, one compiled call per hop on the CPU); None: ``"onnx"``
    for an ``.onnx`` graph, else ``"torch"`` (the faster of the two, and exact).

    Raises:
        AudioError: unusable input (missing, empty, corrupt, NaN, multichannel without
            ``downmix``) or output.
        UsageError: unusable model or backend.
    """
    import torch

    from . import export as ex

    is_onnx = str(model_spec).endswith(".onnx")
    if backend is None:
        backend = "onnx" if is_onnx else "torch"
    if is_onnx and backend == "torch":
        raise UsageError(f"{model_spec}: an ONNX graph needs --backend onnx")
    if is_onnx and not Path(model_spec).is_file():
        raise UsageError(f"{model_spec}: ONNX graph not found")
    x, sr = read_audio(src)
    if x.shape[0] > 1:
        if not downmix:
            raise AudioError(f"{src}: {x.shape[0]} channels; the streamer is mono (use --downmix)")
        x = x.mean(0, keepdims=True)
    with tempfile.TemporaryDirectory(prefix="snnse-stream-") as tmp:
        if backend == "onnx":
            path = model_spec
            if not is_onnx:
                path = Path(tmp) / "step.onnx"
                ex.export_onnx(load_model(model_spec, "cpu"), path)
            runner = ex.OnnxStreamer(ex.session(path))
            msr, hop, frame = runner.sample_rate, runner.hop, runner.frame_length
        else:
            from .streaming import Streamer

            model = load_model(model_spec, "cpu").float()
            msr, hop, frame = int(model.sample_rate), int(model.hop), int(model.frame_length)
        if sr != msr and notice is not None:
            notice(f"notice: {src}: resampled {sr} Hz -> {msr} Hz for the model, output resampled back to {sr} Hz")
        xm = resample(x[0], sr, msr).astype(np.float32)
        times: list[float] = []
        whole = xm.size - xm.size % hop  # timed: one call per whole hop
        if backend == "onnx":
            parts = [runner.feed(xm[i : i + hop]) for i in range(0, whole, hop)]
            times = list(runner.times)  # the hops fed, not the padding of flush()
            parts += [runner.feed(xm[whole:]), runner.flush()]
        else:
            st, threads = Streamer(model), torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with torch.inference_mode():
                    xt, parts = torch.from_numpy(xm), []
                    for i in range(0, whole, hop):
                        t0 = time.perf_counter()
                        parts.append(st.feed(xt[i : i + hop]))
                        times.append(time.perf_counter() - t0)
                    parts = [p.numpy() for p in [*parts, st.feed(xt[whole:]), st.flush()]]
            finally:
                torch.set_num_threads(threads)
    y = np.concatenate(parts)
    if not np.isfinite(y).all():
        raise AudioError(f"{src}: model produced NaN or Inf samples")
    y = resample(y, msr, sr)[: x.shape[1]]
    y = np.pad(y, (0, x.shape[1] - y.size))
    import soundfile as sf

    clipped = write_audio_atomic(dst, y[None], sr, subtype=sf.info(str(src)).subtype)
    if clipped and notice is not None:
        notice(f"notice: {dst}: {clipped} samples clipped to [-1, 1]")
    t = np.asarray(times[1:] if len(times) > 1 else times) * 1e6  # the first hop warms caches up
    hop_us = 1e6 * hop / msr
    algo_ms = 1000 * frame / msr
    med, p99 = float(np.median(t)), float(np.percentile(t, 99))
    return {"backend": backend, "hops": len(times), "hop_samples": hop, "hop_us": hop_us,
            "median_us": med, "p99_us": p99, "rtf": float(np.sum(t)) / 1e6 / (len(t) * hop / msr) if len(t) else 0.0,
            "rtf_with_first_hop": float(np.sum(times)) / (xm.size / msr),
            "first_hop_ms": 1000 * float(times[0]) if times else 0.0,
            "algorithmic_latency_ms": algo_ms, "total_latency_ms": algo_ms + med / 1000,
            "total_latency_p99_ms": algo_ms + p99 / 1000}


def cmd_stream(args: argparse.Namespace) -> int:
    from . import pretrained

    spec = args.model
    if spec is None:
        if pretrained.DEFAULT not in pretrained.bundled():
            raise UsageError(f"no --model given and the default bundled model {pretrained.DEFAULT} is not "
                             "installed; pass --model CHECKPOINT (or an exported .onnx)")
        spec = pretrained.DEFAULT
    try:
        (src, dst), = plan_outputs([args.input], args.output)
    except (AudioError, ValueError) as err:
        raise UsageError(str(err)) from None
    try:
        r = stream_file(src, dst, spec, args.backend, args.downmix, None if args.quiet else eprint)
    except AudioError as err:
        eprint(f"error: {err}")
        return 1
    print(f"wrote {dst} ({r['backend']}, {r['hops']} hops of {r['hop_samples']} samples)")
    print(f"per-hop compute: median {_percent(r['median_us'], r['hop_us'])}, "
          f"p99 {_percent(r['p99_us'], r['hop_us'])}")
    print(f"real-time factor: {r['rtf']:.3f} (the hops after the first; the first, which loads the compiled step "
          f"and derives its constants, took {r['first_hop_ms']:.1f} ms: {r['rtf_with_first_hop']:.3f} with it)")
    print(f"total latency: {r['total_latency_ms']:.2f} ms = {r['algorithmic_latency_ms']:g} ms algorithmic "
          f"+ {r['median_us'] / 1000:.2f} ms compute (median; p99 total {r['total_latency_p99_ms']:.2f} ms)")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


def add_parser(sub) -> None:
    """Register ``snnse export`` and ``snnse stream``."""
    p = sub.add_parser("export", help="export one streaming step as a static ONNX graph",
                       description="Write model.step for one hop (audio [1, hop] and state [1, S] in, enhanced "
                                   "[1, hop] and new_state [1, S] out; all-zeros state starts a stream) as ONNX, "
                                   "with its footprint.")
    p.add_argument("model", metavar="MODEL", help="checkpoint path or bundled model name")
    p.add_argument("-o", "--output", required=True, metavar="F.onnx", help="graph to write")
    p.add_argument("--quantize", choices=["int8"], help="static int8 quantisation (QDQ) of the matrix products")
    p.add_argument("--calibration", nargs="+", metavar="AUDIO",
                   help="calibration audio files/folders (default: the bundled demo clip, real speech in noise)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--unpacked", action="store_true",
                   help="one graph input and output per state tensor instead of one packed float32 state [1, S]")
    p.add_argument("--flash", default="2MB", help="flash budget for the verdict (default 2MB)")
    p.add_argument("--ram", default="786KB", help="RAM budget for the verdict (default 786KB, Cortex-M33 class)")
    p.add_argument("--json", metavar="F", help="also write the report as JSON")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("stream", help="stream a file hop by hop and report per-hop compute time",
                       description="Enhance one file hop by hop through the exported ONNX step (onnxruntime, one "
                                   "thread) or the PyTorch Streamer; print per-hop compute time, real-time factor "
                                   "and total latency.")
    p.add_argument("input", metavar="IN", help="audio file")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output file (or folder)")
    p.add_argument("--backend", choices=["onnx", "torch"], default=None,
                   help="onnxruntime on the exported step, or the PyTorch Streamer (default: onnx for an .onnx "
                        "MODEL, else torch: one compiled call per hop, the faster one)")
    p.add_argument("--model", metavar="MODEL",
                   help="checkpoint, bundled name or exported .onnx (default: the bundled default model)")
    p.add_argument("--downmix", action="store_true", help="average multichannel input to mono")
    p.add_argument("--json", metavar="F", help="also write the figures as JSON")
    p.add_argument("--quiet", action="store_true", help="no notices")
    p.set_defaults(func=cmd_stream)
