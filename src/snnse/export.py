"""Export one streaming step of a model as a static ONNX graph, quantise it, and run it hop by hop.

The graph is ``model.step`` for one hop of one stream, with the whole state as an explicit input
and output, so that any runtime (onnxruntime, onnxruntime-web, ...) can stream it with a loop.
By default (``packed=True``) the state is one flat float32 tensor::

    inputs:  audio [1, hop] float32, state [1, S] float32
    outputs: enhanced [1, hop] float32, new_state [1, S] float32

All zeros is the initial state (checked at export). The graph unpacks ``state`` itself (one
``Split``, a ``Reshape`` per leaf that is not ``[1, n]``) and concatenates the new state at the
end; what lies where is the metadata's ``state_layout``. With ``packed=False`` the graph has
one input and output per state tensor instead (``state_<i>_<path>`` / ``new_state_<i>_<path>``,
the layout before packing). :class:`snnse.export_runtime.OnnxStreamer` runs either, reading
which from the metadata.

The state is the nested ``model.initial_state(1)`` flattened generically (:mod:`snnse.state`,
``torch.utils._pytree`` order); complex leaves (the S4D state, ``[1, H, M]`` complex64) travel as
float32: in a packed graph as ``[1, H, 2, M]`` (a real plane, then an imaginary plane: the S4D
update on planes needs no reordering inside the graph, about 70 µs less per step for
``spiking-s4-demo`` than interleaved pairs), in an unpacked graph as ``[1, H, M, 2]`` pairs, as
before. ``enhanced`` lags ``audio`` by ``delay_samples = frame_length − hop`` samples, like
:meth:`snnse.models.base.Enhancer.step`; :class:`OnnxStreamer` drops that warm-up and pads the
end exactly as :class:`snnse.streaming.Streamer` does.

The graph's ``metadata_props`` (strings) record ``sample_rate``, ``hop``, ``frame_length``,
``delay_samples``, ``latency_ms``, ``model``, ``model_kwargs``, ``snnse_version``, ``opset``,
``state_names``, ``state_complex``, ``state_format`` (``"packed"`` or ``"unpacked"``),
``state_size`` (``S``), ``state_layout`` (JSON: a list of ``{"name", "shape", "offset", "size",
"dtype"}`` in flat order, contiguous from offset 0; ``shape`` the float32 shape stored,
``offset``/``size`` in floats of the packed tensor, ``dtype`` the leaf's own, ``float32`` or
``complex64``, the latter with ``"complex_axis"``: −2 for planes, −1 for pairs; see
:func:`state_layout`) and ``graph_passes``. :func:`snnse.export_runtime.metadata_json` gives them
typed, ready to ship as JSON beside the graph; :func:`~snnse.export_runtime.unpack_state` and
:func:`~snnse.export_runtime.pack_state` convert a packed state from and to its leaves.

Only standard ONNX operators are used: spikes ``H(v − θ)`` become ``GreaterOrEqual`` + ``Cast``,
the S4D recurrence is real arithmetic on constants precomputed from the parameters, the STFT is
``DFT`` (:mod:`snnse.export_patches`). After tracing, the graph is made shorter without changing
a number: onnxruntime's basic, provider-independent optimisations (constant folding, redundant
nodes; the result is plain ONNX and is checked to be) and :mod:`snnse.export_simplify` (shape-only
chains, ``Where`` with a constant condition, ``Reshape``s that only add or drop leading 1s). Why: at batch 1 a step is mostly kernel dispatch
(``benchmarks/RESULTS.md``, "A faster ONNX step").

Modules: this one (the graph), :mod:`snnse.export_patches` (ONNX-friendly forms of the modules),
:mod:`snnse.export_simplify` (exact clean-up), :mod:`snnse.export_runtime` (metadata, sessions,
:class:`OnnxStreamer`) and :mod:`snnse.export_int8` (quantisation); all are re-exported here.

References:
    ONNX operators, https://onnx.ai/onnx/operators/ ; ONNX Runtime graph optimisations,
    https://onnxruntime.ai/docs/performance/model-optimizations/graph-optimizations.html ;
    ONNX Runtime quantisation (QDQ format),
    https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings

import torch
from torch import nn

from .atomic import atomic_path
from .export_int8 import calibration_inputs, quantize_int8
from .export_patches import onnx_friendly
from .export_runtime import OnnxStreamer, metadata, metadata_json, pack_state, session, unpack_state
from .state import StateSpec, flatten_state

DEFAULT_OPSET = 17


# ---- state flattening (the order is snnse.state's) ---------------------------------------------
def state_names(state) -> list[str]:
    """``state_<i>_<path>`` names of the flattened leaves (e.g. ``state_3_masker_blocks_0_1_0``)."""
    return [f"state_{i}_" + "_".join(str(k) for k in path) for i, path in enumerate(StateSpec(state).paths)]


def to_real(t: torch.Tensor) -> torch.Tensor:
    """Complex → ``[..., 2]`` real (as exported); real tensors unchanged."""
    return torch.view_as_real(t).clone() if t.is_complex() else t


def from_real(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.view_as_complex(t.contiguous()) if like.is_complex() else t


def initial_flat_state(model: nn.Module) -> tuple[list[torch.Tensor], object, list[str]]:
    """The exported initial state (float32, complex as real pairs), its spec and names.

    Raises:
        ValueError: The initial state is not all zeros (the ONNX contract).
    """
    state = model.initial_state(1, torch.device("cpu"), torch.float32)
    leaves, spec = flatten_state(state)
    if any(bool(t.abs().max() > 0) for t in leaves if t.numel()):
        raise ValueError("model.initial_state(1) is not all zeros; the exported graph assumes it is")
    return [to_real(t) for t in leaves], spec, state_names(state)


def state_layout(model: nn.Module, packed: bool = True) -> list[dict]:
    """Where each state leaf lies in the packed state, in flat order: ``{"name", "shape", "offset",
    "size", "dtype"}``, ``shape`` the float32 shape stored, ``dtype`` the leaf's own (``float32``,
    ``complex64``), ``offset``/``size`` in floats. A complex leaf ``[..., M]`` is stored as
    ``[..., 2, M]`` in a packed graph (real plane, imaginary plane; ``"complex_axis": -2``) and as
    ``[..., M, 2]`` in an unpacked one (pairs, ``"complex_axis": -1``)."""
    state = model.initial_state(1, torch.device("cpu"), torch.float32)
    out, offset = [], 0
    for name, leaf in zip(state_names(state), flatten_state(state)[0]):
        e = {"name": name, "shape": list(leaf.shape), "offset": offset, "size": 0,
             "dtype": str(leaf.dtype).replace("torch.", "")}
        if leaf.is_complex():
            e["shape"] = e["shape"][:-1] + [2, e["shape"][-1]] if packed else e["shape"] + [2]
            e["complex_axis"] = -2 if packed else -1
        e["size"] = int(torch.Size(e["shape"]).numel())
        out.append(e)
        offset += e["size"]
    return out


# ---- the exported step ---------------------------------------------------------------------------
class StepGraph(nn.Module):
    """``(audio [1, hop], *state) -> (enhanced [1, hop], *state)`` with flat real state tensors."""

    def __init__(self, model: nn.Module, spec):
        super().__init__()
        self.model, self.spec = model, spec

    def forward(self, audio, *flat):
        out, state = self.model.step(audio, self.spec.unflatten(flat))
        return (out, *flatten_state(state)[0])


class PackedStepGraph(StepGraph):
    """``(audio [1, hop], state [1, S]) -> (enhanced [1, hop], new_state [1, S])``: the state
    split into its leaves (``layout``) at the start and concatenated at the end."""

    def __init__(self, model: nn.Module, spec, layout: list[dict]):
        super().__init__(model, spec)
        self.layout = layout

    def forward(self, audio, state):
        parts = torch.split(state, [e["size"] for e in self.layout], 1)
        flat = [p if list(p.shape) == e["shape"] else p.reshape(e["shape"]) for p, e in zip(parts, self.layout)]
        out, *new = super().forward(audio, *flat)
        return out, torch.cat([t if t.dim() == 2 else t.reshape(1, -1) for t in new], 1)


def _ort_basic(src: str, dst: str) -> bool:
    """Write onnxruntime's basic optimisations of ``src`` (constant folding, redundant nodes:
    provider-independent rewrites into standard operators) to ``dst``; False if onnxruntime is
    missing or the result is not plain ONNX."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - onnxruntime is a dependency of the export extra
        return False
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = dst
    so.log_severity_level = 3
    ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    proto = onnx.load(dst)
    return all(n.domain in ("", "ai.onnx") for n in proto.graph.node)


def export_onnx(model: nn.Module, path: str | os.PathLike, opset: int = DEFAULT_OPSET, packed: bool = True,
                optimize: bool = True) -> dict:
    """Write one streaming step of ``model`` (float32, batch 1) to ``path`` as ONNX.

    Args:
        model: An :class:`~snnse.models.base.Enhancer` (``initial_state``, ``step``, ``hop``).
        path: Output ``.onnx`` file (written atomically).
        opset: ONNX opset (default 17: LayerNormalization and DFT are standard ops there).
        packed: One flat ``state [1, S]`` input and ``new_state`` output (default; about 1.3 µs
            per state tensor less per call in onnxruntime and one buffer for a caller to keep),
            or one input and output per state tensor (False, the earlier layout).
        optimize: Shorten the traced graph without changing its numbers (module docstring);
            False writes the exporter's graph as it is (for comparisons).

    Returns:
        The metadata written into the graph (strings).

    Shape:
        audio ``[1, hop]`` → enhanced ``[1, hop]``; ``state``/``new_state`` ``[1, S]`` (packed),
        else each state input and output has the shape of the matching leaf of
        ``model.initial_state(1)`` (complex leaves ``[..., 2]``).
    """
    import onnx

    from . import __version__
    from .export_simplify import simplify

    model = model.float().eval().cpu()
    flat, spec, names = initial_flat_state(model)
    layout = state_layout(model, packed)
    size = sum(e["size"] for e in layout)
    hop = int(model.hop)
    audio = torch.zeros(1, hop)
    meta = {
        "sample_rate": str(int(model.sample_rate)), "hop": str(hop),
        "frame_length": str(int(model.frame_length)),
        "delay_samples": str(int(model.frame_length) - hop),
        "latency_ms": f"{float(model.latency_ms):g}", "model": str(getattr(model, "name", None)),
        "model_kwargs": repr(getattr(model, "kwargs", {})), "snnse_version": __version__,
        "opset": str(opset), "state_names": ",".join(names),
        "state_complex": ",".join(str(int(e["dtype"].startswith("complex"))) for e in layout),
        "state_format": "packed" if packed else "unpacked", "state_size": str(size),
        "state_layout": json.dumps(layout, separators=(",", ":")),
    }
    if packed:
        graph, args = PackedStepGraph(model, spec, layout), (audio, torch.zeros(1, size))
        in_names, out_names = ["audio", "state"], ["enhanced", "new_state"]
    else:
        graph, args = StepGraph(model, spec), (audio, *flat)
        in_names, out_names = ["audio", *names], ["enhanced", *[f"new_{n}" for n in names]]
    with onnx_friendly(model, planes=packed), atomic_path(path) as tmp, warnings.catch_warnings(), \
            tempfile.TemporaryDirectory(prefix="snnse-onnx-") as work:
        # shape-dependent branches are constants for the one-hop graph (TracerWarning); the
        # TorchScript exporter is used on purpose (no onnxscript dependency; DeprecationWarning)
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, args, str(tmp), dynamo=False, opset_version=opset, input_names=in_names,
                          output_names=out_names, do_constant_folding=True)
        passes = []
        if optimize:
            basic = os.path.join(work, "basic.onnx")
            if _ort_basic(str(tmp), basic):
                proto, passes = onnx.load(basic), ["onnxruntime-basic"]
                del proto.opset_import[:]  # the optimiser lists every domain it knows; the graph uses ai.onnx only
                proto.opset_import.add(domain="", version=opset)
            else:  # pragma: no cover - onnxruntime missing
                proto = onnx.load(str(tmp))
            proto = simplify(proto)
            passes.append("simplify")
        else:
            proto = onnx.load(str(tmp))
        meta["graph_passes"] = ",".join(passes) or "none"
        del proto.metadata_props[:]
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        proto.producer_name = "snnse"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return meta


__all__ = ["export_onnx", "quantize_int8", "calibration_inputs", "OnnxStreamer", "session", "metadata",
           "metadata_json", "pack_state", "unpack_state", "state_layout", "flatten_state", "initial_flat_state",
           "onnx_friendly", "DEFAULT_OPSET"]
