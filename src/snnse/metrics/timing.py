"""Latency of an snnse model (:func:`measure_latency`): compute time per hop through the
:class:`~snnse.streaming.Streamer` and of the front-end alone (one CPU thread, median over the
timed hops after warm-up), the algorithmic latency and the real-time factors, streaming and offline.
"""

from __future__ import annotations

import statistics
import time

import torch


def _signal(model, audio, n: int) -> torch.Tensor:
    """``n`` samples at the model rate: the given audio tiled, else fixed pseudo-random noise."""
    p = next(model.parameters())
    if audio is not None and audio.numel():
        x = audio.reshape(-1)
        x = x.repeat(-(-n // x.numel()))[:n]
    else:
        g = torch.Generator().manual_seed(0)
        x = 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    return x.to(p.device, p.dtype)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(model, audio: torch.Tensor | None = None, hops: int = 200, warmup: int = 20,
                    threads: int = 1, offline_seconds: float = 4.0) -> dict:
    """Measure compute latency per hop (streaming) and real-time factors.

    Hop-sized chunks go through a :class:`~snnse.streaming.Streamer` one at a time with
    ``torch.set_num_threads(threads)`` (restored afterwards); the first ``warmup`` hops are not
    timed, the median over the next ``hops`` is reported. The front-end alone
    (``frontend.step``: analysis + synthesis with a unit mask) is timed the same way. The offline
    forward is timed on ``offline_seconds`` of audio (median of 3 runs after one warm-up run).

    Args:
        model: an Enhancer. audio: 1-D signal at the model rate (tiled as needed), else noise.
        hops: timed hops (≥ 1; ≥ 200 for reported figures). warmup: untimed hops first.
        threads: CPU threads during the measurement. offline_seconds: offline signal duration.

    Returns:
        dict with ``algorithmic_ms``, ``compute_per_hop_ms``, ``enc_dec_per_hop_ms``,
        ``total_ms``, ``rtf_streaming``, ``rtf_offline`` and the measurement settings.
    """
    from ..streaming import Streamer

    p = next(model.parameters())
    hop, sr = model.hop, model.sample_rate
    n_stream = (warmup + hops) * hop
    x = _signal(model, audio, max(n_stream, int(offline_seconds * sr)))
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            streamer, times = Streamer(model), []
            for i in range(warmup + hops):
                chunk = x[i * hop:(i + 1) * hop]
                t0 = time.perf_counter()
                streamer.feed(chunk)
                _sync(p.device)
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
            fe = model.frontend
            state, fe_times = fe.initial_state(1, p.device, p.dtype), []
            for i in range(warmup + hops):
                t0 = time.perf_counter()
                _, state = fe.step(x[None, i * hop:(i + 1) * hop], state)
                _sync(p.device)
                if i >= warmup:
                    fe_times.append(time.perf_counter() - t0)
            xo = x[None, : int(offline_seconds * sr)]
            off = []
            for i in range(4):
                t0 = time.perf_counter()
                model(xo)
                _sync(p.device)
                if i:
                    off.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    compute = statistics.median(times)
    algorithmic = float(model.latency_ms)
    return {
        "algorithmic_ms": algorithmic,
        "compute_per_hop_ms": 1000 * compute,
        "enc_dec_per_hop_ms": 1000 * statistics.median(fe_times),
        "total_ms": algorithmic + 1000 * compute,
        "hop_ms": 1000 * hop / sr,
        "rtf_streaming": compute / (hop / sr),
        "rtf_offline": statistics.median(off) / (xo.shape[-1] / sr),
        "hops_timed": hops,
        "warmup_hops": warmup,
        "offline_seconds": xo.shape[-1] / sr,
        "threads": threads,
        "device": str(p.device),
        "signal": "given audio (tiled)" if audio is not None else "pseudo-random noise",
    }
