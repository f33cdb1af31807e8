"""The DPSNN authors' "effective SynOps" accounting, for comparison with their paper only
(``snnse profile --accounting dpsnn-paper``); :func:`snnse.metrics.opcount.count_ops` is the
N-DNS accounting."""

from __future__ import annotations

from typing import Mapping

from .opcount import NEURON_OP_WEIGHT, check_rates, op_graph


def count_ops_dpsnn_paper(model, rates: Mapping[str, float]) -> dict:
    """The DPSNN authors' "effective SynOps" accounting (reproduces the published 61.5 M/s).

    Per step: event ops = proj rate × SCNN weights + SCNN rate × (SRNN input + SRNN recurrent
    weights) + SRNN rate × readout weights + readout rate × mask weights; fixed ops = encoder
    weights + layer norm ``6N + 5`` + proj weights + sigmoid ``4N`` + decoder weights; plus
    ``10 × X·(H + B) + B`` neuron ops. The total, divided by the hop duration, is what the paper
    reports as "SynOps/s"; by the N-DNS definitions it is a power proxy. Defects kept on purpose:
    the recurrent weights are weighted by the SCNN rate instead of the SRNN's own, and layer-norm
    and sigmoid elementwise operations are counted as synaptic operations. For blocks after the
    first (X > 1) the SCNN input rate is the previous SRNN's. Use :func:`count_ops` for the
    N-DNS accounting.

    Args:
        model: a DPSNN Enhancer (spiking or ANN twin; conv or STFT front-end).
        rates: rates for ``proj``, ``scnn``, ``srnn``, ``readout`` (suffixed per block if X > 1).

    Returns:
        dict with per-step ``event_ops``, ``fixed_ops``, ``neuron_ops`` (10× weighted as the paper
        does), ``total`` and per-second ``synops_per_s`` (event + fixed) and
        ``power_proxy_per_s`` (the paper's "SynOps/s").

    Raises:
        TypeError: If the model is not a DPSNN. ValueError: On missing rates.

    References:
        Sun & Bohté, "DPSNN", Neuromorphic Computing and Engineering 4(4) 044008, 2024.
    """
    from ..models.dpsnn import DPSNNMasker

    m = getattr(model, "masker", None)
    if not isinstance(m, DPSNNMasker):
        raise TypeError("the dpsnn-paper accounting applies to DPSNN models only")
    graph = op_graph(model)
    rates = check_rates(graph, rates)
    need = [k for k in graph.record_keys if k not in rates]
    if need:
        raise ValueError(f"the dpsnn-paper accounting needs rates for: {', '.join(need)}")
    multi = len(m.blocks) > 1
    event, prev = 0.0, "proj"
    for i, blk in enumerate(m.blocks):
        s = str(i) if multi else ""
        event += rates[prev] * blk.scnn.weight.numel()
        event += rates[f"scnn{s}"] * (blk.srnn_in.weight.numel() + blk.srnn_rec.weight.numel())  # sic
        event += rates[f"srnn{s}"] * m.readout.weight.shape[0] * blk.channels
        prev = f"srnn{s}"
    event += rates["readout"] * m.mask.weight.numel()
    n = m.norm.normalized_shape[0]
    frontend = sum(layer.synapses for layer in graph.layers if layer.frontend)
    fixed = frontend + (6 * n + 5) + m.proj.weight.numel() + 4 * n
    neurons = sum(b.scnn_unit.size + b.srnn_unit.size for b in m.blocks) + m.readout_unit.size
    total = event + fixed + NEURON_OP_WEIGHT * neurons
    sps = graph.steps_per_second
    return {
        "accounting": "dpsnn-paper",
        "steps_per_second": sps,
        "per_step": {"event_ops": event, "fixed_ops": fixed, "neuron_ops": neurons,
                     "layernorm_ops": 6 * n + 5, "sigmoid_ops": 4 * n, "total": total},
        "synops_per_s": (event + fixed) * sps,
        "neuronops_per_s": neurons * sps,
        "power_proxy_per_s": total * sps,
        "note": ("DPSNN authors' accounting, reported in the paper as 'SynOps/s' (61.5 M at rates "
                 "0.463/0.169/0.138/0.079): it is a power proxy (includes 10× neuron ops), weights the SRNN "
                 "recurrent synapses by the SCNN rate and counts layer-norm/sigmoid elementwise ops"),
    }
