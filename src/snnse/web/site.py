"""The models the browser page offers and the static site of ``snnse web --export``.

Each model is exported once to the packed-state ONNX step (:func:`snnse.export.export_onnx`) and
kept in a cache folder named after the checkpoint's sha256, the snnse version, the export
format and the exporter's source, so that the page's graphs always match the weights and a
second start is instant. Beside each graph lies its metadata as JSON (onnxruntime-web does not
expose ``metadata_props``).

Layout of a site (served by :mod:`snnse.web.server`, or written by :func:`export_site`)::

    index.html app.js worker.js worklet.js dsp.js style.css
    vendor/ort.wasm.bundle.min.mjs vendor/ort-wasm-simd-threaded.wasm vendor/LICENSE ...
    models.json                      [{id, title, description, graph, meta, bytes?}, ...]
    models/<id>.onnx  models/<id>.json
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ..atomic import file_sha256


STATIC = Path(__file__).resolve().parent / "static"
VENDOR = Path(__file__).resolve().parent / "vendor"
#: bumped when the exported graph or its JSON changes shape (part of the cache key)
FORMAT = "packed-1"


class SiteError(RuntimeError):
    """A model cannot be offered (unreadable checkpoint, export failure); the message says why."""


@dataclass
class ModelEntry:
    """One model of the page: ``id`` (URL-safe), where its weights are, and a one-line description."""

    id: str
    source: str  # bundled name or checkpoint path
    description: str

    def checkpoint(self) -> Path:
        from .. import pretrained

        return pretrained.path(self.source) if pretrained.is_name(self.source) else Path(self.source)


def entries(models: list[str] | None = None, bundled: bool = True) -> list[ModelEntry]:
    """The bundled models (when ``bundled``) and the checkpoints ``models``, with unique ids.

    Raises:
        SiteError: A file in ``models`` does not exist, or no model at all.
    """
    from .. import pretrained

    out: list[ModelEntry] = []
    if bundled:
        out += [ModelEntry(n, n, pretrained.CATALOGUE[n]) for n in pretrained.bundled()]
    taken = {e.id for e in out}
    for spec in models or []:
        if pretrained.is_name(spec):
            if spec not in taken:
                out.append(ModelEntry(spec, spec, pretrained.CATALOGUE[spec]))
                taken.add(spec)
            continue
        path = Path(spec)
        if not path.is_file():
            raise SiteError(f"{spec}: no such model file (give a checkpoint .pt or a bundled name: "
                            f"{', '.join(pretrained.CATALOGUE)})")
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.") or "model"
        mid, i = base, 2
        while mid in taken:
            mid, i = f"{base}-{i}", i + 1
        taken.add(mid)
        out.append(ModelEntry(mid, str(path.resolve()), f"checkpoint {path.name}"))
    if not out:
        raise SiteError("no model to offer: no bundled weights in this installation and no --model FILE")
    return out


def cache_root() -> Path:
    """``$SNNSE_CACHE_DIR/web`` or ``~/.cache/snnse/web``."""
    base = os.environ.get("SNNSE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "snnse")
    return Path(base) / "web"


_LOCK = threading.Lock()


def _exporter_digest() -> str:
    """The exporter's own source (``snnse/export*.py``): a changed exporter never serves a stale graph."""
    root = Path(__file__).resolve().parents[1]
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.glob("export*.py")))).hexdigest()[:16]


def exported(entry: ModelEntry, cache: Path | None = None) -> tuple[Path, dict]:
    """The packed ONNX step of ``entry`` and its metadata, exported on first use and cached.

    Raises:
        SiteError: The checkpoint cannot be loaded or exported.
    """
    from .. import __version__

    ckpt = entry.checkpoint()
    key = hashlib.sha256(f"{file_sha256(ckpt)}|{__version__}|{FORMAT}|{_exporter_digest()}".encode()).hexdigest()[:16]
    folder = (cache or cache_root()) / key
    graph, meta_file = folder / "step.onnx", folder / "step.json"
    with _LOCK:
        if not (graph.is_file() and meta_file.is_file()):
            _export(entry, folder, graph, meta_file)
        meta = json.loads(meta_file.read_text())
    return graph, meta


def _export(entry: ModelEntry, folder: Path, graph: Path, meta_file: Path) -> None:
    import torch

    import snnse
    from .. import export as ex
    from ..atomic import atomic_write_text

    try:
        model = snnse.load(entry.source)
    except Exception as err:  # corrupt files, unknown formats: one clear message
        raise SiteError(f"{entry.source}: cannot load model ({type(err).__name__}: {err})") from None
    folder.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        ex.export_onnx(model, graph)
    except Exception as err:
        raise SiteError(f"{entry.source}: ONNX export failed ({type(err).__name__}: {err})") from None
    finally:
        torch.set_num_threads(threads)
    meta = ex.metadata_json(graph)
    if not meta.get("state_size"):
        raise SiteError(f"{entry.source}: the exported step has no packed state (needs snnse.export packed=True)")
    atomic_write_text(meta_file, json.dumps(meta, indent=2) + "\n")


def listing(models: list[ModelEntry]) -> list[dict]:
    """``models.json``: what the page shows before a model is chosen (nothing is exported for it)."""
    return [{"id": e.id, "title": e.id, "description": e.description,
             "graph": f"models/{e.id}.onnx", "meta": f"models/{e.id}.json"} for e in models]


def page_meta(entry: ModelEntry, meta: dict, graph: Path) -> dict:
    """The JSON the page reads beside a graph: the export's metadata plus the id and graph size."""
    return {**meta, "id": entry.id, "description": entry.description, "graph_bytes": graph.stat().st_size}


def static_files() -> dict[str, Path]:
    """URL path (no leading slash) → file, for the page and the vendored runtime."""
    files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
    files.update({f"vendor/{p.name}": p for p in VENDOR.iterdir() if p.is_file() and p.name != "__init__.py"})
    return files


def export_site(dest: str | os.PathLike, models: list[ModelEntry], cache: Path | None = None) -> Path:
    """Write the whole page, runtime and every model's graph to ``dest`` (a new or empty folder),
    atomically: the folder appears complete or not at all.

    Raises:
        SiteError: ``dest`` exists and is not empty, or a model cannot be exported.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise SiteError(f"{dest} exists and is not an empty folder; choose a new one")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for rel, src in static_files().items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp / rel)
        (tmp / "models").mkdir()
        for e in models:
            graph, meta = exported(e, cache)
            shutil.copyfile(graph, tmp / "models" / f"{e.id}.onnx")
            (tmp / "models" / f"{e.id}.json").write_text(json.dumps(page_meta(e, meta, graph), indent=2) + "\n")
        (tmp / "models.json").write_text(json.dumps(listing(models), indent=2) + "\n")
        tmp.chmod(0o755)
        if dest.is_dir():
            dest.rmdir()  # empty (checked above)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
