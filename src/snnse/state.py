"""A model's streaming state as a flat list of tensors: one order for everything that needs it.

A state (``Enhancer.initial_state``, ``Enhancer.step``) is a nest of dicts, tuples and lists
with tensors at the leaves. Whatever handles it as a flat list uses this module: the ONNX step
graph's state inputs and outputs and their names (:mod:`snnse.export`), the compiled hops'
calls and :class:`torch.classes.snnse_step.Hop` (:mod:`snnse.fast_dpsnn`, :mod:`snnse.fast_s4`,
:mod:`snnse.streaming`) and the footprint (:mod:`snnse.footprint`). The order is that of
``torch.utils._pytree``: dict values in insertion order, tuples and lists in order, depth first
(``tests/test_state.py`` checks it against pytree for every model family).

A :class:`StateSpec` describes the structure. Made once from an example state, it flattens and
rebuilds states of that structure with one generated expression each, as fast as code written by
hand for one structure and many times faster than going through pytree, which is what the per-hop
calls of the compiled steps need (measured: ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from typing import Sequence

import torch


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and type(x) is not tuple and hasattr(type(x), "_fields")


class StateSpec:
    """The structure of a state: its containers, dict keys and where the tensors sit.

    Args:
        example: A state (dicts with ``str`` or ``int`` keys, tuples, named tuples and lists of
            tensors).

    Attributes:
        paths: Each leaf's path from the root, in flat order: dict keys and sequence indices.

    Raises:
        TypeError: A leaf is not a tensor, or a container or key of another kind.
    """

    def __init__(self, example):
        self.paths: list[tuple] = []
        self._types: list[type] = []  # named tuple classes the rebuild expression refers to
        self._tree = self._describe(example, ())
        self._flatten = self._unflatten = None

    def _describe(self, x, path: tuple) -> str:
        """The rebuild expression of ``x`` (leaves as ``r[i]``); records the leaves' paths."""
        if isinstance(x, torch.Tensor):
            self.paths.append(path)
            return f"r[{len(self.paths) - 1}]"
        if type(x) is dict:
            for k in x:
                if type(k) not in (str, int):
                    raise TypeError(f"state dict keys must be str or int, not {type(k).__name__}")
            return "{" + ", ".join([f"{k!r}: {self._describe(v, (*path, k))}" for k, v in x.items()]) + "}"
        if type(x) in (tuple, list) or _is_namedtuple(x):
            items = ", ".join([self._describe(v, (*path, i)) for i, v in enumerate(x)])
            if type(x) is list:
                return f"[{items}]"
            if type(x) is tuple:
                return f"({items},)" if len(x) == 1 else f"({items})"
            self._types.append(type(x))
            return f"T[{len(self._types) - 1}]({items})"
        raise TypeError(f"model state must be a nest of tensors (dicts, tuples, lists), not {type(x).__name__}")

    def __getstate__(self) -> dict:  # picklable: the generated functions are made again on first use
        return {**self.__dict__, "_flatten": None, "_unflatten": None}

    def __len__(self) -> int:
        return len(self.paths)

    def __eq__(self, other) -> bool:
        return isinstance(other, StateSpec) and (self._tree, self._types) == (other._tree, other._types)

    def __hash__(self) -> int:
        return hash(self._tree)

    def __repr__(self) -> str:
        return f"StateSpec({self._tree})"

    def flatten(self, state) -> list[torch.Tensor]:
        """The leaves of ``state``, a state of this structure, in flat order.

        The leaves are looked up by their paths: keys of ``state``'s dicts that the example did
        not have (e.g. ``"level"`` when the spec was made without it) are ignored, and the order
        does not depend on the dicts' insertion order.
        """
        if self._flatten is None:
            body = ", ".join("s" + "".join(f"[{k!r}]" for k in p) for p in self.paths)
            self._flatten = eval(f"lambda s: [{body}]", {})  # noqa: S307 - built from int/str reprs only
        return self._flatten(state)

    def unflatten(self, leaves: Sequence[torch.Tensor]):
        """The state of this structure whose leaves are ``leaves`` (in flat order; extra ones ignored)."""
        if self._unflatten is None:
            self._unflatten = eval(f"lambda r: {self._tree}", {"T": tuple(self._types)})  # noqa: S307
        return self._unflatten(leaves)


def flatten_state(state) -> tuple[list[torch.Tensor], StateSpec]:
    """The leaves of ``state`` in flat order and the :class:`StateSpec` to rebuild it."""
    spec = StateSpec(state)
    return spec.flatten(state), spec


def unflatten_state(leaves: Sequence[torch.Tensor], spec: StateSpec):
    """The state of structure ``spec`` whose leaves are ``leaves`` (see :func:`flatten_state`)."""
    return spec.unflatten(leaves)


__all__ = ["StateSpec", "flatten_state", "unflatten_state"]
