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
    assert meta["demo_test"]["stoi"]["model"] == 0.8 and meta["beats_noisy_and_noisereduce"]["stoi"] is False
    assert meta["beats_noisy_and_noisereduce"]["sisnr"] is True and "training" in meta


def test_card_scores_refuses_another_models_evaluation(card_scores, tmp_path):
    out = _summary(tmp_path / "eval", "spiking-s4-demo", stoi=0.9)
    with pytest.raises(SystemExit, match="not 'dpsnn-demo'"):
        card_scores.main(["dpsnn-demo", "--eval", str(out)])
