"""Inputs and outputs of :mod:`snnse.evaluate`: pairing files, statistics, output files.

Pairs come from two folders (by relative name, or by N-DNS ``fileid`` when the names differ,
as :func:`snnse.data.ndns.ndns_pairs` pairs them) or from a manifest; an ``--enhanced`` folder
is matched to them by name or fileid. A file without a partner becomes a pair with an
``error``, reported like any other per-file failure.

An evaluation yields one row per (file, system) and a summary with, per system and metric,
the mean, the standard deviation, the 95 % confidence interval of the mean (Student t) and
the number of files. :func:`write_outputs` writes them as ``per_file.csv``, ``summary.json``
and ``summary.md``, each atomically (temporary file in the same folder, then rename).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from snnse.audio import find_audio_files
from snnse.atomic import atomic_write_text
from snnse.jsonsafe import json_safe

OUTPUT_FILES = ("summary.json", "per_file.csv", "summary.md")
_FILEID = re.compile(r"fileid_(\d+)$")
_THREE_DECIMALS = frozenset({"stoi", "estoi"})


@dataclass
class EvaluationResult:
    """Everything an evaluation produced.

    Attributes:
        rows: One dict per (file, system): ``file``, ``system``, ``duration_s`` (None when
            unknown), one value per metric (None when not computed) and ``error`` (None or
            a one-line reason naming the file).
        summary: The ``summary.json`` content (see :func:`snnse.evaluate.evaluate`).
        metrics: Metric names, in column order.
    """

    rows: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    metrics: list[str] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        """Pairs with an error in at least one system (excluded from every mean)."""
        return int(self.summary.get("n_failed", 0))

    def means(self, system: str) -> dict[str, float | None]:
        """``{metric: mean}`` of one system."""
        return {k: v["mean"] for k, v in self.summary["systems"][system].items()}

    def values(self, system: str, metric: str) -> dict[str, float | None]:
        """``{file: value}`` of one system and metric (None where it failed)."""
        return {r["file"]: r.get(metric) for r in self.rows if r["system"] == system}

    def markdown(self) -> str:
        """The ``summary.md`` text."""
        return markdown_summary(self.summary)


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean, sample standard deviation and Student-t confidence interval of the mean.

    Args:
        values: Finite numbers.
        level: Confidence level of the interval.

    Returns:
        ``{"mean", "std", "ci95": [lo, hi], "n"}``; with one value the interval is
        ``[mean, mean]`` and ``std`` is 0; with none, the numbers are None.
    """
    import numpy as np

    x = np.asarray([float(v) for v in values], dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "std": None, "ci95": [None, None], "n": 0}
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "std": 0.0, "ci95": [mean, mean], "n": 1}
    from scipy.stats import t

    std = float(x.std(ddof=1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": n}


def summarize(rows: Iterable[dict], systems: Sequence[str], metrics: Sequence[str]) -> dict:
    """Per-system statistics of each metric over the rows without an error.

    Args:
        rows: Per-file rows (see :class:`EvaluationResult`).
        systems: Systems to summarise, in order.
        metrics: Metrics to summarise, in order.

    Returns:
        ``{system: {metric: mean_ci(...)}}``.
    """
    rows = [r for r in rows if not r.get("error")]
    out = {}
    for system in systems:
        mine = [r for r in rows if r["system"] == system]
        out[system] = {m: mean_ci([r[m] for r in mine if r.get(m) is not None]) for m in metrics}
    return out


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if metric in _THREE_DECIMALS else f"{value:.2f}"


def markdown_summary(summary: dict) -> str:
    """A Markdown table (rows = systems, columns = metrics, "mean ± half-CI") and notes."""
    systems = summary.get("systems", {})
    metrics = list(next(iter(systems.values()), {}).keys())
    lines = ["# Evaluation", ""]
    model = summary.get("model")
    what = f"model `{model.get('name')}` ({summary.get('mode')} mode)" if model else "no model"
    lines.append(f"{summary.get('n_pairs', 0)} pairs, {summary.get('n_failed', 0)} failed "
                 f"(left out of every mean); {what}.")
    if summary.get("mode") == "chunk1s":
        lines.append("")
        lines.append("Mode chunk1s enhances independent 1 s pieces, each from a fresh state, as "
                     "the DPSNN papers evaluate; use it only to compare with their numbers.")
    lines += ["", "| system | " + " | ".join(metrics) + " |",
              "|---|" + "---|" * len(metrics)]
    for system, stats in systems.items():
        cells = []
        for m in metrics:
            s = stats[m]
            if s["mean"] is None:
                cells.append("–")
                continue
            half = (s["ci95"][1] - s["ci95"][0]) / 2
            cells.append(f"{_fmt(m, s['mean'])} ± {_fmt(m, half)}")
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    ns = sorted({s["n"] for stats in systems.values() for s in stats.values()})
    lines += ["", "mean ± half-width of the 95 % confidence interval of the mean (Student t), "
              f"over n = {', '.join(map(str, ns)) or 0} files."]
    impl = summary.get("implementations") or {}
    if impl:
        lines += ["", "Implementations:", ""]
        for name, desc in impl.items():
            text = json.dumps(desc, sort_keys=True) if isinstance(desc, dict) else str(desc)
            lines.append(f"- {name}: {text}")
    return "\n".join(lines) + "\n"


def _csv_text(rows: Sequence[dict], metrics: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "system", "duration_s", *metrics, "error"])
    for r in rows:
        dur = r.get("duration_s")
        w.writerow([r["file"], r["system"], "" if dur is None else f"{dur:.4f}",
                    *("" if r.get(m) is None else repr(float(r[m])) for m in metrics),
                    r.get("error") or ""])
    return buf.getvalue()


def read_per_file(path: str | os.PathLike) -> list[dict]:
    """Read ``per_file.csv`` back: numbers as floats, empty cells as None."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in r.items():
            if k == "error":
                r[k] = v or None
            elif k not in ("file", "system"):
                r[k] = float(v) if v != "" else None
    return rows


def existing_outputs(outdir: str | os.PathLike) -> list[Path]:
    """The non-empty output files already in ``outdir``."""
    out = Path(outdir)
    return [out / n for n in OUTPUT_FILES if (out / n).is_file() and (out / n).stat().st_size > 0]


def write_outputs(result: EvaluationResult, outdir: str | os.PathLike,
                  overwrite: bool = False) -> dict[str, Path]:
    """Write ``per_file.csv``, ``summary.json`` and ``summary.md`` into ``outdir``.

    Args:
        result: What :func:`snnse.evaluate.evaluate` returned.
        outdir: Output folder (created).
        overwrite: Replace existing non-empty outputs.

    Returns:
        ``{file name: path}`` of the files written.

    Raises:
        FileExistsError: If an output exists, is not empty and ``overwrite`` is False.
    """
    out = Path(outdir)
    found = existing_outputs(out)
    if found and not overwrite:
        raise FileExistsError(f"{found[0]} already exists (use overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "per_file.csv": _csv_text(result.rows, result.metrics),
        "summary.json": json.dumps(json_safe(result.summary), indent=1) + "\n",
        "summary.md": markdown_summary(result.summary),
    }
    paths = {}
    for name, text in texts.items():
        atomic_write_text(out / name, text)
        paths[name] = out / name
    return paths


# ---------------------------------------------------------------- pairs

def _fileid(path: Path) -> int | None:
    m = _FILEID.search(path.stem)
    return int(m[1]) if m else None


def _index(folder: Path) -> dict[str, Path]:
    """``{relative path without suffix: file}`` of a folder's audio files."""
    found: dict[str, Path] = {}
    for p in find_audio_files([folder]):
        found.setdefault(p.relative_to(folder).with_suffix("").as_posix(), p)
    return found


def _by_fileid(files: dict[str, Path]) -> dict[int, Path] | None:
    """``{fileid: file}``, or None unless every file has a distinct N-DNS fileid."""
    ids = {_fileid(p): p for p in files.values()}
    return ids if None not in ids and len(ids) == len(files) else None


def _need_folder(folder, what: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder ({what})")
    return folder


def pairs_from_folders(noisy: str | os.PathLike | None, clean: str | os.PathLike) -> list[dict]:
    """Pair two folders by relative file name, or by N-DNS ``fileid`` when names differ.

    Files without a partner become pairs with an ``error``. With ``noisy=None`` every clean
    file is a pair without a noisy input (for scoring an ``--enhanced`` folder alone).

    Returns:
        Dicts with ``file`` (display name), ``noisy``, ``clean`` (Paths or None), ``error``.

    Raises:
        ValueError: A missing folder or a folder without audio files.
    """
    clean = _need_folder(clean, "--clean")
    c = _index(clean)
    if not c:
        raise ValueError(f"{clean}: no audio files (.wav/.flac)")
    if noisy is None:
        return [{"file": p.relative_to(clean).as_posix(), "noisy": None, "clean": p,
                 "error": None} for _, p in sorted(c.items())]
    noisy = _need_folder(noisy, "--noisy")
    n = _index(noisy)
    if not n:
        raise ValueError(f"{noisy}: no audio files (.wav/.flac)")
    by = "name"
    nid, cid = _by_fileid(n), _by_fileid(c)
    if nid is not None and cid is not None and len(nid.keys() & cid.keys()) > len(n.keys() & c.keys()):
        n, c, by = nid, cid, "fileid"
    pairs = []
    for k in sorted(n.keys() | c.keys()):
        npath, cpath = n.get(k), c.get(k)
        error = None
        if cpath is None:
            error = f"{npath}: no clean file with the same {by} in {clean}"
        elif npath is None:
            error = f"{cpath}: no noisy file with the same {by} in {noisy}"
        file = (npath.relative_to(noisy) if npath is not None else cpath.relative_to(clean))
        pairs.append({"file": file.as_posix(), "noisy": npath, "clean": cpath, "error": error})
    return pairs


def pairs_from_manifest(path: str | os.PathLike) -> list[dict]:
    """Pairs from a manifest (``noisy``/``clean`` columns, paths relative to its folder).

    Missing audio files are reported per pair when they are read.

    Raises:
        snnse.data.manifest.ManifestError: A missing or malformed manifest.
    """
    from snnse.data.manifest import read_manifest

    base = Path(path).parent.resolve()
    pairs = []
    for row in read_manifest(path, check_files=False):
        rel = os.path.relpath(Path(row["noisy"]).resolve(), base)
        pairs.append({"file": Path(rel).as_posix(), "noisy": Path(row["noisy"]),
                      "clean": Path(row["clean"]), "error": None})
    return pairs


def attach_enhanced(pairs: list[dict], folder: str | os.PathLike) -> list[dict]:
    """Give each pair its file from an enhanced folder (``enhanced`` key; None if not found).

    A file matches by relative name, else by the name of the noisy or clean file, else by
    N-DNS ``fileid``.
    """
    folder = _need_folder(folder, "--enhanced")
    by_rel = _index(folder)
    if not by_rel:
        raise ValueError(f"{folder}: no audio files (.wav/.flac)")
    stems: dict[str, list[Path]] = {}
    ids: dict[int | None, list[Path]] = {}
    for p in by_rel.values():
        stems.setdefault(p.stem, []).append(p)
        ids.setdefault(_fileid(p), []).append(p)
    out = []
    for pair in pairs:
        pair = dict(pair)
        srcs = [p for p in (pair.get("noisy"), pair.get("clean")) if p is not None]
        found = by_rel.get(Path(pair["file"]).with_suffix("").as_posix())
        for src in srcs:
            hits = stems.get(src.stem, [])
            found = found or (hits[0] if len(hits) == 1 else None)
        for src in srcs:
            hits = ids.get(_fileid(src), []) if _fileid(src) is not None else []
            found = found or (hits[0] if len(hits) == 1 else None)
        pair["enhanced"] = found
        if found is None:
            pair["enhanced_error"] = f"{pair['file']}: no enhanced file for it in {folder}"
        out.append(pair)
    return out


def as_pairs(pairs) -> list[dict]:
    """Pairs from a manifest path, a ``(noisy_dir, clean_dir)`` tuple or a list of dicts.

    Dicts need ``clean`` (unless they carry an ``error``) and may have ``noisy``,
    ``enhanced`` and ``file`` (the name shown in reports; default the noisy path).
    """
    if isinstance(pairs, (str, os.PathLike)):
        return pairs_from_manifest(pairs)
    if isinstance(pairs, tuple) and len(pairs) == 2 and not isinstance(pairs[0], dict):
        return pairs_from_folders(*pairs)
    out = []
    for i, p in enumerate(pairs):
        p = dict(p)
        for k in ("noisy", "clean", "enhanced"):
            p[k] = Path(p[k]) if p.get(k) is not None else None
        if p["clean"] is None and not p.get("error"):
            raise ValueError(f"pair {i} has no clean file")
        p.setdefault("file", str(p["noisy"] or p["clean"]))
        p.setdefault("error", None)
        out.append(p)
    return out


def plan_saves(pairs: list[dict], folder: str | os.PathLike) -> list[Path]:
    """Where each pair's enhanced output goes: ``folder/<file>`` with suffix ``.wav``.

    Raises:
        ValueError: A destination is an input file, or two pairs share a destination.
    """
    folder = Path(folder)
    inputs = {Path(p[k]).resolve(): p[k] for p in pairs for k in ("noisy", "clean", "enhanced")
              if p.get(k) is not None}
    dsts, used = [], {}
    for pair in pairs:
        rel = Path(pair["file"])
        if rel.is_absolute() or ".." in rel.parts:
            rel = Path(rel.name)
        dst = (folder / rel).with_suffix(".wav")
        key = dst.resolve()
        if key in inputs:
            raise ValueError(f"{dst}: --save-enhanced would overwrite input file {inputs[key]}")
        if key in used:
            raise ValueError(f"{dst}: pairs {used[key]} and {pair['file']} would both be saved there")
        used[key] = pair["file"]
        dsts.append(dst)
    return dsts
