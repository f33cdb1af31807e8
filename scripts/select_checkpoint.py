"""Score the checkpoints of a training run on validation pairs and rank them by a metric gain.

``snnse fit`` keeps the best checkpoint by validation SI-SNR; a recipe that cares about another
metric (STOI, say) needs to compare checkpoints on that metric, on more pairs than the training's
quick validation uses, and with the settings the model will ship with (its input level control).
This script does that, for a validation split only (never select on a test split)::

    python scripts/select_checkpoint.py runs/NAME/checkpoints/step-*.ckpt \\
        --manifest data/demo/valid.csv --every 3 --like spiking-s4-demo --by stoi \\
        --group "asterisk=en_,es_,it_,ru_" --snr "high=15:" -o runs/NAME/selection.md

Each checkpoint (a Lightning ``.ckpt`` of ``snnse fit``, or a snnse model file) is run over the
noisy files (streaming, as ``snnse evaluate``) and scored with SI-SNR, PESQ-WB and STOI; the
table gives each metric's mean gain over the noisy input, on all pairs and on the ``--group``
subsets (pairs whose id starts with one of the prefixes) and the ``--snr`` subsets (pairs whose
input SNR, the manifest's ``snr`` column, lies in ``[LO, HI)`` dB), ranked by ``--by``. Scores of
identical signals come from the metric cache.

``--robustness CLEAN_DIR NOISE_DIR`` (validation speech and noise, e.g. ``data/demo/valid/clean
data/demo/valid/noise``) also runs the robustness suite (:mod:`snnse.robustness`, seed 0, the full
settings but ``--robust-utterances`` utterances) on every checkpoint and adds the number of its
shipping targets each one fails; ``--by targets`` ranks by that (fewest first), then by the
SI-SNR gain.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import snnse
from snnse.atomic import atomic_write_text
from snnse.evaluate import evaluate
from snnse.training import load_run_checkpoint

METRICS = ("sisnr", "pesq_wb", "stoi")


def pairs_every(manifest: Path, every: int) -> list[dict]:
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    root = manifest.parent
    return [{"noisy": root / r["noisy"], "clean": root / r["clean"], "file": r["id"],
             "snr": float(r["snr"]) if r.get("snr") not in (None, "") else None} for r in rows[::every]]


def snr_group(text: str) -> tuple[str, tuple[float, float]]:
    """``NAME=LO:HI`` (dB; either end may be empty: unbounded)."""
    name, _, rng = text.partition("=")
    lo, sep, hi = rng.partition(":")
    if not name or not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=LO:HI, got {text!r}")
    try:
        return name, (float(lo) if lo else float("-inf"), float(hi) if hi else float("inf"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=LO:HI in dB, got {text!r}") from None


def robust_failures(model, path: Path, args) -> tuple[int, list[str]]:
    """The robustness suite on ``args.robustness``'s folders: how many targets ``model`` fails, and which."""
    from snnse.robustness import Settings, run_suite, write_report

    report = run_suite(*args.robustness, model=model, model_name=path.stem, workers=1, progress=None,
                       settings=(Settings.quick if args.robust_quick else Settings)(
                           max_utterances=args.robust_utterances))
    checks = report["targets"][path.stem]["checks"]
    if args.robust_out:
        write_report(report, args.robust_out / path.stem)
    return sum(not c["pass"] for c in checks), [c["id"] for c in checks if not c["pass"]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--manifest", type=Path, required=True, help="validation manifest (id, noisy, clean columns)")
    ap.add_argument("--every", type=int, default=1, help="use every K-th pair (default 1: all)")
    ap.add_argument("--like", help="bundled model whose level control the checkpoints get (as it ships)")
    ap.add_argument("--by", default="stoi", choices=METRICS + ("targets",),
                    help="rank by the mean gain of this metric, or by failed robustness targets")
    ap.add_argument("--robustness", nargs=2, type=Path, metavar=("CLEAN_DIR", "NOISE_DIR"),
                    help="also run the robustness suite on this (validation) speech and noise")
    ap.add_argument("--robust-utterances", type=int, default=24, help="utterances of the suite (default 24)")
    ap.add_argument("--robust-out", type=Path, help="keep each checkpoint's suite report in this folder")
    ap.add_argument("--robust-quick", action="store_true", help="the quick suite (a smoke test)")
    ap.add_argument("--group", action="append", default=[], metavar="NAME=PREFIX,...",
                    help="also report the pairs whose id starts with one of the prefixes")
    ap.add_argument("--snr", action="append", default=[], type=snr_group, metavar="NAME=LO:HI",
                    help="also report the pairs whose input SNR (manifest column snr) is in [LO, HI) dB")
    ap.add_argument("-o", "--output", type=Path, help="write the table (markdown) here too")
    args = ap.parse_args(argv)
    if args.by == "targets" and not args.robustness:
        ap.error("--by targets needs --robustness")

    pairs = pairs_every(args.manifest, args.every)
    groups = {"all": lambda f: True}
    for g in args.group:
        name, _, prefixes = g.partition("=")
        groups[name] = lambda f, p=tuple(p for p in prefixes.split(",") if p): f.startswith(p)
    if args.snr:
        snr = {p["file"]: p["snr"] for p in pairs}
        if any(v is None for v in snr.values()):
            ap.error(f"--snr needs an snr column in {args.manifest}")
        for name, (lo, hi) in args.snr:
            groups[name] = lambda f, lo=lo, hi=hi: lo <= snr[f] < hi
    level = snnse.load(args.like).kwargs.get("level_control") if args.like else None
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.checkpoints:
            model, step = load_run_checkpoint(path)
            if args.like:
                model.set_level_control(level)
            model_file = Path(tmp) / "model.pt"
            model.save(model_file)
            res = evaluate(pairs, metrics=list(METRICS), model=str(model_file), workers=1, progress=False,
                           notice=None)
            row = {"checkpoint": path.name, "step": step}
            for gname, member in groups.items():
                for m in METRICS:
                    enh, noisy = res.values("enhanced", m), res.values("noisy", m)
                    files = [f for f in enh if member(f) and enh[f] is not None and noisy.get(f) is not None]
                    row[f"{gname}:{m}"] = sum(enh[f] - noisy[f] for f in files) / max(len(files), 1)
                    row[f"{gname}:n"] = len(files)
            if args.robustness:
                row["failed"], row["failed_names"] = robust_failures(model, path, args)
            results.append(row)
            print(f"{path.name}: " + ", ".join(f"{k} {v:+.4f}" for k, v in row.items() if ":" in k and
                                                 not k.endswith(":n")), file=sys.stderr)
    if args.by == "targets":
        results.sort(key=lambda r: (r["failed"], -r["all:sisnr"]))
    else:
        results.sort(key=lambda r: -r[f"all:{args.by}"])
    head = ["checkpoint", "step"] + [f"Δ{m} ({g}, n={results[0][f'{g}:n']})" for g in groups for m in METRICS]
    if args.robustness:
        head += ["targets failed (robustness suite)"]
    lines = [f"Validation: {len(pairs)} pairs of {args.manifest} (every {args.every}), level control: "
             f"{level if args.like else 'as saved'}; gains over the noisy input, ranked by {args.by}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [f"{r[f'{g}:{m}']:+.4f}" for g in groups for m in METRICS]
        if args.robustness:
            cells.append(f"{r['failed']}: {', '.join(r['failed_names']) or '-'}")
        lines.append(f"| {r['checkpoint']} | {r['step']} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        atomic_write_text(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
