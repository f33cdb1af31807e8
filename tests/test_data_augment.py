"""Tests for snnse.data.augment and the augmentation of MixingDataset (real speech, noise and RIRs)."""

import json

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch

from snnse.data.augment import (Augment, _biquad, apply_eq, change_speed, eq_response_db, random_eq,
                                schroeder_rt60, simulated_rir_bank, speed_input_length)
from snnse.data.mixing import MixingDataset, rms_db, snr_db

SR = 16000
SEG, CTX = 16000, 1600


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """A small simulated RIR bank (8 rooms), built once for the module."""
    folder = tmp_path_factory.mktemp("bank") / "rir_sim"
    simulated_rir_bank(folder, count=8, seed=5, sample_rate=SR)
    return folder


@pytest.fixture
def make(data_dir):
    def _make(**kw):
        args = dict(clean=data_dir / "voicebank_debug" / "clean",
                    noise=data_dir / "noise" / "speechbrain", segment=SEG, context=CTX, length=16)
        args.update(kw)
        return MixingDataset(**args)
    return _make


def _ncc_max(y, ref):
    """Largest normalised cross-correlation of ``y`` against every window of ``ref``."""
    num = scipy.signal.fftconvolve(ref, y[::-1], mode="valid")
    energy = np.cumsum(np.concatenate([[0.0], ref ** 2]))
    win = np.sqrt(np.maximum(energy[len(y):] - energy[:-len(y)], 1e-20))
    return float(np.max(num / win / np.linalg.norm(y)))


def _peak_hz(x):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), 16 * len(x)))
    return float(np.argmax(spec) * SR / (16 * len(x)))


# ----------------------------------------------------------------------------- options

def test_augment_options_validated():
    assert not Augment().active and not Augment.from_dict(None).active
    a = Augment.from_dict({"speed": [0.95, 1.05], "eq_prob": 0.5})
    assert a.active and a.speed == (0.95, 1.05)
    with pytest.raises(ValueError, match="unknown augment option"):
        Augment.from_dict({"speed_probability": 0.5})
    for bad in ({"eq_prob": 1.5}, {"speed": [1.1, 0.9]}, {"speed": [0.9, 1.0, 1.1]}, {"eq_db": -1},
                {"sim_rir_count": 0}, {"sim_rir_rt60": [0.5, 0.2]}):
        with pytest.raises(ValueError):
            Augment.from_dict(bad)


# ----------------------------------------------------------------------------- speed

@pytest.mark.parametrize("factor", [0.9, 0.97, 1.1])
def test_change_speed_scales_pitch_and_length(factor):
    t = np.arange(2 * SR) / SR
    tone = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
    n = SR
    y = change_speed(tone[:speed_input_length(n, factor)], factor, n)
    assert y.shape == (n,) and y.dtype == np.float32
    assert _peak_hz(y) == pytest.approx(1000.0 * factor, abs=1.0)  # pitch
    whole = change_speed(tone, factor)  # no crop: the content lasts len / factor samples
    assert len(whole) == pytest.approx(len(tone) / factor, abs=1)
    assert np.array_equal(change_speed(tone, 1.0, 500), tone[:500])


# ----------------------------------------------------------------------------- EQ

def test_biquads_reach_their_gains():
    f = np.array([0.0, 1000.0, SR / 2])
    for kind, want in (("peak", [0, 6, 0]), ("lowshelf", [6, 3, 0]), ("highshelf", [0, 3, 6])):
        sos = _biquad(kind, 1000.0, 6.0, 1.0, SR)[None]
        np.testing.assert_allclose(eq_response_db(sos, SR, f)[1], want, atol=1e-6)
        _, h = scipy.signal.sosfreqz(sos, worN=f, fs=SR)  # independent evaluation
        np.testing.assert_allclose(20 * np.log10(np.abs(h)), want, atol=1e-6)


@pytest.mark.parametrize("max_db", [6.0, 2.0])
def test_random_eq_stays_within_bound(max_db):
    rng = np.random.default_rng(0)
    f = np.linspace(0.0, SR / 2, 8001)
    peaks = []
    for _ in range(100):
        sos = random_eq(rng, max_db, SR)
        _, h = scipy.signal.sosfreqz(sos, worN=f, fs=SR)
        r = 20 * np.log10(np.abs(h))
        assert np.abs(r).max() <= max_db + 0.02
        peaks.append(np.abs(r).max())
    assert np.median(peaks) > 0.5 * max_db  # it does colour the spectrum


def test_apply_eq_matches_its_response():
    x = np.random.default_rng(1).standard_normal(8 * SR)
    sos = random_eq(np.random.default_rng(2), 6.0, SR)
    f, pxy = scipy.signal.csd(x, apply_eq(x, sos), fs=SR, nperseg=2048)
    _, pxx = scipy.signal.welch(x, fs=SR, nperseg=2048)
    measured = 20 * np.log10(np.abs(pxy / pxx))
    np.testing.assert_allclose(measured, eq_response_db(sos, SR, f)[1], atol=0.3)


# ----------------------------------------------------------------------------- RIR bank

def test_schroeder_rt60_of_an_exponential_decay():
    rng = np.random.default_rng(0)
    for rt60 in (0.2, 0.6):
        t = np.arange(SR) / SR
        h = rng.standard_normal(SR) * 10 ** (-3 * t / rt60)
        assert schroeder_rt60(h, SR) == pytest.approx(rt60, rel=0.05)
    with pytest.raises(ValueError):
        schroeder_rt60(np.ones(100), SR)


def test_bank_deterministic_cached_and_in_range(bank, tmp_path):
    files = simulated_rir_bank(bank, count=8, seed=5, sample_rate=SR)
    meta = json.loads((bank / "bank.json").read_text())
    assert [f.name for f in files] == [f"rir_sim_{k:04d}.wav" for k in range(8)]
    mtimes = [f.stat().st_mtime_ns for f in files] + [(bank / "bank.json").stat().st_mtime_ns]
    again = simulated_rir_bank(bank, count=8, seed=5, sample_rate=SR)  # cached: nothing rewritten
    assert again == files
    assert [f.stat().st_mtime_ns for f in files] + [(bank / "bank.json").stat().st_mtime_ns] == mtimes
    # the same seed elsewhere gives the same responses; another seed others
    twin = simulated_rir_bank(tmp_path / "twin", count=3, seed=5, sample_rate=SR)
    other = simulated_rir_bank(tmp_path / "other", count=3, seed=6, sample_rate=SR)
    for a, b, c in zip(files, twin, other):
        ha, hb, hc = (sf.read(str(p), dtype="float32")[0] for p in (a, b, c))
        assert np.array_equal(ha, hb) and not (len(ha) == len(hc) and np.array_equal(ha, hc))
    rooms = meta["rirs"]
    for f, room in zip(files, rooms):
        h, rate = sf.read(str(f), dtype="float64")
        assert rate == SR and len(h) <= SR and np.abs(h).max() == pytest.approx(1.0)
        assert 0.1 <= room["rt60"] <= 0.8
        assert schroeder_rt60(h, SR) == pytest.approx(room["rt60"], rel=0.4)  # T20 near the target
    assert any(r["stochastic_tail"] for r in rooms)  # long ones continue past the image-method order


def test_bank_rt60_range_follows_the_request(tmp_path):
    files = simulated_rir_bank(tmp_path / "long", count=4, seed=1, sample_rate=SR, rt60_range=(0.6, 0.7))
    est = [schroeder_rt60(sf.read(str(f))[0], SR) for f in files]
    assert all(0.45 <= e <= 0.9 for e in est), est
    short = simulated_rir_bank(tmp_path / "short", count=4, seed=1, sample_rate=SR, rt60_range=(0.1, 0.15))
    est_short = [schroeder_rt60(sf.read(str(f))[0], SR) for f in short]
    assert all(0.05 <= e <= 0.25 for e in est_short), est_short
    assert max(est_short) < min(est)


def test_bank_of_other_parameters_is_rebuilt(tmp_path):
    simulated_rir_bank(tmp_path / "b", count=2, seed=0, sample_rate=SR)
    with pytest.warns(UserWarning, match="rebuilding"):
        files = simulated_rir_bank(tmp_path / "b", count=3, seed=0, sample_rate=SR)
    assert len(files) == 3 and json.loads((tmp_path / "b" / "bank.json").read_text())["count"] == 3


# ----------------------------------------------------------------------------- MixingDataset

# items of MixingDataset(voicebank_debug/clean, noise/speechbrain, segment 16000, context 1600, rir,
# rir_prob 0.5, seed 7) as drawn before augmentation existed (commit 1f42675):
# (epoch, i, clean file, noise file, RIR file, snr, level, clean[[1000, 9000]], noise[[1000, 9000]])
BEFORE_AUGMENTATION = [
    (0, 0, "p287_006.wav", "noise4.wav", None, 0.63018, -28.996674,
     [-0.0867245, -0.00933], [0.0021023, 0.0285437]),
    (0, 1, "p287_005.wav", "noise4.wav", None, 19.521411, -19.315725,
     [-0.2904699, -0.0170974], [-0.0057017, 0.0044681]),
    (0, 2, "p287_006.wav", "noise3.wav", None, -3.414361, -20.95321,
     [-0.0028322, -0.0397459], [-0.0823496, -0.1009398]),
    (1, 0, "p287_006.wav", "noise5.wav", "rir1.wav", 5.799221, -24.965431,
     [-0.0222409, -0.0010405], [0.0205556, -0.0243329]),
    (1, 1, "p287_001.wav", "noise1.wav", "rir2.wav", 10.338405, -21.751984,
     [0.2312554, 0.0329737], [0.0011108, -0.0192588]),
    (1, 3, "p287_004.wav", "noise2.wav", "rir2.wav", 15.957419, -24.099909,
     [0.5082598, 0.1074031], [0.0139288, -0.0034222]),
]


def test_augmentation_off_gives_the_items_of_before(make, data_dir):
    off = [make(rir=data_dir / "rir", rir_prob=0.5, seed=7, augment=a)
           for a in (None, {}, {"speed_prob": 0.0, "eq_prob": 0.0, "eq_db": 3.0})]
    for e, i, cf, nf, rf, snr, level, c, n in BEFORE_AUGMENTATION:
        items = [ds.sample(i, e) for ds in off]
        it = items[0]
        assert (it["clean_file"].name, it["noise_file"].name) == (cf, nf)
        assert (it["rir_file"].name if it["rir_file"] else None) == rf
        assert it["snr"] == pytest.approx(snr, abs=1e-6) and it["level"] == pytest.approx(level, abs=1e-5)
        np.testing.assert_allclose(it["clean"][[1000, 9000]], c, atol=2e-7)
        np.testing.assert_allclose(it["noise"][[1000, 9000]], n, atol=2e-7)
        assert it["augment"] == {"speed": 1.0, "noise_speed": 1.0, "eq": None, "noise_eq": None}
        for other in items[1:]:
            for key in ("noisy", "clean", "noise"):
                assert np.array_equal(other[key], it[key])


ALL_ON = {"speed_prob": 0.7, "noise_speed_prob": 0.7, "eq_prob": 0.7, "noise_eq_prob": 0.7}


def test_augmented_items_reproducible_and_distinct(make, data_dir, bank):
    aug = {**ALL_ON, "sim_rir": bank, "sim_rir_count": 8, "sim_rir_seed": 5}
    a = make(rir=data_dir / "rir", rir_prob=0.7, seed=3, augment=aug)
    b = make(rir=data_dir / "rir", rir_prob=0.7, seed=3, augment=Augment(**aug))
    base = [a.sample(i) for i in range(8)]
    for i, it in enumerate(base):
        twin = b.sample(i)
        assert np.array_equal(it["noisy"], twin["noisy"]) and np.array_equal(it["clean"], twin["clean"])
        assert it["augment"]["speed"] == twin["augment"]["speed"]
    assert len({float(it["noisy"].sum()) for it in base}) == len(base)
    a.set_epoch(1)
    assert not any(np.array_equal(x["noisy"], a.sample(i)["noisy"]) for i, x in enumerate(base))
    drawn = [it["augment"] for it in base]
    assert any(d["speed"] != 1.0 for d in drawn) and any(d["speed"] == 1.0 for d in drawn)
    assert any(d["eq"] is not None for d in drawn) and any(d["noise_eq"] is None for d in drawn)


def test_exact_decomposition_snr_and_level_with_augmentation(make, data_dir, bank):
    ds = make(rir=data_dir / "rir", rir_prob=0.5, length=30, snr_range=(0, 10), level_range=(-30, -20),
              augment={**ALL_ON, "sim_rir": bank, "sim_rir_count": 8, "sim_rir_seed": 5})
    for i in range(len(ds)):
        it = ds.sample(i)
        assert it["noisy"].shape == (SEG + CTX,) and it["noisy"].dtype == np.float32
        assert np.array_equal(it["noisy"], it["clean"] + it["noise"])
        assert snr_db(it["clean"], it["noise"]) == pytest.approx(it["snr"], abs=0.01)
        assert 0 - 0.01 <= it["snr"] <= 10.01
        assert rms_db(it["noisy"]) == pytest.approx(it["level"], abs=0.01)
        assert -30.01 <= it["level"] <= -19.99 and np.abs(it["noisy"]).max() <= 0.99 + 1e-6
        noisy, clean = ds[i]
        assert np.array_equal(noisy.numpy(), it["noisy"]) and np.array_equal(clean.numpy(), it["clean"])


def test_speed_perturbs_the_speech_content(make, data_dir):
    path = data_dir / "voicebank_debug" / "clean" / "p287_003.wav"
    speech, _ = sf.read(path, dtype="float64")
    ds = make(clean=[path], context=0, length=40, augment={"speed_prob": 1.0, "speed": [0.9, 1.1]})
    factors = []
    for i in range(40):
        it = ds.sample(i)
        f = it["augment"]["speed"]
        factors.append(f)
        if abs(f - 1.0) < 0.04 or len(factors) > 12:
            continue
        # the target is a crop of the whole utterance played at speed f (up to a sub-sample
        # offset), not of the utterance itself
        assert _ncc_max(it["clean"].astype(np.float64), change_speed(speech, f)) > 0.95
        assert _ncc_max(it["clean"].astype(np.float64), speech) < 0.6
    assert 0.9 <= min(factors) < 0.95 and 1.05 < max(factors) <= 1.1


def test_speed_of_clean_and_noise_on_tones(make, tmp_path):
    t = np.arange(3 * SR) / SR
    sf.write(tmp_path / "speech.wav", 0.3 * np.sin(2 * np.pi * 500.0 * t), SR)
    sf.write(tmp_path / "noise.wav", 0.3 * np.sin(2 * np.pi * 2000.0 * t), SR)
    ds = make(clean=[tmp_path / "speech.wav"], noise=[tmp_path / "noise.wav"], length=12,
              augment={"speed_prob": 1.0, "noise_speed_prob": 0.5})
    noise_factors = []
    for i in range(12):
        it = ds.sample(i)
        f, g = it["augment"]["speed"], it["augment"]["noise_speed"]
        assert _peak_hz(it["clean"]) == pytest.approx(500.0 * f, abs=1.0)
        assert _peak_hz(it["noise"]) == pytest.approx(2000.0 * g, abs=1.0)
        noise_factors.append(g)
    assert 1.0 in noise_factors and len(set(noise_factors)) > 2  # each factor is drawn on its own


def test_eq_colours_clean_and_noise_within_bounds(make):
    """Same draw with and without EQ: the ratio of the targets is the recorded EQ, within ±eq_db."""
    plain = make(seed=11)
    eqd = make(seed=11, augment={"eq_prob": 1.0, "noise_eq_prob": 1.0, "eq_db": 6.0})
    for i in range(4):
        a, b = plain.sample(i), eqd.sample(i)
        assert a["clean_file"] == b["clean_file"] and a["snr"] == b["snr"]
        for key, sos in (("clean", b["augment"]["eq"]), ("noise", b["augment"]["noise_eq"])):
            x, y = a[key].astype(np.float64), b[key].astype(np.float64)
            f, pxy = scipy.signal.csd(x, y, fs=SR, nperseg=1024)
            _, pxx = scipy.signal.welch(x, fs=SR, nperseg=1024)
            gain = 20 * np.log10(np.abs(pxy / pxx))
            want = eq_response_db(sos, SR, f)[1]
            strong = pxx > 1e-4 * pxx.max()  # bins with signal
            offset = np.median(gain[strong] - want[strong])  # the mixer's level change
            assert np.percentile(np.abs(gain[strong] - want[strong] - offset), 95) < 0.5
            assert np.abs(want).max() <= 6.0 + 1e-6 and np.ptp(want) > 1.0
        assert not np.allclose(b["augment"]["eq"], b["augment"]["noise_eq"])  # independent EQs


def test_simulated_and_real_rirs(make, data_dir, bank):
    sim = {"sim_rir": bank, "sim_rir_count": 8, "sim_rir_seed": 5}
    only_sim = make(rir_prob=1.0, augment=sim, length=10)
    assert all(only_sim.sample(i)["rir_file"].parent == bank for i in range(10))
    both = make(rir=data_dir / "rir", rir_prob=0.8, augment={**sim, "sim_rir_share": 0.5}, length=40)
    where = [it["rir_file"].parent.name if it["rir_file"] else None for it in map(both.sample, range(40))]
    assert {"rir", bank.name, None} <= set(where)
    assert 8 <= where.count(bank.name) <= 24 and 20 <= where.count(None) + where.count("rir") <= 32
    dry, wet = make(seed=2), make(seed=2, rir_prob=1.0, augment=sim)
    for i in range(3):
        a, b = dry.sample(i), wet.sample(i)
        corr = np.dot(a["clean"], b["clean"]) / np.linalg.norm(a["clean"]) / np.linalg.norm(b["clean"])
        assert corr < 0.99 and np.array_equal(b["noisy"], b["clean"] + b["noise"])
    with pytest.warns(UserWarning, match="rir_prob is 0"):
        make(augment=sim)


def test_dataloader_workers_with_augmentation(make, bank):
    ds = make(length=4, rir_prob=0.5, augment={**ALL_ON, "sim_rir": bank, "sim_rir_count": 8,
                                                "sim_rir_seed": 5})
    loaders = [torch.utils.data.DataLoader(ds, batch_size=2, num_workers=w) for w in (0, 2)]
    for (n0, c0), (n2, c2) in zip(*[list(loader) for loader in loaders]):
        assert torch.equal(n0, n2) and torch.equal(c0, c2)


def test_build_dataset_from_a_yaml_source(data_dir, tmp_path):
    """data.train: {clean, noise, rir, augment: {...}} through snnse.training; sim_rir is under data.root."""
    import yaml

    from snnse.training import build_dataset

    spec = yaml.safe_load(f"""
clean: {data_dir / 'voicebank_debug' / 'clean'}
noise: {data_dir / 'noise' / 'speechbrain'}
rir: {data_dir / 'rir'}
rir_prob: 0.5
level_range: [-32, -22]
augment:
  speed: [0.9, 1.1]
  speed_prob: 0.5
  eq_prob: 0.5
  noise_eq_prob: 0.5
  eq_db: 6
  sim_rir: rir_sim
  sim_rir_count: 3
  sim_rir_share: 0.5
""")
    data = {"root": str(tmp_path), "sample_rate": SR, "segment": 0.5, "context": 0,
            "train_limit": 6, "valid_limit": None}
    ds = build_dataset(spec, data, seed=1, train=True)
    assert isinstance(ds, MixingDataset) and len(ds) == 6 and ds.n == SR // 2
    assert ds.augment.speed_prob == 0.5 and ds.augment.sim_rir == tmp_path / "rir_sim"
    assert (tmp_path / "rir_sim" / "bank.json").is_file() and len(ds.sim_rir) == 3
    assert ds.level_range == (-32, -22)
    noisy, clean = ds[0]
    assert noisy.shape == clean.shape == (SR // 2,)
    assert all(-32.01 <= ds.sample(i)["level"] <= -21.99 for i in range(6))
