"""snnse.state: one flat order of the streaming state, torch.utils._pytree's, for every family; the plans'
flat state (the compiled calls) is that order without the level control."""

import pytest
import torch
from torch.utils import _pytree as pytree

import snnse
from snnse import fast_step
from snnse.export import state_names
from snnse.state import StateSpec, flatten_state, unflatten_state

from .test_streaming import CONFIGS


def _random_state(model):
    torch.manual_seed(0)
    return pytree.tree_map(torch.randn_like, model.initial_state(2, None, torch.float64))


@pytest.mark.parametrize("key", list(CONFIGS))
def test_flat_order_is_pytree_order(key):
    name, kw = CONFIGS[key]
    model = snnse.get(name, **kw).double().eval()
    state = _random_state(model)
    leaves, spec = flatten_state(state)
    ref, ref_spec = pytree.tree_flatten(state)
    assert len(leaves) == len(ref) and all(a is b for a, b in zip(leaves, ref))
    # the ONNX graph's state names: the pytree key paths
    paths, _ = pytree.tree_flatten_with_path(state)
    assert state_names(state) == [f"state_{i}_" + "_".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in p)
                                  for i, (p, _) in enumerate(paths)]
    back = unflatten_state(leaves, spec)
    assert pytree.tree_structure(back) == ref_spec
    assert all(a is b for a, b in zip(pytree.tree_leaves(back), ref))
    assert StateSpec(back) == spec and spec.flatten(back) == leaves

    plan = fast_step.plan_for(model)
    if plan is not None:  # the compiled calls' flat state: the same order, without the level control
        core = {"frontend": state["frontend"], "masker": state["masker"]}
        flat = plan.flatten_state(state)
        assert len(flat) == len(pytree.tree_leaves(core))
        assert all(a is b for a, b in zip(flat, pytree.tree_leaves(core)))
        for level in (False, True):
            extra = [torch.zeros(2, 1), torch.ones(2, 1)] if level else []
            new = plan.unflatten_state([*flat, *extra], level)
            assert list(new) == (["level", "frontend", "masker"] if level else ["frontend", "masker"])
            assert pytree.tree_structure({k: new[k] for k in core}) == pytree.tree_structure(core)
            assert all(a is b for a, b in zip(pytree.tree_leaves({k: new[k] for k in core}), flat))


def test_spec_containers_and_errors():
    t = [torch.zeros(1) for _ in range(5)]
    state = {"b": (t[0], [t[1], ()], {}), 3: (t[2],), "a": {"x": t[3], "y": (t[4],)}}
    leaves, spec = flatten_state(state)
    assert leaves == pytree.tree_leaves(state) and len(spec) == 5
    assert spec.paths == [("b", 0), ("b", 1, 0), (3, 0), ("a", "x"), ("a", "y", 0)]
    assert repr(unflatten_state(leaves, spec)) == repr(state)
    # looked up by key: another key order or an extra key does not change the flat order
    assert spec.flatten({"level": 0, "a": state["a"], 3: state[3], "b": state["b"]}) == leaves
    for bad in ({"a": 1.0}, {"a": None}, {(1, 2): t[0]}, {"a": {t[0]}}):
        with pytest.raises(TypeError):
            flatten_state(bad)
