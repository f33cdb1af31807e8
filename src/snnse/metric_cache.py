"""An on-disk cache of metric scores, keyed by the signals' content.

Evaluating several models on one test set scores the same noisy inputs every time, and
re-running an evaluation scores the same outputs again, and the metrics (DNSMOS above all) cost
far more than reading a cached score (measured: ``benchmarks/RESULTS.md``). :class:`MetricCache`
stores each successful score set under the SHA-256 of

* the reference, the estimate (and the noisy input when SI-SNRi needs it) as float64 bytes,
  and the sample rate;
* a *salt*: the snnse version, the metric implementations and versions, and the bytes of the
  metric source files — so any change to a metric's code or its packages misses the cache.

Entries are small JSON files (``ROOT/ab/abcdef….json``) written atomically, so concurrent
evaluations can share a cache. Failures are never cached. The default root is
``$SNNSE_CACHE_DIR`` or ``~/.cache/snnse/metrics``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from snnse.atomic import atomic_write_text


def default_cache_dir() -> Path:
    """``$SNNSE_CACHE_DIR`` if set, else ``~/.cache/snnse/metrics``."""
    env = os.environ.get("SNNSE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "snnse" / "metrics"


def code_salt(implementations: Mapping) -> str:
    """Hex digest of the snnse version, ``implementations`` and the metric modules' source."""
    import snnse
    from snnse.metrics import dnsmos, quality

    h = hashlib.sha256()
    h.update(json.dumps({"snnse": snnse.__version__, "impl": implementations}, sort_keys=True,
                        default=str).encode())
    for mod in (quality, dnsmos):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()


class MetricCache:
    """Metric scores on disk, keyed by signal content and metric code.

    Args:
        root: Cache folder (created on first write).
        salt: From :func:`code_salt`; entries written under another salt are never seen.
    """

    def __init__(self, root: str | os.PathLike, salt: str):
        self.root, self.salt = Path(root), salt
        self.hits = self.misses = 0

    def key(self, clean: np.ndarray, est: np.ndarray, sample_rate: int, noisy: np.ndarray | None = None) -> str:
        """The entry name of one ``(clean, est[, noisy])`` triple at ``sample_rate``."""
        h = hashlib.sha256(self.salt.encode())
        h.update(str(int(sample_rate)).encode())
        for x in (clean, est) if noisy is None else (clean, est, noisy):
            x = np.ascontiguousarray(x, dtype=np.float64)
            h.update(str(x.shape).encode())
            h.update(x.tobytes())
        return h.hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str, names: Sequence[str]) -> dict[str, float] | None:
        """The scores ``names`` stored under ``key``, or None if any is missing (or unreadable)."""
        try:
            stored = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            stored = None
        if isinstance(stored, dict) and all(isinstance(stored.get(n), (int, float)) for n in names):
            self.hits += 1
            return {n: float(stored[n]) for n in names}
        self.misses += 1
        return None

    def put(self, key: str, values: Mapping[str, float]) -> None:
        """Store ``values`` under ``key``, keeping scores of other metrics already there.

        Raises:
            OSError: The cache folder cannot be written.
        """
        path = self._path(key)
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
        merged = {**(old if isinstance(old, dict) else {}), **{k: float(v) for k, v in values.items()}}
        atomic_write_text(path, json.dumps(merged, sort_keys=True) + "\n")


__all__ = ["MetricCache", "code_salt", "default_cache_dir"]
