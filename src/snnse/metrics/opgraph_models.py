"""Operation-graph builders of the bundled model families (named by their masker classes:
``op_graph = "snnse.metrics.opgraph_models:dpsnn_graph"``); the conventions are those of
:mod:`snnse.metrics.opcount`."""

from __future__ import annotations

from .opgraph import NeuronGroup, OpGraph, SynLayer, _neuron, _unit_event  # noqa: F401


def dpsnn_graph(m, g: OpGraph) -> list[SynLayer]:
    layers = [SynLayer("proj", m.proj.weight.numel(), "dense", "dense", "masker.proj", False,
                       "1×1 conv on the layer-norm output (dense)")]
    g.neurons.append(_neuron("proj", m.proj_unit, "masker.proj_unit"))
    g.record_keys.append("proj")
    event_of = {"proj": _unit_event(m.proj_unit)}
    prev = "proj"
    multi = len(m.blocks) > 1
    for i, blk in enumerate(m.blocks):
        s = str(i) if multi else ""
        scnn, srnn = f"scnn{s}", f"srnn{s}"
        event_of[scnn], event_of[srnn] = _unit_event(blk.scnn_unit), _unit_event(blk.srnn_unit)
        p = f"masker.blocks.{i}"
        layers += [
            SynLayer(scnn, blk.scnn.weight.numel(), prev, event_of[prev], f"{p}.scnn", False,
                     f"depthwise causal conv (H×K weights) on {prev} events"),
            SynLayer(f"srnn_in{s}", blk.srnn_in.weight.numel(), scnn, event_of[scnn], f"{p}.srnn_in", False,
                     f"Linear(H→B) on {scnn} spikes"),
            SynLayer(f"srnn_rec{s}", blk.srnn_rec.weight.numel(), srnn, event_of[srnn], f"{p}.srnn_rec", False,
                     f"recurrent Linear(B→B) on the previous {srnn} spikes"),
        ]
        g.neurons += [_neuron(scnn, blk.scnn_unit, f"{p}.scnn_unit"), _neuron(srnn, blk.srnn_unit, f"{p}.srnn_unit")]
        g.record_keys += [scnn, srnn]
        prev = srnn
    out_features = m.readout.weight.shape[0]
    for i, blk in enumerate(m.blocks):  # readout columns of block i are driven by its SRNN spikes
        srnn = f"srnn{i}" if multi else "srnn"
        layers.append(SynLayer(f"readout{i}" if multi else "readout", out_features * blk.channels, srnn,
                               event_of[srnn], "masker.readout", False, f"Linear(B→B) columns on {srnn} spikes"))
    g.neurons.append(_neuron("readout", m.readout_unit, "masker.readout_unit"))
    g.record_keys.append("readout")
    graded = "graded" if g.spiking else "dense"
    layers.append(SynLayer("mask", m.mask.weight.numel(), "readout", graded, "masker.mask", False,
                           "1×1 conv on the suppressed readout (sparse graded values)"))
    g.notes.append("proj threshold units are stateless comparators: not counted as NeuronOps")
    return layers


def s4_graph(m, g: OpGraph) -> list[SynLayer]:
    layers = [SynLayer("encoder", m.encoder.weight.numel(), "dense", "dense", "masker.encoder", False,
                       "Linear on the features (dense)")]
    for i, layer in enumerate(m.layers):
        key, p = f"s4_{i}", f"masker.layers.{i}"
        s4 = layer.s4
        ops = s4.d_model * (8 * (s4.d_state // 2) + 1)
        layers += [
            SynLayer(f"{key}.ssm", ops, "dense", "dense", f"{p}.s4", False,
                     "S4D recurrent step: 8 real MACs per channel per complex mode + D (dense input)"),
            SynLayer(f"{key}.emission", layer.emission.weight.numel(), "dense", "dense", f"{p}.emission", False,
                     "Linear on the S4D output (dense)"),
            SynLayer(f"{key}.residual", layer.emission.out_features, key, _unit_event(layer.unit), f"{p}.norm",
                     False, f"residual accumulation x + {key} (one identity synapse per channel)"),
        ]
        g.neurons.append(_neuron(key, layer.unit, f"{p}.unit"))
        g.record_keys.append(key)
    layers.append(SynLayer("decoder", m.decoder.weight.numel(), "dense", "dense", "masker.decoder", False,
                           "Linear on the layer-norm output (dense)"))
    g.notes.append("S4 layer inputs are LayerNorm(x + spikes): dense; only the residual add is spike-driven")
    g.notes.append("S4D states are counted as dense MACs (8 per complex mode + D), not as neurons")
    return layers
