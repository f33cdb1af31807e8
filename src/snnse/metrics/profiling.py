"""Efficiency profile of an snnse model: :func:`profile` and the figures it is built from.

:func:`profile` gathers every figure, each defined in :data:`DEFINITIONS` (copied into the
report):

* parameters (trainable), model size (float32), buffers, per-module breakdown;
* dense MACs per second of audio measured by :class:`torch.utils.flop_counter.FlopCounterMode`
  on the offline forward of 1 s of audio (it counts matmul/conv/bmm only: not FFTs, elementwise
  ops, layer norms or the depthwise SCNN, which DPSNN computes as an elementwise product and sum),
  next to the analytical per-step graph of :func:`snnse.metrics.opcount.op_graph`;
* per-layer firing rates measured on real audio (or given), SynOps/s, NeuronOps/s, power proxy,
  PDP (N-DNS definitions, :mod:`snnse.metrics.opcount`), or the DPSNN paper's accounting;
* latency: algorithmic (the window) + measured compute per hop (streaming on one CPU thread,
  median over ≥ 200 hops after warm-up), real-time factors (:mod:`snnse.metrics.timing`);
* energy estimate with 45 nm per-op energies (AC 0.9 pJ, MAC 4.6 pJ) and its ANN equivalent;
* the N-DNS metricsboard row (:func:`metricsboard`, :mod:`snnse.metrics.board`).

The text table of a report is in :mod:`snnse.metrics.profile_table`, the ``snnse profile``
subcommand in :mod:`snnse.metrics.efficiency_cli` (both re-exported by
:mod:`snnse.metrics.efficiency`).

References:
    Timcheck et al., "The Intel neuromorphic DNS challenge", Neuromorphic Computing and
    Engineering 3(3) 034005, 2023.
    Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014.
    Sun & Bohté, "DPSNN", Neuromorphic Computing and Engineering 4(4) 044008, 2024.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from .board import metricsboard
from .dpsnn_paper import count_ops_dpsnn_paper
from .opcount import ACCOUNTINGS, check_rates, count_ops, energy, firing_rates, op_graph
from .timing import measure_latency
from snnse.jsonsafe import json_safe

FORMAT = "snnse.profile"
FORMAT_VERSION = 1
BYTES_PER_PARAM = 4  # float32

DEFINITIONS = {
    "parameters": "trainable parameters (requires_grad); buffers (e.g. frozen STFT weights) listed separately",
    "size_kb": "trainable parameters × 4 bytes (float32) / 1024",
    "flop_counter_macs_per_s": "FlopCounterMode FLOPs / 2 on the offline forward of 1 s of audio; counts "
                               "matmul/conv/bmm only (no FFTs, elementwise ops, norms; DPSNN's depthwise SCNN is an "
                               "elementwise product and is not seen)",
    "dense_macs_per_s": "analytical: every synapse of the per-step graph used once per step (rate 1) × steps/s",
    "firing_rate": "fraction of nonzero entries of a recorded layer output over all frames and channels "
                   "(files weighted by their frame counts)",
    "synops_per_s": "N-DNS: Σ_layers (event rate of the layer's input) × (its synapse count) × steps/s; dense "
                    "inputs have rate 1",
    "neuronops_per_s": "N-DNS: stateful neuron units updated per step × steps/s (stateless thresholds excluded)",
    "power_proxy_per_s": "N-DNS: SynOps/s + 10 × NeuronOps/s",
    "power_proxy_network_per_s": "power proxy without the front-end's analysis/synthesis layers (encoder/decoder "
                                 "or STFT/iSTFT), to compare with figures that leave them out",
    "pdp_ops": "N-DNS power-delay product: power proxy (ops/s) × total latency (s)",
    "latency_algorithmic_ms": "the analysis window (frame_length / sample_rate)",
    "latency_compute_per_hop_ms": "median wall time of one hop through the Streamer on one CPU thread after warm-up",
    "latency_enc_dec_ms": "median wall time of the front-end alone (analysis + synthesis) per hop",
    "latency_total_ms": "algorithmic + compute per hop",
    "rtf_streaming": "compute per hop / hop duration",
    "rtf_offline": "offline forward wall time / audio duration (one thread)",
    "energy_uw": "µJ per second of audio = spike SynOps/s × 0.9 pJ + (graded + dense) MACs/s × 4.6 pJ",
}


# ---------------------------------------------------------------------------------------------
# Individual figures
# ---------------------------------------------------------------------------------------------
def parameter_stats(model: torch.nn.Module) -> dict:
    """Trainable parameters, float32 size, buffers and a per-module breakdown.

    Args:
        model: any module.

    Returns:
        dict with ``trainable``, ``total``, ``size_kb`` (KB = 1024 bytes), ``by_module``
        (module path → parameters it owns directly, ``"(root)"`` for the top module) and
        ``buffers`` (``count``, ``size_kb`` at their own element sizes, ``items`` name → numel).
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    by_module = {}
    for name, mod in model.named_modules():
        n = sum(p.numel() for p in mod.parameters(recurse=False))
        if n:
            by_module[name or "(root)"] = n
    bufs = dict(model.named_buffers())
    return {
        "trainable": trainable,
        "total": sum(p.numel() for p in model.parameters()),
        "size_kb": trainable * BYTES_PER_PARAM / 1024,
        "by_module": by_module,
        "buffers": {
            "count": sum(b.numel() for b in bufs.values()),
            "size_kb": sum(b.numel() * b.element_size() for b in bufs.values()) / 1024,
            "items": {k: b.numel() for k, b in bufs.items()},
        },
    }


def flop_count(model, seconds: float = 1.0) -> dict:
    """Dense MACs of the offline forward of ``seconds`` of audio, by FlopCounterMode.

    Args:
        model: an Enhancer.
        seconds: audio duration (zeros; the count does not depend on the values).

    Returns:
        dict with ``flops``, ``macs`` (FLOPs / 2), ``frames`` the forward processed,
        ``macs_per_frame``, ``macs_per_s`` and ``by_op`` (aten op → FLOPs).
    """
    p = next(model.parameters())
    n = int(round(seconds * model.sample_rate))
    x = torch.zeros(1, n, device=p.device, dtype=p.dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    flops = int(fc.get_total_flops())
    frames = int(model.frontend.n_frames(n))
    return {
        "method": "torch.utils.flop_counter.FlopCounterMode on model.forward",
        "audio_seconds": seconds,
        "frames": frames,
        "flops": flops,
        "macs": flops / 2,
        "macs_per_frame": flops / 2 / frames,
        "macs_per_s": flops / 2 / seconds,
        "by_op": {str(k): int(v) for k, v in fc.get_flop_counts().get("Global", {}).items()},
        "note": "counts matmul/conv/bmm only: FFTs, elementwise ops, layer norms and DPSNN's depthwise SCNN "
                "(an elementwise product) are not seen; the offline forward pads frame_length − hop samples",
    }


# ---------------------------------------------------------------------------------------------
# The profile
# ---------------------------------------------------------------------------------------------
def profile(model, audio: Sequence | None = None, rates: Mapping[str, float] | None = None,
            accounting: str = "ndns", measure_time: bool = True, on_error: Callable[[str], None] | None = None,
            source: str | None = None, untrained: bool = False, hops: int = 200) -> dict:
    """All efficiency figures of a model (see :data:`DEFINITIONS`).

    Args:
        model: an Enhancer (DPSNN or Spiking-S4, spiking or ANN twin).
        audio: files, folders or arrays to measure firing rates on (and to time on); None: no
            measurement.
        rates: explicit event rates per record key; they override measured ones. With neither
            audio nor rates, event-driven layers are counted at rate 1 (an upper bound, noted).
        accounting: ``"ndns"`` (default) or ``"dpsnn-paper"`` (the DPSNN authors' convention,
            defects included, to compare with the paper; DPSNN only). The N-DNS counts are in the
            report either way.
        measure_time: measure latency and real-time factors (else those fields are None and the
            PDP uses the algorithmic latency).
        on_error: called with a message for each unreadable audio file (skipped); None raises.
        source: where the model came from (shown in the report). untrained: weights are random.
        hops: hops timed for the latency (≥ 200 for figures you report).

    Returns:
        A JSON-serialisable dict (sections ``model``, ``parameters``, ``flop_counter``, ``graph``,
        ``rates``, ``ops``, ``latency``, ``energy``, ``metricsboard``, ``definitions``).

    Raises:
        ValueError: On an unknown accounting, bad rates or no usable audio.
        TypeError: For a model type without an operation graph, or ``dpsnn-paper`` on a
            non-DPSNN model.

    References:
        Timcheck et al., "The Intel neuromorphic DNS challenge", NCE 3(3) 034005, 2023.
    """
    if accounting not in ACCOUNTINGS:
        raise ValueError(f"unknown accounting {accounting!r}; choose from {', '.join(ACCOUNTINGS)}")
    model.eval()
    graph = op_graph(model)
    given = check_rates(graph, rates or {})
    stats: dict = {}
    measured = firing_rates(model, audio, on_error=on_error, stats=stats) if audio is not None else {}
    values = {**measured, **given}
    missing = [k for k in graph.record_keys if k not in values]
    if measured and given:
        how = "measured on audio, overridden by given rates for " + ", ".join(sorted(given))
    elif measured:
        how = "measured on audio"
    elif given:
        how = "given"
    else:
        how = "none given or measured: event-driven layers counted at rate 1 (upper bound)"
    if not measured and not given:
        values = {k: 1.0 for k in graph.record_keys}
    ndns = count_ops(graph, values)
    paper = count_ops_dpsnn_paper(model, values) if accounting == "dpsnn-paper" else None
    head = paper if paper is not None else ndns

    timing = None
    if measure_time:
        sig = None
        for item in audio or []:  # first readable input, at the model rate
            try:
                sig = _first_signal(model, item)
                break
            except Exception:  # noqa: BLE001 - unreadable files were already reported
                continue
        timing = measure_latency(model, sig, hops=hops)
    alg = float(model.latency_ms)
    total_ms = timing["total_ms"] if timing else alg
    latency = timing or {"algorithmic_ms": alg, "compute_per_hop_ms": None, "enc_dec_per_hop_ms": None,
                         "total_ms": None, "hop_ms": 1000 * model.hop / model.sample_rate, "rtf_streaming": None,
                         "rtf_offline": None}

    ops = {
        "accounting": accounting,
        "synops_per_s": head["synops_per_s"],
        "neuronops_per_s": head["neuronops_per_s"],
        "power_proxy_per_s": head["power_proxy_per_s"],
        "pdp_ops": head["power_proxy_per_s"] * total_ms / 1000,
        "pdp_latency_ms": total_ms,
        "pdp_latency": "total (algorithmic + measured compute)" if timing else "algorithmic only (not timed)",
        "spike_synops_per_s": ndns["spike_synops_per_s"],
        "dense_macs_per_s": ndns["dense_macs_per_s"],
        "power_proxy_network_per_s": ndns["power_proxy_network_per_s"],
        "ndns": ndns,
        "dpsnn_paper": paper,
    }
    from .. import __version__

    report = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "snnse_version": __version__,
        "model": {
            "name": getattr(model, "name", None), "source": source, "untrained": bool(untrained),
            "kwargs": json_safe(getattr(model, "kwargs", {})), "spiking": bool(model.spiking),
            "sample_rate": int(model.sample_rate), "hop": int(model.hop), "frame_length": int(model.frame_length),
            "steps_per_second": graph.steps_per_second,
        },
        "parameters": parameter_stats(model),
        "flop_counter": flop_count(model),
        "graph": graph.to_dict(),
        "rates": {"source": how, "values": values, "measured": measured, "given": given,
                  "not_measured": missing if (measured or given) else [],
                  "files": stats.get("files", 0), "frames": stats.get("frames", 0),
                  "seconds": stats.get("seconds", 0.0), "skipped": stats.get("skipped", [])},
        "ops": ops,
        "latency": latency,
        "energy": energy(ndns),
        "definitions": dict(DEFINITIONS),
    }
    report["metricsboard"] = metricsboard(report)
    return report


def _first_signal(model, item) -> torch.Tensor:
    from ..audio import find_audio_files, read_audio, resample

    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if path.is_dir():
            path = find_audio_files([path])[0]
        x, sr = read_audio(path)
        return torch.from_numpy(resample(x, sr, model.sample_rate)[0].copy())
    t = torch.as_tensor(item)
    return t.reshape(-1) if t.dim() == 1 else t[0]
