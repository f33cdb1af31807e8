"""Bundle a trained model: copy its weights into the package and write its model card.

Usage:
    python scripts/model_card.py NAME --run runs/RUN [--weights best|last] [--corpus data/demo]
        [--command "snnse fit ..."] [--notes FILE] [--limit N]

Steps, all recorded in the card:
1. ``runs/RUN/{best,last}.pt`` → ``src/snnse/pretrained/NAME.pt`` (self-describing checkpoint);
2. ``snnse evaluate --manifest CORPUS/test.csv --model NAME --baseline noisereduce`` (the demo test
   split: an unseen voice and unseen noise recordings; noisy, noisereduce and the model scored in
   one run);
3. ``snnse profile --model NAME --audio <test noisy files>`` (parameters, SynOps, power proxy,
   latency, real-time factor, energy);
4. ``NAME.md`` (the card) and ``NAME.json`` (the headline scores ``snnse models`` prints).

The training configuration, seed and step count are read from the run folder (``config.yaml``,
the Lightning checkpoint's ``global_step`` and the CSV logs); the data licences from the corpus'
README. Selection used only the validation split (``best.pt`` = best validation SI-SNR).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from snnse.pretrained import CATALOGUE

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "src" / "snnse" / "pretrained"
HEADLINE = ("sisnr", "pesq_wb", "stoi")
LABELS = {"sisnr": "SI-SNR (dB)", "sisnri": "SI-SNRi (dB)", "pesq_wb": "PESQ-WB", "pesq_nb": "PESQ-NB",
          "stoi": "STOI", "estoi": "ESTOI", "csig": "CSIG", "cbak": "CBAK", "covl": "COVL",
          "dnsmos_sig": "DNSMOS SIG", "dnsmos_bak": "DNSMOS BAK", "dnsmos_ovrl": "DNSMOS OVRL",
          "segsnr": "segSNR (dB)"}


def snnse(*args: str) -> str:
    cmd = [str(ROOT / ".venv" / "bin" / "snnse"), *args]
    print("+ snnse " + " ".join(args), file=sys.stderr)
    res = subprocess.run(cmd, check=True, text=True, capture_output=True, cwd=ROOT)
    return res.stdout


def training_facts(run: Path) -> dict:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    facts = {"config": cfg, "seed": cfg.get("seed")}
    ckpt = run / "checkpoints" / "last.ckpt"
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        facts["last_step"], facts["last_epoch"] = int(state["global_step"]), int(state["epoch"])
    best = run / "checkpoints" / "best.ckpt"
    if best.is_file():
        state = torch.load(best, map_location="cpu", weights_only=True)
        facts["best_step"] = int(state["global_step"])
        for cb in state.get("callbacks", {}).values():
            if isinstance(cb, dict) and "best_model_score" in cb and cb["best_model_score"] is not None:
                facts["best_val_sisnr"] = float(cb["best_model_score"])
    return facts


def ci_half(summary: dict, system: str, metric: str) -> float:
    lo, hi = summary["systems"][system][metric].get("ci95") or (0.0, 0.0)
    return (hi - lo) / 2


def table(summary: dict, names: dict[str, str]) -> str:
    systems = summary["systems"]
    metrics = [m for m in next(iter(systems.values()))]
    head = "| system | " + " | ".join(LABELS.get(m, m) for m in metrics) + " |"
    rows = [head, "|---|" + "---|" * len(metrics)]
    for system, stats in systems.items():
        cells = []
        for m in metrics:
            s = stats[m]
            lo, hi = s.get("ci95") or (s["mean"], s["mean"])
            cells.append("n/a" if s["mean"] is None else f"{s['mean']:.3f} ± {(hi - lo) / 2:.3f}")
        rows.append(f"| {names.get(system, system)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def headline_scores(summary: dict) -> tuple[dict, dict]:
    """``{metric: {noisy, noisereduce[, rnnoise], model}}`` means of an evaluation, and which
    metrics beat the noisy input and every baseline."""
    means = {s: {m: v["mean"] for m, v in st.items()} for s, st in summary["systems"].items()}
    others = ["noisy"] + [b for b in ("noisereduce", "rnnoise") if b in means]
    headline = {m: {**{o: means[o][m] for o in others}, "model": means["enhanced"][m]}
                for m in HEADLINE if m in means["noisy"]}
    beats = {m: bool(all(v["model"] > v[o] for o in others)) for m, v in headline.items()}
    return headline, beats


def verdict(summary: dict, headline: dict, beats: dict) -> str:
    """The card's sentence on which headline metrics beat the noisy input and each baseline."""
    others = [o for o in next(iter(headline.values())) if o != "model"]
    names = {"noisy": "the noisy input", "noisereduce": "noisereduce", "rnnoise": "RNNoise"}
    parts = [f"above {names.get(o, o)}: " + ", ".join(
        f"{LABELS[m]} {'yes' if v['model'] > v[o] else 'NO'}" for m, v in headline.items()) for o in others]
    text = "Mean scores " + "; ".join(parts) + "."
    return text + "".join(
        f" {LABELS[m]}: the gain over the noisy input ({headline[m]['model'] - headline[m]['noisy']:+.4f}) "
        "is within the 95 % CI half-width of the means: " + ("a tie rather than a clear win." if
        headline[m]['model'] > headline[m]['noisy'] else "a small loss, not a win.")
        for m in HEADLINE if m in headline and abs(headline[m]['model'] - headline[m]['noisy'])
        < ci_half(summary, "noisy", m))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=["dpsnn-demo", "spiking-s4-demo"])
    ap.add_argument("--run", required=True, type=Path, help="training run folder (runs/NAME)")
    ap.add_argument("--weights", choices=["best", "last"], default="best")
    ap.add_argument("--corpus", type=Path, default=ROOT / "data" / "demo")
    ap.add_argument("--command", action="append", default=[], help="training command(s), in order")
    ap.add_argument("--notes", type=Path, help="Markdown paragraph(s) about the recipe")
    ap.add_argument("--limit", type=int, help="evaluate only the first N test pairs (for a quick look)")
    args = ap.parse_args(argv)

    src = args.run / f"{args.weights}.pt"
    dst = PRETRAINED / f"{args.name}.pt"
    shutil.copyfile(src, dst)
    facts = training_facts(args.run)
    work = Path(tempfile.mkdtemp(prefix="card-"))
    ev_args = ["evaluate", "--manifest", str(args.corpus.relative_to(ROOT) if args.corpus.is_relative_to(ROOT)
                                             else args.corpus) + "/test.csv", "--model", args.name,
               "--baseline", "noisereduce", "-o", str(work / "eval"), "--quiet"]
    if args.limit:
        ev_args += ["--limit", str(args.limit)]
    snnse(*ev_args)
    summary = json.loads((work / "eval" / "summary.json").read_text())
    test_noisy = sorted((args.corpus / "test" / "mix" / "noisy").glob("*.wav"))[:20]
    audio = work / "audio"
    audio.mkdir()
    for f in test_noisy:
        shutil.copyfile(f, audio / f.name)
    prof_text = snnse("profile", "--model", args.name, "--audio", str(audio), "--json", str(work / "profile.json"))
    profile = json.loads((work / "profile.json").read_text())

    headline, beats = headline_scores(summary)
    cfg = facts["config"]
    corpus_readme = (args.corpus / "README.md").read_text() if (args.corpus / "README.md").is_file() else ""
    licences = corpus_readme.split("## Sources and licences", 1)[-1].strip() if corpus_readme else "(see corpus)"
    n_pairs, n_failed = summary["n_pairs"], summary["n_failed"]
    card = [
        f"# {args.name}",
        "",
        f"{CATALOGUE[args.name]}.",
        "",
        f"- Architecture: `{cfg['model']['name']}` with `{json.dumps(cfg['model']['kwargs'])}`; "
        f"{profile['parameters']['trainable']:,} parameters ({profile['parameters']['size_kb']:.0f} KB float32)",
        f"- Weights: `{args.weights}.pt` of the run (selected on the validation split's SI-SNR; the test "
        f"split was used for nothing but this card), step {facts.get('best_step' if args.weights == 'best' else 'last_step')} "
        f"of {facts.get('last_step')} trained; seed {facts['seed']}.",
        f"- Best validation SI-SNR: {facts['best_val_sisnr']:.2f} dB" if "best_val_sisnr" in facts else "",
        "",
        "## Demo test split: noisy vs noisereduce vs this model (one `snnse evaluate` run)",
        "",
        f"{n_pairs} pairs ({n_failed} failed), an unseen voice and unseen noise recordings; "
        "mean ± 95 % CI half-width. noisereduce is spectral gating with its defaults (offline, "
        "non-causal); the model runs streaming.",
        "",
        table(summary, {"enhanced": args.name}),
        "",
        verdict(summary, headline, beats),
        "",
        "```",
        "snnse " + " ".join(a if a != str(work / 'eval') else 'OUT' for a in ev_args),
        "```",
        "",
        "## Efficiency (`snnse profile --model " + args.name + " --audio <20 test clips>`)",
        "",
        "```",
        prof_text.strip(),
        "```",
        "",
        "## Training",
        "",
        *(["Commands, in order:", "", "```", *args.command, "```", ""] if args.command else []),
        *( [args.notes.read_text().strip(), ""] if args.notes else []),
        "Resolved configuration (`config.yaml` of the run):",
        "",
        "```yaml",
        yaml.safe_dump(cfg, sort_keys=False).strip(),
        "```",
        "",
        "## Training data and licences",
        "",
        "The snnse demo corpus (`snnse data demo`); the test split's voice and noise recordings were "
        "in neither training nor validation.",
        "",
        licences,
        "",
    ]
    (PRETRAINED / f"{args.name}.md").write_text("\n".join(l for l in card if l is not None) + "\n")
    meta = {"name": args.name, "demo_test": headline, "beats_noisy_and_baselines": beats,
            "n_pairs": n_pairs, "n_failed": n_failed, "training": {k: v for k, v in facts.items() if k != "config"}}
    (PRETRAINED / f"{args.name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
