"""The text rendering of a profile: :func:`format_table` gives the multi-section table that
``snnse profile`` prints (model, parameters, per-layer operations, accounting, latency, energy and
the metricsboard row).
"""

from __future__ import annotations


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
