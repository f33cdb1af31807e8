"""snnse finetune: the split, the guards, resume, the keep-the-start path and the metadata."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

import snnse
from snnse import finetune as ft
from snnse.finetune import procedure
from snnse.cli import main


def _recipe(**train):
    from snnse.config import load_config
    from snnse.training import recipe_of

    cfg = load_config(None, ["--data.batch_size", "2", "--data.segment", "0.5", "--data.num_workers", "0",
                             "--loss.offset", "100", "--loss.mrstft", "1.0", "--optim.lr", "1e-3",
                             "--optim.gamma", "0.999", "--optim.lr_floor", "1e-4"])
    cfg["data"]["train"] = {"snr_range": [0, 30], "clean_prob": 0.2, "stream_crops": 2} | train
    return recipe_of(cfg)


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A tiny DPSNN with a level control and a recipe in its metadata."""
    torch.manual_seed(0)
    m = snnse.models.get("dpsnn", N=16, B=16, H=16, level_control={"target_db": -22.0})
    m.meta = {"recipe": _recipe()}
    path = tmp_path_factory.mktemp("start") / "start.pt"
    m.save(path)
    return path


@pytest.fixture(scope="module")
def user_data(tmp_path_factory, data_dir):
    """A user's folders: six clean utterances (one inside a subfolder), five noises."""
    root = tmp_path_factory.mktemp("user")
    shutil.copytree(data_dir / "voicebank_debug" / "clean", root / "clean")
    (root / "clean" / "sub").mkdir()
    shutil.move(root / "clean" / "p287_006.wav", root / "clean" / "sub" / "p287_006.wav")
    shutil.copytree(data_dir / "noise" / "speechbrain", root / "noise")
    return root


def _run(start, user_data, out, **kw):
    opts = dict(clean=user_data / "clean", noise=user_data / "noise", out=out, max_steps=2, eval_every=2,
                min_speech_s=3.0, valid_share=0.3, progress=False, notice=None, threads=1)
    return ft.finetune(start, **(opts | kw))


@pytest.fixture(scope="module")
def done(start, user_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "mine.pt"
    return _run(start, user_data, out), out


# ---------------------------------------------------------------- split

def test_split_is_by_file_reproducible_and_stable():
    rels = [f"spk/{i:03d}.wav" for i in range(200)]
    tr, va = ft.split_by_file(rels, 0.15, seed=3)
    assert set(tr) | set(va) == set(rels) and not set(tr) & set(va)
    assert 15 <= len(va) <= 45  # ~15 %
    assert ft.split_by_file(rels, 0.15, seed=3) == (tr, va)
    assert ft.split_by_file(rels, 0.15, seed=4)[1] != va
    more = rels + [f"spk/new{i}.wav" for i in range(50)]  # adding files moves none of the others
    tr2, va2 = ft.split_by_file(more, 0.15, seed=3)
    assert set(va) <= set(va2) and set(tr) <= set(tr2)
    assert len(ft.split_by_file(rels[:6], 0.01, seed=0, min_valid=4)[1]) == 4  # at least min_valid


def test_split_recorded_and_checked_on_resume(done, user_data, start):
    res, out = done
    split = json.loads((res["work"] / "split.json").read_text())
    assert split["valid"] == res["meta"]["finetune"]["data"]["valid"]
    assert not set(split["train"]) & set(split["valid"])
    assert "sub/p287_006.wav" in split["train"] + split["valid"]
    with pytest.raises(ft.FinetuneError, match="already holds a fine-tune"):
        _run(start, user_data, out)
    with pytest.raises(ft.FinetuneError, match="split changed"):
        _run(start, user_data, out, resume=True, seed=1)


# ---------------------------------------------------------------- guards

def test_bad_files_are_skipped_and_named(tmp_path, data_dir, start):
    clean = tmp_path / "clean"
    shutil.copytree(data_dir / "voicebank_debug" / "clean", clean)
    (clean / "corrupt.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    x = np.zeros(16000, dtype=np.float32)
    sf.write(clean / "silent.wav", x, 16000)
    x[100] = np.nan
    sf.write(clean / "nan.wav", x, 16000, subtype="FLOAT")
    sf.write(clean / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    said = []
    data = ft.Data(clean, data_dir / "noise" / "speechbrain", sample_rate=16000, seed=0, valid_share=0.3,
                   min_speech_s=3.0, warn=said.append)
    skipped = {p.split("/")[-1]: r for p, r in data.skipped}
    assert set(skipped) == {"corrupt.wav", "silent.wav", "nan.wav", "empty.wav"}
    assert "NaN" in skipped["nan.wav"] and "silent" in skipped["silent.wav"]
    assert sum("corrupt.wav" in s for s in said) == 1
    assert len(data.train) + len(data.valid) == 6


def test_too_little_speech_says_how_much_is_needed(user_data):
    with pytest.raises(ft.FinetuneError, match=r"too little speech.*at least 60 s"):
        ft.Data(user_data / "clean", user_data / "noise", sample_rate=16000, seed=0, valid_share=0.3,
                min_speech_s=60.0, warn=lambda m: None)
    with pytest.raises(ft.FinetuneError, match="either --noise"):
        ft.Data(user_data / "clean", sample_rate=16000, seed=0, valid_share=0.3, min_speech_s=1,
                warn=lambda m: None)


def test_high_learning_rate_warns_and_unknown_recipe_fails(start, user_data, tmp_path, monkeypatch):
    said = []
    monkeypatch.setattr(procedure, "Data", lambda *a, **k: (_ for _ in ()).throw(ft.FinetuneError("stop here")))
    with pytest.raises(ft.FinetuneError, match="stop here"):
        _run(start, user_data, tmp_path / "a.pt", lr=1e-1, notice=said.append)
    assert any("100x the recipe's" in s for s in said)
    bare = tmp_path / "bare.pt"
    snnse.models.get("dpsnn", N=16, B=16, H=16).save(bare)
    with pytest.raises(ft.FinetuneError, match="does not say how it was trained"):
        _run(bare, user_data, tmp_path / "b.pt")


def test_rule():
    def table(start, new):
        t = {p: {"input": {m: 0.0 for m in ft.METRICS}} for p in ft.PARTS}
        for p in ft.PARTS:
            t[p]["start"] = {m: start for m in ft.METRICS}
            t[p]["finetuned"] = {m: new for m in ft.METRICS}
        return t

    assert ft.is_better(table(1.0, 1.5))[0]
    assert not ft.is_better(table(1.0, 1.0))[0]  # held-out SI-SNR must rise
    assert not ft.is_better(table(1.0, 1.0 + ft.TOLERANCE["sisnr"]))[0]  # by more than the tolerance
    t = table(1.0, 1.5)
    t["clean"]["finetuned"]["stoi"] = 1.0 - ft.TOLERANCE["stoi"] / 2  # within what STOI resolves
    assert ft.is_better(t)[0]
    t["clean"]["finetuned"]["stoi"] = 0.99
    ok, why = ft.is_better(t)
    assert not ok and why == ["clean stoi fell: 1 -> 0.99"]
    t["clean"]["finetuned"]["stoi"] = None
    assert ft.is_better(t)[1] == ["clean stoi: not measured"]


# ---------------------------------------------------------------- the run

def test_finetune_writes_a_model_with_its_table(done, start):
    res, out = done
    m = snnse.load(out)
    rec = m.meta["finetune"]
    assert rec["steps"] == 2 and rec["from"]["model"] == str(start)
    assert rec["data"]["train_files"] + rec["data"]["valid_files"] == 6
    for part in ft.PARTS:
        assert set(rec["table"][part]) == {"input", "start", "finetuned"}
        assert rec["table"][part]["start"]["n"] > 0
    assert rec["accepted"] == ft.is_better(rec["table"])[0]
    assert m.kwargs["level_control"] == {"target_db": -22.0}  # put back after training without it
    assert m.meta["recipe"]["optim"]["lr"] == pytest.approx(1e-3)
    snap = res["work"] / "run" / "snapshots" / f"step-{rec['best_step']:07d}.pt"
    ref = snnse.load(snap) if rec["accepted"] else snnse.load(start)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, m.state_dict()[k])
    assert (res["work"] / "report.md").read_text().startswith("| system |")


def test_card_of_a_file_and_enhance_with_it(done, tmp_path, capsys, data_dir):
    res, out = done
    assert main(["models", "--card", str(out)]) == 0
    text = capsys.readouterr().out
    assert "## Fine-tune" in text and "held-out SI-SNR" in text and "6" in text
    wav = data_dir / "voicebank_debug" / "noisy" / "p287_001.wav"
    assert main(["enhance", str(wav), "-o", str(tmp_path / "e.wav"), "--model", str(out), "--quiet"]) == 0
    assert sf.info(tmp_path / "e.wav").frames == sf.info(wav).frames
    assert main(["stream", str(wav), "-o", str(tmp_path / "s.wav"), "--model", str(out)]) == 0
    assert main(["export", str(out), "-o", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 0


def test_worse_than_start_keeps_the_start(done, start, user_data, monkeypatch):
    res, out = done
    monkeypatch.setattr(procedure, "is_better", lambda table, start="start", new="finetuned": (False, ["forced for the test"]))
    again = out.with_name("kept.pt")
    r = _run(start, user_data, again, work=res["work"], resume=True)  # the budget is spent: judging only
    assert not r["accepted"] and r["steps"] == 2
    m, s = snnse.load(again), snnse.load(start)
    assert m.meta["finetune"]["why_not"] == ["forced for the test"] and m.meta["lineage"] == []
    for k, v in s.state_dict().items():
        assert torch.equal(v, m.state_dict()[k])


def test_resume_continues_exactly(start, user_data, tmp_path):
    a = _run(start, user_data, tmp_path / "a.pt", max_steps=2, eval_every=4)
    b = _run(start, user_data, tmp_path / "a.pt", max_steps=4, eval_every=4, resume=True)
    c = _run(start, user_data, tmp_path / "c.pt", max_steps=4, eval_every=4)
    assert a["steps"] == 2 and b["steps"] == c["steps"] == 4
    wb = snnse.load(b["work"] / "run" / "last.pt").state_dict()
    wc = snnse.load(c["work"] / "run" / "last.pt").state_dict()
    for k in wc:
        assert torch.equal(wb[k], wc[k]), k


def test_cli_usage_errors(tmp_path, user_data, capsys):
    assert main(["finetune", "nope-model", "--clean", str(user_data / "clean"), "--noise",
                 str(user_data / "noise"), "-o", str(tmp_path / "x.pt")]) == 2
    assert "cannot load the start model" in capsys.readouterr().err
    assert main(["finetune", "dpsnn-demo", "--clean", str(user_data / "clean"), "--noise",
                 str(user_data / "noise"), "-o", str(tmp_path / "x.wav")]) == 2
    assert main(["finetune", "dpsnn-demo", "--clean", str(user_data / "clean"), "--noise",
                 str(user_data / "noise"), "-o", str(tmp_path / "x.pt")]) == 2
    assert "too little speech" in capsys.readouterr().err


def test_paired_folders(start, tmp_path, data_dir):
    """Noisy/clean pairs: split by pair, held-out pairs are the user's own files."""
    res = ft.finetune(start, clean=data_dir / "voicebank_debug" / "clean",
                      noisy=data_dir / "voicebank_debug" / "noisy", out=tmp_path / "p.pt", max_steps=2,
                      eval_every=2, min_speech_s=3.0, valid_share=0.3, progress=False, notice=None, threads=1)
    d = res["meta"]["finetune"]["data"]
    assert d["mode"] == "pairs" and d["train_files"] + d["valid_files"] == 6 and d["valid_files"] == 4
    rows = (res["work"] / "valid.csv").read_text().splitlines()[1:]
    assert len(rows) == 4 and all("voicebank_debug/noisy" in r for r in rows)
    assert res["table"]["heldout"]["start"]["n"] == 4


def test_fit_records_its_recipe_in_the_model_files(done):
    res, _ = done
    m = snnse.load(res["work"] / "run" / "last.pt")
    assert m.meta["recipe"]["optim"]["lr"] == pytest.approx(1e-3)
    assert "clean" not in m.meta["recipe"]["data"]["train"]  # how, not on what
    assert m.meta["recipe"]["data"]["train"]["stream_crops"] == 2


def test_overrides_reach_the_training_configuration(start, user_data, tmp_path, capsys):
    res = _run(start, user_data, tmp_path / "o.pt", overrides=["--data.train.snr_range", "[10,20]"])
    cfg = (res["work"] / "run" / "config.yaml").read_text()
    assert "snr_range:\n    - 10\n    - 20" in cfg
    assert main(["finetune", str(start), "--clean", str(user_data / "clean"), "--noise", str(user_data / "noise"),
                 "-o", str(tmp_path / "u.pt"), "--min-speech", "3", "--valid-share", "0.3",
                 "--optim.nope", "1"]) == 2
    assert "unknown configuration key 'optim.nope'" in capsys.readouterr().err


def test_candidates_are_the_best_validations(start, user_data, tmp_path):
    res = _run(start, user_data, tmp_path / "k.pt", max_steps=6, eval_every=2, candidates=2)
    snaps = res["work"] / "run" / "snapshots"
    index = json.loads((snaps / "index.json").read_text())
    assert sorted(map(int, index)) == [2, 4, 6]
    best2 = sorted(index, key=lambda k: -index[k])[:2]
    assert sorted(p.name for p in snaps.glob("*.pt")) == sorted(f"step-{int(k):07d}.pt" for k in best2)
    cands = res["meta"]["finetune"]["candidates"]
    assert [c["step"] for c in cands] == [int(k) for k in best2]
    for c in cands:
        assert c["accepted"] == (not c["why_not"])
    chosen = res["best_step"]
    if res["accepted"]:
        ok = [c for c in cands if c["accepted"]]
        assert chosen == max(ok, key=lambda c: c["heldout_sisnr"])["step"]
    else:
        assert chosen == cands[0]["step"]
