"""Tests for snnse.data.mixing.MixingDataset on real speech, noise and RIRs."""

import numpy as np
import pytest
import soundfile as sf
import torch

from snnse.audio import AudioError
from snnse.data.mixing import MixingDataset, rms_db, snr_db

SEG, CTX = 16000, 1600


@pytest.fixture
def make(data_dir):
    def _make(**kw):
        args = dict(clean=data_dir / "voicebank_debug" / "clean",
                    noise=data_dir / "noise" / "speechbrain", segment=SEG, context=CTX, length=16)
        args.update(kw)
        return MixingDataset(**args)
    return _make


def _items(ds, n=6):
    return [torch.cat(ds[i]) for i in range(n)]


def test_items_shape_dtype_and_exact_decomposition(make):
    ds = make()
    assert len(ds) == 16
    noisy, clean = ds[3]
    assert noisy.dtype == clean.dtype == torch.float32 and noisy.shape == clean.shape == (SEG + CTX,)
    item = ds.sample(3)
    assert np.array_equal(item["noisy"], item["clean"] + item["noise"])
    assert np.array_equal(noisy.numpy(), item["noisy"]) and np.array_equal(clean.numpy(), item["clean"])
    with pytest.raises(IndexError):
        ds[16]


def test_reproducible_across_instances(make):
    a, b = _items(make(seed=3)), _items(make(seed=3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_different_across_seeds_and_epochs(make):
    ds = make(seed=3)
    base = _items(ds)
    ds.set_epoch(1)
    other_epoch = _items(ds)
    other_seed = _items(make(seed=4))
    for other in (other_epoch, other_seed):
        assert not any(torch.equal(x, y) for x, y in zip(base, other))
    assert len({float(x.sum()) for x in base}) == len(base)  # items differ from each other too


def test_snr_and_level_in_range(make):
    ds = make(length=40, snr_range=(-5, 20), level_range=(-35, -15))
    snrs, levels = [], []
    for i in range(len(ds)):
        it = ds.sample(i)
        measured = snr_db(it["clean"], it["noisy"] - it["clean"])
        assert measured == pytest.approx(it["snr"], abs=0.01)
        assert rms_db(it["noisy"]) == pytest.approx(it["level"], abs=0.01)
        snrs.append(measured)
        levels.append(it["level"])
        assert np.abs(it["noisy"]).max() <= 0.99 + 1e-6  # peak guard
    assert -5.01 <= min(snrs) and max(snrs) <= 20.01 and max(snrs) - min(snrs) > 10
    assert -35.01 <= min(levels) and max(levels) <= -14.99


def test_short_utterance_zero_padded_at_random_offset(make, data_dir):
    path = data_dir / "voicebank_debug" / "clean" / "p287_001.wav"  # 1.96 s
    speech, _ = sf.read(path, dtype="float32")
    n = 3 * 16000
    ds = make(clean=[path], segment=n, context=0)
    starts = set()
    for i in range(4):
        it = ds.sample(i)
        start = int(np.flatnonzero(it["clean"])[0] - np.flatnonzero(speech)[0])
        inside = slice(start, start + len(speech))
        gain = np.dot(it["clean"][inside], speech) / np.dot(speech, speech)
        np.testing.assert_allclose(it["clean"][inside], gain * speech, atol=1e-6)
        padding = np.ones(n, bool)
        padding[inside] = False
        assert not it["clean"][padding].any()  # zeros around the utterance
        assert rms_db(it["noise"][padding]) > -60  # while the noise covers everything
        starts.add(start)
    assert len(starts) > 1


def test_short_noise_is_looped(make, data_dir):
    path = data_dir / "noise" / "speechbrain" / "noise2.wav"  # 80000 samples
    period = sf.info(str(path)).frames
    ds = make(noise=[path], segment=period + 20000, context=0)
    noise = ds.sample(0)["noise"]
    assert np.array_equal(noise[period:], noise[:20000])
    assert rms_db(noise[-20000:]) > -60


def test_resampled_noise_esc50(make, data_dir):
    with pytest.warns(UserWarning, match="resampled"):
        ds = make(noise=data_dir / "noise" / "esc50")
    it = ds.sample(0)
    assert it["noise_file"].parent.name == "esc50" and len(it["noise"]) == SEG + CTX
    assert rms_db(it["noise"]) > -60
    assert ds.noise.lengths.tolist() == [80000] * 5  # 5 s at 16 kHz


def test_rir(make, data_dir):
    dry = make(rir=data_dir / "rir", rir_prob=0.0)
    wet = make(rir=data_dir / "rir", rir_prob=1.0)
    for i in range(3):
        a, b = dry.sample(i), wet.sample(i)
        assert a["rir_file"] is None and b["rir_file"].parent.name == "rir"
        assert a["clean_file"] == b["clean_file"]
        assert np.array_equal(b["noisy"], b["clean"] + b["noise"])
        corr = np.dot(a["clean"], b["clean"]) / np.linalg.norm(a["clean"]) / np.linalg.norm(b["clean"])
        assert corr < 0.999  # reverberated, not just rescaled


def test_silent_stretches_are_skipped(make, data_dir, tmp_path):
    speech, sr = sf.read(data_dir / "voicebank_debug" / "clean" / "p287_002.wav", dtype="float32")
    sf.write(tmp_path / "gappy.wav", np.concatenate([np.zeros(5 * sr, np.float32), speech]), sr)
    ds = make(clean=[tmp_path / "gappy.wav"], segment=4000, context=0, length=20)
    assert all(rms_db(ds.sample(i)["clean"]) > ds.silence_db for i in range(20))


def test_dataloader_workers_give_same_batches(make):
    ds = make(length=8)
    loaders = [torch.utils.data.DataLoader(ds, batch_size=4, num_workers=w) for w in (0, 2)]
    batches = [list(loader) for loader in loaders]
    for (n0, c0), (n2, c2) in zip(*batches):
        assert n0.shape == (4, SEG + CTX) and torch.equal(n0, n2) and torch.equal(c0, c2)


def test_empty_folder_error(make, tmp_path):
    with pytest.raises(AudioError, match="no clean audio files"):
        make(clean=tmp_path)
    with pytest.raises(AudioError, match="no noise audio files"):
        make(noise=[])


def test_epoch_index_pairs_from_the_sampler(data_dir):
    """Training feeds (epoch, i) pairs from EpochSampler; they select the epoch without set_epoch."""
    from snnse.data.paired import EpochSampler

    ds = MixingDataset(data_dir / "voicebank_debug" / "clean", data_dir / "noise" / "speechbrain",
                       segment=4000, length=6, seed=3)
    ds.set_epoch(2)
    want = ds[4]
    ds.set_epoch(0)
    got = ds[(2, 4)]
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    sampler = EpochSampler(len(ds), seed=1)
    sampler.set_epoch(2)
    assert sorted(i for _, i in sampler) == list(range(6))
    for e, i in list(sampler)[:2]:
        assert np.array_equal(ds[(e, i)][0].numpy(), ds.sample(i, e)["noisy"])
        assert not np.array_equal(ds[(e, i)][0].numpy(), ds.sample(i, e + 1)["noisy"])


def test_clean_weights_bias_the_draws_reproducibly(make, data_dir):
    files = sorted(p.name for p in (data_dir / "voicebank_debug" / "clean").iterdir())
    favoured = files[0]
    base = make(length=120)
    weighted = make(length=120, clean_weights={favoured: 20})
    again = make(length=120, clean_weights={favoured: 20})
    share = [sum(ds.sample(i)["clean_file"].name == favoured for i in range(120)) / 120
             for ds in (base, weighted)]
    # uniform: ~1/len(files); weight 20 against 1 for the others: ~20/(20 + len(files) - 1)
    expect = 20 / (20 + len(files) - 1)
    assert share[0] < 0.5 * expect and abs(share[1] - expect) < 0.2
    assert all(np.array_equal(weighted.sample(i)["noisy"], again.sample(i)["noisy"]) for i in range(8))
    item = weighted.sample(5)
    assert np.array_equal(item["noisy"], item["clean"] + item["noise"])
    # a weight of 0 excludes a file; all-zero or negative weights are an error
    never = make(length=60, clean_weights={favoured: 0})
    assert all(never.sample(i)["clean_file"].name != favoured for i in range(60))
    for bad in ({"*": 0}, {favoured: -1}, {"*": float("nan")}):
        with pytest.raises(ValueError, match="clean_weights"):
            make(clean_weights=bad)
    # without weights the draws are those of earlier versions (uniform integers)
    assert np.array_equal(make(clean_weights=None).sample(3)["noisy"], base.sample(3)["noisy"])
