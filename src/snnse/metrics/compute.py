"""Named metrics of one (reference, estimate) pair: the metric set of ``snnse evaluate``.

:func:`compute_metrics` turns a list of names from :data:`METRICS` into calls of
:mod:`snnse.metrics.quality` and :mod:`snnse.metrics.dnsmos`, computing the composite measures
once (reusing PESQ-WB) and keeping one DNSMOS scorer per process.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

METRICS = ("sisnr", "sisnri", "pesq_wb", "pesq_nb", "stoi", "estoi", "csig", "cbak", "covl",
           "segsnr", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
COMPOSITE_METRICS = ("csig", "cbak", "covl", "segsnr")
DNSMOS_METRICS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
_DNSMOS = None  # this process's DNSMOS scorer (see _process_dnsmos)


def parse_metrics(spec: str | Sequence[str] | None) -> list[str]:
    """Metric names from ``"a,b,c"`` or a list (None: all), in canonical order.

    Raises:
        ValueError: On an unknown name or an empty selection; the message lists the valid names.
    """
    if spec is None:
        return list(METRICS)
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [str(n).strip().lower() for n in names if str(n).strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        what = f"unknown metric(s) {', '.join(unknown)}" if unknown else "no metric selected"
        raise ValueError(f"{what}; valid names: {', '.join(METRICS)}")
    return [m for m in METRICS if m in names]


def _process_dnsmos():
    """The DNSMOS scorer of this process (one ONNX thread), created on first use."""
    global _DNSMOS
    if _DNSMOS is None:
        from snnse.metrics.dnsmos import DNSMOS

        _DNSMOS = DNSMOS(threads=1)
    return _DNSMOS


def _mono(x, what: str) -> np.ndarray:
    from snnse.metrics.quality import MetricError

    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise ValueError(f"{what}: expected a mono 1-D signal, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise MetricError(f"{what} contains NaN or Inf samples")
    return x


def compute_metrics(clean, est, sample_rate: int, metrics: str | Sequence[str] | None,
                    noisy=None, dnsmos=None) -> dict[str, float]:
    """Score one estimate against its clean reference.

    Signals of different lengths are cut to the shortest. The composite measures (csig,
    cbak, covl, segsnr) come from one :func:`snnse.metrics.quality.composite` call that
    reuses ``pesq_wb`` when it is computed as well; DNSMOS scores ``est`` alone.

    Args:
        clean: Reference, 1-D.
        est: Signal to score (noisy input or enhanced output), 1-D, same rate.
        sample_rate: Rate of both in Hz.
        metrics: Names from :data:`METRICS` (list or ``"a,b"``; None: all).
        noisy: The noisy input, needed for ``sisnri``.
        dnsmos: A :class:`snnse.metrics.dnsmos.DNSMOS`; None uses one per process.

    Returns:
        ``{metric: value}`` in the order of :data:`METRICS`.

    Raises:
        MetricError: NaN/Inf or empty signals, or a metric that cannot be computed (PESQ on
            a silent reference, ...).
        ValueError: Unknown metric names, or ``sisnri`` without ``noisy``.
    """
    from snnse.metrics import quality as q

    names = parse_metrics(metrics)
    clean, est = _mono(clean, "clean reference"), _mono(est, "estimate")
    if "sisnri" in names and noisy is None:
        raise ValueError("sisnri needs the noisy input (noisy=...)")
    noisy = _mono(noisy, "noisy input") if noisy is not None else None
    n = min(len(clean), len(est), len(noisy) if noisy is not None else len(est))
    if n == 0:
        raise q.MetricError("empty signal")
    clean, est = clean[:n], est[:n]
    out: dict[str, float] = {}
    for name in names:
        if name in out:
            continue
        if name == "sisnr":
            out[name] = q.si_snr(clean, est)
        elif name == "sisnri":
            out[name] = q.si_snri(clean, est, noisy[:n])
        elif name in ("pesq_wb", "pesq_nb"):
            out[name] = q.pesq(clean, est, sample_rate, mode=name[-2:])
        elif name in ("stoi", "estoi"):
            out[name] = q.stoi(clean, est, sample_rate, extended=name == "estoi")
        elif name in COMPOSITE_METRICS:
            comp = q.composite(clean, est, sample_rate, pesq_wb=out.get("pesq_wb"))
            out.update({k: comp[k] for k in COMPOSITE_METRICS if k in names})
        else:
            scores = (dnsmos or _process_dnsmos())(est, sample_rate)
            out.update({k: scores[k] for k in DNSMOS_METRICS if k in names})
    return {k: float(out[k]) for k in names}



def reset_process_dnsmos() -> None:
    """Forget this process's DNSMOS scorer (worker processes start with a fresh one)."""
    global _DNSMOS
    _DNSMOS = None


__all__ = ["METRICS", "COMPOSITE_METRICS", "DNSMOS_METRICS", "parse_metrics", "compute_metrics",
           "reset_process_dnsmos"]
