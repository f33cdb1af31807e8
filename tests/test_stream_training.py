"""Training for long, clean and quiet input: clean-only items, stream items, the StreamSampler,
carried-state training (truncated BPTT) equal to the uncut forward pass, and its exact resume."""

import numpy as np
import pytest
import torch

from snnse.data.mixing import MixingDataset
from snnse.data.paired import StreamSampler
from snnse.losses import EnhancementLoss, si_snr
from snnse.models import base

TINY = {
    "dpsnn": {"N": 16, "B": 16, "H": 16},
    "spiking_s4": {"d_model": 16, "d_state": 8, "n_layers": 2, "n_fft": 256, "hop": 64},
}
FAMILIES = [(name, spiking) for name in TINY for spiking in (True, False)]  # both ANN twins too


def dataset(data_dir, **kw):
    opts = dict(segment=4000, length=12, snr_range=(-5, 40), level_range=(-55, -10), seed=1)
    opts.update(kw)
    return MixingDataset(data_dir / "voicebank_debug" / "clean", data_dir / "noise" / "speechbrain", **opts)


# ---- data ---------------------------------------------------------------------------------------
def test_clean_prob_gives_clean_items_and_keeps_the_other_draws(data_dir):
    plain, some = dataset(data_dir), dataset(data_dir, clean_prob=0.5)
    kinds = []
    for i in range(12):
        a, b = plain.sample(i), some.sample(i)
        assert a["clean_file"] == b["clean_file"] and a["noise_file"] == b["noise_file"]
        if np.isinf(b["snr"]):  # clean only: no noise, the speech at the drawn level
            kinds.append("clean")
            assert not b["noise"].any() and np.array_equal(b["noisy"], b["clean"])
            assert b["level"] == pytest.approx(a["level"], abs=0.5) or np.abs(b["clean"]).max() >= 0.98
            assert np.corrcoef(a["clean"], b["clean"])[0, 1] > 0.999  # the same speech crop
        else:  # the same item as without clean_prob
            kinds.append("noisy")
            assert np.array_equal(a["noisy"], b["noisy"]) and np.array_equal(a["clean"], b["clean"])
    assert 2 <= kinds.count("clean") <= 10
    assert all(np.isinf(dataset(data_dir, clean_prob=1.0).sample(i)["snr"]) for i in range(3))
    with pytest.raises(ValueError, match="clean_prob"):
        dataset(data_dir, clean_prob=1.5)


def test_stream_items_share_their_stream_level(data_dir):
    ds = dataset(data_dir, stream_crops=4, level_jitter=2.0)
    levels = np.array([ds.sample(i)["level"] for i in range(12)]).reshape(3, 4)
    assert np.all(levels.max(1) - levels.min(1) <= 4.0 + 1e-6)  # within ±2 dB of the stream's level
    assert np.ptp(levels.mean(1)) > 1.0  # streams differ
    noisy, clean, crop = ds[(0, 6)]
    assert crop == 2 and noisy.shape == clean.shape == (4000,)
    with pytest.raises(ValueError, match="stream_crops"):
        dataset(data_dir, stream_crops=5)


def test_stream_sampler_batches_continue_their_streams():
    n, crops, bs = 5 * 3, 3, 2  # 5 streams of 3 crops, 2 streams per batch: 3 groups (one stream repeated)
    s = StreamSampler(n, crops, bs, seed=4, rank=0, world_size=1)
    order = [i for _, i in s]
    assert len(order) == len(s) == 3 * bs * crops
    batches = [order[k:k + bs] for k in range(0, len(order), bs)]
    for g in range(0, len(batches), crops):
        streams = [i // crops for i in batches[g]]
        for c in range(crops):  # the next batches: the same streams, in the same rows, crop after crop
            assert batches[g + c] == [st * crops + c for st in streams]
    assert set(i // crops for i in order) == set(range(5))
    s.set_epoch(1)
    assert [i for _, i in s] != order  # a new permutation per epoch
    # two processes: whole groups each, disjoint streams but for the wrap-around, all streams covered
    shards = [[i for _, i in StreamSampler(n, crops, bs, seed=4, rank=r, world_size=2)] for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 2 * bs * crops  # ceil(5 / (2·2)) groups each
    assert set(i // crops for sh in shards for i in sh) == set(range(5))
    assert not {i // crops for i in shards[0][:bs * crops]} & {i // crops for i in shards[1][:bs * crops]}
    # a resumed pass skips whole batches
    s.set_epoch(0)
    s.start_at(0, 2 * bs)
    assert [i for _, i in s] == order[2 * bs:]


# ---- carried state ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, spiking", FAMILIES)
def test_carried_state_equals_the_uncut_forward_pass(name, spiking, data_dir):
    """Four crops with the state carried (and detached) between them give exactly the offline output
    of the whole stream, delayed by frame_length − hop, and each crop's loss is its own."""
    torch.manual_seed(0)
    model = base.get(name, spiking=spiking, **TINY[name]).double()
    assert model.spiking == spiking
    ds = dataset(data_dir, stream_crops=4, segment=2560)
    items = [ds[i] for i in range(8)]  # two streams of four crops
    noisy = torch.stack([torch.cat([items[s * 4 + c][0] for c in range(4)]) for s in range(2)]).double()
    clean = torch.stack([torch.cat([items[s * 4 + c][1] for c in range(4)]) for s in range(2)]).double()
    loss_fn = EnhancementLoss(offset=0.0, wave_mse=0.001, mask_mse=0.001)
    d = model.frame_length - model.hop
    carry, outs, targets = (), [], []
    for c in range(4):
        sl = slice(c * 2560, (c + 1) * 2560)
        model.zero_grad()
        loss, parts, est, carry = loss_fn(model, noisy[:, sl], clean[:, sl], return_estimate=True, carry=carry)
        loss.backward()  # the graph ends at the carried state: no error about freed buffers
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        target = torch.cat([clean.new_zeros(2, d), clean], -1)[:, sl]
        assert parts["sisnr"] == pytest.approx(si_snr(est, target).mean().item(), abs=1e-9)
        outs.append(est.detach())
        targets.append(target)
        carry = tuple(torch.utils._pytree.tree_map(torch.Tensor.detach, carry))
    with torch.no_grad():
        offline = model(noisy)
    streamed = torch.cat(outs, -1)
    assert torch.allclose(streamed[:, d:], offline[:, :-d], atol=1e-10, rtol=0)
    assert torch.equal(torch.cat(targets, -1)[:, d:], clean[:, :-d])


def test_carried_state_with_a_level_control_equals_its_uncut_forward_pass(data_dir):
    """With a level control the crops run through it as the model streams: the streamed output of
    four carried crops is the offline output of the whole stream (level control included)."""
    torch.manual_seed(0)
    model = base.get("dpsnn", level_control={"target_db": -22, "attack_s": 0.05, "release_s": 0.5},
                     **TINY["dpsnn"]).double()
    ds = dataset(data_dir, stream_crops=4, segment=2560)
    items = [ds[i] for i in range(8)]
    noisy = torch.stack([torch.cat([items[s * 4 + c][0] for c in range(4)]) for s in range(2)]).double()
    clean = torch.stack([torch.cat([items[s * 4 + c][1] for c in range(4)]) for s in range(2)]).double()
    loss_fn = EnhancementLoss(offset=0.0, wave_mse=0.001, mrstft=1.0)
    d = model.frame_length - model.hop
    carry, outs = (), []
    for c in range(4):
        sl = slice(c * 2560, (c + 1) * 2560)
        model.zero_grad()
        loss, parts, est, carry = loss_fn(model, noisy[:, sl], clean[:, sl], return_estimate=True, carry=carry)
        loss.backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        assert "level" in carry[0]
        outs.append(est.detach())
        carry = tuple(torch.utils._pytree.tree_map(torch.Tensor.detach, carry))
    with torch.no_grad():
        offline = model(noisy)
        bare = base.get("dpsnn", **TINY["dpsnn"]).double()
        bare.load_state_dict(model.state_dict())
        without = bare(noisy)
    streamed = torch.cat(outs, -1)
    assert torch.allclose(streamed[:, d:], offline[:, :-d], atol=1e-9, rtol=0)
    assert not torch.allclose(offline, without, atol=1e-6)  # the level control did act
    model_s4 = base.get("spiking_s4", level_control={"target_db": -22}, **TINY["spiking_s4"])
    with pytest.raises(ValueError, match="mask_mse"):
        EnhancementLoss(mask_mse=0.001)(model_s4, noisy[:1, :2560].float(), clean[:1, :2560].float(), carry=())


# ---- training runs ------------------------------------------------------------------------------
def stream_cfg(data_dir, root, **over):
    from snnse.config import load_config

    cfg = load_config(None, [
        "--seed", "5", "--model.name", "spiking_s4", "--run.dir", str(root), "--run.name", "run",
        "--data.root", str(data_dir), "--data.train.clean", "voicebank_debug/clean",
        "--data.train.noise", "noise/speechbrain", "--data.train.length", "8",
        "--data.train.stream_crops", "4", "--data.train.clean_prob", "0.25",
        "--data.train.snr_range", "[-5, 40]", "--data.train.level_range", "[-55, -10]",
        "--data.valid.noisy", "voicebank_debug/noisy", "--data.valid.clean", "voicebank_debug/clean",
        "--data.valid_limit", "2", "--data.segment", "0.5", "--data.batch_size", "2",
        "--data.metrics_subset", "0", "--optim.name", "radam", "--optim.lr", "0.003",
        "--optim.gamma", "0.9", "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu",
        "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--loss.mask_mse", "0.001", "--loss.mrstft", "1.0",
    ])
    cfg["model"]["kwargs"] = dict(TINY["spiking_s4"])
    for k, v in over.items():
        section, key = k.split("__")
        cfg[section][key] = v
    return cfg


@pytest.mark.parametrize("stop", [3, 6])
def test_stream_training_resumes_exactly_inside_a_stream(data_dir, tmp_path, stop):
    """Two epochs of 2 streams × 4 crops (4 steps each); stopped at step 3 (epoch 0) or 6 (epoch 1),
    inside the streams (the carried state is in the checkpoint), and resumed: the same weights and
    optimizer as 8 straight steps. (A resume after epoch 0 once restarted epoch 0's batches: Lightning
    makes the resumed epoch's iterator before it sets the sampler's epoch.)"""
    from snnse.training import fit

    straight = fit(stream_cfg(data_dir, tmp_path / "a"))
    cfg = stream_cfg(data_dir, tmp_path / "b", trainer__max_steps=stop)
    run = fit(cfg)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == stop and ckpt["stream_carry"]["next_crop"] == stop % 4
    for t in torch.utils._pytree.tree_leaves(ckpt["stream_carry"]["carry"]):  # no whole-chunk buffers saved
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size()
    cfg["trainer"]["max_steps"] = -1
    fit(cfg, resume=True)
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 8
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


def test_a_lost_carry_is_an_error_not_a_silent_reset():
    from snnse.training import EnhancementTask

    task = EnhancementTask("dpsnn", TINY["dpsnn"], {}, {"lr": 1e-3})
    batch = (torch.zeros(2, 400), torch.zeros(2, 400), torch.tensor([2, 2]))
    with pytest.raises(RuntimeError, match="carried state is missing"):
        task.training_step(batch, 0)
    with pytest.raises(RuntimeError, match="mixes crops"):
        task.training_step((batch[0], batch[1], torch.tensor([0, 1])), 0)
