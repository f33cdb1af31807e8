"""``snnse demo``: hear a bundled spiking denoiser work, in about a minute on a laptop CPU.

Enhances a real noisy clip shipped with the package (a few seconds of the demo corpus' test
split: a voice and a noise recording that no bundled model was trained or validated on; see
``snnse/pretrained/demo_clip.txt`` for its sources and licences) hop by hop through
:class:`snnse.streaming.Streamer`, exactly as a device would run it, then prints SI-SNR, PESQ-WB
and STOI before and after, the latency (algorithmic + measured compute per hop) and the real-time
factor, and writes the enhanced WAV and a spectrogram PNG (noisy / enhanced / clean).

Any clip can be used instead (``--noisy F [--clean F]``); without a clean reference only the
timings and the audio are produced.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

CLIP = Path(__file__).resolve().parent / "pretrained"


def bundled_clip() -> tuple[Path, Path]:
    """``(noisy, clean)`` of the bundled demo clip."""
    return CLIP / "demo_noisy.wav", CLIP / "demo_clean.wav"


def stream(model, x: np.ndarray) -> tuple[np.ndarray, dict]:
    """Run ``x [T]`` through ``model`` one hop at a time; returns the output and timings.

    Returns:
        ``(enhanced [T], timing)`` where ``timing`` holds ``per_hop_ms`` (median), ``p99_hop_ms``,
        ``rtf`` (compute time / audio duration), ``algorithmic_ms`` and ``total_latency_ms``.
    """
    import torch

    from snnse.streaming import Streamer

    hop, sr = model.hop, model.sample_rate
    xt = torch.as_tensor(x, dtype=torch.float32)
    outs, times = [], []
    with torch.inference_mode():
        # warm-up outside the timing: the first hops build the fast step's constants and, once
        # per machine, compile its C++ kernel (cached afterwards)
        t0 = time.perf_counter()
        warm = Streamer(model)
        for _ in range(-(-model.frame_length // hop) + 2):
            warm.feed(torch.zeros(hop))
        if time.perf_counter() - t0 > 2.0:
            print(f"snnse demo: the streaming step was prepared in {time.perf_counter() - t0:.0f} s "
                  "(a compiled kernel, built once per machine and cached)", file=sys.stderr)
        st = Streamer(model)
        for i in range(0, len(xt), hop):
            t0 = time.perf_counter()
            outs.append(st.feed(xt[i:i + hop]))
            times.append(time.perf_counter() - t0)
        outs.append(st.flush())
    y = torch.cat(outs).numpy().astype(np.float64)
    per_hop = float(np.median(times)) * 1e3
    timing = {
        "hop_ms": 1e3 * hop / sr,
        "per_hop_ms": per_hop,
        "p99_hop_ms": float(np.percentile(times, 99)) * 1e3,
        "rtf": float(np.sum(times)) / (len(x) / sr),
        "algorithmic_ms": model.latency_ms,
        "total_latency_ms": model.latency_ms + per_hop,
    }
    return y, timing


def scores(clean: np.ndarray, est: np.ndarray, sr: int) -> dict:
    """SI-SNR (dB), PESQ-WB and STOI of ``est`` against ``clean``."""
    from snnse.metrics.quality import MetricError, pesq, si_snr, stoi

    out = {"si_snr": si_snr(clean, est), "stoi": stoi(clean, est, sr)}
    try:
        out["pesq_wb"] = pesq(clean, est, sr)
    except MetricError:
        out["pesq_wb"] = float("nan")
    return out


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="enhance a bundled real noisy clip with a bundled model and score it",
                       description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", default="demo_out", metavar="DIR",
                   help="folder for enhanced.wav, spectrogram.png, scores.json (default demo_out)")
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="bundled model name or checkpoint (default: the bundled dpsnn-demo)")
    p.add_argument("--noisy", metavar="WAV", help="another noisy clip instead of the bundled one")
    p.add_argument("--clean", metavar="WAV", help="its clean reference (for the scores)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, like a device)")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    import snnse
    from snnse import pretrained
    from snnse.atomic import atomic_write_text
    from snnse.audio import load_mono, write_audio_atomic
    from snnse.cli_common import UsageError, load_model
    from snnse.plots import spectrograms

    torch.set_num_threads(max(1, args.threads))
    name = args.model or pretrained.DEFAULT
    model = load_model(name, "cpu")
    sr = model.sample_rate
    if args.noisy:
        noisy_path, clean_path = Path(args.noisy), Path(args.clean) if args.clean else None
    elif args.clean:
        raise UsageError("--clean needs --noisy")
    else:
        noisy_path, clean_path = bundled_clip()
    try:
        noisy = load_mono(noisy_path, sr)
        clean = load_mono(clean_path, sr) if clean_path else None
    except Exception as err:  # AudioError and friends: one clear line
        raise UsageError(f"cannot read the clip: {err}") from None
    if clean is not None and len(clean) != len(noisy):
        n = min(len(clean), len(noisy))
        noisy, clean = noisy[:n], clean[:n]
    out = Path(args.output)
    if out.resolve() in {noisy_path.resolve().parent, *( [clean_path.resolve().parent] if clean_path else [])}:
        raise UsageError(f"{out} holds the input clip; choose another output folder")
    out.mkdir(parents=True, exist_ok=True)

    print(f"snnse {snnse.__version__} demo: {name} ({model.name}, {model.latency_ms:g} ms algorithmic latency) "
          f"on {noisy_path.name} ({len(noisy) / sr:.1f} s)")
    enhanced, timing = stream(model, noisy)
    write_audio_atomic(out / "enhanced.wav", enhanced, sr, subtype="PCM_16")
    report = {"snnse": snnse.__version__, "model": name, "noisy": str(noisy_path), "timing": timing}
    if clean is not None:
        before, after = scores(clean, noisy, sr), scores(clean, enhanced, sr)
        report.update(noisy_scores=before, enhanced_scores=after)
        print(f"\n| {'':<10} | {'noisy':>7} | {'enhanced':>8} | {'change':>7} |")
        print(f"|{'-' * 12}|{'-' * 9}|{'-' * 10}|{'-' * 9}|")
        for key, label in (("si_snr", "SI-SNR dB"), ("pesq_wb", "PESQ-WB"), ("stoi", "STOI")):
            print(f"| {label:<10} | {before[key]:>7.3f} | {after[key]:>8.3f} | {after[key] - before[key]:>+7.3f} |")
    print(f"\nlatency: {timing['algorithmic_ms']:g} ms algorithmic + {timing['per_hop_ms']:.3f} ms compute per "
          f"{timing['hop_ms']:g} ms hop (p99 {timing['p99_hop_ms']:.3f} ms) = {timing['total_latency_ms']:.2f} ms; "
          f"real-time factor {timing['rtf']:.3f} on {torch.get_num_threads()} thread(s)")
    spectrograms(noisy, enhanced, clean, sr, path=out / "spectrogram.png", dpi=150,
                 title=f"{name}: {noisy_path.name}")
    atomic_write_text(out / "scores.json", json.dumps(report, indent=2) + "\n")
    print(f"wrote {out / 'enhanced.wav'}, {out / 'spectrogram.png'}, {out / 'scores.json'}")
    return 0
