"""The N-DNS metricsboard row of a profile (:func:`metricsboard`): quality from an
``snnse evaluate`` summary (:data:`QUALITY_METRICS`), latency, power proxy, PDP, size and whether
the model is neuromorphic.

References:
    Timcheck et al., "The Intel neuromorphic DNS challenge", Neuromorphic Computing and
    Engineering 3(3) 034005, 2023.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping


QUALITY_METRICS = {"si_snr_db": "sisnr", "si_snri_db": "sisnri", "dnsmos_ovrl": "dnsmos_ovrl",
                   "dnsmos_sig": "dnsmos_sig", "dnsmos_bak": "dnsmos_bak"}


def metricsboard(report: dict, quality: Mapping | str | os.PathLike | None = None) -> dict:
    """The N-DNS metricsboard row of a profile.

    Args:
        report: from :func:`profile`.
        quality: an ``snnse evaluate`` summary (dict or path to ``summary.json``) whose
            ``summary["systems"]["enhanced"][metric]["mean"]`` gives sisnr, sisnri, dnsmos_ovrl,
            dnsmos_sig, dnsmos_bak; None leaves those fields null.

    Returns:
        dict: ``si_snr_db``, ``si_snri_db``, ``dnsmos_ovrl``, ``dnsmos_sig``, ``dnsmos_bak``,
        ``latency_enc_dec_ms``, ``latency_total_ms``, ``power_proxy_mops_per_s``, ``pdp_mops``,
        ``params``, ``size_kb``, ``neuromorphic`` (``"yes"``/``"no"``).

    Raises:
        ValueError: If ``quality`` is a path that cannot be read as JSON.

    References:
        Timcheck et al., "The Intel neuromorphic DNS challenge", NCE 3(3) 034005, 2023.
    """
    if quality is not None and not isinstance(quality, Mapping):
        try:
            quality = json.loads(Path(quality).read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{quality}: cannot read evaluation summary ({err})") from None
    enhanced = {}
    if isinstance(quality, Mapping):
        enhanced = (quality.get("systems") or {}).get("enhanced") or {}
    row = {}
    for field_name, metric in QUALITY_METRICS.items():
        entry = enhanced.get(metric)
        value = entry.get("mean") if isinstance(entry, Mapping) else None
        row[field_name] = float(value) if isinstance(value, (int, float)) else None
    lat, ops = report["latency"], report["ops"]
    row.update(
        latency_enc_dec_ms=lat.get("enc_dec_per_hop_ms"),
        latency_total_ms=lat.get("total_ms"),
        power_proxy_mops_per_s=ops["power_proxy_per_s"] / 1e6,
        pdp_mops=ops["pdp_ops"] / 1e6,
        params=report["parameters"]["trainable"],
        size_kb=report["parameters"]["size_kb"],
        neuromorphic="yes" if report["model"]["spiking"] else "no",
    )
    return row
