"""The fused time loops (snnse.fused, snnse.kernels) against the per-step autograd oracle.

Every comparison runs the same module under ``backend("autograd")`` (one autograd graph per
step, the reference) and under ``"fused"`` / ``"cpp"``, over a sequence cut into chunks that
carry the state (the gradient flows through the carried state), and compares spikes (exactly),
final states (exactly) and the gradients with respect to the input, every parameter and the
initial state.
"""

import itertools
import math

import pytest
import torch

import snnse
from snnse import fused, kernels
from snnse.neurons import ALIF, LIF, PLIF, ATan, LeakyIntegrator, MultiGaussian, Sigmoid, Surrogate, backend

from .helpers import make_fire, speech

CHUNKS = [9, 1, 17, 2, 11]  # 40 steps; a one-frame chunk goes through step(), as in streaming


def _cpp_or_skip():
    ops = kernels.load()
    if ops is None:
        pytest.skip(f"C++ kernel not buildable here ({kernels._state['error']}); the fallback is tested below")
    return ops


def _backends():
    return ["fused", "cpp"]


class Triangle(Surrogate):
    """A user-defined surrogate: the fused backward must use any ``derivative``."""

    def derivative(self, x):
        return (1 - x.abs()).clamp(min=0)


def _initial_state(n_state, B, C, dtype, g):
    st = [torch.rand(B, C, generator=g, dtype=dtype) * 0.8 for _ in range(n_state)]
    if n_state == 3:  # ALIF: (v, eta, previous spikes)
        st[2] = (torch.rand(B, C, generator=g, dtype=dtype) < 0.3).to(dtype)
    return [s.requires_grad_(True) for s in st]


def _run(make_unit, x, be, n_state, recurrent=False, chunks=CHUNKS):
    """Chunked run under backend ``be``; returns outputs, final state and all gradients."""
    g = torch.Generator().manual_seed(7)
    unit = make_unit().to(x.dtype)
    B, T, C = x.shape
    x = x.clone().requires_grad_(True)
    state0 = _initial_state(n_state, B, C, x.dtype, g)
    extra = []
    if recurrent:
        W = (torch.randn(C, C, generator=g, dtype=x.dtype) * 0.6).requires_grad_(True)
        y0 = (torch.rand(B, C, generator=g, dtype=x.dtype) < 0.3).to(x.dtype).requires_grad_(True)
        extra = [W, y0]
    state, y, outs = tuple(state0), extra[1] if recurrent else None, []
    with backend(be):
        for xc in torch.split(x, chunks, 1):
            if recurrent:
                s, state, y = unit.recurrent(xc, extra[0], state, y)
            else:
                s, state = unit(xc, state)
            outs.append(s)
        if be != "autograd" and chunks[0] > 1:  # the fused path really ran
            assert "Function" in type(outs[0].grad_fn).__name__, type(outs[0].grad_fn).__name__
    out = torch.cat(outs, 1)
    w = torch.randn(out.shape, generator=g, dtype=x.dtype)
    loss = (out * w).sum() + sum((s * (i + 1.5)).sum() for i, s in enumerate(state))
    if recurrent:
        loss = loss + (y * 0.7).sum()
    inputs = [x, *state0, *unit.parameters(), *extra]
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return out.detach(), [s.detach() for s in state], grads


def _compare(make_unit, x, be, n_state, recurrent=False, rate=(0.02, 0.7)):
    ref = _run(make_unit, x, "autograd", n_state, recurrent)
    got = _run(make_unit, x, be, n_state, recurrent)
    assert torch.equal(ref[0], got[0]), "spikes differ"
    if rate is not None:
        assert rate[0] < ref[0].mean() < rate[1], f"firing rate {ref[0].mean():.3f}: the test must make neurons fire"
    for a, b in zip(ref[1], got[1]):
        assert torch.equal(a, b), "final state differs"
    tol = 1e-10 if x.dtype == torch.float64 else 1e-4
    for i, (a, b) in enumerate(zip(ref[2], got[2])):
        assert (a is None) == (b is None), i
        if a is not None:
            assert a.abs().sum() > 0, f"gradient {i} is zero: the test would not see an error"
            torch.testing.assert_close(b, a, rtol=tol, atol=tol, msg=f"gradient {i}")


def _x(dtype, B=3, T=40, C=6, scale=1.5, shift=0.7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, C, generator=g, dtype=dtype) * scale + shift


LIF_OPTIONS = list(itertools.product([True, False], ["hard", "soft"], [0.0, -0.3], [True, False]))


@pytest.mark.parametrize("be", _backends())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cls", [LIF, PLIF])
@pytest.mark.parametrize("decay_input,reset,v_reset,detach_reset", LIF_OPTIONS)
def test_lif_plif_fused_equals_autograd(cls, decay_input, reset, v_reset, detach_reset, dtype, be):
    if be == "cpp":
        _cpp_or_skip()
    for surrogate in ("atan", Sigmoid(3.0), Triangle()):
        def make():
            return cls(6, tau=2.5, v_reset=v_reset, reset=reset, detach_reset=detach_reset,
                       decay_input=decay_input, surrogate=surrogate)

        _compare(make, _x(dtype), be, 1)


@pytest.mark.parametrize("be", _backends())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("recurrent", [False, True])
def test_alif_fused_equals_autograd(recurrent, detach_reset, dtype, be):
    if be == "cpp":
        _cpp_or_skip()
    for surrogate in ("multi_gaussian", "atan"):
        def make():
            u = ALIF(6, detach_reset=detach_reset, surrogate=surrogate)
            with torch.no_grad():  # per-neuron decays away from the initial 0.5
                u.a.copy_(torch.linspace(-1.2, 1.5, 6))
                u.r.copy_(torch.linspace(1.0, -0.8, 6))
            return u

        _compare(make, _x(dtype, scale=2.0, shift=1.2), be, 3, recurrent)


@pytest.mark.parametrize("be", _backends())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_leaky_integrator_fused_equals_autograd(dtype, be):
    if be == "cpp":
        _cpp_or_skip()

    def make():
        u = LeakyIntegrator(6)
        with torch.no_grad():
            u.b.copy_(torch.linspace(-2, 2, 6))
        return u

    _compare(make, _x(dtype), be, 1, rate=None)


@pytest.mark.parametrize("be", ["fused", "cpp"])
def test_inference_without_grad_equals_autograd(be):
    if be == "cpp":
        _cpp_or_skip()
    x = _x(torch.float64, T=50)
    units = [PLIF(6), LIF(6, reset="soft"), ALIF(6), LeakyIntegrator(6)]
    for u in units:
        u = u.double()
        with torch.no_grad():
            with backend("autograd"):
                ref = u(x * 2 if isinstance(u, ALIF) else x)
            with backend(be):
                got = u(x * 2 if isinstance(u, ALIF) else x)
        assert torch.equal(ref[0], got[0]) and all(torch.equal(a, b) for a, b in zip(ref[1], got[1]))


def test_multi_gaussian_fast_path_equals_formula():
    x = torch.linspace(-4, 4, 2001, dtype=torch.float64)
    mg = MultiGaussian()
    fast = mg.derivative(x)
    slow = mg.derivative(x.clone().requires_grad_(True)).detach()  # the differentiable formula
    torch.testing.assert_close(fast, slow, rtol=1e-13, atol=1e-15)


def test_depthwise_conv_backward_equals_unfold():
    g = torch.Generator().manual_seed(3)
    for m in (1, 3):  # H = m·C (multiplier)
        xc = torch.randn(2, 4, 20, generator=g, dtype=torch.float64, requires_grad=True)
        w = torch.randn(4 * m, 1, 5, generator=g, dtype=torch.float64, requires_grad=True)
        b = torch.randn(4 * m, generator=g, dtype=torch.float64, requires_grad=True)
        gy = torch.randn(2, 4 * m, 16, generator=g, dtype=torch.float64)
        windows = xc.unfold(-1, 5, 1).repeat_interleave(m, 1)  # [2, 4m, 16, 5]
        ref = (windows * w.view(4 * m, 1, 5)).sum(-1) + b[:, None]
        got = fused.depthwise_conv(xc, w, b)
        torch.testing.assert_close(got, ref, rtol=1e-13, atol=1e-13)
        for a, c in zip(torch.autograd.grad(ref, (xc, w, b), gy), torch.autograd.grad(got, (xc, w, b), gy)):
            torch.testing.assert_close(c, a, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Whole models
# --------------------------------------------------------------------------------------------
MODELS = {
    "dpsnn": ("dpsnn", dict(N=32, B=16, H=32, X=2)),  # two blocks, SCNN multiplier 2
    "spiking_s4": ("spiking_s4", dict(n_fft=128, hop=64, d_model=32, d_state=8, n_layers=2)),
}


@pytest.mark.parametrize("key", list(MODELS))
def test_models_fused_equal_autograd(key, data_dir):
    name, kw = MODELS[key]
    torch.manual_seed(1)
    model = make_fire(snnse.get(name, **kw)).double()
    if name == "dpsnn":
        with torch.no_grad():
            for blk in model.masker.blocks:
                blk.srnn_unit.a.uniform_(-1, 1)
                blk.srnn_unit.r.uniform_(-1, 1)
            model.masker.blocks[1].scnn.weight.mul_(4)  # the second block sees sparse input
            model.masker.blocks[1].srnn_in.weight.mul_(2)
    x = torch.stack([speech(data_dir, 0.5, "p287_001"), speech(data_dir, 0.5, "p287_004")])
    results = {}
    backends = ["autograd", "fused"] + (["cpp"] if kernels.load() is not None else [])
    for be in backends:
        model.zero_grad(set_to_none=True)
        with backend(be):
            y, aux = model(x, return_aux=True)
        (y * torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)).pow(2).sum().backward()
        results[be] = (y.detach(), aux["record"], {n: p.grad.clone() for n, p in model.named_parameters()})
    y_ref, rec_ref, g_ref = results["autograd"]
    for layer, s in rec_ref.items():
        if layer != "readout":
            assert 0.01 <= s.mean() <= 0.6, (layer, s.mean().item())
    for be in backends[1:]:
        y, rec, grads = results[be]
        for layer in rec_ref:
            if layer == "readout":
                torch.testing.assert_close(rec[layer], rec_ref[layer], rtol=1e-10, atol=1e-12)
            else:
                assert torch.equal(rec[layer], rec_ref[layer]), (be, layer)
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
        for n, g in g_ref.items():
            assert g.abs().sum() > 0 or "proj_unit" in n, n
            torch.testing.assert_close(grads[n], g, rtol=1e-9, atol=1e-11, msg=f"{be}: {n}")


# --------------------------------------------------------------------------------------------
# The compiled kernel and its fallback
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpp_loops_equal_torch_loops(dtype):
    ops = _cpp_or_skip()
    T = fused.TorchLoops
    g = torch.Generator().manual_seed(11)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    B, S, C = 4, 33, 24
    x, v0 = r(B, S, C) * 1.5 + 0.6, r(B, C) * 0.3
    for k in (0.3, 0.5, 0.8):
        kk = torch.tensor(k, dtype=dtype)
        for args in itertools.product([True, False], [True, False], [0.0, -0.4], [1.0, 0.8]):
            for a, b in zip(ops.lif_forward(x, v0, kk, *args), T.lif_forward(x, v0, kk, *args)):
                assert torch.equal(a, b), (k, args)
    beta = torch.rand(C, generator=g, dtype=dtype)
    assert torch.equal(ops.leaky_forward(x, v0, beta), T.leaky_forward(x, v0, beta))
    alpha, rho = torch.rand(C, generator=g, dtype=dtype), torch.rand(C, generator=g, dtype=dtype)
    W, s0 = r(C, C) * 0.4, (r(B, C) > 0).to(dtype)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for m in (r(B, S, C), beta, torch.tensor(0.7, dtype=dtype)):
        torch.testing.assert_close(ops.linear_scan(m, x, v0), T.linear_scan(m, x, v0), **tol)
    for w in (W, None):
        fwd = (x * 2, w, alpha, rho, 1.6, 0.184, v0, v0.abs(), s0, s0 if w is not None else None)
        outs = ops.alif_forward(*fwd)
        for a, b in zip(outs, T.alif_forward(*fwd)):
            assert torch.equal(a, b)
        V, E, I, Sp, Z = outs
        torch.testing.assert_close(Z, V - (E * 0.184 + 1.6), rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-14)
        assert 0.05 < Sp.mean() < 0.7
        for detach in (True, False):
            bwd = (r(B, S, C), r(B, C), r(B, C), r(B, S, C).abs() * 0.3, V, E, I, Sp, v0, v0.abs(), s0, alpha, rho,
                   1.6, 0.184, None if w is None else (1 - alpha)[:, None] * w, detach)
            for a, b in zip(ops.alif_backward(*bwd), T.alif_backward(*bwd)):
                torch.testing.assert_close(a, b, **tol)
    H, M, _ = T.lif_forward(x, v0, torch.tensor(0.5, dtype=dtype), True, False, 0.0, 1.0)
    assert 0.05 < M.float().mean() < 0.7
    for kk, args in itertools.product((0.4, 0.6), itertools.product([True, False], [True, False], [0.0, -0.4],
                                                                    [1.0], [True, False], [True])):
        bwd = (r(B, S, C), r(B, C), r(B, S, C).abs(), H, M, x, v0, torch.tensor(kk, dtype=dtype), *args)
        for a, b in zip(ops.lif_backward(*bwd), T.lif_backward(*bwd)):
            torch.testing.assert_close(a, b, **tol)
    for m in (1, 2):
        xc, wd, gy = r(B, C, S + 4), r(C * m, 1, 5), r(B, C * m, S)
        for a, b in zip(ops.dw_backward(gy, xc, wd), T.dw_backward(gy, xc, wd)):
            torch.testing.assert_close(a, b, **tol)


def test_failed_build_falls_back_to_the_pytorch_loops(monkeypatch):
    def broken_build():
        raise RuntimeError("simulated compiler failure")

    monkeypatch.setattr(kernels, "_build", broken_build)
    kernels.reset()
    try:
        with pytest.warns(RuntimeWarning, match="C\\+\\+ neuron kernel unavailable.*simulated compiler failure"):
            assert kernels.load() is None
        assert kernels.load() is None  # decided once: no second attempt, no second warning
        with backend("cpp"):
            assert fused.get_backend() == "fused"
        for be in (None, "cpp"):  # auto and an explicit request both fall back
            _compare(lambda: PLIF(6), _x(torch.float64), be, 1)
    finally:
        monkeypatch.undo()
        kernels.reset()


def test_backend_selection(monkeypatch):
    with pytest.raises(ValueError, match="unknown backend"):
        fused.set_backend("numba")
    with backend("autograd"):
        assert fused.get_backend() == "autograd" and not fused.enabled()
        with backend("fused"):
            assert fused.get_backend() == "fused"
        assert fused.get_backend() == "autograd"
    monkeypatch.setenv("SNNSE_NEURON_BACKEND", "autograd")
    assert fused.get_backend() == "autograd"
    monkeypatch.setenv("SNNSE_NEURON_BACKEND", "bogus")
    with pytest.raises(ValueError, match="SNNSE_NEURON_BACKEND"):
        fused.get_backend()
    monkeypatch.delenv("SNNSE_NEURON_BACKEND")
    assert fused.get_backend() in ("fused", "cpp")
    x = _x(torch.float64).requires_grad_(True)
    with backend("autograd"):  # the oracle records one graph per step
        s, _ = PLIF(6).double()(x)
    assert type(s.grad_fn).__name__ == "StackBackward0"
    assert math.isfinite(s.sum().item())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpp_surrogate_derivatives_equal_the_formulas(dtype):
    _cpp_or_skip()
    x = torch.cat([torch.linspace(-60, 60, 4001, dtype=dtype), torch.randn(5000, dtype=dtype)])
    g = torch.randn_like(x)
    tol = dict(rtol=1e-13, atol=1e-16) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)  # |g'| < 3: a few ulp
    for sur in (ATan(2.0), ATan(5.0), Sigmoid(4.0), MultiGaussian(), MultiGaussian(0.3, 0.2, 0.7)):
        assert sur.kernel_spec() is not None
        ref = sur.derivative(x)
        torch.testing.assert_close(fused.surrogate_grad(sur, x, compiled=True), ref, **tol)
        torch.testing.assert_close(fused.surrogate_grad(sur, x, g, compiled=True), g * ref, **tol)
    assert Triangle().kernel_spec() is None  # user-defined: always its own formula
    torch.testing.assert_close(fused.surrogate_grad(Triangle(), x, compiled=True), Triangle().derivative(x))


def test_bfloat16_and_double_backward_are_handled():
    x = _x(torch.float32).to(torch.bfloat16).requires_grad_(True)
    u = PLIF(6).to(torch.bfloat16)
    with backend("autograd"):
        ref, _ = u(x)
    for be in ("fused", "cpp"):  # no compiled bfloat16 loop: the PyTorch loops run
        with backend(be):
            s, _ = u(x)
        assert torch.equal(s, ref)
        s.sum().backward()
    x = _x(torch.float64).requires_grad_(True)
    with backend("fused"):
        s, _ = PLIF(6).double()(x)
    w = torch.ones_like(s, requires_grad=True)
    (g,) = torch.autograd.grad(s, x, w, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):  # no silent double backward
        g.sum().backward()
