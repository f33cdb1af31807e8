"""Maintenance scripts: scripts/card_scores.py updates a bundled model's card and headline scores."""

import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture()
def card_scores(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    for name in ("card_scores", "model_card"):
        sys.modules.pop(name, None)
    mod = importlib.import_module("card_scores")
    from snnse import pretrained

    for f in ("dpsnn-demo.md", "dpsnn-demo.json"):
        shutil.copy(pretrained.FOLDER / f, tmp_path / f)
    monkeypatch.setattr(mod, "PRETRAINED", tmp_path)
    return mod


def _summary(path: Path, model: str, stoi: float) -> Path:
    def stat(mean):
        return {"mean": mean, "std": 0.1, "ci95": [mean - 0.01, mean + 0.01], "n": 3}

    systems = {"noisy": {"sisnr": stat(9.0), "pesq_wb": stat(1.4), "stoi": stat(0.874)},
               "noisereduce": {"sisnr": stat(3.9), "pesq_wb": stat(1.26), "stoi": stat(0.837)},
               "enhanced": {"sisnr": stat(11.5), "pesq_wb": stat(1.5), "stoi": stat(stoi)}}
    path.mkdir()
    (path / "summary.json").write_text(json.dumps({
        "model": {"path": model}, "n_pairs": 3, "n_failed": 0, "systems": systems,
        "command": ["snnse", "evaluate", "--manifest", "data/demo/test.csv", "--model", model, "-o", str(path)]}))
    return path


def test_card_scores_replaces_the_table_and_the_headline(card_scores, tmp_path):
    out = _summary(tmp_path / "eval", "dpsnn-demo", stoi=0.8)
    assert card_scores.main(["dpsnn-demo", "--eval", str(out), "--note", "A note."]) == 0
    card = (tmp_path / "dpsnn-demo.md").read_text()
    assert "| dpsnn-demo | 11.500 ± 0.010 | 1.500 ± 0.010 | 0.800 ± 0.010 |" in card
    assert "STOI NO" in card and "A note." in card
    assert "--model dpsnn-demo -o OUT" in card and str(out) not in card
    assert "## Training" in card and "## Known weaknesses" in card  # the rest is kept
    meta = json.loads((tmp_path / "dpsnn-demo.json").read_text())
    assert meta["demo_test"]["stoi"]["model"] == 0.8 and meta["beats_noisy_and_baselines"]["stoi"] is False
    assert meta["beats_noisy_and_baselines"]["sisnr"] is True and "training" in meta
    # the robustness suite's tables and figure go into the card (replaced on a second run)
    rb = tmp_path / "rb"
    rb.mkdir()
    (rb / "robustness.md").write_text("# Robustness suite\n\nmodel `dpsnn-demo`\n\n| target | x |\n|---|---|\n")
    (rb / "robustness.png").write_bytes(b"png")
    (rb / "robustness.json").write_text(json.dumps({"model": {"system": "dpsnn-demo"}, "targets": {
        "dpsnn-demo": {"pass": False, "checks": [{"id": "clean_stoi", "pass": False}, {"id": "drift", "pass": True}]}}}))
    for _ in range(2):
        assert card_scores.main(["dpsnn-demo", "--eval", str(out), "--robustness", str(rb)]) == 0
    card = (tmp_path / "dpsnn-demo.md").read_text()
    assert card.count("## Robustness") == 1 and card.index("## Robustness") < card.index("## Known weaknesses")
    assert "| target | x |" in card and "![robustness suite](dpsnn-demo.robustness.png)" in card
    assert (tmp_path / "dpsnn-demo.robustness.png").read_bytes() == b"png"
    meta = json.loads((tmp_path / "dpsnn-demo.json").read_text())
    assert meta["robustness"] == {"pass": False, "failed": ["clean_stoi"]}


def test_card_scores_refuses_another_models_evaluation(card_scores, tmp_path):
    out = _summary(tmp_path / "eval", "spiking-s4-demo", stoi=0.9)
    with pytest.raises(SystemExit, match="not 'dpsnn-demo'"):
        card_scores.main(["dpsnn-demo", "--eval", str(out)])


def test_select_checkpoint_ranks_lightning_and_model_files(monkeypatch, tmp_path, data_dir):
    """scripts/select_checkpoint.py scores checkpoints on validation pairs and ranks them by a gain."""
    import csv

    import torch

    import snnse

    monkeypatch.syspath_prepend(str(SCRIPTS))
    sys.modules.pop("select_checkpoint", None)
    sel = importlib.import_module("select_checkpoint")
    vb = data_dir / "voicebank_debug"
    with open(tmp_path / "valid.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "noisy", "clean", "snr"])
        for name, snr in (("p287_001", 12.8), ("p287_002", 9.0), ("p287_003", 4.2)):
            w.writerow([name, vb / "noisy" / f"{name}.wav", vb / "clean" / f"{name}.wav", snr])
    torch.manual_seed(0)
    kw = dict(N=32, B=32, H=32)
    snnse.load("dpsnn-demo").save(tmp_path / "a.pt")  # trained: truly better than the one below
    bad = snnse.get("dpsnn", **kw)  # an untrained model, as a Lightning checkpoint of `snnse fit`
    torch.save({"hyper_parameters": {"model_name": "dpsnn", "model_kwargs": kw}, "global_step": 7,
                "state_dict": {"model." + k: v for k, v in bad.state_dict().items()}}, tmp_path / "b.ckpt")
    out = tmp_path / "sel.md"
    assert sel.main([str(tmp_path / "a.pt"), str(tmp_path / "b.ckpt"), "--manifest", str(tmp_path / "valid.csv"),
                     "--every", "2", "--by", "sisnr", "--group", "one=p287_001", "--snr", "low=:5",
                     "--snr", "none=20:", "-o", str(out)]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "checkpoint" not in line]
    assert len(rows) == 2 and "2 pairs" in text and "(one, n=1)" in text
    assert "(low, n=1)" in text and "(none, n=0)" in text  # p287_003 (4.2 dB) only; nothing at 20 dB and up
    first, second = (float(r.split("|")[3]) for r in rows)  # ΔSI-SNR, ranked best first
    assert rows[0].startswith("| a.pt |") and first - second > 3.0 and "| 7 |" in rows[1]
    # ranked by the robustness suite's failed targets (quick suite on validation-like folders)
    assert sel.main([str(tmp_path / "b.ckpt"), str(tmp_path / "a.pt"), "--manifest", str(tmp_path / "valid.csv"),
                     "--every", "3", "--by", "targets", "--robustness", str(vb / "clean"),
                     str(data_dir / "noise" / "speechbrain"), "--robust-quick", "--robust-utterances", "2",
                     "--robust-out", str(tmp_path / "rb"), "-o", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "checkpoint" not in line]
    failed = [int(r.split("|")[-2].split(":")[0]) for r in rows]
    assert failed == sorted(failed) and all(0 <= f <= 12 for f in failed)
    for stem in ("a", "b"):
        report = json.loads((tmp_path / "rb" / stem / "robustness.json").read_text())
        assert sum(not c["pass"] for c in report["targets"][stem]["checks"]) in failed


def test_check_stage_records_and_reproduces_a_stage(monkeypatch, tmp_path, data_dir):
    """--record keeps the first losses of a run; --check reruns them (equal here) and fails on a change."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    sys.modules.pop("check_stage", None)
    mod = importlib.import_module("check_stage")
    from snnse.config import load_config
    from snnse.training import fit

    recipe = tmp_path / "stage.yaml"
    recipe.write_text(
        f"seed: 2\nmodel: {{name: dpsnn, kwargs: {{N: 16, B: 16, H: 16}}}}\n"
        f"data: {{root: {data_dir}, segment: 0.25, batch_size: 2, valid_limit: 1, metrics_subset: 0,\n"
        f"  train: {{clean: voicebank_debug/clean, noise: noise/speechbrain, length: 8, stream_crops: 2,\n"
        f"          clean_prob: 0.5}},\n"
        f"  valid: {{noisy: voicebank_debug/noisy, clean: voicebank_debug/clean}}}}\n"
        f"loss: {{stoi: 0.0}}\noptim: {{lr: 0.003}}\nthreads: 1\n"
        f"trainer: {{max_epochs: 1, log_every_n_steps: 1, accelerator: cpu, enable_progress_bar: false,\n"
        f"  enable_model_summary: false, num_sanity_val_steps: 0}}\n")
    args = ["--config", str(recipe)]
    run = fit(load_config(str(recipe), ["--run.dir", str(tmp_path / "runs")]))
    (run / "args").write_text(" ".join(args))
    rec = mod.record(run, 4, tmp_path / "first_steps.json")
    saved = json.loads(rec.read_text())
    assert saved["args"] == args and len(saved["train_loss"]) == 4
    assert mod.check(rec, 1e-3) == 0
    saved["train_loss"]["2"] *= 1.01
    rec.write_text(json.dumps(saved))
    assert mod.check(rec, 1e-3) == 1
