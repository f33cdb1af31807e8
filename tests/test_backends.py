"""The one backend switch (:mod:`snnse.backends`): one vocabulary for training and streaming, the
deprecated variables as aliases, and the same paths as the per-area switches it replaces."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import snnse
from snnse import backends, fast_cpp, fast_step, fused, kernels
from snnse.neurons import PLIF

from .test_fast_step import SMALL

OLD = ("SNNSE_NEURON_BACKEND", "SNNSE_FAST_STEP")


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    """No backend variable set, no warning remembered; the switches as they were afterwards."""
    for var in (backends.ENV, *OLD):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(backends, "_warned", set())
    saved = backends._choice, fused._backend, fast_step._enabled, fast_step._compiled
    yield
    backends._choice, fused._backend, fast_step._enabled, fast_step._compiled = saved
    fast_step._bump()


def areas():
    """(training backend in the old names, streaming plans on, compiled steps allowed)."""
    return fused.get_backend(), fast_step.enabled(), fast_step.compiled()


CPP = "cpp" if kernels.load() is not None else "fused"  # "cpp" falls back to the PyTorch loops
EXPECTED = {"reference": ("autograd", False, True),  # compiled allowed, plans off: as SNNSE_FAST_STEP=0 was
            "torch": ("fused", True, False),
            "cpp": (CPP, True, True), "auto": (CPP, True, True)}


@pytest.mark.parametrize("name", backends.CHOICES)
def test_set_backend_selects_the_tier_for_training_and_streaming(name):
    snnse.set_backend(name)
    assert snnse.backend() == ("cpp" if name == "auto" else name)
    assert areas() == EXPECTED[name]
    snnse.set_backend(None)  # back to the environment: the default
    assert snnse.backend() == "cpp" and areas() == EXPECTED["auto"]


@pytest.mark.parametrize("name", backends.CHOICES)
def test_the_environment_variable_selects_the_tier(name, monkeypatch):
    monkeypatch.setenv("SNNSE_BACKEND", name.upper())  # case does not matter
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new variable does not warn
        assert backends.tier("training") == backends.tier("streaming") == snnse.backend()
        snnse.set_backend(None)  # streaming re-reads the environment here (at import otherwise)
        assert areas() == EXPECTED[name]


def test_use_backend_restores_and_wins_over_the_per_area_switches():
    fast_step.set_compiled(False)
    fused.set_backend("autograd")
    with snnse.use_backend("torch"):
        assert areas() == EXPECTED["torch"]
        fused.set_backend("reference")  # the per-area switches still work, in both vocabularies
        assert fused.get_backend() == "autograd"
    assert areas() == EXPECTED["auto"]  # the last call wins


@pytest.mark.parametrize("where", ["set_backend", "env"])
def test_invalid_names_are_errors_naming_the_choices(where, monkeypatch):
    if where == "env":
        monkeypatch.setenv("SNNSE_BACKEND", "fused")  # an old name is not a tier
        for call in (lambda: backends.tier("training"), lambda: backends.tier("streaming"), fused.get_backend):
            with pytest.raises(ValueError, match="SNNSE_BACKEND='fused'; choose from reference, torch, cpp, auto"):
                call()
    else:
        with pytest.raises(ValueError, match="'numba'; choose from reference, torch, cpp, auto"):
            snnse.set_backend("numba")
    assert backends._choice is None


@pytest.mark.parametrize("value, tier", [("autograd", "reference"), ("fused", "torch"), ("cpp", "cpp"),
                                         ("auto", "cpp")])
def test_snnse_neuron_backend_is_a_deprecated_alias_for_training(value, tier, monkeypatch):
    monkeypatch.setenv("SNNSE_NEURON_BACKEND", value)
    with pytest.warns(DeprecationWarning, match=f"SNNSE_NEURON_BACKEND is deprecated, use SNNSE_BACKEND.*{tier}"):
        assert backends.tier("training") == tier
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per value: no second warning
        assert fused.get_backend() == EXPECTED[tier][0]
    assert backends.tier("streaming") == "cpp"  # training only, as before


@pytest.mark.parametrize("value, tier", [("0", "reference"), ("off", "reference"), ("torch", "torch"),
                                         ("auto", "cpp"), ("1", "cpp")])
def test_snnse_fast_step_is_a_deprecated_alias_for_streaming(value, tier, monkeypatch):
    monkeypatch.setenv("SNNSE_FAST_STEP", value)
    with pytest.warns(DeprecationWarning, match=f"SNNSE_FAST_STEP is deprecated, use SNNSE_BACKEND.*{tier}"):
        assert backends.tier("streaming") == tier
    assert backends.tier("training") == "cpp"  # streaming only, as before


@pytest.mark.parametrize("old", OLD)
def test_the_new_variable_wins_over_the_old_ones(old, monkeypatch):
    monkeypatch.setenv(old, "0" if old == "SNNSE_FAST_STEP" else "autograd")
    monkeypatch.setenv("SNNSE_BACKEND", "torch")
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated.*ignored: SNNSE_BACKEND=torch is set and wins"):
        assert backends.tier("training") == backends.tier("streaming") == "torch"


def test_snnse_neuron_backend_invalid_value(monkeypatch):
    monkeypatch.setenv("SNNSE_NEURON_BACKEND", "bogus")
    with pytest.raises(ValueError, match="SNNSE_NEURON_BACKEND='bogus'.*SNNSE_BACKEND.*autograd, fused, cpp, auto"):
        fused.get_backend()


def test_each_tier_runs_its_path_and_the_outputs_agree(data_dir):
    """Training: the same spikes from every tier (the fused loops are bit-identical to the oracle).
    Streaming: reference builds no plan, torch the PyTorch plan, cpp the compiled one where it builds;
    switching at run time rebuilds the cached plan."""
    from .helpers import make_fire, speech

    torch.manual_seed(0)
    unit, x = PLIF(6).double(), torch.randn(2, 9, 6, dtype=torch.float64) + 0.5
    spikes = {}
    for name in backends.BACKENDS:
        with snnse.use_backend(name):
            spikes[name] = unit(x)[0]
    assert torch.equal(spikes["reference"], spikes["torch"]) and torch.equal(spikes["reference"], spikes["cpp"])

    model = make_fire(snnse.get("dpsnn", **SMALL["dpsnn"])).double().eval()
    chunk = speech(data_dir, 0.5)[None, :model.hop].double()
    state = model.initial_state(1, dtype=torch.float64)
    builds = fast_cpp.load() is not None
    outs = {}
    for name in ("cpp", "reference", "torch", "cpp"):
        snnse.set_backend(name)
        with torch.no_grad():
            outs[name] = model.step(chunk, state)[0]
            plan = fast_step.plan_for(model)
        if name == "reference":
            assert plan is None
        else:
            assert plan is not None and (plan.ops is not None) == (name == "cpp" and builds)
    for name in ("torch", "cpp"):
        assert (outs[name] - outs["reference"]).abs().max() < 1e-10


SCRIPT = r"""
import json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from snnse import fast_step
print(json.dumps({"enabled": fast_step.enabled(), "compiled": fast_step.compiled(),
                  "warnings": [str(w.message) for w in caught if w.category is DeprecationWarning]}))
"""


@pytest.mark.parametrize("env, expected, warned", [
    ({"SNNSE_BACKEND": "torch"}, (True, False), None),
    ({"SNNSE_BACKEND": "reference"}, (False, True), None),
    ({"SNNSE_FAST_STEP": "0"}, (False, True), "SNNSE_FAST_STEP is deprecated"),
    ({"SNNSE_FAST_STEP": "0", "SNNSE_BACKEND": "auto"}, (True, True), "SNNSE_BACKEND=auto is set and wins"),
])
def test_streaming_reads_the_environment_at_import(env, expected, warned):
    base = {k: v for k, v in os.environ.items() if k not in (backends.ENV, *OLD)}
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                         env={**base, **env, "OMP_NUM_THREADS": "1"}, cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.splitlines()[-1])
    assert (report["enabled"], report["compiled"]) == expected
    if warned is None:
        assert report["warnings"] == []
    else:
        assert len(report["warnings"]) == 1 and warned in report["warnings"][0]
