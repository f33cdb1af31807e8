"""Exact clean-up of an exported step graph: fewer nodes, the same numbers.

At batch 1 and one hop, onnxruntime spends most of a step dispatching kernels (about 0.3–1 µs
each on this project's CPUs, most of them on tensors of a few hundred floats), so every node
removed counts. The TorchScript exporter leaves kinds that compute nothing:

* **shape-only chains**: ``Unsqueeze``, ``Squeeze``, ``Reshape``, ``Flatten``, ``Identity``, a
  ``Concat`` of one input, a ``Split`` into one output, a ``Transpose`` that moves only
  dimensions of length 1, and a ``Gather`` of index 0 on an axis of length 1 (the ``[:, 0]`` of
  a one-frame sequence). With static shapes each chain becomes one ``Reshape`` to its final
  shape, or nothing where that is the shape it started from.
* **``Where`` with a constant condition that is all true or all false**: ``torch.lerp(a, b, w)``
  exports as ``Where(|w| < 0.5, a + w(b − a), b − (b − a)(1 − w))``; with the constant decays
  of the neurons one side is never taken. The branch that is taken is kept, so every element is
  computed exactly as before.
* **``Slice`` that copies what already exists**: a ``Slice`` of a whole tensor, or of exactly
  one input of the ``Concat`` it slices (the front-ends' ``cat([history, hop])`` frame buffer and
  overlap-add ``cat``, sliced again right after): consumers read that tensor, and the ``Concat``
  often goes too (``dpsnn-demo``: 101 → 90 nodes, about 78 → 71 µs per step alone); a one-element
  gain ``Reshape → Expand → Reshape`` becomes one ``Expand``.
* **``Reshape``s that only add or drop leading 1s** (``[1, 256]`` ↔ ``[1, 1, 256]``: the
  modules compute on ``[B, T, C]``, ``Gemm`` on ``[B, C]``): the operators after them run on the
  other rank where that changes no element and no order (elementwise operators, ``MatMul`` with
  a 2-D weight, ``LayerNormalization`` and reductions over axes counted from the end), see
  :func:`_drop_unit_reshapes`. ``dpsnn-demo`` 90 → 79 nodes (12 → 3 ``Reshape``s; about 74 → 66
  µs per step alone, and onnxruntime then fuses two ``Gemm``s with their ``Relu``/``Sigmoid``),
  ``spiking-s4-demo`` 158 → 147 (27 → 16 ``Reshape``s; about 3 % faster alone, within the
  noise of the interleaved benchmark).
* nodes nothing reads any more (after the above), and unused initializers.

Nothing else is rewritten: no arithmetic is reordered, so the simplified graph gives the same
bits as the exporter's where onnxruntime runs both as ONNX defines them (basic optimisations;
``tests/test_export.py`` checks it). With all its optimisations onnxruntime also fuses by shape
pattern: ``Add`` + ``LayerNormalization`` on a 3-D tensor become ``SkipLayerNormalization``, on
a 2-D one they stay two kernels, whose float rounding differs (``spiking-s4-demo``: at most 1.5e-8
apart, the same agreement with the PyTorch Streamer, 131 dB). onnxruntime's own graph optimiser
(``ORT_ENABLE_ALL``) removes none of these kinds.

Tried and left out (measured alone, one process, alternating, 3 × 3,000 hops): ``x·(1 − s)`` (the
reset of a fired neuron) as ``Where(b, 0, x)``, one operator less per spiking layer, was slower:
onnxruntime's ``Where`` costs about 1.2 µs on 256 floats, a ``Mul`` or ``Add`` 0.33 µs, a
``GreaterOrEqual`` + ``Cast`` 0.55 µs (``dpsnn-demo`` 64 → 70 µs); for the same reason the constant
``Where`` of a mixed ``lerp`` (:func:`_lerp_one_select`) stays (``a·m + b·(1 − m)``, exact, would
be three cheap operators for one ``Where``: no gain). Folding a constant ``Add`` after a ``Gemm``
into its bias would change the rounding (not done). A ``Reshape`` is an alias in onnxruntime
(about 0.2 µs, no copy, even on 16,384 floats).
"""

from __future__ import annotations

import numpy as np

SHAPE_OPS = {"Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity"}


def _static_shapes(model) -> dict[str, tuple[int, ...]]:
    import onnx

    g = onnx.shape_inference.infer_shapes(model).graph
    out = {}
    for vi in [*g.value_info, *g.input, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            out[vi.name] = tuple(d.dim_value for d in dims)
    return out


def _constants(g) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    out = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return out


def _is_view(node, shapes, consts, ins) -> bool:
    """Whether ``node`` only changes the shape of its first input (same elements, same order)."""
    if node.op_type in SHAPE_OPS:
        return True
    if node.op_type in ("Concat", "Split"):  # of one input, into one output
        return len(ins) == 1 or node.op_type == "Split"
    if node.op_type == "Transpose":  # that moves only dimensions of length 1
        shape = shapes.get(ins[0])
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        return shape is not None and perm is not None and (
            [d for d in perm if shape[d] != 1] == sorted(d for d in perm if shape[d] != 1))
    if node.op_type == "Gather":
        idx = consts.get(ins[1]) if len(ins) > 1 else None
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        shape = shapes.get(ins[0])
        return (idx is not None and idx.size == 1 and int(idx.reshape(-1)[0]) == 0 and shape is not None
                and shape[axis] == 1)
    return False


def simplify(model):
    """Return ``model`` (an ``onnx.ModelProto``, changed in place) with the nodes above removed.

    Needs static shapes for every tensor it touches (the step graph has them); a node whose
    shapes are unknown is left as it is.
    """
    from onnx import helper, numpy_helper

    g = model.graph
    shapes, consts = _static_shapes(model), _constants(g)
    outputs = {o.name for o in g.output}
    alias: dict[str, str] = {}  # tensor -> the tensor that holds its value (same shape)
    view_of: dict[str, str] = {}  # tensor -> a tensor with the same elements (any shape)
    nodes, n_shape = [], 0
    for node in g.node:
        ins = [alias.get(i, i) for i in node.input]
        del node.input[:]
        node.input.extend(ins)
        out = node.output[0] if node.output else None
        if node.op_type == "Where" and ins[0] in consts and out not in outputs:
            cond = consts[ins[0]]
            pick = ins[1] if cond.all() else ins[2] if not cond.any() else None
            if pick is not None and shapes.get(pick) is not None and shapes.get(pick) == shapes.get(out):
                alias[out] = pick
                continue
        if len(node.output) == 1 and ins and _is_view(node, shapes, consts, ins) and out in shapes:
            src = view_of.get(ins[0], ins[0])
            if src in shapes and int(np.prod(shapes[src])) == int(np.prod(shapes[out])):
                view_of[out] = src
                if shapes[src] == shapes[out] and out not in outputs:
                    alias[out] = src
                    continue
                target = f"{out}__shape"
                n_shape += 1
                g.initializer.append(numpy_helper.from_array(np.asarray(shapes[out], np.int64), target))
                nodes.append(helper.make_node("Reshape", [src, target], [out], name=f"{node.name}__reshape"))
                continue
        nodes.append(node)
    for o in g.output:  # a graph output that became an alias: copy it under its own name
        if o.name in alias:
            nodes.append(helper.make_node("Identity", [alias[o.name]], [o.name]))
    nodes = _compare_without_sub(nodes, consts)
    nodes = _lerp_one_select(nodes, consts, shapes, g)
    nodes = _forward_slices(nodes, consts, shapes, outputs)
    nodes = _expand_scalars(nodes, shapes, g)
    nodes = _drop_unit_reshapes(nodes, consts, shapes, g, outputs)
    del g.node[:]
    g.node.extend(_live(nodes, outputs))
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    used_vi = {o for n in g.node for o in n.output} | used
    keep_vi = [v for v in g.value_info if v.name in used_vi]
    del g.value_info[:]
    g.value_info.extend(keep_vi)
    return model


def _compare_without_sub(nodes, consts) -> list:
    """``Cmp(Sub(a, b), 0)`` → ``Cmp(a, b)`` for the four order comparisons: the rounded difference
    of two finite floats has the sign of the exact one and is zero only when they are equal
    (gradual underflow), so the result is the same (spikes ``H(v − θ)``)."""
    producer = {o: n for n in nodes for o in n.output}
    for node in nodes:
        if node.op_type in ("GreaterOrEqual", "Greater", "LessOrEqual", "Less") and len(node.input) == 2:
            zero, sub = consts.get(node.input[1]), producer.get(node.input[0])
            if (zero is not None and zero.size == 1 and zero.ndim == 0 and not zero.any()
                    and sub is not None and sub.op_type == "Sub"):
                a, b = sub.input
                del node.input[:]
                node.input.extend([a, b])
    return nodes


def _lerp_one_select(nodes, consts, shapes, g) -> list:
    """``Where(c, a + w·d, b − d·v)`` with constant ``c``, ``w``, ``v`` (how ``torch.lerp`` with
    constant weights exports when some weights are below 0.5 and some not) → ``Where(c, a, b) +
    d·k`` with ``k = where(c, w, −v)``: per element the same product and sum (``b − p`` is
    ``b + (−p)``), four operators instead of six. Only where ``a``, ``b`` and ``d`` have the
    output's shape."""
    from onnx import helper, numpy_helper

    producer = {o: n for n in nodes for o in n.output}

    def split_mul(name):  # Mul(const, x) or Mul(x, const) → (const value, x)
        n = producer.get(name)
        if n is None or n.op_type != "Mul":
            return None
        for i, j in ((0, 1), (1, 0)):
            if n.input[i] in consts and n.input[j] not in consts:
                return consts[n.input[i]], n.input[j]
        return None

    out = []
    for node in nodes:
        rewritten = None
        if node.op_type == "Where" and node.input[0] in consts:
            t, f = producer.get(node.input[1]), producer.get(node.input[2])
            if t is not None and f is not None and t.op_type == "Add" and f.op_type == "Sub":
                for i, j in ((0, 1), (1, 0)):
                    wd, fv = split_mul(t.input[j]), split_mul(f.input[1])
                    if wd is None or fv is None or wd[1] != fv[1]:
                        continue
                    a, b, d, (w, _), (v, _) = t.input[i], f.input[0], wd[1], wd, fv
                    shape = shapes.get(node.output[0])
                    if shape is None or any(shapes.get(x) != shape for x in (a, b, d)):
                        continue
                    k = np.where(consts[node.input[0]], w, -v).astype(np.float32)
                    if np.broadcast_shapes(k.shape, shape) != shape:
                        continue
                    o = node.output[0]
                    g.initializer.append(numpy_helper.from_array(k, f"{o}__k"))
                    rewritten = [helper.make_node("Where", [node.input[0], a, b], [f"{o}__base"], name=f"{node.name}__base"),
                                 helper.make_node("Mul", [d, f"{o}__k"], [f"{o}__dk"], name=f"{node.name}__mul"),
                                 helper.make_node("Add", [f"{o}__base", f"{o}__dk"], [o], name=f"{node.name}__add")]
                    break
        out.extend(rewritten or [node])
    return out


def _slice_ranges(node, consts, shape):
    """``{axis: (start, end)}`` of a ``Slice`` with constant starts/ends/axes and unit steps on a
    tensor of static ``shape`` (clamped as ONNX does), or None."""
    ins = list(node.input) + [""] * (5 - len(node.input))
    if any(i and i not in consts for i in ins[1:]) or shape is None:
        return None
    starts, ends = consts[ins[1]].reshape(-1), consts[ins[2]].reshape(-1)
    axes = consts[ins[3]].reshape(-1) if ins[3] else np.arange(len(starts))
    if ins[4] and not (consts[ins[4]] == 1).all():
        return None
    out = {}
    for a, b, e in zip(axes, starts, ends):
        a = int(a) % len(shape)
        n = shape[a]
        b, e = (int(v) + n if int(v) < 0 else int(v) for v in (b, e))
        out[a] = (min(max(b, 0), n), min(max(e, 0), n))
    return out


def _forward_slices(nodes, consts, shapes, outputs) -> list:
    """A ``Slice`` that takes a whole tensor, or exactly one input of the ``Concat`` it slices (the
    frame buffer ``cat([history, hop])`` and overlap-add ``cat`` of the front-ends, sliced again
    right after), is that tensor: consumers read it directly (the same elements; a ``Slice`` and
    often the ``Concat`` less, each a copy and a kernel call)."""
    producer = {o: n for n in nodes for o in n.output}
    alias: dict[str, str] = {}
    out = []
    for node in nodes:
        ins = [alias.get(i, i) for i in node.input]
        del node.input[:]
        node.input.extend(ins)
        o = node.output[0] if node.output else None
        if node.op_type == "Slice" and o not in outputs:
            src, shape = ins[0], shapes.get(ins[0])
            ranges = _slice_ranges(node, consts, shape)
            pick = None
            if ranges is not None:
                sliced = {a: r for a, r in ranges.items() if r != (0, shape[a])}
                cat = producer.get(src)
                if not sliced:
                    pick = src
                elif len(sliced) == 1 and cat is not None and cat.op_type == "Concat":
                    (a, (b, e)), = sliced.items()
                    cat_axis = next(x.i for x in cat.attribute if x.name == "axis") % len(shape)
                    offset = 0
                    for i in cat.input:
                        n = shapes.get(i, (None,) * len(shape))[cat_axis]
                        if n is None:
                            break
                        if a == cat_axis and (offset, offset + n) == (b, e):
                            pick = i
                            break
                        offset += n
            if pick is not None and shapes.get(pick) is not None and shapes.get(pick) == shapes.get(o):
                alias[o] = pick
                continue
        out.append(node)
    return out


def _expand_scalars(nodes, shapes, g) -> list:
    """``Reshape(Expand(Reshape(x)))`` with one element in ``x`` (a gain per hop spread over its
    samples) → ``Expand(x)`` to the final shape: a one-element tensor broadcasts the same way
    from any rank up to the target's."""
    from onnx import numpy_helper

    producer = {o: n for n in nodes for o in n.output}

    def scalar_source(name):
        while name in producer and producer[name].op_type == "Reshape":
            name = producer[name].input[0]
        return name if shapes.get(name) is not None and int(np.prod(shapes[name])) == 1 else None

    for node in nodes:
        if node.op_type == "Expand" and shapes.get(node.output[0]) is not None:
            src = scalar_source(node.input[0])
            if src is not None and len(shapes[src]) <= len(shapes[node.output[0]]):
                node.input[0] = src
        elif node.op_type == "Reshape" and node.input[0] in producer and producer[node.input[0]].op_type == "Expand":
            src, shape = scalar_source(producer[node.input[0]].input[0]), shapes.get(node.output[0])
            if src is not None and shape is not None and len(shapes[src]) <= len(shape):
                target = f"{node.output[0]}__expand"
                g.initializer.append(numpy_helper.from_array(np.asarray(shape, np.int64), target))
                node.op_type = "Expand"
                del node.input[:]
                node.input.extend([src, target])
    return nodes


_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Equal", "Greater", "GreaterOrEqual", "Less",
                "LessOrEqual", "And", "Or", "Xor", "Not", "Where", "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Neg",
                "Abs", "Sqrt", "Reciprocal", "Cast", "Clip", "Erf", "Floor", "Ceil", "Round", "Sign", "Identity"}
_REDUCE = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceSumSquare"}


def _strip(shape) -> tuple:
    shape = tuple(shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def _rank_free_shape(node, ins, cur, consts, g):
    """The output shape of ``node`` on inputs of shapes ``cur`` (some with leading 1s added or
    dropped) if it computes the same elements in the same order whatever those leading 1s, else
    None; axes counted from the front are rewritten as counted from the end (the same axes)."""

    op, shapes_in = node.op_type, [cur.get(i) for i in ins if i]
    if any(s is None for s in shapes_in) or len(node.output) != 1:
        return None
    if op in _ELEMENTWISE:  # numpy broadcasting aligns shapes on the right
        try:
            return tuple(np.broadcast_shapes(*shapes_in))
        except ValueError:
            return None
    if op == "MatMul" and len(shapes_in[0]) >= 2 and len(shapes_in[1]) == 2:
        return tuple(shapes_in[0][:-1]) + (shapes_in[1][-1],)
    attrs = {a.name: a for a in node.attribute}
    if op == "LayerNormalization":
        axis = attrs["axis"].i if "axis" in attrs else -1
        if axis >= 0:
            return None  # counted from the front: left as it is
        return shapes_in[0] if -axis <= len(shapes_in[0]) else None
    if op in _REDUCE:
        if "axes" in attrs:
            axes = list(attrs["axes"].ints)
        elif len(ins) > 1 and ins[1] in consts:
            axes = [int(a) for a in consts[ins[1]].reshape(-1)]
        else:
            return None
        if not axes or any(a >= 0 for a in axes) or any(-a > len(shapes_in[0]) for a in axes):
            return None
        keep = attrs["keepdims"].i if "keepdims" in attrs else 1
        n = len(shapes_in[0])
        red = {a % n for a in axes}
        return tuple(1 if d in red else s for d, s in enumerate(shapes_in[0]) if keep or d not in red)
    return None


def _negative_axes(nodes, shapes, consts, g) -> None:
    """Axes of ``LayerNormalization`` and reductions counted from the end (the same axes for the
    shapes the graph has; what :func:`_drop_unit_reshapes` needs)."""
    from onnx import numpy_helper

    for node in nodes:
        rank = len(shapes[node.input[0]]) if node.input and node.input[0] in shapes else None
        if rank is None:
            continue
        for a in node.attribute:
            if node.op_type == "LayerNormalization" and a.name == "axis" and a.i >= 0:
                a.i -= rank
            elif node.op_type in _REDUCE and a.name == "axes" and any(x >= 0 for x in a.ints):
                v = [x - rank if x >= 0 else x for x in a.ints]
                del a.ints[:]
                a.ints.extend(v)
        if node.op_type in _REDUCE and len(node.input) > 1 and node.input[1] in consts:
            axes = consts[node.input[1]].reshape(-1)
            if (axes >= 0).any():
                name = f"{node.output[0]}__axes"
                consts[name] = np.where(axes >= 0, axes - rank, axes).astype(np.int64)
                g.initializer.append(numpy_helper.from_array(consts[name], name))
                node.input[1] = name


def _drop_unit_reshapes(nodes, consts, shapes, g, outputs) -> list:
    """``Reshape``s that only add or drop leading 1s (``[1, 256]`` ↔ ``[1, 1, 256]``, what the
    exporter leaves between ``Gemm``s and the modules' ``[B, T, C]`` code) go: the nodes after
    them then run on the other rank where that changes no element and no order (elementwise
    operators, which broadcast from the right; ``MatMul`` with a 2-D weight; ``LayerNormalization``
    and reductions over axes counted from the end). Before any other consumer, and before a graph
    output, a ``Reshape`` restores the shape it had (none where a ``Reshape`` is there anyway)."""
    from onnx import helper, numpy_helper

    _negative_axes(nodes, shapes, consts, g)
    consts = {**{t.name: numpy_helper.to_array(t) for t in g.initializer if t.name not in consts}, **consts}
    shapes = {**{k: tuple(v.shape) for k, v in consts.items()}, **shapes}
    cur = dict(shapes)  # tensor -> its shape now
    rename: dict[str, str] = {}
    restored: dict[str, str] = {}
    out = []

    def restore(name, orig_name):  # a tensor in the shape its consumer was written for
        if cur.get(name) == shapes.get(orig_name):
            return name
        if orig_name not in restored:
            target = f"{orig_name}__rank"
            g.initializer.append(numpy_helper.from_array(np.asarray(shapes[orig_name], np.int64), f"{target}_shape"))
            out.append(helper.make_node("Reshape", [name, f"{target}_shape"], [target], name=f"{target}_reshape"))
            cur[target] = shapes[orig_name]
            restored[orig_name] = target
        return restored[orig_name]

    for node in nodes:
        orig_ins = list(node.input)
        ins = [rename.get(i, i) for i in orig_ins]
        changed = any(i and cur.get(i) != shapes.get(o) for i, o in zip(ins, orig_ins))
        o = node.output[0] if node.output else None
        if node.op_type == "Reshape" and o in shapes and cur.get(ins[0]) is not None:
            if _strip(cur[ins[0]]) == _strip(shapes[o]) and o not in outputs:
                rename[o] = ins[0]
                continue
            if ins[1] in consts and 0 not in consts[ins[1]].reshape(-1).tolist():
                node.input[0] = ins[0]  # any input shape with the same elements
                out.append(node)
                continue
        if changed:
            new = _rank_free_shape(node, ins, cur, consts, g)
            if new is not None and o in shapes and _strip(new) == _strip(shapes[o]):
                del node.input[:]
                node.input.extend(ins)
                cur[o] = new
                if new != shapes[o] and o in outputs:
                    node.output[0] = f"{o}__rank_free"
                    cur[node.output[0]] = new
                    out.append(node)
                    name = f"{o}__rank_shape"
                    g.initializer.append(numpy_helper.from_array(np.asarray(shapes[o], np.int64), name))
                    out.append(helper.make_node("Reshape", [node.output[0], name], [o], name=f"{o}__reshape"))
                    cur[o] = shapes[o]
                    continue
                out.append(node)
                continue
            ins = [restore(i, oi) if i and cur.get(i) != shapes.get(oi) else i for i, oi in zip(ins, orig_ins)]
        del node.input[:]
        node.input.extend(ins)
        out.append(node)
    changed = {t for t, s in cur.items() if shapes.get(t) != s}
    keep = [v for v in g.value_info if v.name not in changed]
    del g.value_info[:]
    g.value_info.extend(keep)
    return out


def _live(nodes, outputs: set) -> list:
    """``nodes`` (in order) that some graph output depends on."""
    needed, keep = set(outputs), []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    return keep[::-1]


__all__ = ["simplify"]
