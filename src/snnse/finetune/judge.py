"""Judging a fine-tune: the before/after table on the held-out files and the rule that accepts it."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from snnse.audio import load_mono

CHECK_SNRS = (30.0, 40.0)  # the high-SNR part of the check
METRICS = ("sisnr", "pesq_wb", "stoi")
PARTS = ("heldout", "clean", "high_snr")
#: how far a figure may fall and still count as "not lower": below what the scores resolve (STOI's
#: and PESQ's third decimal, SI-SNR's hundredths move between runs of the same weights)
TOLERANCE = {"sisnr": 0.05, "pesq_wb": 0.005, "stoi": 0.001}
RULE = ("accepted only if, against the start model, held-out SI-SNR is higher by more than "
        f"{TOLERANCE['sisnr']:g} dB and no other figure (held-out PESQ-WB and STOI; SI-SNR, PESQ-WB "
        "and STOI of the clean-input and 30/40 dB checks) is lower by more than "
        f"{TOLERANCE['sisnr']:g} dB / {TOLERANCE['pesq_wb']:g} / {TOLERANCE['stoi']:g}")



def heldout_table(models: dict, pairs: list[dict], utts, noises, seed: int,
                  progress: Callable[[str], None] | None = None) -> dict:
    """``{part: {system: {metric: mean, "n"}}}`` for ``input`` and each model of ``models``
    (``{name: Enhancer}``), over the parts of :data:`PARTS`; every system is scored on the same
    items (an item failing in any system is left out of every mean)."""
    from snnse.metrics.compute import compute_metrics
    from snnse.robustness_items import Settings, build_items, make_systems

    sr = next(iter(models.values())).sample_rate
    items = build_items(utts, noises, Settings(snrs=CHECK_SNRS, levels=(), max_utterances=len(utts)), seed)
    held = []
    for p in pairs:
        a, b = load_mono(p["noisy"], sr), load_mono(p["clean"], sr)
        n = min(len(a), len(b))
        held.append({"noisy": a[:n].astype(np.float64), "clean": b[:n].astype(np.float64)})
    parts = {"heldout": held, "clean": items["clean"], "high_snr": items["snr"]}
    systems = {"input": lambda x: x}
    for name, model in models.items():
        systems[name] = make_systems(model, (), sr, model_name=name)[name]
    table = {}
    for part, its in parts.items():
        t0 = time.time()
        scores = {s: [] for s in systems}
        for it in its:
            row = {}
            for s, f in systems.items():
                try:
                    row[s] = compute_metrics(it["clean"], np.asarray(f(it["noisy"]), dtype=np.float64), sr,
                                             list(METRICS))
                except Exception:  # noqa: BLE001 - one bad item must not stop the table
                    row = None
                    break
            if row is not None:
                for s in systems:
                    scores[s].append(row[s])
        table[part] = {s: {m: (float(np.mean([r[m] for r in v])) if v else None) for m in METRICS}
                       | {"n": len(v)} for s, v in scores.items()}
        if progress:
            progress(f"finetune: scored {part} ({len(its)} items x {len(systems)} systems) in "
                     f"{time.time() - t0:.0f} s")
    return table


def is_better(table: dict, start: str = "start", new: str = "finetuned") -> tuple[bool, list[str]]:
    """Apply :data:`RULE`; returns ``(accepted, reasons it is not)``."""
    why = []
    for part in PARTS:
        for m in METRICS:
            a, b = table[part][start][m], table[part][new][m]
            if a is None or b is None:
                why.append(f"{part} {m}: not measured")
            elif part == "heldout" and m == "sisnr":
                if not b > a + TOLERANCE[m]:
                    why.append(f"held-out SI-SNR {b:.2f} dB is not above the start's {a:.2f} dB")
            elif b < a - TOLERANCE[m]:
                why.append(f"{part} {m} fell: {a:.4g} -> {b:.4g}")
    return not why, why


def markdown_table(table: dict, systems: Sequence[str] = ("input", "start", "finetuned")) -> str:
    """The before/after table as Markdown (one row per system, a column per part and metric)."""
    names = {"heldout": "held-out", "clean": "clean input", "high_snr": "30/40 dB"}
    labels = {"sisnr": "SI-SNR", "pesq_wb": "PESQ-WB", "stoi": "STOI"}
    head = [f"{names[p]} {labels[m]}" for p in PARTS for m in METRICS]
    lines = ["| system | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for s in systems:
        if s not in table["heldout"]:
            continue
        cells = []
        for p in PARTS:
            for m in METRICS:
                v = table[p][s][m]
                cells.append("—" if v is None else f"{v:.2f}" if m == "sisnr" else f"{v:.3f}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    n = table["heldout"]["input"]["n"], table["clean"]["input"]["n"], table["high_snr"]["input"]["n"]
    return "\n".join(lines) + f"\n\n({n[0]} held-out pairs, {n[1]} clean utterances, {n[2]} mixtures at 30/40 dB)\n"
