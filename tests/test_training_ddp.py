"""Training under DDP: rank shards of the samplers, two gloo CPU processes equal to one process
with the combined batch, and an exact DDP resume in the middle of an epoch."""

import os
import subprocess
import sys

import pytest
import soundfile as sf
import torch

from snnse.config import load_config
from snnse.data.manifest import write_manifest
from snnse.data.paired import EpochSampler, StreamSampler
from snnse.models import base

from .test_training import TINY, assert_same_training

@pytest.mark.parametrize("n, world", [(12, 2), (12, 3), (11, 2), (10, 4)])
def test_epoch_sampler_rank_shards_are_disjoint_and_cover_the_epoch(n, world):
    """Rank r of W gets order[r::W] of the epoch's permutation (wrapped to ceil(n / W) each): the shards
    cover the epoch, overlap only in the wrapped items, and taken together batch by batch they are the
    single process's order, so W processes with batch b read the items of one process with batch W·b."""
    per = -(-n // world)
    for epoch in (0, 3):
        one = EpochSampler(n, seed=5, rank=0, world_size=1)
        one.set_epoch(epoch)
        order = [i for _, i in one]
        assert sorted(order) == list(range(n))
        shards = []
        for rank in range(world):
            s = EpochSampler(n, seed=5, rank=rank, world_size=world)
            s.set_epoch(epoch)
            items = list(s)
            assert len(items) == len(s) == per and all(e == epoch for e, _ in items)
            shards.append([i for _, i in items])
        assert [shards[r][j] for j in range(per) for r in range(world)] == (order * 2)[:per * world]
        flat = [i for sh in shards for i in sh]
        assert set(flat) == set(range(n))  # every item of the epoch is read by some rank
        wrapped = per * world - n  # the padding repeats the first items of the order, as DistributedSampler
        assert sorted(flat) == sorted(list(range(n)) + order[:wrapped])
        if not wrapped:
            assert all(not set(shards[a]) & set(shards[b]) for a in range(world) for b in range(a))
    other = EpochSampler(n, seed=5, rank=1, world_size=world)
    other.set_epoch(4)
    assert [i for _, i in other] != shards[1]  # a new permutation per epoch, on every rank


@pytest.mark.parametrize("streams, world, bs", [(8, 2, 2), (12, 3, 2), (5, 2, 2)])
def test_stream_sampler_rank_shards_are_disjoint_and_cover_the_epoch(streams, world, bs):
    """Every stream goes whole (all its crops, in order, in one row of consecutive batches) to one rank;
    the ranks' streams are disjoint but for the wrap-around and cover all streams."""
    crops = 3
    n = streams * crops
    groups = -(-streams // (bs * world))
    for epoch in (0, 2):
        shards = []
        for rank in range(world):
            s = StreamSampler(n, crops, bs, seed=7, rank=rank, world_size=world)
            s.set_epoch(epoch)
            pairs = list(s)
            assert all(e == epoch for e, _ in pairs)
            items = [i for _, i in pairs]
            assert len(items) == len(s) == groups * bs * crops
            batches = [items[k:k + bs] for k in range(0, len(items), bs)]
            for g in range(0, len(batches), crops):  # crop c of the group's streams, crop after crop
                rows = [i // crops for i in batches[g]]
                assert all(batches[g + c] == [st * crops + c for st in rows] for c in range(crops))
            shards.append([i // crops for g in range(0, len(batches), crops) for i in batches[g]])  # its streams
        assert set().union(*map(set, shards)) == set(range(streams))
        extra = groups * bs * world - streams  # streams repeated to give every rank whole groups
        assert sum(map(len, shards)) == streams + extra
        if not extra:
            assert all(not set(shards[a]) & set(shards[b]) for a in range(world) for b in range(a))


@pytest.fixture(scope="module")
def ddp_manifests(data_dir, tmp_path_factory):
    """train.csv: 8 items (the six debug pairs, two of them twice: other crops) for 2 steps per epoch of
    2 processes × batch 2; valid.csv: p287_005-006."""
    out = tmp_path_factory.mktemp("ddp_manifests")
    vb = data_dir / "voicebank_debug"

    def rows(ids):
        for k, i in enumerate(ids):
            info = sf.info(str(vb / "clean" / f"p287_00{i}.wav"))
            yield {"id": f"{k}_p287_00{i}", "noisy": vb / "noisy" / f"p287_00{i}.wav",
                   "clean": vb / "clean" / f"p287_00{i}.wav", "duration": info.duration, "speaker": "p287"}

    write_manifest(out / "train.csv", rows([1, 2, 3, 4, 5, 6, 1, 3]))
    write_manifest(out / "valid.csv", rows([5, 6]))
    return out


def ddp_args(manifests, root, name, batch_size=2, precision="32-true"):
    """The tiny DPSNN recipe with the paper's loss (its every term a mean over the batch) and a decaying lr."""
    return ["--seed", "3", "--model.name", "dpsnn", "--model.kwargs", "{N: 32, B: 32, H: 32}",
            "--run.dir", str(root), "--run.name", name, "--data.root", str(manifests),
            "--data.train.manifest", "train.csv", "--data.valid.manifest", "valid.csv", "--data.segment", "0.5",
            "--data.context", "160", "--data.batch_size", str(batch_size), "--data.metrics_subset", "0",
            "--loss.offset", "100", "--loss.wave_mse", "0.001", "--loss.activity_l1", "0.001",
            "--loss.activity_layers", "[proj, readout]", "--optim.lr", "0.01", "--optim.gamma", "0.9",
            "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu", "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.precision", precision]


def run_ddp(args, cwd):
    """``snnse fit ARGS`` with Lightning DDP over two CPU processes (gloo)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "snnse.cli", "fit", *args, "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=cwd)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def ddp_straight(ddp_manifests, tmp_path_factory):
    """Two uninterrupted epochs of :func:`ddp_args` on 2 processes in float64: (run folder, stderr)."""
    root = tmp_path_factory.mktemp("ddp")
    res = run_ddp(ddp_args(ddp_manifests, root, "ddp", precision="64-true"), root)
    return root / "ddp", res.stderr


def _rel_diff(a, b):
    """max |a − b| / max |a| (0 for equal tensors)."""
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item() if a.numel() else 0.0


# Two processes with batch 2 against one with batch 4 over the same items: the per-rank losses are means
# over equal halves and DDP averages the gradients, so only the order of float sums differs. In float64
# (the runs use --trainer.precision 64-true) the largest relative difference of a weight tensor or Adam
# moment after 4 steps is 2.0e-9, in the decoder's scalar bias and its moments; all others are below 1e-14.
# That bias gets no gradient from the (zero-mean) SI-SNR term, only 0.001·MSE, so its gradient is a
# small sum of cancelling terms: in float32 its rounding noise (2^-15 against -6.2e-5 in float64) made
# the two runs' bias differ by 37 % after Adam's normalised steps, which is why these runs are float64.
DDP_RTOL = 1e-7


def test_ddp_two_cpu_processes(ddp_straight, ddp_manifests, tmp_path):
    """The same command line trains with Lightning DDP (gloo), each process on its shard, and ends with
    the weights of one process with the combined batch on the same items in the same order."""
    from snnse.training import fit

    run, stderr = ddp_straight
    assert "gloo" in stderr or "GLOO" in stderr or "distributed" in stderr.lower()
    a = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == 4  # 8 items / 2 processes / batch 2 = 2 steps per epoch
    assert base.load(run / "last.pt").name == "dpsnn"
    single = fit(load_config(None, ddp_args(ddp_manifests, tmp_path, "single", batch_size=4, precision="64-true")))
    assert torch.get_default_dtype() == torch.float32  # nothing of the float64 run leaks into later tests
    b = torch.load(single / "checkpoints" / "last.ckpt", weights_only=True)
    assert b["global_step"] == 4 and a["state_dict"].keys() == b["state_dict"].keys()
    torch.manual_seed(3)
    init = base.get("dpsnn", **TINY["dpsnn"]).state_dict()
    moved = max(_rel_diff(a["state_dict"][k], init[k[len("model."):]]) for k in a["state_dict"])
    diffs = {k: _rel_diff(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]}
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    diffs.update({f"{i}.{key}": _rel_diff(sa[i][key], sb[i][key]) for i in sa for key in ("exp_avg", "exp_avg_sq")})
    assert max(diffs.values()) <= DDP_RTOL, sorted(diffs.items(), key=lambda kv: -kv[1])[:5]
    assert moved > 1e6 * DDP_RTOL  # the tolerance is far below what 4 steps change


def test_ddp_resume_in_the_middle_of_an_epoch_is_exact(ddp_manifests, tmp_path):
    """Two processes stopped by max_steps after step 3 (batch 1 of 2 of epoch 1) and resumed with --resume:
    the weights, Adam state, schedule and loop position of the uninterrupted two-process run, bit for bit.

    In float32, the default: Lightning restores a checkpoint into the model before the precision plugin
    converts it, so under --trainer.precision 64-true a resumed run starts from weights rounded to
    float32 (measured: relative differences up to 1.6e-7 after 4 steps, one process or two)."""
    for name, more in (("straight", []), ("run", ["--trainer.max_steps", "3"]), ("run", ["--resume"])):
        run_ddp([*ddp_args(ddp_manifests, tmp_path, name), *more], tmp_path)
        if more[:1] == ["--trainer.max_steps"]:
            ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
            assert ckpt["global_step"] == 3 and ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
                {"epoch": 1, "batches": 1, "batch_size": 2, "world_size": 2}]
    assert_same_training(tmp_path / "straight", tmp_path / "run", steps=4)
