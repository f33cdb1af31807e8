"""Memory footprint of a model or of an exported step graph, against a microcontroller budget.

Three figures decide whether a streaming enhancer fits a device:

* **weights** (flash): bytes by dtype. For a PyTorch model: its parameters, and separately its
  buffers (e.g. the frozen Fourier matrices of the STFT front-end, which a microcontroller would
  replace by an FFT). For an ONNX graph: its initializers and constant tensors, i.e. what the
  file really stores (folded constants and int8 weights with their scales included).
* **state** (RAM, persistent): the tensors carried from one hop to the next.
* **peak activations** (RAM, transient): the largest total size of intermediate tensors alive at
  once while one step runs, from ONNX shape inference and a liveness scan (a tensor lives from
  the node that writes it to the last node that reads it; the new state counts until the end of
  the step; a packed state is read and written in place), the smaller of two valid schedules: the file's node order, and each node run just
  before its first consumer (depth-first from the outputs). It is an estimate for a runtime that
  frees each buffer after its last use and does not compute in place.

The default budget is a Cortex-M33-class part with 2 MB flash and 786 KB SRAM (e.g. STM32U575);
``KB``/``MB`` are binary (1024, 1024²).
"""

from __future__ import annotations

import os
import re

from torch import nn

DEFAULT_FLASH, DEFAULT_RAM = "2MB", "786KB"
_UNITS = {"": 1, "B": 1, "KB": 1024, "KIB": 1024, "MB": 1024**2, "MIB": 1024**2, "GB": 1024**3}


def parse_bytes(text: str | int) -> int:
    """``"2MB"`` → 2097152, ``"786KB"`` → 804864, ``"1000"`` → 1000 (binary units)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (e.g. 2MB, 786KB, 65536)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _by_dtype(tensors) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in tensors:
        key = str(t.dtype).replace("torch.", "")
        out[key] = out.get(key, 0) + t.numel() * t.element_size()
    return out


def model_footprint(model: nn.Module) -> dict:
    """Weights (parameters, buffers) by dtype and state bytes of a PyTorch model (batch 1).

    Returns:
        ``{"weights": {dtype: bytes}, "weight_bytes", "buffers": {dtype: bytes}, "buffer_bytes",
        "state_bytes", "n_state_tensors"}``.
    """
    from .state import flatten_state

    weights = _by_dtype(model.parameters())
    buffers = _by_dtype(model.buffers())
    state = flatten_state(model.initial_state(1))[0]
    return {"weights": weights, "weight_bytes": sum(weights.values()), "buffers": buffers,
            "buffer_bytes": sum(buffers.values()), "state_bytes": sum(t.numel() * t.element_size() for t in state),
            "n_state_tensors": len(state)}


def _elem_size(elem_type: int) -> int:
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize


def _tensor_bytes(t) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n * _elem_size(t.data_type)


def _peak(nodes, outputs, sizes: dict, skip: set) -> int:
    """Largest total size of live intermediate tensors when ``nodes`` run in this order."""
    last_use: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            last_use[name] = i
    for name in outputs:
        last_use[name] = len(nodes)
    live: dict[str, int] = {}
    peak = 0
    for i, node in enumerate(nodes):
        for name in node.output:
            if name not in skip:
                live[name] = sizes.get(name, 0)
        peak = max(peak, sum(live.values()))
        for name in [n for n in live if last_use.get(n, i) <= i]:
            del live[name]
    return peak


def _lazy_order(g) -> list:
    """The nodes in depth-first post-order from the graph outputs: each node runs just before its
    first consumer needs it (what a runtime's scheduler may do; tools such as the quantiser may
    hoist state-only computations of every layer to the start of the file's node order)."""
    producer = {o: n for n in g.node for o in n.output}
    order, done = [], set()
    for out in [o.name for o in g.output]:
        stack = [(producer.get(out), False)]
        while stack:
            node, expanded = stack.pop()
            if node is None or id(node) in done:
                continue
            if expanded:
                done.add(id(node))
                order.append(node)
                continue
            stack.append((node, True))
            for name in reversed(list(node.input)):
                p = producer.get(name)
                if p is not None and id(p) not in done:
                    stack.append((p, False))
    return order + [n for n in g.node if id(n) not in done]  # nodes no output depends on


def graph_footprint(path: str | os.PathLike) -> dict:
    """Weights by dtype, state bytes and peak activation bytes of one step of an exported graph.

    The state is every graph input after the first (``audio``): one ``[1, S]`` tensor in a
    packed graph, one per state tensor in an unpacked one; the same bytes either way.

    Returns:
        ``{"weights": {dtype: bytes}, "weight_bytes", "state_bytes", "io_bytes",
        "peak_activation_bytes", "file_bytes", "state_format", "n_state_tensors"}``
        (``state_format``: ``"packed"`` or ``"unpacked"``; ``n_state_tensors``: the model's state
        tensors, packed or not).
    """
    import onnx

    raw = onnx.load(str(path))
    meta = {p.key: p.value for p in raw.metadata_props}
    proto = onnx.shape_inference.infer_shapes(raw)
    g = proto.graph
    weights: dict[str, int] = {}

    def add(t) -> None:
        key = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name
        weights[key] = weights.get(key, 0) + _tensor_bytes(t)

    for t in g.initializer:
        add(t)
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    add(a.t)
    sizes = {}
    for vi in [*g.value_info, *g.output, *g.input]:
        tt = vi.type.tensor_type
        if tt.elem_type and all(d.HasField("dim_value") for d in tt.shape.dim):
            n = 1
            for d in tt.shape.dim:
                n *= d.dim_value
            sizes[vi.name] = n * _elem_size(tt.elem_type)
    inputs = [i.name for i in g.input]
    state_bytes = sum(sizes.get(n, 0) for n in inputs[1:])
    io_bytes = sizes.get(inputs[0], 0) + sizes.get(g.output[0].name, 0)
    consts = {t.name for t in g.initializer} | set(inputs)
    const_nodes = {o for n in g.node if n.op_type == "Constant" for o in n.output}
    # weights stored in int8 and dequantised on the fly are weights, not activations
    const_nodes |= {n.output[0] for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in consts}
    skip, outputs = consts | const_nodes, [o.name for o in g.output]
    if meta.get("state_format") == "packed":
        # a packed state is read in place (its Split/Reshape outputs are views of the input) and the
        # new state's leaves, counted as activations until the end, are what new_state holds: the
        # same bytes as the unpacked graph, where the state inputs are views and new leaves outputs
        views = set(inputs[1:])
        for n in g.node:
            if n.op_type in ("Split", "Slice", "Reshape", "Squeeze", "Unsqueeze", "Identity") and n.input[0] in views:
                views.update(n.output)
        skip = skip | views
        sizes = {**sizes, **{o: 0 for o in outputs[1:]}}
    peak = min(_peak(list(g.node), outputs, sizes, skip), _peak(_lazy_order(g), outputs, sizes, skip))
    names = meta.get("state_names")
    return {"weights": weights, "weight_bytes": sum(weights.values()), "state_bytes": state_bytes,
            "io_bytes": io_bytes, "peak_activation_bytes": peak, "file_bytes": os.path.getsize(path),
            "state_format": meta.get("state_format", "unpacked"),
            "n_state_tensors": len(names.split(",")) if names else len(inputs) - 1}


def verdict(fp: dict, flash: str | int = DEFAULT_FLASH, ram: str | int = DEFAULT_RAM) -> dict:
    """Compare a footprint with a flash/RAM budget.

    Flash holds the weights (graph weights, or model parameters + buffers); RAM holds the state,
    the input/output hop and the peak activations of one step.
    """
    flash_b, ram_b = parse_bytes(flash), parse_bytes(ram)
    need_flash = fp["weight_bytes"] + fp.get("buffer_bytes", 0)
    need_ram = fp["state_bytes"] + fp.get("io_bytes", 0) + fp.get("peak_activation_bytes", 0)
    return {"flash_budget": flash_b, "ram_budget": ram_b, "flash_needed": need_flash, "ram_needed": need_ram,
            "fits_flash": need_flash <= flash_b, "fits_ram": need_ram <= ram_b,
            "fits": need_flash <= flash_b and need_ram <= ram_b}


def _kb(n: int) -> str:
    return f"{n / 1024:,.1f} KB"


def format_footprint(fp: dict, v: dict | None = None) -> str:
    """Human-readable lines for :func:`graph_footprint` / :func:`model_footprint` (+ :func:`verdict`)."""
    lines = ["weights: " + _kb(fp["weight_bytes"]) + " (" + ", ".join(
        f"{k} {_kb(b)}" for k, b in sorted(fp["weights"].items())) + ")"]
    if fp.get("buffer_bytes"):
        lines.append(f"buffers: {_kb(fp['buffer_bytes'])} (frozen, e.g. Fourier matrices)")
    packed = " (packed into one tensor)" if fp.get("state_format") == "packed" else ""
    lines.append(f"state: {_kb(fp['state_bytes'])}" + (f", {fp['n_state_tensors']} tensors{packed}"
                                                       if "n_state_tensors" in fp else ""))
    if "peak_activation_bytes" in fp:
        lines.append(f"peak activations of one step: {_kb(fp['peak_activation_bytes'])} "
                     f"(+ {_kb(fp['io_bytes'])} input/output hop)")
    if v is not None:
        ok = {True: "fits", False: "DOES NOT FIT"}
        lines.append(f"budget: flash {_kb(v['flash_needed'])} of {_kb(v['flash_budget'])} ({ok[v['fits_flash']]}), "
                     f"RAM {_kb(v['ram_needed'])} of {_kb(v['ram_budget'])} ({ok[v['fits_ram']]})")
    return "\n".join(lines)


__all__ = ["model_footprint", "graph_footprint", "verdict", "format_footprint", "parse_bytes",
           "DEFAULT_FLASH", "DEFAULT_RAM"]
