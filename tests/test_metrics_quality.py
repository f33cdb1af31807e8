"""Tests of snnse.metrics.quality against real VoiceBank files and reference scores."""

import json

import numpy as np
import pytest
import soundfile as sf

from snnse.audio import resample
from snnse.metrics import quality as q
from snnse.metrics.quality import MetricError

from .helpers import REF_TOL

FILES = [f"p287_00{i}.wav" for i in range(1, 7)]
FS = 16000


def _load(data_dir, name):
    clean, sr = sf.read(data_dir / "voicebank_debug" / "clean" / name)
    noisy, sr2 = sf.read(data_dir / "voicebank_debug" / "noisy" / name)
    assert sr == sr2 == FS
    return clean, noisy


@pytest.fixture(scope="module")
def reference(data_dir):
    return json.loads((data_dir / "reference_metrics.json").read_text())


@pytest.fixture(scope="module")
def pair(data_dir):
    """The shortest real pair (p287_001) as float64 arrays."""
    return _load(data_dir, "p287_001.wav")


@pytest.mark.parametrize("name", FILES)
def test_matches_reference_scores(data_dir, reference, name):
    clean, noisy = _load(data_dir, name)
    want = reference[name]
    comp = q.composite(clean, noisy, FS)
    got = {key: comp[key] for key in ("pesq_wb", "csig", "cbak", "covl")}
    got["stoi"] = q.stoi(clean, noisy, FS)
    got["estoi"] = q.stoi(clean, noisy, FS, extended=True)
    got["sisnr"] = q.si_snr(clean, noisy)
    for key, value in got.items():  # the README's figures (REF_TOL)
        assert abs(value - want[key]) <= REF_TOL[key], (key, value, want[key])
    assert q.pesq(clean, noisy, FS) == comp["pesq_wb"]
    assert set(comp) == {"csig", "cbak", "covl", "pesq_wb", "llr", "wss", "segsnr"}
    assert comp["segsnr"] == pytest.approx(q.segsnr(clean, noisy, FS), abs=1e-12)


def test_precomputed_pesq_is_used(pair):
    clean, noisy = pair
    full = q.composite(clean, noisy, FS)
    given = q.composite(clean, noisy, FS, pesq_wb=full["pesq_wb"] + 1.0)
    assert given["pesq_wb"] == full["pesq_wb"] + 1.0
    assert given["csig"] == pytest.approx(min(5.0, full["csig"] + 0.603), abs=1e-9)
    assert given["cbak"] == pytest.approx(min(5.0, full["cbak"] + 0.478), abs=1e-9)
    assert given["llr"] == full["llr"] and given["wss"] == full["wss"]


def test_identical_signals(pair):
    clean, _ = pair
    assert q.si_snr(clean, clean) > 100
    assert q.pesq(clean, clean, FS) == pytest.approx(4.64, abs=0.01)
    assert q.stoi(clean, clean, FS) == pytest.approx(1.0, abs=1e-6)
    comp = q.composite(clean, clean, FS)
    assert comp["llr"] == pytest.approx(0.0, abs=1e-9) and comp["wss"] == pytest.approx(0.0, abs=1e-9)
    assert comp["segsnr"] == 35.0
    for key in ("csig", "cbak", "covl"):
        assert 4.5 < comp[key] <= 5.0


def test_silence(pair):
    clean, noisy = pair
    zeros = np.zeros_like(clean)
    for ref, est in ((clean, zeros), (zeros, noisy), (zeros, zeros)):
        with pytest.raises(MetricError, match="silent"):
            q.pesq(ref, est, FS)
        with pytest.raises(MetricError, match="silent"):
            q.pesq(ref, est, FS, mode="nb")
        with pytest.raises(MetricError, match="silent"):
            q.composite(ref, est, FS)
        with pytest.raises(MetricError, match="silent"):
            q.segsnr(ref, est, FS)
    # far quieter than float32 can represent next to the reference: the package yields NaN
    with pytest.raises(MetricError):
        q.pesq(clean, noisy * 1e-40, FS)
    # silent estimate: finite and very low; both silent: undefined
    assert -200 < q.si_snr(clean, zeros) < -100
    assert -200 < q.si_snr(zeros, noisy) < -100
    with pytest.raises(MetricError):
        q.si_snr(zeros, zeros)


def test_too_short(pair):
    clean, noisy = pair
    with pytest.raises(MetricError, match="0.25 s"):
        q.pesq(clean[:3000], noisy[:3000], FS)
    with pytest.raises(MetricError, match="0.25 s"):
        q.composite(clean[:3000], noisy[:3000], FS)
    with pytest.raises(MetricError, match="too short"):
        q.composite(clean[:500], noisy[:500], FS, pesq_wb=2.0)
    assert np.isfinite(q.pesq(clean[:4000], noisy[:4000], FS))


def test_different_lengths_are_truncated(pair):
    clean, noisy = pair
    short = noisy[:-1234]
    cut = clean[: len(short)]
    assert q.composite(clean, short, FS) == q.composite(cut, short, FS)
    assert q.composite(short, clean, FS) == q.composite(short, cut, FS)
    assert q.pesq(clean, short, FS) == q.pesq(cut, short, FS)
    assert q.stoi(clean, short, FS) == q.stoi(cut, short, FS)
    assert q.si_snr(clean, short) == q.si_snr(cut, short)
    assert q.segsnr(clean, short, FS) == q.segsnr(cut, short, FS)


def test_clipping_scores_lower(pair):
    clean, noisy = pair
    lim = 0.1 * np.max(np.abs(noisy))
    clipped = np.clip(noisy, -lim, lim)
    plain = q.composite(clean, noisy, FS)
    hard = q.composite(clean, clipped, FS)
    assert q.pesq(clean, clipped, FS) < q.pesq(clean, noisy, FS)
    assert hard["pesq_wb"] < plain["pesq_wb"]
    assert hard["csig"] < plain["csig"] - 0.1


def test_nan_raises_everywhere(pair):
    clean, noisy = pair
    bad = noisy.copy()
    bad[100] = np.nan
    calls = [
        lambda r, e: q.si_snr(r, e),
        lambda r, e: q.si_snri(r, e, noisy),
        lambda r, e: q.si_snri(r, noisy, e),
        lambda r, e: q.pesq(r, e, FS),
        lambda r, e: q.pesq(r, e, FS, mode="nb"),
        lambda r, e: q.stoi(r, e, FS),
        lambda r, e: q.stoi(r, e, FS, extended=True),
        lambda r, e: q.composite(r, e, FS),
        lambda r, e: q.composite(r, e, FS, pesq_wb=2.0),
        lambda r, e: q.segsnr(r, e, FS),
    ]
    for call in calls:
        with pytest.raises(MetricError, match="NaN"):
            call(clean, bad)
    for call in calls[:1] + calls[3:]:
        with pytest.raises(MetricError, match="NaN"):
            call(bad, noisy)


def test_si_snri_is_difference(pair):
    clean, noisy = pair
    rng = np.random.default_rng(0)
    est = clean + 0.3 * (noisy - clean) + 1e-3 * rng.standard_normal(len(clean))
    got = q.si_snri(clean, est, noisy)
    assert got == pytest.approx(q.si_snr(clean, est) - q.si_snr(clean, noisy), abs=1e-12)
    assert got > 5  # less noise than the noisy input
    assert q.si_snri(clean, noisy, noisy) == 0.0


def test_48khz_inputs_close_to_16khz(pair):
    clean, noisy = pair
    c48, n48 = resample(clean, FS, 48000), resample(noisy, FS, 48000)
    assert len(c48) == 3 * len(clean)
    assert q.pesq(c48, n48, 48000) == pytest.approx(q.pesq(clean, noisy, FS), abs=0.1)
    at48, at16 = q.composite(c48, n48, 48000), q.composite(clean, noisy, FS)
    for key in ("pesq_wb", "csig", "cbak", "covl"):
        assert at48[key] == pytest.approx(at16[key], abs=0.1), key
    assert at48["segsnr"] == pytest.approx(q.segsnr(c48, n48, 48000), abs=1e-12)


def test_pesq_narrowband(pair):
    clean, noisy = pair
    nb = q.pesq(clean, noisy, FS, mode="nb")
    assert 1.0 <= nb <= 4.6
    c8, n8 = resample(clean, FS, 8000), resample(noisy, FS, 8000)
    assert q.pesq(c8, n8, 8000, mode="nb") == pytest.approx(nb, abs=1e-6)
    assert q.pesq(clean, clean, FS, mode="nb") > nb
    with pytest.raises(ValueError):
        q.pesq(clean, noisy, FS, mode="xb")


def test_segsnr_bounds(pair):
    clean, noisy = pair
    rng = np.random.default_rng(1)
    white = rng.standard_normal(len(clean))
    frames = q._segsnr_frames(clean, white, FS)
    assert frames.min() == -10.0  # speech pauses against loud noise hit the floor
    assert np.all((frames >= -10.0) & (frames <= 35.0))
    assert -10.0 <= q.segsnr(clean, white, FS) < 0.0
    assert q.segsnr(clean, clean, FS) == 35.0  # every frame hits the ceiling
    assert -10.0 < q.segsnr(clean, noisy, FS) < 35.0
    # scale and DC of the estimate do not matter (peak matching, as in the port)
    assert q.segsnr(clean, 3 * noisy + 0.01, FS) == pytest.approx(q.segsnr(clean, noisy, FS), abs=1e-9)


def _peaks_loop(energy):
    """composite.m's peak search, literally (0-based, for one frame)."""
    slope = np.diff(energy)
    out = np.empty(len(slope))
    for k in range(len(slope)):
        if slope[k] > 0:
            n = k
            while n < len(slope) and slope[n] > 0:
                n += 1
            out[k] = energy[n - 1]
        else:
            n = k
            while n >= 0 and slope[n] <= 0:
                n -= 1
            out[k] = energy[n + 1]
    return out


def test_vectorised_helpers_match_loops():
    from scipy.linalg import solve_toeplitz

    rng = np.random.default_rng(2)
    energy = np.round(rng.standard_normal((50, 25)) * 3)  # ties give zero slopes too
    got = q._local_peaks(energy)
    want = np.stack([_peaks_loop(e) for e in energy])
    np.testing.assert_array_equal(got, want)

    x = q._frames(rng.standard_normal(4000), FS)
    r = np.stack([[np.dot(f[: len(f) - k], f[k:]) for k in range(17)] for f in x])
    a = q._levinson(r)
    want_a = np.stack([np.r_[1.0, -solve_toeplitz(row[:16], row[1:])] for row in r])
    np.testing.assert_allclose(a, want_a, rtol=1e-8, atol=1e-10)


def test_frames_layout():
    x = np.arange(16000.0)
    frames = q._frames(x, FS)
    assert frames.shape == (int(16000 / 120 - 480 / 120), 480)
    win = 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, 481) / 481))
    np.testing.assert_allclose(frames[3], x[360:840] * win)


def test_versions():
    from importlib.metadata import version

    info = q.versions()
    assert set(info) == {"sisnr", "sisnri", "pesq_wb", "pesq_nb", "stoi", "estoi",
                         "csig", "cbak", "covl", "segsnr"}
    assert all(isinstance(v, str) and "\n" not in v and v for v in info.values())
    assert f"pesq {version('pesq')}" in info["pesq_wb"] and "16 kHz" in info["pesq_wb"]
    assert "8 kHz" in info["pesq_nb"]
    assert f"pystoi {version('pystoi')}" in info["estoi"]
    assert "composite.m" in info["csig"] and "PESQ-WB" in info["covl"]
