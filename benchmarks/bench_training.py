"""Training throughput (seconds of audio per second) of the paper recipes, through ``snnse fit``.

Runs the real training path — recipe from ``configs/``, Lightning, the paper loss and optimizer,
data loading — with items mixed on the fly from the real speech in ``../shared/data/voicebank_debug``
and the noises in ``../shared/data/noise``, with a batch that fits this machine, and times every
training step with a callback (the first ``--warmup`` steps are dropped). Throughput = samples in
the batch (crop plus context) / sample rate / median step time.

Usage: python benchmarks/bench_training.py [--recipes dpsnn_voicebank spiking_s4_voicebank]
       [--batch 16] [--steps 12] [--accelerator cpu|gpu]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def measure(recipe: str, batch: int, steps: int, warmup: int, accelerator: str) -> dict:
    import lightning.pytorch as pl

    from snnse.config import load_config
    from snnse import training

    times: list[float] = []
    samples: list[int] = []

    class Timer(pl.Callback):
        def on_train_batch_start(self, trainer, task, b, i):
            if accelerator == "gpu":
                torch.cuda.synchronize()
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, task, out, b, i):
            if accelerator == "gpu":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t0)
            samples.append(b[0].numel())

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(REPO / "configs" / f"{recipe}.yaml", [
            "--data.root", str(DATA), "--data.batch_size", str(batch), "--data.num_workers", "2",
            "--run.dir", tmp,
            "--trainer.max_steps", str(steps + warmup), "--trainer.limit_val_batches", "0",
            "--trainer.accelerator", accelerator, "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
            "--trainer.enable_checkpointing", "false"])
        cfg["data"]["train"] = {"clean": "voicebank_debug/clean", "noise": "noise/speechbrain",
                                "length": batch * (steps + warmup)}
        cfg["data"]["valid"] = {"noisy": "voicebank_debug/noisy", "clean": "voicebank_debug/clean"}
        training.fit(cfg, callbacks=[Timer()])
    step = statistics.median(times[warmup:])
    audio = statistics.median(samples[warmup:]) / cfg["data"]["sample_rate"]
    return {"recipe": recipe, "batch": batch, "segment_s": cfg["data"]["segment"], "step_s": step,
            "audio_s_per_s": audio / step}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="+", default=["dpsnn_voicebank", "spiking_s4_voicebank"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--accelerator", default="cpu")
    args = ap.parse_args(argv)
    dev = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# {platform.machine()} {dev}, torch {torch.__version__}, python {platform.python_version()}")
    print("| recipe | batch × segment | median step | audio s / s |")
    print("| --- | --- | --- | --- |")
    for r in args.recipes:
        m = measure(r, args.batch, args.steps, args.warmup, args.accelerator)
        print(f"| {r} | {m['batch']} × {m['segment_s']:g} s | {m['step_s'] * 1e3:.0f} ms | "
              f"{m['audio_s_per_s']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
