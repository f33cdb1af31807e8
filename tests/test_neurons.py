import math

import pytest
import torch

from snnse.neurons import (
    ALIF,
    LIF,
    PLIF,
    ATan,
    LeakyIntegrator,
    MultiGaussian,
    Sigmoid,
    Suppression,
    Threshold,
    make_unit,
    spike,
)

# Test oracle, installed by scripts/test.sh: pip install --no-deps spikingjelly==0.0.0.0.14
from spikingjelly.activation_based import neuron as sj_neuron  # noqa: E402
from spikingjelly.activation_based import surrogate as sj_surrogate  # noqa: E402


def _grad_of(surrogate, x):
    x = x.clone().requires_grad_(True)
    spike(x, surrogate).sum().backward()
    return x.grad


def test_spike_forward_is_heaviside():
    x = torch.tensor([-1.0, -1e-9, 0.0, 1e-9, 3.0])
    assert spike(x, ATan()).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("alpha", [2.0, 5.0])
def test_atan_derivative_formula(alpha):
    x = torch.linspace(-3, 3, 101, dtype=torch.float64)
    expected = (alpha / 2) / (1 + (math.pi * alpha * x / 2) ** 2)
    torch.testing.assert_close(_grad_of(ATan(alpha), x), expected)


def test_sigmoid_derivative_formula():
    x = torch.linspace(-3, 3, 101, dtype=torch.float64)
    s = 1 / (1 + torch.exp(-4 * x))
    torch.testing.assert_close(_grad_of(Sigmoid(4.0), x), 4 * s * (1 - s))


def test_multi_gaussian_derivative_formula():
    x = torch.linspace(-4, 4, 201, dtype=torch.float64)
    sig, h, g = 0.5, 0.15, 0.5

    def n(x, mu, s):
        return torch.exp(-((x - mu) ** 2) / (2 * s * s)) / (math.sqrt(2 * math.pi) * s)

    expected = g * ((1 + h) * n(x, 0, sig) - h * n(x, sig, 6 * sig) - h * n(x, -sig, 6 * sig))
    torch.testing.assert_close(_grad_of(MultiGaussian(), x), expected)
    # it integrates to γ((1 + h) − h − h) = γ(1 − h)
    xs = torch.linspace(-30, 30, 200001, dtype=torch.float64)
    area = torch.trapezoid(MultiGaussian().derivative(xs), xs)
    assert abs(area - g * (1 - h)) < 1e-6


def test_atan_matches_spikingjelly():
    x = torch.randn(1000, dtype=torch.float64)
    ours = _grad_of(ATan(2.0), x)
    xr = x.clone().requires_grad_(True)
    sj_surrogate.ATan(alpha=2.0)(xr).sum().backward()
    torch.testing.assert_close(ours, xr.grad)


@pytest.mark.parametrize("decay_input", [True, False])
def test_plif_equals_spikingjelly(decay_input):
    torch.manual_seed(0)
    T, B, C = 64, 4, 32
    x = (torch.randn(T, B, C, dtype=torch.float64) * 1.5 + 0.6).requires_grad_(True)

    ref = sj_neuron.ParametricLIFNode(init_tau=2.0, decay_input=decay_input, v_threshold=1.0, v_reset=0.0,
                                      surrogate_function=sj_surrogate.ATan(alpha=2.0), detach_reset=True,
                                      step_mode="m").double()
    s_ref = ref(x)
    loss_w = torch.randn_like(s_ref)
    (s_ref * loss_w).sum().backward()
    gx_ref, gw_ref = x.grad.clone(), ref.w.grad.clone()

    x.grad = None
    ours = PLIF(C, tau=2.0, decay_input=decay_input).double()
    s, _ = ours(x.transpose(0, 1))  # ours is [B, T, C]
    s = s.transpose(0, 1)
    (s * loss_w).sum().backward()

    assert 0.05 < s.mean() < 0.6, "the test input must make the neurons fire"
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(x.grad, gx_ref)
    torch.testing.assert_close(ours.w.grad, gw_ref)
    assert torch.allclose(ours.w, ref.w)


def test_plif_tau_init_and_step_equals_forward():
    u = PLIF(8, tau=2.0)
    assert abs(torch.sigmoid(u.w).item() - 0.5) < 1e-7
    assert abs(1 / torch.sigmoid(PLIF(8, tau=5.0).w).item() - 5.0) < 1e-5
    x = torch.randn(3, 50, 8) * 2
    y, st = u(x)
    state = u.initial_state(3)
    for t in range(50):
        yt, state = u.step(x[:, t], state)
        assert torch.equal(yt, y[:, t])
    assert torch.equal(state[0], st[0])


def test_lif_soft_reset_and_chunked_forward():
    u = LIF(5, tau=2.0, reset="soft", detach_reset=False)
    x = torch.rand(2, 40, 5) * 3
    y, st = u(x)
    y1, s1 = u(x[:, :13])
    y2, s2 = u(x[:, 13:], s1)
    assert torch.equal(torch.cat([y1, y2], 1), y) and torch.equal(s2[0], st[0])
    # soft reset: membrane after a spike keeps what exceeded the threshold
    v = torch.zeros(1, 1)
    s, (v,) = u.step(torch.tensor([[4.0]]), (v,))
    assert s.item() == 1.0 and abs(v.item() - (2.0 - 1.0)) < 1e-6
    with pytest.raises(ValueError):
        LIF(3, reset="bogus")


def _alif_reference(x, a, r, b0=1.6, beta=0.184):
    """Straight transcription of the models.md ALIF equations, one neuron array at a time."""
    B, T, C = x.shape
    v = torch.zeros(B, C, dtype=x.dtype)
    eta = torch.zeros(B, C, dtype=x.dtype)
    s = torch.zeros(B, C, dtype=x.dtype)
    out = []
    alpha, rho = torch.sigmoid(a), torch.sigmoid(r)
    for t in range(T):
        eta = rho * eta + (1 - rho) * s
        theta = b0 + beta * eta
        v = alpha * v + (1 - alpha) * x[:, t] - theta * s
        s = (v - theta >= 0).to(x.dtype)
        out.append(s)
    return torch.stack(out, 1)


def test_alif_matches_equations_and_learns_decays():
    torch.manual_seed(1)
    u = ALIF(16).double()
    with torch.no_grad():
        u.a.uniform_(-1, 1)
        u.r.uniform_(-1, 1)
    x = torch.randn(2, 100, 16, dtype=torch.float64) * 2 + 2
    s, _ = u(x)
    assert torch.equal(s, _alif_reference(x, u.a, u.r))
    assert 0.01 < s.mean() < 0.6
    s.sum().backward()
    assert u.a.grad.abs().sum() > 0 and u.r.grad.abs().sum() > 0
    assert u.a.shape == (16,) and u.r.shape == (16,)  # per-neuron decays


def test_threshold_and_suppression_thresholds_get_gradients():
    th = Threshold(4)
    x = torch.randn(3, 10, 4, requires_grad=True)
    y, state = th(x)
    assert state == () and set(y.unique().tolist()) <= {0.0, 1.0}
    y.sum().backward()
    assert th.threshold.grad is not None and th.threshold.grad.abs() > 0

    sup = Suppression(init_threshold=0.1)
    x = torch.randn(100)
    y = sup(x)
    assert torch.equal(y, torch.where(x >= 0.1, x, torch.zeros_like(x)))
    y.sum().backward()
    assert sup.threshold.grad.abs() > 0  # the authors' θ_ro got none: a defect we fix


def test_leaky_integrator_is_a_first_order_filter():
    li = LeakyIntegrator(3, init_decay=0.75)
    x = torch.zeros(1, 5, 3)
    x[:, 0] = 1.0
    y, _ = li(x)
    torch.testing.assert_close(y[0, :, 0], 0.25 * 0.75 ** torch.arange(5.0))


def test_make_unit_and_ann_twin_units():
    assert isinstance(make_unit("plif", 4), PLIF)
    relu = make_unit("relu", 4)
    y, st = relu(torch.tensor([[[-1.0, 2.0, 0.0, 3.0]]]))
    assert st == () and y.tolist() == [[[0.0, 2.0, 0.0, 3.0]]]
    with pytest.raises(ValueError, match="unknown unit"):
        make_unit("nope", 4)
