"""The enhance-and-score pipeline that ``snnse evaluate`` and the robustness suite share.

:class:`_Pipeline` reads a pair, runs the model (``stream``: a :class:`~snnse.streaming.Streamer`
fed 0.5 s chunks; ``offline``; ``chunk1s``) or a baseline, and hands the signals on as metric jobs;
:func:`_score` is the worker task that computes them (:func:`_init_worker` sets up each worker
process); :func:`_implementations` and :func:`_model_desc` describe the metric code and the model
for the reports. It sits below :mod:`snnse.evaluate` and :mod:`snnse.robustness` so that neither
imports the other for it (the names keep their leading underscore: they are the two commands'
internals, not a public API).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from snnse.audio import AudioError, read_audio, resample, write_audio_atomic
from snnse.metrics.compute import DNSMOS_METRICS, compute_metrics

MODES = ("stream", "offline", "chunk1s")
STREAM_CHUNK_SECONDS = 0.5
LENGTH_SLACK_SECONDS = 0.01  # a longer length mismatch than this is mentioned (once)


def _init_worker() -> None:
    """Pool initializer: one torch thread and a fresh DNSMOS scorer per worker process."""
    import torch

    from snnse.metrics import compute

    torch.set_num_threads(1)
    compute.reset_process_dnsmos()


def _reason(err: BaseException) -> str:
    from snnse.metrics.quality import MetricError

    msg = " ".join(str(err).split())[:300]
    return msg if isinstance(err, MetricError) and msg else f"{type(err).__name__}: {msg}"


def _score(job: tuple) -> tuple:
    """Worker task ``(key, clean, est, rate, metrics, noisy) -> (key, values, error)``."""
    key, clean, est, sr, names, noisy = job
    try:
        return key, compute_metrics(clean, est, sr, names, noisy=noisy), None
    except Exception as err:  # any metric library failing on one file must not stop the run
        return key, None, _reason(err)


# ---------------------------------------------------------------- pipeline

class _Pipeline:
    """Reads a pair, runs the model, and turns it into metric jobs (main process)."""

    def __init__(self, names, systems, model, mode, device, downmix, notice, baselines=()):
        self.names, self.systems, self.model, self.mode = names, systems, model, mode
        self.baselines = tuple(baselines)
        self.device, self.downmix, self.notice = device, downmix, notice
        self.said: set[str] = set()

    def say_once(self, topic: str, msg: str) -> None:
        if topic not in self.said and self.notice is not None:
            self.said.add(topic)
            self.notice(msg)

    def load(self, path: Path, sr: int | None = None) -> tuple[np.ndarray, int]:
        x, fsr = read_audio(path, dtype="float64")
        if x.shape[0] > 1:
            if not self.downmix:
                raise AudioError(f"{path}: {x.shape[0]} channels; evaluation needs mono "
                                 "(--downmix averages the channels)")
            x = x.mean(axis=0, keepdims=True)
        x = x[0]
        if sr is not None and fsr != sr:
            self.say_once("rate", f"notice: {path}: {fsr} Hz resampled to {sr} Hz, the rate of "
                                  "its clean reference (said once)")
            x = resample(x, fsr, sr)
        return x, fsr

    def enhance(self, noisy: np.ndarray, sr: int, src: Path) -> np.ndarray:
        import torch

        model = self.model
        msr = int(model.sample_rate)
        if sr != msr:
            self.say_once("model-rate", f"notice: {src}: {sr} Hz resampled to the model's "
                                        f"{msr} Hz and back (said once)")
        x = torch.from_numpy(np.ascontiguousarray(resample(noisy, sr, msr), dtype=np.float32))
        x = x.to(self.device)
        with torch.inference_mode():
            if self.mode == "offline":
                y = model(x[None])[0]
            elif self.mode == "stream":
                from snnse.streaming import Streamer

                streamer, step = Streamer(model), max(1, int(round(STREAM_CHUNK_SECONDS * msr)))
                y = torch.cat([streamer.feed(x[k:k + step]) for k in range(0, len(x), step)]
                              + [streamer.flush()])
            else:  # chunk1s: independent 1 s pieces, each from a fresh state
                full = len(x) // msr * msr
                parts = [model(x[:full].reshape(-1, msr)).reshape(-1)] if full else []
                if full < len(x):
                    parts.append(model(x[full:][None])[0])
                y = torch.cat(parts)
        y = y.detach().to("cpu", torch.float64).numpy()
        if not np.isfinite(y).all():
            raise ValueError("the model produced NaN or Inf samples")
        y = resample(y, msr, sr)[:len(noisy)]
        return np.pad(y, (0, len(noisy) - len(y)))

    def prepare(self, pair: dict, save: Path | None) -> tuple:
        """``(estimates {system: array}, failures {system: reason}, duration, clean, noisy, rate)``."""
        fail_all = lambda reason: ({}, {s: reason for s in self.systems}, None, None, None, None)  # noqa: E731
        if pair.get("error"):
            return fail_all(pair["error"])
        try:
            clean, sr = self.load(pair["clean"])
            noisy = self.load(pair["noisy"], sr)[0] if pair.get("noisy") is not None else None
        except AudioError as err:
            return fail_all(str(err))
        ests, failures = {}, {}
        if noisy is None and (self.model is not None or "noisy" in self.systems):
            return fail_all(f"{pair['file']}: no noisy file")
        if "noisy" in self.systems:
            ests["noisy"] = noisy
        for name in self.baselines:
            from snnse.baselines import get as baseline

            try:
                ests[name] = baseline(name)(noisy, sr)
            except (RuntimeError, ValueError) as err:
                failures[name] = f"{pair['noisy']}: {name}: failed ({' '.join(str(err).split())[:200]})"
        if "enhanced" in self.systems and self.model is not None:
            try:
                ests["enhanced"] = self.enhance(noisy, sr, pair["noisy"])
            except (RuntimeError, ValueError) as err:
                failures["enhanced"] = (f"{pair['noisy']}: enhanced: model failed "
                                        f"({type(err).__name__}: {' '.join(str(err).split())[:200]})")
            if save is not None and "enhanced" in ests:
                try:
                    write_audio_atomic(save, ests["enhanced"][None], sr, subtype="FLOAT")
                except AudioError as err:
                    failures["enhanced"] = str(err)
        elif "enhanced" in self.systems:
            if pair.get("enhanced") is None:
                failures["enhanced"] = pair.get("enhanced_error") or f"{pair['file']}: no enhanced file"
            else:
                try:
                    ests["enhanced"] = self.load(pair["enhanced"], sr)[0]
                except AudioError as err:
                    failures["enhanced"] = str(err)
        for system, est in ests.items():
            if abs(len(est) - len(clean)) > LENGTH_SLACK_SECONDS * sr:
                self.say_once("length", f"notice: {pair.get(system) or pair['noisy']}: "
                              f"{len(est)} samples against {len(clean)} in the clean reference; "
                              "files are scored on the shorter length (said once)")
        return ests, failures, len(clean) / sr, clean, noisy, sr


def _model_desc(model, path) -> dict | None:
    if model is None:
        return None
    return {"path": str(path) if path is not None else None, "name": getattr(model, "name", None),
            "kwargs": dict(getattr(model, "kwargs", {}) or {})}


def _implementations(names: Sequence[str]) -> dict:
    from snnse.metrics import quality

    impl = {k: v for k, v in quality.versions().items() if k in names}
    if set(names) & set(DNSMOS_METRICS):
        from snnse.metrics import dnsmos

        impl["dnsmos"] = dnsmos.model_info()
    return impl
