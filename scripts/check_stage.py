#!/usr/bin/env python
"""Check that a training stage is reproducible: rerun its first steps and compare the losses.

A stage of a bundled model is a ``snnse fit`` command (a recipe plus overrides). Its first
training losses, as the original run logged them (``runs/NAME/csv/version_0/metrics.csv``), are
kept in ``training_state/NAME/first_steps.json`` (``--record``). ``--check`` reruns the same
command for those steps in a temporary run folder and compares ``train/loss`` step by step:
with the same data (corpus version), code, thread count and hardware the values are equal;
elsewhere they agree to float rounding (``--rtol``, default 1e-3).

    python scripts/check_stage.py --record runs/dpsnn-demo-s5 --steps 50
    python scripts/check_stage.py --check training_state/dpsnn-demo-s5/first_steps.json

The recorded file holds the command's arguments (``args``), so ``--check`` needs nothing else;
the demo corpus must be built (``snnse data demo data/demo``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
import tempfile
from pathlib import Path

from snnse.atomic import atomic_write_text
from snnse.config import load_config
from snnse.training import fit


def logged_losses(metrics_csv: Path, steps: int) -> dict[int, float]:
    """``{step: train/loss}`` of the rows of a Lightning CSV log up to ``steps``."""
    out = {}
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("train/loss") and int(row["step"]) < steps:
                out[int(row["step"])] = float(row["train/loss"])
    return out


def record(run: Path, steps: int, out: Path | None) -> Path:
    args = shlex.split((run / "args").read_text()) if (run / "args").is_file() else None
    if args is None:
        raise SystemExit(f"{run}/args not found: write the stage's snnse fit arguments there first")
    losses = logged_losses(run / "csv" / "version_0" / "metrics.csv", steps)
    if not losses:
        raise SystemExit(f"no train/loss rows below step {steps} in {run}/csv/version_0/metrics.csv")
    out = out or Path("training_state") / run.name / "first_steps.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps({"args": args, "steps": steps, "train_loss": losses}, indent=1) + "\n")
    print(f"recorded {len(losses)} losses of the first {steps} steps of {run} in {out}")
    return out


def check(recorded: Path, rtol: float) -> int:
    rec = json.loads(recorded.read_text())
    expected = {int(k): float(v) for k, v in rec["train_loss"].items()}
    args = list(rec["args"])
    recipe = None
    if "--config" in args:  # the recipe file, then the overrides, as snnse fit reads them
        k = args.index("--config")
        recipe, args = args[k + 1], args[:k] + args[k + 2:]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(recipe, args + [
            "--run.dir", tmp, "--run.name", "check", "--trainer.max_steps", str(rec["steps"]),
            "--checkpoint.keep_steps", "false"])
        fit(cfg)
        got = logged_losses(Path(tmp) / "check" / "csv" / "version_0" / "metrics.csv", rec["steps"])
    worst = 0.0
    print("step  recorded      rerun         rel. diff")
    for step in sorted(expected):
        a, b = expected[step], got.get(step, math.nan)
        rel = abs(a - b) / max(abs(a), 1e-12)
        worst = max(worst, rel) if not math.isnan(rel) else math.inf
        print(f"{step:4d}  {a:12.6f}  {b:12.6f}  {rel:.2e}")
    ok = worst <= rtol
    print(f"{'reproduced' if ok else 'NOT reproduced'}: largest relative difference {worst:.2e} (tolerance {rtol:g})")
    return 0 if ok else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--record", type=Path, metavar="RUN", help="a run folder with args and csv logs")
    g.add_argument("--check", type=Path, metavar="JSON", help="a first_steps.json written by --record")
    p.add_argument("--steps", type=int, default=50, help="steps to record (default 50)")
    p.add_argument("-o", "--output", type=Path, help="where --record writes (default training_state/RUN/first_steps.json)")
    p.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance of --check (default 1e-3)")
    a = p.parse_args(argv)
    if a.record:
        record(a.record, a.steps, a.output)
        return 0
    return check(a.check, a.rtol)


if __name__ == "__main__":
    sys.exit(main())
