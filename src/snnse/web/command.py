"""``snnse web``: serve the browser demo on 127.0.0.1, or write it as a static folder."""

from __future__ import annotations

import time
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "web", help="run the spiking denoisers in your browser (a file or live on the microphone)",
        description="Serve a page that runs the models' exported ONNX step in the browser with "
                    "onnxruntime-web: enhance a dropped file or your microphone live, nothing uploaded. "
                    "With --export DIR, write the same page as a static folder for any web server.")
    p.add_argument("--model", action="append", default=[], metavar="MODEL",
                   help="a checkpoint (.pt) or bundled name to offer besides the bundled models (repeatable)")
    p.add_argument("--only", action="store_true", help="offer only the --model ones, not the bundled models")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; the microphone needs localhost or HTTPS)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--isolate", action="store_true",
                   help="send the cross-origin isolation headers (COOP/COEP), letting the page use threads")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.add_argument("--export", metavar="DIR", help="write the page and all models' graphs to DIR and exit")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..cli_common import UsageError
    from .server import Server, Site
    from .site import SiteError, entries, export_site

    try:
        models = entries(args.model, bundled=not args.only)
    except SiteError as err:
        raise UsageError(str(err)) from None
    if args.export:
        try:
            dest = export_site(args.export, models)
        except SiteError as err:
            raise UsageError(str(err)) from None
        size = sum(f.stat().st_size for f in Path(dest).rglob("*") if f.is_file())
        print(f"wrote the page and {len(models)} model(s) to {dest} ({size / 1e6:.1f} MB); serve it over "
              f"HTTP(S), e.g. `python -m http.server -d {dest}` (browsers do not load .wasm from file://)")
        return 0
    try:
        server = Server(Site(models, isolate=args.isolate), args.host, args.port)
    except OSError as err:
        raise UsageError(f"cannot listen on {args.host}:{args.port} ({err.strerror or err}); "
                         "try --port 0 for a free port") from None
    print(f"snnse web: {server.url}  (models: {', '.join(m.id for m in models)}; Ctrl-C to stop)", flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(server.url)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("snnse web: stopped")
    finally:
        server.close()
    return 0
