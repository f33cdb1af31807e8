"""The local HTTP server of ``snnse web``.

Serves the page, the vendored runtime and the models' graphs (exported on first request and
cached, :mod:`snnse.web.site`) from 127.0.0.1 by default. Only known paths are served (no
directory listing, nothing outside the page). With ``isolate=True`` every response carries
``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Embedder-Policy: require-corp``,
which make the page cross-origin isolated so that onnxruntime-web may use threads; without them
the page runs single-threaded, which is the default because one hop of these models is too small
for threads to pay off.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from .site import ModelEntry, SiteError, exported, listing, page_meta, static_files

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".json": "application/json", ".wasm": "application/wasm", ".onnx": "application/octet-stream",
         ".txt": "text/plain; charset=utf-8", ".png": "image/png", "": "text/plain; charset=utf-8"}


class Site:
    """What the server knows: the static files and the models (graphs exported lazily)."""

    def __init__(self, models: list[ModelEntry], cache: Path | None = None, isolate: bool = False):
        self.models = {m.id: m for m in models}
        self.cache, self.isolate = cache, isolate
        self.files = static_files()

    def resolve(self, path: str) -> tuple[bytes | Path, str]:
        """(content or file, content type) for a URL path; KeyError if there is no such page."""
        rel = urlsplit(path).path.lstrip("/") or "index.html"
        if rel == "models.json":
            return json.dumps(listing(list(self.models.values()))).encode(), TYPES[".json"]
        if rel.startswith("models/"):
            stem, _, ext = rel[len("models/"):].rpartition(".")
            entry = self.models[stem]  # KeyError → 404
            graph, meta = exported(entry, self.cache)
            if ext == "onnx":
                return graph, TYPES[".onnx"]
            if ext == "json":
                return json.dumps(page_meta(entry, meta, graph)).encode(), TYPES[".json"]
            raise KeyError(rel)
        file = self.files[rel]
        return file, TYPES.get(file.suffix, "application/octet-stream")


def make_handler(site: Site):
    class Handler(BaseHTTPRequestHandler):
        server_version = "snnse-web"

        def log_message(self, fmt, *args):  # quiet: the command prints what matters
            pass

        def _headers(self, status: int, ctype: str, length: int) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(length))
            self.send_header("Cache-Control", "no-cache")
            self.send_header("X-Content-Type-Options", "nosniff")
            if site.isolate:
                self.send_header("Cross-Origin-Opener-Policy", "same-origin")
                self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
                self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.end_headers()

        def _error(self, status: HTTPStatus, text: str) -> None:
            body = text.encode()
            self._headers(status, TYPES[""], len(body))
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - http.server's name
            try:
                content, ctype = site.resolve(self.path)
            except KeyError:
                return self._error(HTTPStatus.NOT_FOUND, f"not found: {self.path}")
            except SiteError as err:
                return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(err))
            data = content.read_bytes() if isinstance(content, Path) else content
            self._headers(HTTPStatus.OK, ctype, len(data))
            if self.command != "HEAD":
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        do_HEAD = do_GET  # noqa: N815

    return Handler


class Server:
    """``Server(site, host, port)``: a running server in a daemon thread; ``url``, ``close()``.

    Port 0 picks a free port.
    """

    def __init__(self, site: Site, host: str = "127.0.0.1", port: int = 0):
        self.httpd = ThreadingHTTPServer((host, port), make_handler(site))
        self.httpd.daemon_threads = True
        h, p = self.httpd.server_address[:2]
        self.url = f"http://{h}:{p}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
