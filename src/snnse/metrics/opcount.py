"""Operation graphs, firing rates and N-DNS operation counts for snnse models.

The counting follows the Intel Neuromorphic DNS Challenge (N-DNS) definitions, per streaming step
(one hop):

* **SynOps** = Σ over synaptic layers of (event rate of the layer's input) × (its synapse count),
  where the synapse count is the number of weights the layer uses per step and the event rate is
  the fraction of nonzero entries of its input. Dense inputs (audio, layer-norm outputs, S4
  outputs, masked features) have rate 1.
* **NeuronOps** = stateful neuron units updated per step (PLIF, LIF, ALIF, leaky integrators).
* **Power proxy** = SynOps/s + 10 × NeuronOps/s; **PDP** = power proxy × latency (in ops).

:func:`op_graph` (:mod:`snnse.metrics.opgraph`, builders in :mod:`snnse.metrics.opgraph_models`)
builds the per-step graph by walking the model's modules (front-end and masker);
:func:`firing_rates` measures the event rates on real audio; :func:`count_ops` combines both.
:func:`count_ops_dpsnn_paper` (:mod:`snnse.metrics.dpsnn_paper`) reproduces the accounting of the DPSNN authors (their
"61.5 M SynOps/s"), defects included, for comparison with the paper only.

Conventions (decisions this module makes and documents):

* A layer's ``event`` kind is ``"spike"`` when its input is the binary output of a spiking unit
  (one accumulate per event, 0.9 pJ AC), ``"graded"`` when its input is sparse but graded (DPSNN's
  suppressed readout: one multiply-accumulate per nonzero input, 4.6 pJ MAC) and ``"dense"``
  otherwise (rate 1, MACs). ANN twins (no spiking unit) are assumed to run on dense hardware:
  every layer is dense there, whatever the activation sparsity.
* Stateless threshold units (DPSNN's ``proj`` Heaviside, a comparator on the synaptic output) and
  ANN activations are not NeuronOps; they are listed in the graph with ``counted=False``.
* Elementwise work (layer norms, the sigmoid/ReLU mask, STFT magnitudes, the mask product) is
  not counted as SynOps (except in the DPSNN paper accounting, which counts layer norm and
  sigmoid).
* S4D (Spiking-S4) runs in its recurrent form when streaming: per channel and complex mode
  ``x ← dA·x + dB·u`` (complex×complex 4 real MACs + complex×real 2) and ``Re(C·x)`` (2) = 8 real
  MACs, plus ``D·u`` per channel: ``H·(8·N/2 + 1)`` dense operations per step, reported as the
  layer's "synapses". The S4D state is not counted as neurons (its update is those MACs).
* In Spiking-S4 the spikes go into ``LayerNorm(x + s)``: the next S4D and every emission layer
  see dense input. The only spike-driven operation is the residual accumulation ``x + s`` (one
  identity synapse per channel), which gets the spike rate.

References:
    Timcheck et al., "The Intel neuromorphic DNS challenge", Neuromorphic Computing and
    Engineering 3(3) 034005, 2023 (SynOps, NeuronOps, power proxy, PDP).
    Sun & Bohté, "DPSNN: spiking neural network for low-latency streaming speech enhancement",
    Neuromorphic Computing and Engineering 4(4) 044008, 2024.
    Du, Liu, Chua, "Spiking structured state space model for monaural speech enhancement",
    ICASSP 2024.
    Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm: 32-bit float MAC 4.6 pJ,
    add 0.9 pJ).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import torch

#: Energy per operation in 45 nm CMOS (32-bit float), picojoules.
E_MAC_PJ = 4.6
E_AC_PJ = 0.9
#: N-DNS weight of a neuron update relative to a synaptic operation in the power proxy.
NEURON_OP_WEIGHT = 10
ACCOUNTINGS = ("ndns", "dpsnn-paper")

from .opgraph import NeuronGroup, OpGraph, SynLayer, _frontend_layers, _neuron, _unit_event, op_graph  # noqa: F401,E402


# ---------------------------------------------------------------------------------------------
# Firing rates
# ---------------------------------------------------------------------------------------------
def _as_batch(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2 or t.shape[-1] == 0:
        raise ValueError(f"expected audio [T] or [channels, T], got shape {tuple(t.shape)}")
    return t


def firing_rates(model, inputs: Iterable, on_error: Callable[[str], None] | None = None,
                 stats: dict | None = None) -> dict[str, float]:
    """Measure per-layer event rates (fraction of nonzero entries) on audio.

    Each input runs through the offline forward with ``return_aux=True`` (equal to streaming with
    :class:`~snnse.streaming.Streamer` ``record=True``; the spike trains are identical). For every
    record key the nonzero entries are summed over all inputs and divided by all entries, i.e. the
    per-file rates averaged with weights equal to their frame counts. Channels of multichannel
    files are separate streams.

    Args:
        model: an Enhancer.
        inputs: audio file paths (read and resampled to the model rate) and/or arrays/tensors
            ``[T]`` or ``[channels, T]`` already at the model rate. A folder path is expanded to
            its audio files.
        on_error: called with a one-line message for each unreadable file, which is then skipped;
            None raises :class:`~snnse.audio.AudioError` instead.
        stats: if a dict, receives ``files``, ``frames``, ``seconds`` and ``skipped``.

    Returns:
        ``{record key: rate}``.

    Raises:
        ValueError: If no input could be used.

    References:
        Timcheck et al., "The Intel neuromorphic DNS challenge", NCE 3(3) 034005, 2023.
    """
    from ..audio import AudioError, find_audio_files, read_audio, resample

    p = next(model.parameters())
    sr = int(model.sample_rate)
    nonzero: dict[str, int] = {}
    total: dict[str, int] = {}
    used, frames, samples, skipped = 0, 0, 0, []
    items: list = []
    for item in inputs:
        if isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
            items += find_audio_files([item])
        else:
            items.append(item)
    with torch.inference_mode():
        for item in items:
            if isinstance(item, (str, os.PathLike)):
                try:
                    x, file_sr = read_audio(item)
                except AudioError as err:
                    if on_error is None:
                        raise
                    on_error(str(err))
                    skipped.append(str(item))
                    continue
                x = resample(x, file_sr, sr)
            else:
                x = item
            x = _as_batch(x).to(p.device, p.dtype)
            _, aux = model(x, return_aux=True)
            for key, act in aux["record"].items():
                nonzero[key] = nonzero.get(key, 0) + int(torch.count_nonzero(act))
                total[key] = total.get(key, 0) + act.numel()
            used += 1
            frames += int(aux["mask"].shape[0] * aux["mask"].shape[1])
            samples += int(x.shape[0] * x.shape[1])
    if not used:
        raise ValueError("no usable audio to measure firing rates on")
    if stats is not None:
        stats.update(files=used, frames=frames, seconds=samples / sr, skipped=skipped)
    return {k: nonzero[k] / total[k] for k in sorted(total)}


# ---------------------------------------------------------------------------------------------
# Operation counts
# ---------------------------------------------------------------------------------------------
def check_rates(graph: OpGraph, rates: Mapping[str, float]) -> dict[str, float]:
    """Validate rates: known record keys, finite values in [0, 1].

    Raises:
        ValueError: On an unknown key or a value outside [0, 1].
    """
    out = {}
    for key, value in rates.items():
        if key not in graph.record_keys:
            raise ValueError(f"unknown rate key {key!r}; this model records: {', '.join(graph.record_keys)}")
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"rate {key}={value} is not in [0, 1]")
        out[key] = value
    return out


def _layer_rate(layer: SynLayer, rates: Mapping[str, float]) -> float:
    if layer.event == "dense":
        return 1.0
    try:
        return float(rates[layer.driver])
    except KeyError:
        raise ValueError(f"no event rate for {layer.driver!r} (drives {layer.name}); measure on audio or "
                         "give it in rates") from None


def count_ops(graph: OpGraph, rates: Mapping[str, float]) -> dict:
    """N-DNS operation counts per step and per second (see the module docstring).

    Args:
        graph: from :func:`op_graph`.
        rates: event rate per record key (at least :meth:`OpGraph.event_keys`).

    Returns:
        A dict with ``layers`` (name, synapses, driver, event, rate, ops per step), per-step totals
        (``synops``, split into ``spike``/``graded``/``dense``, ``frontend``, ``neuronops``,
        ``power_proxy``, ``dense_macs``) and the same per second (``*_per_s``).

    Raises:
        ValueError: If a needed rate is missing or out of range.

    References:
        Timcheck et al., "The Intel neuromorphic DNS challenge", NCE 3(3) 034005, 2023.
    """
    rates = check_rates(graph, rates)
    rows, split, frontend = [], {"spike": 0.0, "graded": 0.0, "dense": 0.0}, 0.0
    for layer in graph.layers:
        r = _layer_rate(layer, rates)
        ops = r * layer.synapses
        split[layer.event] += ops
        frontend += ops if layer.frontend else 0.0
        rows.append({"name": layer.name, "synapses": layer.synapses, "driver": layer.driver, "event": layer.event,
                     "rate": r, "ops_per_step": ops})
    synops = split["spike"] + split["graded"] + split["dense"]
    neuronops = graph.neuron_units
    per_step = {
        "synops": synops,
        "spike_synops": split["spike"],
        "graded_synops": split["graded"],
        "dense_synops": split["dense"],
        "frontend_synops": frontend,
        "neuronops": neuronops,
        "power_proxy": synops + NEURON_OP_WEIGHT * neuronops,
        "power_proxy_network": synops - frontend + NEURON_OP_WEIGHT * neuronops,
        "dense_macs": graph.dense_macs_per_step,
    }
    sps = graph.steps_per_second
    return {
        "accounting": "ndns",
        "steps_per_second": sps,
        "layers": rows,
        "per_step": per_step,
        **{f"{k}_per_s": v * sps for k, v in per_step.items()},
    }


def energy(ops: Mapping, e_ac_pj: float = E_AC_PJ, e_mac_pj: float = E_MAC_PJ) -> dict:
    """Synaptic energy estimate per second of audio (µJ/s = µW) from :func:`count_ops` output.

    Binary-spike-driven SynOps cost one accumulate (``e_ac_pj``); graded events and dense layers
    one multiply-accumulate (``e_mac_pj``). The ANN-equivalent energy counts every synapse as a
    MAC at rate 1. Neuron updates, normalisation and nonlinearities are not included.

    Args:
        ops: the dict returned by :func:`count_ops`.
        e_ac_pj: energy of an accumulate in pJ (45 nm: 0.9).
        e_mac_pj: energy of a multiply-accumulate in pJ (45 nm: 4.6).

    Returns:
        dict with the per-op energies, ``ac_ops_per_s``, ``mac_ops_per_s``, ``power_uw`` and
        ``ann_equivalent_uw``.

    References:
        Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014.
    """
    ac = ops["spike_synops_per_s"]
    mac = ops["graded_synops_per_s"] + ops["dense_synops_per_s"]
    return {
        "e_ac_pj": e_ac_pj,
        "e_mac_pj": e_mac_pj,
        "ac_ops_per_s": ac,
        "mac_ops_per_s": mac,
        "power_uw": (ac * e_ac_pj + mac * e_mac_pj) * 1e-6,
        "ann_equivalent_uw": ops["dense_macs_per_s"] * e_mac_pj * 1e-6,
        "definition": "µJ per second of audio (= µW) = spike SynOps/s × E_AC + (graded + dense) MACs/s × E_MAC; "
                      "ANN equivalent = all synapses/s × E_MAC; neuron updates and elementwise ops excluded",
    }


__all__ = ["SynLayer", "NeuronGroup", "OpGraph", "op_graph", "firing_rates", "check_rates", "count_ops",
           "energy", "E_MAC_PJ", "E_AC_PJ", "NEURON_OP_WEIGHT", "ACCOUNTINGS"]
