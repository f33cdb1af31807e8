"""Tests for the S4D layer: conv == recurrent == chunked, kernel, init, optimizer tags."""

import copy
import math

import pytest
import torch
from torch import nn

from snnse.ssm import S4D, param_groups


def _rel(a, b):
    """(relative L2 error, max-abs error relative to max |b|)."""
    return ((a - b).norm() / b.norm()).item(), ((a - b).abs().max() / b.abs().max()).item()


def _recurrent(m, u, state=None):
    ys = []
    for k in range(u.shape[1]):
        y, state = m.step(u[:, k], state)
        ys.append(y)
    return torch.stack(ys, 1), state


@pytest.mark.parametrize("init", ["lin", "inv"])
@pytest.mark.parametrize("d_state", [16, 64])
def test_conv_equals_recurrent(init, d_state):
    torch.manual_seed(0)
    m = S4D(8, d_state, init=init).double()
    u = torch.randn(2, 2048, 8, dtype=torch.float64)
    with torch.no_grad():
        y_conv, x_conv = m(u)
        y_rec, x_rec = _recurrent(m, u)
    # equal up to float64 rounding: measured at most 3.6e-15 (output) and 1.7e-14 (state), relative
    l2, mx = _rel(y_conv, y_rec)
    assert l2 < 1e-12 and mx < 1e-12, (l2, mx)
    l2, mx = _rel(torch.view_as_real(x_conv), torch.view_as_real(x_rec))
    assert l2 < 1e-12 and mx < 1e-12, (l2, mx)
    assert y_conv.shape == (2, 2048, 8) and y_conv.dtype == torch.float64
    assert x_conv.shape == (2, 8, d_state // 2) and x_conv.dtype == torch.complex128


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_chunked_equals_one_shot(init):
    torch.manual_seed(1)
    m = S4D(8, 32, init=init).double()
    u = torch.randn(2, 2000, 8, dtype=torch.float64)
    with torch.no_grad():
        y_full, x_full = m(u)
        ys, state, start = [], None, 0
        for size in [1, 7, 300, 1000, 2000]:
            y, state = m(u[:, start:start + size], state)
            ys.append(y)
            start += size
        assert start >= 2000
        y_chunk = torch.cat(ys, 1)
        # a nonzero initial state, continued by the recurrence, matches too
        y_rec, x_rec = _recurrent(m, u[:, 1000:], _recurrent(m, u[:, :1000])[1])
    assert y_chunk.shape == y_full.shape
    assert max(_rel(y_chunk, y_full)) < 1e-9
    assert max(_rel(torch.view_as_real(state), torch.view_as_real(x_full))) < 1e-9
    assert max(_rel(y_rec, y_full[:, 1000:])) < 1e-9
    assert max(_rel(torch.view_as_real(x_rec), torch.view_as_real(x_full))) < 1e-9


def test_float32_close_to_float64():
    torch.manual_seed(2)
    m = S4D(8, 64)
    u = torch.randn(2, 1000, 8)
    y32, x32 = m(u[:, :400])
    y32b, _ = m(u[:, 400:], x32)
    assert y32.dtype == torch.float32 and x32.dtype == torch.complex64
    y64, _ = m.double()(u.double())
    assert max(_rel(torch.cat([y32, y32b], 1).double(), y64)) < 1e-4


def test_kernel_matches_naive_definition():
    torch.manual_seed(3)
    for init in ("lin", "inv"):
        m = S4D(3, 6, init=init).double()
        L = 9
        K = m.kernel(L)
        assert K.shape == (3, L)
        for h in range(3):
            dt = math.exp(m.log_dt[h].item())
            for l in range(L):
                acc = 0j
                for n in range(3):
                    A = complex(-math.exp(m.log_A_real[h, n].item()), m.A_imag[h, n].item())
                    C = complex(m.C[h, n, 0].item(), m.C[h, n, 1].item())
                    dA = complex(math.e) ** (dt * A)
                    acc += C * (dA - 1) / A * dA ** l
                assert abs(K[h, l].item() - 2 * acc.real) < 1e-12


def test_parameter_count_and_init():
    m = S4D(256, 64)
    shapes = {n: tuple(p.shape) for n, p in m.named_parameters()}
    assert shapes == {"log_dt": (256,), "C": (256, 32, 2), "log_A_real": (256, 32),
                      "A_imag": (256, 32), "D": (256,)}
    # 256 + 16384 + 8192 + 8192 + 256; the brief quoted 33,024 (= this minus D)
    assert sum(p.numel() for p in m.parameters()) == 33_280
    assert torch.allclose(m.A_imag, math.pi * torch.arange(32.0).expand(256, 32))
    assert torch.allclose(-torch.exp(m.log_A_real), torch.full((256, 32), -0.5))
    dt = torch.exp(m.log_dt)
    assert dt.min() >= 1e-3 * (1 - 1e-6) and dt.max() <= 1e-1 * (1 + 1e-6)
    inv = S4D(4, 8, init="inv")
    n = torch.arange(4.0)
    assert torch.allclose(inv.A_imag[0], (8 / math.pi) * (8 / (2 * n + 1) - 1))


def test_param_groups_and_gradients():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(4, 4), S4D(4, 8, ssm_lr=1e-3))
    s4d = model[1]
    groups = param_groups(model, lr=1e-2, weight_decay=0.05)
    assert len(groups) == 2
    default, ssm = groups
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert default["lr"] == 1e-2 and default["weight_decay"] == 0.05
    assert ids(default["params"]) == ids([s4d.C, s4d.D, *model[0].parameters()])
    assert ssm["lr"] == 1e-3 and ssm["weight_decay"] == 0.0
    assert ids(ssm["params"]) == ids([s4d.log_dt, s4d.log_A_real, s4d.A_imag])
    torch.optim.AdamW(groups)  # accepted by a real optimizer
    # without ssm_lr the group inherits the default lr; tags survive copies/casts
    for m in (copy.deepcopy(S4D(4, 8)), S4D(4, 8).double()):
        g = param_groups(m, lr=0.1, weight_decay=0.2)
        assert [(len(x["params"]), x["lr"], x["weight_decay"]) for x in g] == [(2, 0.1, 0.2), (3, 0.1, 0.0)]

    u = torch.randn(2, 50, 4)
    y, x = model[1](model[0](u), s4d.initial_state(2) + 0.1)  # nonzero state exercises all paths
    (y.pow(2).sum() + x.abs().sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_initial_state_and_step_shapes():
    m = S4D(5, 10)
    x = m.initial_state(3)
    assert x.shape == (3, 5, 5) and x.dtype == torch.complex64 and not x.abs().any()
    assert m.initial_state(1, dtype=torch.float64).dtype == torch.complex128
    y, x = m.step(torch.randn(3, 5), None)
    assert y.shape == (3, 5) and x.shape == (3, 5, 5)
    y, x2 = m(torch.zeros(3, 0, 5), x)
    assert y.shape == (3, 0, 5) and torch.equal(x2, x)


@pytest.mark.parametrize("kwargs", [
    dict(d_model=4, d_state=7), dict(d_model=4, d_state=0), dict(d_model=0),
    dict(d_model=4, init="foo"), dict(d_model=4, dt_min=0.1, dt_max=0.01),
    dict(d_model=4, dt_min=0.1, dt_max=0.1), dict(d_model=4, ssm_lr=-1.0),
])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        S4D(**kwargs)


def test_invalid_inputs():
    m = S4D(4, 8)
    with pytest.raises(ValueError):
        m(torch.randn(2, 10, 5))
    with pytest.raises(ValueError):
        m(torch.randn(2, 10, 4), torch.zeros(2, 4, 4))  # real, not complex
    with pytest.raises(ValueError):
        m.step(torch.randn(2, 4), m.initial_state(3))


def test_inference_cache_follows_parameter_updates():
    torch.manual_seed(0)
    layer = S4D(4, 8).double()
    u = torch.randn(2, 4, dtype=torch.float64)
    with torch.no_grad():
        y1, _ = layer.step(u)
        assert torch.equal(layer.step(u)[0], y1)  # cached
        layer.log_dt.add_(0.5)  # an optimizer step or load_state_dict changes the version
        y2, _ = layer.step(u)
    y_ref, _ = layer.step(u)  # with autograd: never cached
    assert not torch.allclose(y1, y2)
    torch.testing.assert_close(y2, y_ref.detach())
    layer.float()
    with torch.no_grad():
        assert layer.step(u.float())[0].dtype == torch.float32
