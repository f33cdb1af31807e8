"""Efficiency profile of an snnse model, and the ``snnse profile`` subcommand.

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
  median over ≥ 200 hops after warm-up), real-time factors;
* energy estimate with 45 nm per-op energies (AC 0.9 pJ, MAC 4.6 pJ) and its ANN equivalent;
* the N-DNS metricsboard row (:func:`metricsboard`).

References:
    Timcheck et al., "The Intel neuromorphic DNS challenge", Neuromorphic Computing and
    Engineering 3(3) 034005, 2023.
    Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014.
    Sun & Bohté, "DPSNN", Neuromorphic Computing and Engineering 4(4) 044008, 2024.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from .opcount import (ACCOUNTINGS, E_AC_PJ, E_MAC_PJ, check_rates, count_ops, count_ops_dpsnn_paper, energy,
                      firing_rates, op_graph)
from snnse.atomic import atomic_write_text
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


QUALITY_METRICS = {"si_snr_db": "sisnr", "si_snri_db": "sisnri", "dnsmos_ovrl": "dnsmos_ovrl",
                   "dnsmos_sig": "dnsmos_sig", "dnsmos_bak": "dnsmos_bak"}


def metricsboard(report: dict, quality: Mapping | str | os.PathLike | None = None) -> dict:
    """The N-DNS metricsboard row of a profile.

    Args:
        report: from :func:`profile`.
        quality: an ``snnse evaluate`` summary (dict or path to ``summary.json``) whose
            ``summary["systems"]["enhanced"][metric]["mean"]`` gives sisnr, sisnri, dnsmos_ovrl,
            dnsmos_sig, dnsmos_bak; None leaves those fields null.

    Returns:
        dict: ``si_snr_db``, ``si_snri_db``, ``dnsmos_ovrl``, ``dnsmos_sig``, ``dnsmos_bak``,
        ``latency_enc_dec_ms``, ``latency_total_ms``, ``power_proxy_mops_per_s``, ``pdp_mops``,
        ``params``, ``size_kb``, ``neuromorphic`` (``"yes"``/``"no"``).

    Raises:
        ValueError: If ``quality`` is a path that cannot be read as JSON.

    References:
        Timcheck et al., "The Intel neuromorphic DNS challenge", NCE 3(3) 034005, 2023.
    """
    if quality is not None and not isinstance(quality, Mapping):
        try:
            quality = json.loads(Path(quality).read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{quality}: cannot read evaluation summary ({err})") from None
    enhanced = {}
    if isinstance(quality, Mapping):
        enhanced = (quality.get("systems") or {}).get("enhanced") or {}
    row = {}
    for field_name, metric in QUALITY_METRICS.items():
        entry = enhanced.get(metric)
        value = entry.get("mean") if isinstance(entry, Mapping) else None
        row[field_name] = float(value) if isinstance(value, (int, float)) else None
    lat, ops = report["latency"], report["ops"]
    row.update(
        latency_enc_dec_ms=lat.get("enc_dec_per_hop_ms"),
        latency_total_ms=lat.get("total_ms"),
        power_proxy_mops_per_s=ops["power_proxy_per_s"] / 1e6,
        pdp_mops=ops["pdp_ops"] / 1e6,
        params=report["parameters"]["trainable"],
        size_kb=report["parameters"]["size_kb"],
        neuromorphic="yes" if report["model"]["spiking"] else "no",
    )
    return row


# ---------------------------------------------------------------------------------------------
# Text table
# ---------------------------------------------------------------------------------------------
def _m(x) -> str:
    return "n/a" if x is None else f"{x / 1e6:.3f} M"


def _f(x, fmt=".3f", unit="") -> str:
    return "n/a" if x is None else f"{x:{fmt}}{unit}"


def format_table(report: dict) -> str:
    """A human-readable multi-section table of a :func:`profile` report."""
    md, par, fc, g, rt, ops, lat, en = (report[k] for k in ("model", "parameters", "flop_counter", "graph", "rates",
                                                             "ops", "latency", "energy"))
    nd = ops["ndns"]
    lines = [f"model: {md['name']}  ({md['source'] or 'in memory'})"
             + ("  [UNTRAINED: random weights]" if md["untrained"] else ""),
             f"  spiking: {md['spiking']}   {md['sample_rate']} Hz, window {md['frame_length']}, hop {md['hop']} "
             f"({md['steps_per_second']:g} steps/s)",
             f"parameters: {par['trainable']:,} trainable ({par['size_kb']:.1f} KB float32); buffers "
             f"{par['buffers']['count']:,} ({par['buffers']['size_kb']:.1f} KB)",
             f"rates: {rt['source']}" + (f" ({rt['files']} files, {rt['seconds']:.1f} s)" if rt["files"] else ""),
             "  firing rates: " + (", ".join(f"{k} {v:.3f}" for k, v in rt["values"].items()) or "none"),
             "", f"{'layer':<16}{'synapses':>10}  {'driver':<9}{'event':<7}{'rate':>7}{'ops/step':>13}"]
    for row in nd["layers"]:
        lines.append(f"{row['name']:<16}{row['synapses']:>10,}  {row['driver']:<9}{row['event']:<7}"
                     f"{row['rate']:>7.3f}{row['ops_per_step']:>13,.1f}")
    lines.append(f"{'total':<16}{g['synapses_per_step']:>10,}{'':>23}{nd['per_step']['synops']:>13,.1f}")
    lines.append("neurons: " + ", ".join(f"{n['name']} {n['kind']} {n['units']}"
                                         + ("" if n["counted"] else " (stateless, not counted)")
                                         for n in g["neurons"]))
    lines += ["", f"accounting: {ops['accounting']}",
              f"  SynOps/s            {_m(ops['synops_per_s'])}   (N-DNS spike-driven {_m(ops['spike_synops_per_s'])})",
              f"  NeuronOps/s         {_m(ops['neuronops_per_s'])}",
              f"  power proxy         {_m(ops['power_proxy_per_s'])} ops/s   (N-DNS without the front-end layers: "
              f"{_m(ops['power_proxy_network_per_s'])})",
              f"  PDP                 {_m(ops['pdp_ops'])} ops   (latency {ops['pdp_latency_ms']:.3f} ms, "
              f"{ops['pdp_latency']})",
              f"  dense MACs/s        {_m(ops['dense_macs_per_s'])} (graph)   {_m(fc['macs_per_s'])} "
              f"(FlopCounterMode, 1 s forward, {fc['macs_per_frame']:,.0f}/frame)"]
    if ops["dpsnn_paper"]:
        lines.append(f"  N-DNS for comparison: SynOps/s {_m(nd['synops_per_s'])}, power proxy "
                     f"{_m(nd['power_proxy_per_s'])}")
        lines.append(f"  note: {ops['dpsnn_paper']['note']}")
    lines += ["", f"latency: algorithmic {lat['algorithmic_ms']:.3f} ms + compute/hop "
                  f"{_f(lat['compute_per_hop_ms'], '.4f')} ms = total {_f(lat['total_ms'], '.3f')} ms   "
                  f"(enc+dec {_f(lat['enc_dec_per_hop_ms'], '.4f')} ms)",
              f"  RTF streaming {_f(lat['rtf_streaming'], '.4f')}   offline {_f(lat['rtf_offline'], '.4f')}"
              + (f"   ({lat['threads']} thread, {lat['device']}, median of {lat['hops_timed']} hops)"
                 if lat.get("threads") else ""),
              f"energy (AC {en['e_ac_pj']} pJ, MAC {en['e_mac_pj']} pJ): {en['power_uw']:.2f} µW (µJ per s of audio); "
              f"ANN equivalent {en['ann_equivalent_uw']:.2f} µW"]
    mb = report["metricsboard"]
    lines += ["", "metricsboard: " + ", ".join(f"{k}={_f(v, '.4g') if isinstance(v, float) else v}"
                                               for k, v in mb.items())]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def add_parser(subparsers) -> None:
    """Register ``snnse profile``."""
    p = subparsers.add_parser(
        "profile", help="efficiency profile: params, SynOps, power proxy, latency, energy",
        description="Profile a model: parameters and size, dense MACs (FlopCounterMode and the per-step "
                    "graph), firing rates on audio, N-DNS SynOps/NeuronOps/power proxy/PDP, latency and "
                    "real-time factor, energy estimate.")
    p.add_argument("--model", required=True, metavar="CKPT",
                   help="model checkpoint, a bundled model (dpsnn-demo, spiking-s4-demo), or a registered "
                        "model name (untrained weights) for a quick look")
    p.add_argument("--audio", metavar="DIR", help="audio folder (or file) to measure firing rates and time on")
    p.add_argument("--rates", metavar="K=V,...", help="event rates, e.g. proj=0.463,scnn=0.169,srnn=0.138,"
                                                      "readout=0.079 (override measured ones)")
    p.add_argument("--accounting", choices=ACCOUNTINGS, default="ndns",
                   help="ndns (default) or dpsnn-paper (the DPSNN authors' convention, for comparison)")
    p.add_argument("--eval", metavar="SUMMARY", help="summary.json of 'snnse evaluate' for the metricsboard")
    p.add_argument("--json", metavar="OUT.json", help="write the full report as JSON")
    p.add_argument("--yaml", metavar="OUT.yaml", help="write the N-DNS metricsboard entry (quality fields from --eval) as YAML")
    p.add_argument("--no-timing", action="store_true", help="skip latency/RTF measurement")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(func=run)


def parse_rates(text: str | None) -> dict[str, float]:
    """``"proj=0.463,scnn=0.169"`` → ``{"proj": 0.463, "scnn": 0.169}``.

    Raises:
        UsageError: On a malformed item or a value that is not a number.
    """
    from ..cliutil import UsageError

    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise UsageError(f"--rates expects key=number[,key=number...], got {item.strip()!r}")
    return out


def _load(spec: str, device: str):
    import snnse.models as models
    from ..cliutil import UsageError, load_model

    from .. import pretrained

    if Path(spec).exists() or pretrained.is_name(spec) or spec not in models.available():
        if not Path(spec).exists() and not pretrained.is_name(spec):
            raise UsageError(f"{spec}: model checkpoint not found, not a bundled model "
                             f"({', '.join(pretrained.CATALOGUE)}) and not a registered model name "
                             f"({', '.join(models.available())})")
        return load_model(spec, device), False
    try:
        model = models.get(spec).to(device)
    except (RuntimeError, AssertionError, ValueError) as err:
        raise UsageError(f"cannot build {spec!r} on device {device!r}: {err}") from None
    return model.eval(), True


def run(args) -> int:
    """``snnse profile``: print the table; write JSON/YAML atomically; exit 1 if audio files were skipped."""
    import yaml

    from ..audio import find_audio_files
    from ..cliutil import UsageError
    from ..report import eprint

    rates = parse_rates(args.rates)
    quality = None
    if args.eval:
        try:
            quality = json.loads(Path(args.eval).read_text())
        except (OSError, ValueError) as err:
            raise UsageError(f"{args.eval}: cannot read evaluation summary ({err})") from None
        if not isinstance(quality, dict):
            raise UsageError(f"{args.eval}: not an 'snnse evaluate' summary (expected a JSON object)")
    files = None
    if args.audio:
        if not Path(args.audio).exists():
            raise UsageError(f"{args.audio}: audio folder not found")
        files = find_audio_files([args.audio])
        if not files:
            raise UsageError(f"{args.audio}: no audio files (.wav/.flac) found")
    model, untrained = _load(args.model, args.device)
    if untrained:
        eprint(f"notice: {args.model!r} built with random weights (UNTRAINED); rates and quality are not "
               "those of a trained model")
    skipped: list[str] = []

    def on_error(msg: str) -> None:
        skipped.append(msg)
        eprint(f"error: {msg}")

    try:
        report = profile(model, files, rates, args.accounting, measure_time=not args.no_timing,
                         on_error=on_error, source=str(args.model), untrained=untrained)
    except (TypeError, ValueError) as err:
        raise UsageError(" ".join(str(err).split())) from None
    if quality is not None:
        report["metricsboard"] = metricsboard(report, quality)
        report["metricsboard_quality_source"] = str(args.eval)
    print(format_table(report))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if args.yaml:
        entry = {"entry": f"{report['model']['name']} ({report['model']['source']})",
                 "snnse_version": report["snnse_version"], **report["metricsboard"]}
        atomic_write_text(Path(args.yaml), yaml.safe_dump(entry, sort_keys=False, allow_unicode=True))
    if skipped:
        eprint(f"{len(skipped)} of {len(files)} audio files skipped")
    return 1 if skipped else 0


__all__ = ["profile", "parameter_stats", "flop_count", "measure_latency", "metricsboard", "format_table",
           "add_parser", "run", "parse_rates", "DEFINITIONS", "E_AC_PJ", "E_MAC_PJ", "op_graph", "firing_rates"]
