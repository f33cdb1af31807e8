"""``snnse models --card FILE``: a model card from a model file's metadata."""

from __future__ import annotations

import os
from pathlib import Path

from .judge import markdown_table


def file_card(path: str | os.PathLike) -> str:
    """A model card (Markdown) from a model file's metadata: what it is, how it was trained, and
    for a fine-tuned model what it started from, on how much data, and its before/after table."""
    import snnse
    from snnse.models import count_parameters

    model = snnse.load(path)
    m = model.meta
    lines = [f"# {Path(path).name}", "",
             f"{model.name}, {count_parameters(model):,} parameters, {model.latency_ms:g} ms latency, "
             f"hop {1000 * model.hop / model.sample_rate:g} ms, {model.sample_rate} Hz"
             + (f", level control {model.kwargs['level_control']}" if model.kwargs.get("level_control") else "")]
    ft = m.get("finetune")
    if ft:
        d, src = ft["data"], ft["from"]
        lines += ["", "## Fine-tune", "",
                  f"- from: {src['model']} ({src['architecture']}, sha256 {src['sha256'][:12]}…)",
                  f"- verdict: {'ACCEPTED' if ft['accepted'] else 'REJECTED: this file holds the start weights'}"
                  + ("" if ft["accepted"] else " (" + "; ".join(ft["why_not"]) + ")"),
                  f"- data ({d['mode']}): {', '.join(f'{k} {v}' for k, v in d['folders'].items())}; "
                  f"{d['train_files']} training files ({d['train_speech_s'] / 60:.1f} min of speech), "
                  f"{d['valid_files']} held out ({d['valid_speech_s'] / 60:.1f} min), "
                  f"{len(d['skipped'])} skipped",
                  f"- training: {ft['steps']} steps in {ft['train_time_s'] / 60:.1f} min, best held-out step "
                  f"{ft['best_step']}, lr {ft['recipe']['optim']['lr']:g}, seed {d['seed']}, "
                  f"snnse {ft['snnse_version']}, {ft['date']}",
                  f"- rule: {ft['rule']}", "", markdown_table(ft["table"])]
    elif m.get("recipe"):
        r = m["recipe"]
        lines += ["", f"Trained with lr {r['optim']['lr']:g} ({r['optim']['name']}), loss {r['loss']}, "
                      f"batch {r['data']['batch_size']} x {r['data']['segment']} s."]
    else:
        lines += ["", "No training record in this file."]
    if m.get("lineage"):
        lines += ["", "Fine-tuned from, oldest first: " + " -> ".join(s["model"] for s in m["lineage"])]
    return "\n".join(lines) + "\n"
