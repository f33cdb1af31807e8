"""Exact clean-up of an exported step graph: fewer nodes, the same numbers.

At batch 1 and one hop, onnxruntime spends most of a step dispatching kernels (about 0.3–1 µs
each on this project's CPUs, most of them on tensors of a few hundred floats), so every node
removed counts. The TorchScript exporter leaves kinds that compute nothing:

* **shape-only chains**: ``Unsqueeze``, ``Squeeze``, ``Reshape``, ``Flatten``, ``Identity``, a
  ``Concat`` of one input and a ``Gather`` of index 0 on an axis of length 1 (the ``[:, 0]`` of
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
* nodes nothing reads any more (after the above), and unused initializers.

Nothing else is rewritten: no arithmetic is reordered, so the simplified graph gives the same
bits as the exporter's (``tests/test_export.py`` checks it). onnxruntime's own graph optimiser
(``ORT_ENABLE_ALL``) removes none of these kinds.
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
    if node.op_type == "Concat":
        return len(ins) == 1
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


def _live(nodes, outputs: set) -> list:
    """``nodes`` (in order) that some graph output depends on."""
    needed, keep = set(outputs), []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    return keep[::-1]


__all__ = ["simplify"]
