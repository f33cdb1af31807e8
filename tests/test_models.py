import pytest
import torch

import snnse
from snnse.models import count_parameters
from snnse.models.base import FORMAT

from .helpers import make_fire, speech


def test_dpsnn_readme_configuration_parameter_count_and_latency():
    m = snnse.get("dpsnn")  # L=80 stride=40 N=256 B=256 H=256 context_dur=0.01 X=1
    n = count_parameters(m)
    assert abs(n - 373_000) <= 0.01 * 373_000, n
    mk = m.masker
    parts = {  # models.md breakdown (thousands)
        "encoder": (count_parameters(m.frontend.encoder), 20.7),
        "proj": (count_parameters(mk.proj) + count_parameters(mk.proj_unit), 65.8),
        "scnn": (count_parameters(mk.blocks[0].scnn) + count_parameters(mk.blocks[0].scnn_unit), 1.5),
        "srnn": (sum(count_parameters(getattr(mk.blocks[0], k)) for k in ("srnn_in", "srnn_rec", "srnn_unit")), 132.1),
        "readout": (count_parameters(mk.readout) + count_parameters(mk.readout_unit) + count_parameters(mk.suppress), 66.0),
        "mask": (count_parameters(mk.mask), 65.8),
        "decoder": (count_parameters(m.frontend.decoder) + 1, 20.5),
    }
    for name, (got, want) in parts.items():
        assert abs(got / 1000 - want) < 0.06, (name, got)
    assert m.latency_ms == 5.0 and m.hop == 40 and m.sample_rate == 16000
    assert mk.blocks[0].scnn.kernel_size == (5,)  # current + 0.01 s / 2.5 ms = 4 past frames


def test_spiking_s4_paper_configuration():
    m = snnse.get("spiking_s4")
    n = count_parameters(m)
    assert n == 530_437 and abs(n - 530_000) <= 0.05 * 530_000
    assert m.latency_ms == 32.0 and m.hop == 128
    assert len(m.masker.layers) == 4 and m.frontend.n_features == 257


def test_dpsnn_blocks_and_validation():
    m = snnse.get("dpsnn", N=16, B=8, H=16, X=3)
    _, aux = m(torch.randn(1, 800), return_aux=True)
    assert {"proj", "scnn0", "srnn2", "readout"} <= set(aux["record"])
    assert m.masker.readout.in_features == 24
    with pytest.raises(ValueError, match="multiple"):
        snnse.get("dpsnn", B=16, H=24)
    with pytest.raises(ValueError, match="whole number"):
        snnse.get("dpsnn", context_dur=0.011)


def test_registry_errors():
    assert {"dpsnn", "spiking_s4"} <= set(snnse.available())
    with pytest.raises(ValueError, match="unknown model 'dpsn'"):
        snnse.get("dpsn")
    with pytest.raises(ValueError, match="bad arguments"):
        snnse.get("dpsnn", n_layers=3)


@pytest.mark.parametrize("name", ["dpsnn", "spiking_s4"])
def test_ann_twin_has_no_spiking_units_and_same_shape(name):
    snn, ann = snnse.get(name), snnse.get(name, spiking=False)
    assert snn.spiking and not ann.spiking
    assert abs(count_parameters(snn) - count_parameters(ann)) < 0.002 * count_parameters(snn)
    x = torch.randn(2, 3000)
    y = ann(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["dpsnn", "spiking_s4"])
def test_ann_twin_has_no_spiking_unit_and_real_valued_activity(name, data_dir):
    """spiking=False swaps every spiking unit (LIF/PLIF, ALIF, the threshold unit of snnse.neurons) for an
    ordinary activation: none is left, and the recorded activity of the layers that spike in the SNN
    (all but DPSNN's readout, a leaky integrator in both) is real-valued in the twin, 0/1 in the SNN."""
    from snnse.neurons import ALIF, LIF, Activation, Threshold, Unit

    spiking_units = (LIF, ALIF, Threshold)  # PLIF is a LIF
    torch.manual_seed(0)
    snn, ann = make_fire(snnse.get(name)), snnse.get(name, spiking=False)
    replaced = {n for n, m in snn.named_modules() if isinstance(m, spiking_units)}
    assert replaced
    ann_modules = dict(ann.named_modules())
    assert not [n for n, m in ann_modules.items() if isinstance(m, spiking_units) or getattr(m, "spiking", False)]
    assert all(isinstance(ann_modules[n], Activation) for n in replaced)
    assert all(not m.spiking for m in ann_modules.values() if isinstance(m, Unit))
    x = speech(data_dir, 1.0).float()[None]
    with torch.no_grad():
        _, aux_snn = snn(x, return_aux=True)
        _, aux_ann = ann(x, return_aux=True)
    assert aux_snn["record"].keys() == aux_ann["record"].keys()
    spiking_layers = [k for k in aux_snn["record"] if k != "readout"]
    assert len(spiking_layers) == (3 if name == "dpsnn" else 4)  # proj, scnn, srnn / one per S4 layer
    for k in spiking_layers:
        s, a = aux_snn["record"][k], aux_ann["record"][k]
        assert bool(((s == 0) | (s == 1)).all()) and 0 < s.mean() < 1, k  # spikes, and some fire
        assert ((a != 0) & (a != 1)).float().mean() > 0.1, k  # activations, not spikes


TINY = {
    "dpsnn": dict(N=32, B=16, H=32),
    "spiking_s4": dict(d_model=32, d_state=8, n_layers=2),
    "dpsnn_stft": dict(frontend="stft", L=512, stride=128, context_dur=0.032, B=32, H=32),  # DPSNN separator behind the STFT
    "s4_conv": dict(frontend="conv", n_fft=80, hop=40, n_filters=64, d_model=32, d_state=8, n_layers=2),  # 5 ms S4
}


def _build(key, **kw):
    name = "dpsnn" if key.startswith("dpsnn") else "spiking_s4"
    return snnse.get(name, **TINY[key], **kw)


@pytest.mark.parametrize("key", list(TINY))
def test_end_to_end_gradients_reach_every_parameter(key, data_dir):
    torch.manual_seed(0)
    m = make_fire(_build(key))
    x = speech(data_dir, 1.0).float()[None].repeat(2, 1)
    y, aux = m(x, return_aux=True)
    assert y.shape == x.shape
    loss = -torch.nn.functional.cosine_similarity(y, x, dim=-1).mean() + sum(v.mean() for v in aux["record"].values())
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_frontend_swaps_report_their_latency():
    assert _build("s4_conv").latency_ms == 5.0
    assert _build("dpsnn_stft").latency_ms == 32.0
    assert _build("dpsnn_stft").frontend.n_features == 257


@pytest.mark.parametrize("key", ["dpsnn", "spiking_s4", "s4_conv"])
def test_save_load_roundtrip_is_self_describing(tmp_path, key):
    torch.manual_seed(0)
    m = _build(key, spiking=True).eval()
    path = m.save(tmp_path / "sub" / "model.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["model"] in ("dpsnn", "spiking_s4")
    assert raw["sample_rate"] == 16000 and raw["versions"]["torch"] == torch.__version__
    assert "analysis_weight" not in " ".join(raw["state_dict"])  # derived buffers are not stored
    m2 = snnse.load(path)
    x = torch.randn(1, 2000)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert not list(tmp_path.glob("sub/*.tmp"))


def test_load_rejects_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        snnse.load(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        snnse.load(bad)
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an snnse"):
        snnse.load(tmp_path / "other.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"format": FORMAT, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError):
        snnse.load(tmp_path / "evil.pt")
    # a truncated real checkpoint
    good = snnse.get("dpsnn", N=8, B=8, H=8).save(tmp_path / "good.pt")
    (tmp_path / "trunc.pt").write_bytes(good.read_bytes()[:500])
    with pytest.raises(ValueError):
        snnse.load(tmp_path / "trunc.pt")


def test_forward_shapes():
    m = snnse.get("dpsnn", N=8, B=8, H=8)
    assert m(torch.randn(123)).shape == (123,)
    assert m(torch.randn(3, 1)).shape == (3, 1)
    with pytest.raises(ValueError):
        m(torch.randn(1, 2, 3))
