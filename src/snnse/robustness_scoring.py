"""How the robustness suite scores: the metrics, the worker pool and cache, the means, the targets.

Part of ``snnse evaluate --robustness`` (:mod:`snnse.robustness`, which runs the suite and
re-exports these names): :data:`METRICS` (SI-SNR, PESQ-WB, STOI), :class:`_Scorer` (metric jobs
in worker processes, with the metric cache of ``snnse evaluate``), :func:`_rows` and
:func:`_means` (the JSON rows of a part and the per-system means over the items scored in every
system) and :func:`check_targets` (every system against :data:`TARGETS`, the shipping bar).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

METRICS = ("sisnr", "pesq_wb", "stoi")
LABELS = {"sisnr": "SI-SNR", "pesq_wb": "PESQ-WB", "stoi": "STOI"}
INPUT = "input"
#: The shipping bar: the clean-input floor, and the limits of the sweeps and the stream.
TARGETS = {"floor": {"sisnr": 20.0, "stoi": 0.97, "pesq_wb": 3.5}, "sweep_max_snr": 20.0,
           "floor_min_snr": 30.0, "level_max_db": -10.0, "level_spread_db": 1.0,
           "window_cap_db": 20.0, "drift_db": 1.0}


class _Scorer:
    """Metric jobs ``key -> (values | None, error | None)`` in worker processes, with the cache."""

    def __init__(self, workers: int, sample_rate: int, cache: bool, cache_dir=None):
        from snnse.evaluation_pipeline import _implementations

        self.sr, self.results, self.pending, self.pool, self.store = sample_rate, {}, {}, None, None
        self.workers = max(1, int(workers))
        if cache:
            from snnse.metric_cache import MetricCache, code_salt, default_cache_dir

            self.store = MetricCache(cache_dir or default_cache_dir(), code_salt(_implementations(METRICS)))
        if self.workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            from snnse.evaluation_pipeline import _init_worker

            ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
            self.pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker)

    def submit(self, key, clean: np.ndarray, est: np.ndarray) -> None:
        from snnse.evaluation_pipeline import _score

        ckey = self.store.key(clean, est, self.sr) if self.store is not None else None
        hit = self.store.get(ckey, METRICS) if ckey is not None else None
        if hit is not None:
            self.results[key] = (hit, None)
        elif self.pool is None:
            self._done(key, ckey, *_score((key, clean, est, self.sr, METRICS, None))[1:])
        else:
            try:
                self.pending[self.pool.submit(_score, (key, clean, est, self.sr, METRICS, None))] = (key, ckey)
            except RuntimeError:  # the pool broke (a worker was killed): go on in this process
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = None
                return self.submit(key, clean, est)
            while len(self.pending) >= 2 * self.workers:
                self.drain(all_=False)

    def _done(self, key, ckey, values, reason) -> None:
        self.results[key] = (values, reason)
        if values is not None and ckey is not None:
            try:
                self.store.put(ckey, values)
            except OSError:
                pass  # the cache is an optimisation only

    def drain(self, all_: bool = True) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait

        while self.pending:
            done, _ = wait(list(self.pending), return_when=FIRST_COMPLETED)
            for fut in done:
                key, ckey = self.pending.pop(fut)
                try:
                    values, reason = fut.result()[1:]
                except Exception as err:  # a worker died (out of memory, ...): this score fails
                    values, reason = None, f"metric worker failed ({type(err).__name__}: {err})"
                self._done(key, ckey, values, reason)
            if not all_:
                return

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _r(x):
    return None if x is None or not np.isfinite(x) else round(float(x), 6)


def _means(rows: list[dict], systems: Sequence[str]) -> dict:
    """Per system: metric means, mean SI-SNR gain over the input and ``n``, over the rows
    scored in every system."""
    ok = [r for r in rows if all(r["scores"].get(s) for s in systems)]
    out = {}
    for s in systems:
        m = {k: _r(np.mean([r["scores"][s][k] for r in ok])) if ok else None for k in METRICS}
        m["sisnr_gain"] = _r(np.mean([r["scores"][s]["sisnr"] - r["scores"][INPUT]["sisnr"]
                                      for r in ok])) if ok else None
        out[s] = dict(m, n=len(ok))
    return out


def _rows(part: str, items: list[dict], results: dict, systems: Sequence[str]) -> list[dict]:
    """The JSON rows of a part: the item's description, ``scores`` and ``errors`` per system."""
    keep, rows = ("id", "utterance", "snr_db", "noise", "level_db", "start_s", "end_s", "skipped"), []
    for i, it in enumerate(items):
        got = {s: results.get((part, i, s), (None, it.get("skipped") or "not scored")) for s in systems}
        rows.append({**{k: it[k] for k in keep if k in it},
                     "scores": {s: v and {k: _r(x) for k, x in v.items()} for s, (v, _) in got.items()},
                     "errors": {s: e for s, (_, e) in got.items() if e is not None}})
    return rows



def check_targets(parts: dict, systems: Sequence[str]) -> dict:
    """Pass/fail of every system against :data:`TARGETS`, from the means of ``parts``.

    Each check is ``{"id", "target", "value", "bound", "op", "where", "pass"}``; ``value`` is the
    worst case (a margin for the comparisons with the input); a check with nothing measured
    (``value`` None) fails. Returns ``{system: {"pass": bool, "checks": [...]}}``.
    """
    t, floor, out = TARGETS, TARGETS["floor"], {}
    for s in systems:
        checks = []

        def add(cid, target, value, op, bound, where=None):
            ok = value is not None and (value >= bound - 1e-9 if op == ">=" else value <= bound + 1e-9)
            checks.append({"id": cid, "target": target, "value": _r(value), "op": op, "bound": bound,
                           "where": where, "pass": bool(ok)})

        cm = parts["clean"]["means"][s]
        for m in METRICS:
            add(f"clean_{m}", f"clean input: {LABELS[m]} >= {floor[m]:g}", cm[m], ">=", floor[m])
        bins = parts["snr"]["bins"]
        for m in METRICS:
            worst = [(b["means"][s][m] - b["means"][INPUT][m], f"{b['snr_db']:g} dB") for b in bins
                     if b["snr_db"] <= t["sweep_max_snr"] and b["means"][s][m] is not None
                     and b["means"][INPUT][m] is not None]
            value, where = min(worst) if worst else (None, None)
            add(f"snr_{m}", f"SNR sweep <= {t['sweep_max_snr']:g} dB: output {LABELS[m]} >= input's "
                "(worst margin)", value, ">=", 0.0, where)
        for m in METRICS:
            worst = [(b["means"][s][m], f"{b['snr_db']:g} dB") for b in bins
                     if b["snr_db"] >= t["floor_min_snr"] and b["means"][s][m] is not None]
            add(f"floor_{m}", f"SNR sweep >= {t['floor_min_snr']:g} dB: {LABELS[m]} >= {floor[m]:g} (worst)",
                min(worst)[0] if worst else None, ">=", floor[m], min(worst)[1] if worst else None)
        gains = [(b["means"][s]["sisnr_gain"], b["level_db"]) for b in parts["level"]["bins"]
                 if b["level_db"] <= t["level_max_db"] and b["means"][s]["sisnr_gain"] is not None]
        add("level_spread", f"level sweep: SI-SNR gain spread (max - min) <= {t['level_spread_db']:g} dB",
            max(gains)[0] - min(gains)[0] if gains else None, "<=", t["level_spread_db"],
            f"{min(g[1] for g in gains):g}..{max(g[1] for g in gains):g} dBFS" if gains else None)
        st, margins = parts["stream"], []
        for w in st["windows"]:
            if w["scores"].get(s) and w["scores"].get(INPUT):
                cap = min(w["scores"][INPUT]["sisnr"], t["window_cap_db"])
                margins.append((w["scores"][s]["sisnr"] - cap, f"{w['start_s']:g} s"))
        add("stream_windows", f"long stream: every window's output SI-SNR >= min(input's, "
            f"{t['window_cap_db']:g} dB) (worst margin)", min(margins)[0] if margins else None,
            ">=", 0.0, min(margins)[1] if margins else None)
        h, tl = st["head"][s]["sisnr_gain"], st["tail"][s]["sisnr_gain"]
        add("stream_drift", f"long stream: mean SI-SNR gain of the last {st['head_s']:.0f} s within "
            f"{t['drift_db']:g} dB of the first {st['head_s']:.0f} s'",
            abs(tl - h) if h is not None and tl is not None else None, "<=", t["drift_db"])
        out[s] = {"pass": all(c["pass"] for c in checks), "checks": checks}
    return out
