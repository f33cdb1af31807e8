"""Training: configuration, losses, samplers, real 2-epoch runs, exact resume (epoch boundary and mid-epoch,
periodic checkpoints, Ctrl-C), the demo recipe end to end. DDP: test_training_ddp.py."""

import csv
import signal
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import soundfile as sf
import torch

from snnse.config import ConfigError, load_config
from snnse.data.manifest import write_manifest
from snnse.data.paired import EpochLoader, EpochSampler, PairedDataset, pad_collate
from snnse.losses import EnhancementLoss, si_snr
from snnse.models import base

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "dpsnn": {"N": 32, "B": 32, "H": 32},
    "spiking_s4": {"d_model": 32, "d_state": 16, "n_layers": 2, "n_fft": 256, "hop": 64},
}
DPSNN_LOSS = {"offset": 100.0, "wave_mse": 0.001, "activity_l1": 0.001,
              "activity_layers": ["proj", "readout"], "mask_mse": 0.0}
S4_LOSS = {"offset": 0.0, "wave_mse": 0.0, "activity_l1": 0.0, "activity_layers": [], "mask_mse": 0.001}


@pytest.fixture(scope="module")
def manifests(data_dir, tmp_path_factory):
    """train.csv (p287_001-004) and valid.csv (p287_005-006) over the real VoiceBank pairs."""
    out = tmp_path_factory.mktemp("manifests")
    vb = data_dir / "voicebank_debug"

    def rows(ids):
        for i in ids:
            info = sf.info(str(vb / "clean" / f"p287_00{i}.wav"))
            yield {"id": f"p287_00{i}", "noisy": vb / "noisy" / f"p287_00{i}.wav",
                   "clean": vb / "clean" / f"p287_00{i}.wav", "duration": info.duration, "speaker": "p287"}

    write_manifest(out / "train.csv", rows(range(1, 5)))
    write_manifest(out / "valid.csv", rows(range(5, 7)))
    return out


def tiny_cfg(manifests, tmp_path, model, **over):
    s4 = model == "spiking_s4"
    cfg = load_config(None, [
        "--seed", "3", "--model.name", model, "--run.dir", str(tmp_path), "--run.name", "run",
        "--data.root", str(manifests), "--data.train.manifest", "train.csv",
        "--data.valid.manifest", "valid.csv", "--data.segment", "0.5", "--data.context",
        "0" if s4 else "160", "--data.batch_size", "2", "--data.metrics_subset", "1",
        "--optim.name", "radam" if s4 else "adam", "--optim.lr", "0.003" if s4 else "0.01",
        "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    ])
    cfg["model"]["kwargs"] = dict(TINY[model])
    cfg["loss"] = dict(S4_LOSS if s4 else DPSNN_LOSS)
    for k, v in over.items():
        section, key = k.split("__")
        cfg[section][key] = v
    return cfg


def valid_loss(model, manifests, loss):
    ds = PairedDataset(manifests / "valid.csv")
    with torch.no_grad():
        return float(np.mean([loss(model, n[None], c[None])[0].item() for n, c in ds]))


# ---- configuration ------------------------------------------------------------------------
def test_config_overrides_and_errors(tmp_path):
    cfg = load_config(REPO / "configs" / "dpsnn_demo.yaml",
                      ["--trainer.max_steps", "50", "--optim.lr=3e-4", "--model.kwargs.N", "64",
                       "--loss.activity_layers", "[proj]"])
    assert cfg["trainer"]["max_steps"] == 50 and cfg["trainer"]["log_every_n_steps"] == 10
    assert cfg["optim"]["lr"] == pytest.approx(3e-4) and cfg["model"]["kwargs"]["N"] == 64
    assert cfg["model"]["kwargs"]["B"] == 256 and cfg["loss"]["activity_layers"] == ["proj"]
    assert cfg["run"]["name"] == "dpsnn_demo"
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config(None, ["--optim.lrr", "1"])
    with pytest.raises(ConfigError, match="section"):
        load_config(None, ["--optim", "1"])
    with pytest.raises(ConfigError, match="needs a value"):
        load_config(None, ["--seed"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_overrides_inside_open_sections_merge_nested_mappings():
    cfg = load_config(REPO / "configs" / "pretrained" / "dpsnn-demo.yaml",
                      ["--data.train.augment.speed", "[0.8,1.1]", "--data.train.snr_range", "[-5,40]"])
    aug = cfg["data"]["train"]["augment"]
    assert aug["speed"] == [0.8, 1.1] and aug["eq_prob"] == 0.5 and aug["sim_rir"] == "train/rir_sim"
    assert cfg["data"]["train"]["clean"] == "train/clean" and cfg["data"]["train"]["snr_range"] == [-5, 40]
    cfg = load_config(REPO / "configs" / "pretrained" / "dpsnn-demo.yaml", ["--data.train.augment", "null"])
    assert cfg["data"]["train"]["augment"] is None  # a non-mapping still replaces


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_recipes_resolve_and_follow_the_papers(name):
    cfg = load_config(REPO / "configs" / name)
    base.get(cfg["model"]["name"], **cfg["model"]["kwargs"])  # constructor arguments are valid
    if name.startswith("dpsnn"):
        assert cfg["optim"]["name"] == "adam" and cfg["optim"]["lr"] == 1e-2
        assert cfg["optim"]["gamma"] == 0.9999 and cfg["optim"]["lr_floor"] == 1e-3
        assert cfg["loss"] == {**DPSNN_LOSS, "mrstft": 0.0, "stoi": 0.0} and cfg["data"]["segment"] == 1.0 and cfg["data"]["context"] == 160
    else:
        assert cfg["optim"]["name"] == "radam" and cfg["optim"]["lr"] == 1e-3
        assert cfg["optim"]["weight_decay"] == 1e-5 and cfg["trainer"]["gradient_clip_val"] == 10
        assert cfg["loss"] == {**S4_LOSS, "mrstft": 0.0, "stoi": 0.0}


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs" / "pretrained").glob("*.yaml")))
def test_pretrained_recipes_resolve(name):
    """The recipes of the bundled models: valid model, augmentation options and warm start key."""
    from snnse.data.augment import Augment

    cfg = load_config(REPO / "configs" / "pretrained" / name)
    base.get(cfg["model"]["name"], **cfg["model"]["kwargs"])
    assert Augment.from_dict(cfg["data"]["train"]["augment"]).active
    assert cfg["run"]["name"] == Path(name).stem and cfg["model"]["init"] is None
    assert cfg["loss"]["mrstft"] > 0 and cfg["checkpoint"]["every_n_steps"] > 0


def test_model_init_copies_weights_and_rejects_other_models(tmp_path):
    from snnse.training import _warm_start

    torch.manual_seed(1)
    src = base.get("dpsnn", **TINY["dpsnn"])
    src.save(tmp_path / "src.pt")
    torch.manual_seed(2)
    dst = base.get("dpsnn", **TINY["dpsnn"])
    assert not all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    _warm_start(dst, str(tmp_path / "src.pt"))
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ConfigError, match="do not fit"):
        _warm_start(base.get("dpsnn", **{**TINY["dpsnn"], "N": 16}), str(tmp_path / "src.pt"))
    with pytest.raises(ConfigError, match="model.init"):
        _warm_start(dst, str(tmp_path / "missing.pt"))


def test_model_init_warns_at_a_from_scratch_learning_rate(tmp_path, capsys):
    from snnse.training import _warm_start

    src = base.get("dpsnn", **TINY["dpsnn"])
    src.meta = {"recipe": {"optim": {"lr": 2e-4}}}
    src.save(tmp_path / "src.pt")
    _warm_start(base.get("dpsnn", **TINY["dpsnn"]), str(tmp_path / "src.pt"), lr=5e-4)
    assert "warning" not in capsys.readouterr().err
    _warm_start(base.get("dpsnn", **TINY["dpsnn"]), str(tmp_path / "src.pt"), lr=1e-2)
    err = capsys.readouterr().err
    assert "50x the learning rate" in err and "snnse finetune" in err


# ---- losses -------------------------------------------------------------------------------
def test_si_snr_matches_definition(data_dir):
    clean = torch.from_numpy(sf.read(data_dir / "voicebank_debug/clean/p287_001.wav")[0])
    noisy = torch.from_numpy(sf.read(data_dir / "voicebank_debug/noisy/p287_001.wav")[0])
    assert si_snr(noisy, clean).item() == pytest.approx(12.752449621729227, abs=1e-6)  # reference_metrics.json
    assert si_snr(3 * clean, clean).item() > 100  # scale invariant


def test_dpsnn_loss_sees_every_frame(data_dir):
    """The activity terms average all frames; the authors' code used only the last one."""
    torch.manual_seed(0)
    model = base.get("dpsnn", **TINY["dpsnn"]).double()
    x = torch.from_numpy(sf.read(data_dir / "voicebank_debug/noisy/p287_002.wav")[0][:8000])[None]
    c = torch.from_numpy(sf.read(data_dir / "voicebank_debug/clean/p287_002.wav")[0][:8000])[None]
    loss, parts = EnhancementLoss(**DPSNN_LOSS)(model, x, c, context=160)
    _, aux = model(x, return_aux=True)
    for layer in ("proj", "readout"):
        assert parts[f"l1_{layer}"].item() == pytest.approx(aux["record"][layer].abs().mean().item())
    est = model(x)
    want = (100 - si_snr(est[:, 160:], c[:, 160:]).mean() + 0.001 * (est[:, 160:] - c[:, 160:]).pow(2).mean()
            + 0.001 * (aux["record"]["proj"].abs().mean() + aux["record"]["readout"].abs().mean()))
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    loss.backward()
    # the proj threshold gets gradient from the L1 terms of early frames, too
    assert model.masker.proj_unit.threshold.grad.abs().item() > 0
    with pytest.raises(KeyError, match="not recorded"):
        EnhancementLoss(activity_l1=1.0, activity_layers=["nope"])(model, x, c)


def test_s4_mask_loss_is_magnitude_mse(data_dir):
    torch.manual_seed(0)
    model = base.get("spiking_s4", **TINY["spiking_s4"]).double()
    x = torch.from_numpy(sf.read(data_dir / "voicebank_debug/noisy/p287_003.wav")[0][:8000])[None]
    c = torch.from_numpy(sf.read(data_dir / "voicebank_debug/clean/p287_003.wav")[0][:8000])[None]
    loss, parts = EnhancementLoss(**S4_LOSS)(model, x, c)
    _, aux = model(x, return_aux=True)
    clean_mag, _ = model.frontend.analyze(model.frontend.frames(c))
    mse = (aux["mask"] * aux["features"] - clean_mag).pow(2).mean()
    assert parts["mask_mse"].item() == pytest.approx(mse.item(), rel=1e-12)
    assert loss.item() == pytest.approx(-parts["sisnr"].item() + 0.001 * mse.item(), rel=1e-12)


# ---- data plumbing ------------------------------------------------------------------------
def test_epoch_sampler_shards_and_is_seeded():
    s = EpochSampler(10, seed=5)
    s.set_epoch(1)
    a = list(s)
    assert sorted(i for _, i in a) == list(range(10)) and all(e == 1 for e, _ in a)
    s.set_epoch(2)
    assert [i for _, i in s] != [i for _, i in a]
    s.set_epoch(1)
    assert list(s) == a
    shards = [list(EpochSampler(10, seed=5, rank=r, world_size=3)) for r in range(3)]
    assert all(len(x) == 4 for x in shards)
    assert {i for sh in shards for _, i in sh} == set(range(10))
    assert list(EpochSampler(4, shuffle=False)) == [(0, i) for i in range(4)]


class _Pairs(torch.utils.data.Dataset):
    """Items are the ``(epoch, index)`` pairs themselves (picklable for worker processes)."""

    def __len__(self):
        return 11

    def __getitem__(self, index):
        return torch.tensor(index)


@pytest.mark.parametrize("workers", [0, 2])
def test_epoch_loader_restarts_in_the_middle_of_an_epoch(workers):
    def loader(rank=None, world=None):
        return EpochLoader(_Pairs(), EpochSampler(11, seed=4, rank=rank, world_size=world), batch_size=3,
                           num_workers=workers)

    for rank, world in ((None, None), (1, 2)):
        full = loader(rank, world)
        full.sampler.set_epoch(5)
        want = [b.tolist() for b in full]
        processes = world or 1
        assert full.state_dict() == {"epoch": 5, "batches": len(want), "batch_size": 3, "world_size": processes}
        assert len(want) == len(full)
        first = loader(rank, world)
        first.sampler.set_epoch(5)
        it = iter(first)
        assert [next(it).tolist() for _ in range(2)] == want[:2]
        state = first.state_dict()
        # what was handed out, not what the workers prefetched
        assert state == {"epoch": 5, "batches": 2, "batch_size": 3, "world_size": processes}
        again = loader(rank, world)
        again.load_state_dict(state)
        again.sampler.set_epoch(5)
        assert len(again) == len(want)  # Lightning counts the epoch's batches from len()
        assert [b.tolist() for b in again] == want[2:]
        assert again.state_dict()["batches"] == len(want)
        assert [b.tolist() for b in again] == want  # only the first pass skips
        other = loader(rank, world)
        other.load_state_dict(state)
        other.sampler.set_epoch(6)
        assert len([b for b in other]) == len(want)  # a pass over another epoch skips nothing
    wider = EpochLoader(_Pairs(), EpochSampler(11, seed=4), batch_size=4)
    wider.load_state_dict(state)
    wider.sampler.set_epoch(5)
    with pytest.raises(ValueError, match="batch size 3 on 2"):  # B batches of 3 are not B batches of 4
        iter(wider)
    with pytest.raises(TypeError, match="EpochSampler"):
        EpochLoader(_Pairs(), torch.utils.data.SequentialSampler(range(11)))


def test_paired_dataset_crops(manifests):
    ds = PairedDataset(manifests / "train.csv", segment=4000, context=160, seed=7)
    n1, c1 = ds[(0, 1)]
    n2, c2 = ds[(0, 1)]
    assert n1.shape == (4160,) and torch.equal(n1, n2) and torch.equal(c1, c2)
    assert not torch.equal(ds[(1, 1)][0], n1)  # a new crop every epoch
    full_noisy = torch.from_numpy(sf.read(ds.rows[1]["noisy"], dtype="float32")[0])
    hits = [k for k in range(len(full_noisy) - 4160) if torch.equal(full_noisy[k:k + 4160], n1)]
    assert len(hits) == 1  # the crop is a real excerpt, aligned between noisy and clean
    long = PairedDataset(manifests / "train.csv", segment=16000 * 20, seed=7)
    n, c = long[0]
    assert n.shape == (320000,) and n[-1000:].abs().sum() == 0  # zero-padded past the end
    whole = PairedDataset(manifests / "valid.csv")
    noisy, clean, lengths = pad_collate([whole[0], whole[1]])
    assert noisy.shape[1] == lengths.max() and lengths.tolist() == [len(whole[0][0]), len(whole[1][0])]


# ---- real training runs -------------------------------------------------------------------
@pytest.mark.parametrize("model", ["dpsnn", "spiking_s4"])
def test_two_epochs_lower_the_validation_loss(manifests, tmp_path, model):
    from snnse.training import fit

    cfg = tiny_cfg(manifests, tmp_path, model)
    torch.manual_seed(0)
    before = valid_loss(base.get(model, **TINY[model]), manifests, EnhancementLoss(**cfg["loss"]))
    run = fit(cfg)
    trained = base.load(run / "last.pt")
    after = valid_loss(trained, manifests, EnhancementLoss(**cfg["loss"]))
    assert after < before - 0.5, (before, after)
    for f in ("config.yaml", "best.pt", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (run / f).is_file(), f
    assert list((run / "tensorboard" / "version_0").glob("events.out.tfevents.*"))
    with open(run / "csv" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    val = [r for r in rows if r.get("val/sisnr")]
    assert len(val) == 2 and all(r["val/pesq"] and r["val/stoi"] for r in val)
    assert load_config(run / "config.yaml")["model"]["kwargs"] == TINY[model]
    with pytest.raises(ConfigError, match="already holds a run"):
        fit(cfg)


def test_resume_gives_the_same_weights(manifests, tmp_path):
    from snnse.training import fit

    straight = fit(tiny_cfg(manifests, tmp_path / "a", "dpsnn"))
    cfg = tiny_cfg(manifests, tmp_path / "b", "dpsnn")
    cfg["trainer"]["max_epochs"] = 1
    fit(cfg)
    cfg["trainer"]["max_epochs"] = 2
    resumed = fit(cfg, resume=True)
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 4
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert (resumed / "csv" / "version_0" / "metrics.csv").is_file()  # the first start's log is kept
    assert (resumed / "csv" / "version_1" / "metrics.csv").is_file()
    sa, sb = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    with pytest.raises(ConfigError, match="nothing to resume"):
        fit(tiny_cfg(manifests, tmp_path / "c", "dpsnn"), resume=True)


def resume_cfg(manifests, root, workers=0, **over):
    """1-item batches: 4 steps per epoch, 8 in two; a decaying learning rate (every step's value matters)."""
    cfg = tiny_cfg(manifests, root, "dpsnn", data__batch_size=1, data__num_workers=workers, optim__gamma=0.9,
                   optim__lr_floor=0.002, trainer__num_sanity_val_steps=0, **over)
    return cfg


@pytest.fixture(scope="module")
def straight_run(manifests, tmp_path_factory):
    """Two uninterrupted epochs of :func:`resume_cfg` (no worker processes)."""
    from snnse.training import fit

    return fit(resume_cfg(manifests, tmp_path_factory.mktemp("straight")))


def assert_same_training(a_run, b_run, steps=8):
    """Same step, weights, Adam moments and steps, learning-rate schedule and loop position."""
    a = torch.load(a_run / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(b_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == steps and a["epoch"] == b["epoch"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    sa, sb = a["optimizer_states"][0], b["optimizer_states"][0]
    assert sa["param_groups"] == sb["param_groups"]  # includes the scheduled lr
    for i in sa["state"]:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa["state"][i][key], sb["state"][i][key]), (i, key)
    assert a["lr_schedulers"] == b["lr_schedulers"] and a["lr_schedulers"][0]["last_epoch"] == steps
    la, lb = ({k: v for k, v in c["loops"]["fit_loop"].items() if "val_loop" not in k} for c in (a, b))
    assert la == lb  # epoch, batch, step and scheduler counters, loader position
    assert base.load(b_run / "last.pt").state_dict().keys() == base.load(a_run / "last.pt").state_dict().keys()


class _Probe(pl.Callback):
    """Before every batch, records (global_step, step of last.ckpt, last.pt exists); can raise Ctrl-C."""

    def __init__(self, run, interrupt_at=None):
        self.run, self.interrupt_at, self.seen = run, interrupt_at, []

    def on_train_batch_start(self, trainer, task, batch, batch_idx):
        ckpt = self.run / "checkpoints" / "last.ckpt"
        step = torch.load(ckpt, weights_only=True)["global_step"] if ckpt.exists() else None
        self.seen.append((trainer.global_step, step, (self.run / "last.pt").exists()))

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx):
        if trainer.global_step == self.interrupt_at:
            raise KeyboardInterrupt


def val_rows(run):
    rows = []
    for version in sorted((run / "csv").iterdir()):
        with open(version / "metrics.csv") as f:
            rows += [(int(r["step"]), float(r["val/sisnr"])) for r in csv.DictReader(f) if r.get("val/sisnr")]
    return rows


def test_mid_epoch_resume_after_max_steps_is_exact(manifests, tmp_path, straight_run):
    """3 of 4 steps of epoch 0 (periodic checkpoint every 2), then --resume to 2 epochs: same as 8 straight steps."""
    from snnse.training import fit

    cfg = resume_cfg(manifests, tmp_path, checkpoint__every_n_steps=2, trainer__max_steps=3)
    run = tmp_path / "run"
    probe = _Probe(run)
    fit(cfg, callbacks=[probe])
    # the periodic write at step 2 (with last.pt; no validation has run yet), nothing before
    assert probe.seen == [(0, None, False), (1, None, False), (2, 2, True)]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3  # the max_steps stop is written at its batch, inside epoch 0
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 0, "batches": 3, "batch_size": 1, "world_size": 1}]
    (step, score), = val_rows(run)  # fit() validated the final weights and recorded it for a resume
    assert ckpt["callbacks"]["ModelExport"]["best"] == pytest.approx(score) and ckpt["validated_step"] == 3
    assert not list((run / "checkpoints").glob("step-*"))  # only the latest, unless keep_steps
    cfg["trainer"]["max_steps"] = -1
    fit(cfg, resume=True)
    assert_same_training(straight_run, run)
    assert len(val_rows(run)) == 1 + 2  # the max_steps validation, then one per epoch


def mixing_s4_cfg(data_dir, root, **over):
    """Spiking-S4 with RAdam, weight decay and gradient clipping on on-the-fly mixtures with RIRs and every
    augmentation: 8 items of 2 per epoch (4 steps each), a decaying learning rate."""
    cfg = load_config(None, [
        "--seed", "11", "--model.name", "spiking_s4", "--run.dir", str(root), "--run.name", "run",
        "--data.root", str(data_dir), "--data.train.clean", "voicebank_debug/clean",
        "--data.train.noise", "noise/speechbrain", "--data.train.rir", "rir", "--data.train.rir_prob", "0.5",
        "--data.train.length", "8", "--data.train.augment.speed_prob", "0.5",
        "--data.train.augment.noise_speed_prob", "0.5", "--data.train.augment.eq_prob", "0.5",
        "--data.train.augment.noise_eq_prob", "0.5",
        "--data.valid.noisy", "voicebank_debug/noisy", "--data.valid.clean", "voicebank_debug/clean",
        "--data.valid_limit", "2", "--data.segment", "0.5", "--data.context", "0", "--data.batch_size", "2",
        "--data.metrics_subset", "0", "--optim.name", "radam", "--optim.lr", "0.003",
        "--optim.weight_decay", "0.01", "--optim.gamma", "0.9", "--trainer.gradient_clip_val", "10",
        "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    ])
    cfg["model"]["kwargs"] = dict(TINY["spiking_s4"])
    cfg["loss"] = dict(S4_LOSS)
    for k, v in over.items():
        section, key = k.split("__")
        cfg[section][key] = v
    return cfg


class _GradNorm(pl.Callback):
    """The gradient norm before Lightning clips it (callbacks' on_before_optimizer_step comes first)."""

    def __init__(self):
        self.norms = []

    def on_before_optimizer_step(self, trainer, task, optimizer):
        grads = [p.grad for p in task.parameters() if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())


def test_mid_epoch_resume_of_spiking_s4_on_augmented_mixtures_is_exact(data_dir, tmp_path):
    """Spiking-S4, RAdam + weight decay + gradient clipping, mixing with RIRs and speed/EQ augmentation of
    speech and noise: stopped by max_steps at step 3 of 4 in epoch 0 (with 2 loader workers), resumed to
    2 epochs: bit-identical weights, RAdam state, schedule and loop position to 8 straight steps."""
    from snnse.training import build_dataset, fit

    straight_cfg = mixing_s4_cfg(data_dir, tmp_path / "a")
    # the configuration really mixes with every option: RIRs, speed and EQ of speech and noise occur
    ds = build_dataset(straight_cfg["data"]["train"], straight_cfg["data"], 11, train=True)
    drawn = [ds.sample(i, epoch) for epoch in (0, 1) for i in range(len(ds))]
    assert len(ds) == 8 and any(d["rir_file"] is not None for d in drawn)
    aug = [d["augment"] for d in drawn]
    assert any(a["speed"] != 1.0 for a in aug) and any(a["noise_speed"] != 1.0 for a in aug)
    assert any(a["eq"] is not None for a in aug) and any(a["noise_eq"] is not None for a in aug)
    norms = _GradNorm()
    straight = fit(straight_cfg, callbacks=[norms])
    assert len(norms.norms) == 8 and max(norms.norms) > 10  # the clipping acts (norms 24-69 measured)
    cfg = mixing_s4_cfg(data_dir, tmp_path / "b", trainer__max_steps=3, data__num_workers=2)
    run = fit(cfg)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3 and ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 0, "batches": 3, "batch_size": 2, "world_size": 1}]
    cfg["trainer"]["max_steps"] = -1
    fit(cfg, resume=True)
    assert_same_training(straight, run)
    a = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)
    groups = a["optimizer_states"][0]["param_groups"]
    assert {g["weight_decay"] for g in groups} == {0.01, 0.0}  # weight decay, none on the S4D parameters
    assert a["hyper_parameters"]["optim"]["name"] == "radam"


def test_mid_epoch_resume_in_a_later_epoch_is_exact(manifests, tmp_path, straight_run):
    """Stopped by max_steps after step 5 (batch 1 of 4 of epoch 1), then --resume: same as 8 straight steps.
    (Lightning makes a resumed epoch's iterator before it calls set_epoch: the loader once saw epoch 0,
    skipped nothing and repeated epoch 1's first batches.)"""
    from snnse.training import fit

    cfg = resume_cfg(manifests, tmp_path, trainer__max_steps=5)
    run = fit(cfg)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["loops"]["fit_loop"]["state_dict"][
        "combined_loader"] == [{"epoch": 1, "batches": 1, "batch_size": 1, "world_size": 1}]
    cfg["trainer"]["max_steps"] = -1
    fit(cfg, resume=True)
    assert_same_training(straight_run, run)


def test_periodic_checkpoints_survive_ctrl_c_with_workers(manifests, tmp_path, straight_run):
    """Every 2 steps, validation every 2 batches, 2 loader workers, Ctrl-C after step 3, --resume."""
    from snnse.training import fit

    cfg = resume_cfg(manifests, tmp_path, workers=2, checkpoint__every_n_steps=2, checkpoint__keep_steps=True,
                     trainer__val_check_interval=2)
    run = tmp_path / "run"
    try:
        with pytest.raises(SystemExit):  # Lightning's answer to Ctrl-C
            fit(cfg, callbacks=[_Probe(run, interrupt_at=3)])
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning leaves SIGINT ignored
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2  # Lightning wrote nothing at the interruption
    assert torch.load(run / "checkpoints" / "step-0000002.ckpt", weights_only=True)["global_step"] == 2
    # written again after the validation that followed step 2: its score is in ModelExport's state
    assert ckpt["callbacks"]["ModelExport"]["best"] == pytest.approx(val_rows(run)[0][1])
    probe = _Probe(run)
    fit(cfg, resume=True, callbacks=[probe])
    assert [s for s, _, _ in probe.seen] == list(range(2, 8))
    assert all(written == s // 2 * 2 for s, written, _ in probe.seen)  # every 2 steps, epoch ends included
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == [
        f"step-000000{k}.ckpt" for k in (2, 4, 6, 8)]
    assert [s for s, _ in val_rows(run)] == [1, 3, 5, 7]  # every 2 batches; none repeated or skipped
    assert_same_training(straight_run, run)


@pytest.mark.parametrize("model", ["dpsnn", "spiking_s4"])
def test_training_steps_draw_no_random_numbers(model, data_dir):
    """A resume restores no generator state; that is exact only while training uses none (no dropout)."""
    torch.manual_seed(0)
    net = base.get(model, **TINY[model]).train()
    x = torch.from_numpy(sf.read(data_dir / "voicebank_debug/noisy/p287_002.wav", dtype="float32")[0][:4000])
    c = torch.from_numpy(sf.read(data_dir / "voicebank_debug/clean/p287_002.wav", dtype="float32")[0][:4000])
    before = torch.get_rng_state()
    loss, _ = EnhancementLoss(**(S4_LOSS if model == "spiking_s4" else DPSNN_LOSS))(net, x[None], c[None])
    loss.backward()
    assert torch.equal(torch.get_rng_state(), before)


def test_threads_option(manifests, tmp_path):
    from snnse.training import fit

    seen = []

    class Threads(pl.Callback):
        def on_train_batch_start(self, trainer, task, batch, batch_idx):
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    cfg = resume_cfg(manifests, tmp_path, trainer__max_steps=1, trainer__limit_val_batches=0)
    cfg["threads"] = 2
    fit(cfg, callbacks=[Threads()])
    assert seen == [2] and torch.get_num_threads() == before
    for bad in (0, "two", True):
        cfg["threads"] = bad
        with pytest.raises(ConfigError, match="threads"):
            fit(cfg)
    cfg = load_config(None, ["--threads", "3", "--checkpoint.every_n_steps", "200"])
    assert cfg["threads"] == 3 and cfg["checkpoint"] == {"every_n_steps": 200, "keep_steps": False}


# ---- several processes (DDP) ---------------------------------------------------------------
def test_demo_recipe_end_to_end(demo_corpus, tmp_path):
    """`snnse fit --config configs/dpsnn_demo.yaml --trainer.max_steps N` on the demo corpus, via the CLI."""
    from snnse.cli import main

    rc = main(["fit", "--config", str(REPO / "configs" / "dpsnn_demo.yaml"), "--trainer.max_steps", "4",
               "--data.root", str(demo_corpus), "--data.batch_size", "2", "--data.num_workers", "0",
               "--model.kwargs.N", "32", "--model.kwargs.B", "32", "--model.kwargs.H", "32",
               "--run.dir", str(tmp_path), "--trainer.enable_progress_bar", "false"])
    assert rc == 0
    run = tmp_path / "dpsnn_demo"
    with open(run / "csv" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r for r in rows if r.get("val/sisnr")], "the final weights were validated"
    assert base.load(run / "last.pt").name == "dpsnn"
    assert load_config(run / "config.yaml")["trainer"]["max_steps"] == 4
    # the package version is in every file of the run that names snnse
    import snnse

    assert (run / "config.yaml").read_text().startswith(f"# snnse {snnse.__version__}\n")
    ckpts, pts = sorted((run / "checkpoints").glob("*.ckpt")), sorted(run.glob("*.pt"))
    assert run / "checkpoints" / "last.ckpt" in ckpts and run / "last.pt" in pts
    for ckpt in ckpts:
        assert torch.load(ckpt, weights_only=True)["snnse_version"] == snnse.__version__, ckpt
    for pt in pts:
        assert torch.load(pt, weights_only=True)["versions"]["snnse"] == snnse.__version__, pt
    assert main(["fit", "--config", str(REPO / "configs" / "dpsnn_demo.yaml"), "--optim.nope", "1"]) == 2
