"""Put a new demo-test evaluation into a bundled model's card and headline scores.

Usage:
    snnse evaluate --manifest data/demo/test.csv --model NAME --baseline noisereduce -o OUT --quiet
    python scripts/card_scores.py NAME --eval OUT [--note TEXT]

For a bundled model whose weights stay but whose settings changed (e.g. its input level control,
``kwargs["level_control"]``) and whose training run folder is no longer at hand, so that
``scripts/model_card.py`` cannot rebuild the whole card: replaces the card's test table, its
verdict line and the evaluation command, and the ``demo_test`` / ``beats_noisy_and_baselines``
entries of ``NAME.json``. Everything else in the card (training, efficiency, known weaknesses) is
kept as it is.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_card import PRETRAINED, headline_scores, table, verdict  # noqa: E402


def robustness_section(card: str, name: str, folder: Path) -> str:
    """The card with its ``## Robustness`` section (before ``## Known weaknesses``) replaced by the
    tables of ``folder/robustness.md``; the figure is copied to ``NAME.robustness.png``."""
    tables = (folder / "robustness.md").read_text().split("\n", 2)[2].strip()  # without its title
    shutil.copyfile(folder / "robustness.png", PRETRAINED / f"{name}.robustness.png")
    report = json.loads((folder / "robustness.json").read_text())
    flags = "".join(f" --baseline {b}" for b in report.get("baselines", []))
    body = (f"## Robustness (`snnse evaluate --robustness --model {name}{flags}`, demo test split)\n\n"
            + tables + "\n\n"
            f"![robustness suite]({name}.robustness.png)\n\n")
    old = re.compile(r"## Robustness.*?(?=## )", re.S)
    if old.search(card):
        return old.sub(lambda m: body, card, count=1)
    at = card.index("## Known weaknesses")
    return card[:at] + body + card[at:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=["dpsnn-demo", "spiking-s4-demo"])
    ap.add_argument("--eval", required=True, type=Path, help="output folder of snnse evaluate")
    ap.add_argument("--note", default="", help="a sentence to put under the table")
    ap.add_argument("--robustness", type=Path, metavar="DIR",
                    help="output folder of snnse evaluate --robustness (demo test split): its tables go "
                         "into the card's robustness section, its figure beside the card")
    args = ap.parse_args(argv)
    summary = json.loads((args.eval / "summary.json").read_text())
    if summary["model"]["path"] != args.name:
        raise SystemExit(f"{args.eval} evaluates {summary['model']['path']!r}, not {args.name!r}")
    headline, beats = headline_scores(summary)
    card_path, json_path = PRETRAINED / f"{args.name}.md", PRETRAINED / f"{args.name}.json"
    card = card_path.read_text()
    section = re.compile(r"(## Demo test split[^\n]*\n\n[^\n]*\n\n)(.*?)(\n```\nsnnse evaluate[^\n]*\n```\n)", re.S)
    if not section.search(card):
        raise SystemExit(f"{card_path}: test-split section not found")
    command = " ".join("OUT" if a == str(summary["command"][summary["command"].index("-o") + 1]) else a
                       for a in summary["command"])
    body = table(summary, {"enhanced": args.name}) + "\n\n" + verdict(summary, headline, beats) + "\n"
    if args.note:
        body += "\n" + args.note.strip() + "\n"
    card = section.sub(lambda m: m.group(1) + body + "\n```\n" + command + "\n```\n", card, count=1)
    if args.robustness:
        card = robustness_section(card, args.name, args.robustness)
    card_path.write_text(card)
    meta = json.loads(json_path.read_text())
    meta.pop("beats_noisy_and_noisereduce", None)
    meta["demo_test"], meta["beats_noisy_and_baselines"] = headline, beats
    if args.robustness:
        report = json.loads((args.robustness / "robustness.json").read_text())
        system = report["model"]["system"]
        meta["robustness"] = {"pass": report["targets"][system]["pass"],
                              "failed": [c["id"] for c in report["targets"][system]["checks"] if not c["pass"]]}
    meta["n_pairs"], meta["n_failed"] = summary["n_pairs"], summary["n_failed"]
    json_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{args.name}: " + ", ".join(f"{m} {v['model']:.3f} (noisy {v['noisy']:.3f})" for m, v in headline.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
