"""Per-hop compute of the bundled models in the browser (onnxruntime-web, WASM, one thread).

    python benchmarks/bench_web.py [--seconds 20] [--models dpsnn-demo spiking-s4-demo] [--screenshot PNG]

Serves the page of ``snnse web`` (with the cross-origin isolation headers, so that the page's
timer resolves 5 µs instead of 100 µs; onnxruntime-web still runs one thread), drives the system
Chromium (``/usr/bin/chromium`` or ``$SNNSE_CHROMIUM``) with Playwright, and for each model runs
the live path for ``--seconds`` on Chromium's fake microphone (the bundled demo clip, looped) and
enhances the demo clip as a file. Reports, in one run, the compute per hop (``session.run``
measured in the Worker) as median, p99 and mean, in µs and as a share of the hop, the dropouts after
the first second, and the real-time factor of the file path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from snnse import pretrained
from snnse.web.server import Server, Site
from snnse.web.site import entries

CHROMIUM = os.environ.get("SNNSE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream"]


def main(argv=None) -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=pretrained.bundled())
    ap.add_argument("--seconds", type=float, default=20.0, help="live seconds per model")
    ap.add_argument("--no-isolate", action="store_true", help="serve without COOP/COEP (timer at 100 µs)")
    ap.add_argument("--screenshot", type=Path, help="save the page after the last model's run (PNG)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    mic = str(pretrained.folder() / "demo_noisy.wav")
    rows = []
    with tempfile.TemporaryDirectory() as cache, Server(Site(entries(args.models, bundled=False), Path(cache),
                                                             isolate=not args.no_isolate)) as server, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=[*ARGS, f"--use-file-for-fake-audio-capture={mic}"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        for model in args.models:
            page.goto(f"{server.url}?model={model}")
            page.wait_for_function("window.snnse && window.snnse.ready", timeout=120_000)
            page.set_input_files("#file", mic)
            page.wait_for_function("window.snnse.lastFile && window.snnse.lastFile.model === "
                                   f"{json.dumps(model)}", timeout=300_000)
            file_times = np.array(page.evaluate("Array.from(snnse.lastFile.times)"))
            file_rtf = page.inner_text("#file-stats").rsplit("real-time factor", 1)[-1].strip()
            page.click("#live-start")
            page.wait_for_function("!document.querySelector('#live-stop').disabled", timeout=30_000)
            page.wait_for_timeout(int(1000 * args.seconds))
            page.click("#live-stop")
            page.wait_for_function("window.snnse.lastLive && window.snnse.lastLive.model === "
                                   f"{json.dumps(model)}", timeout=30_000)
            live = page.evaluate("({times: Array.from(snnse.lastLive.times), dropouts: snnse.lastLive.dropouts, "
                                 "hopMs: snnse.lastLive.hopMs, seconds: snnse.lastLive.seconds})")
            t = np.array(live["times"]) * 1000  # µs
            hop_us = 1000 * live["hopMs"]
            rows.append({"model": model, "hop_us": hop_us, "hops": len(t), "seconds": round(live["seconds"], 1),
                         "median_us": float(np.median(t)), "p99_us": float(np.quantile(t, 0.99)),
                         "mean_us": float(t.mean()), "dropouts": live["dropouts"],
                         "file_median_us": float(np.median(file_times) * 1000), "file_rtf": float(file_rtf)})
        if args.screenshot:
            page.screenshot(path=str(args.screenshot), full_page=True)
        isolated = page.evaluate("crossOriginIsolated")
        browser.close()
    print(f"Chromium {browser.version}, onnxruntime-web (vendored), 1 thread, cross-origin isolated: {isolated}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| model | hop | live hops | compute per hop: median | p99 | mean | dropouts | file path: median per hop | file RTF |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        pct = lambda v: f"{v:.0f} µs ({100 * v / r['hop_us']:.1f} %)"  # noqa: E731
        print(f"| {r['model']} | {r['hop_us'] / 1000:g} ms | {r['hops']} ({r['seconds']} s) | {pct(r['median_us'])} | "
              f"{pct(r['p99_us'])} | {pct(r['mean_us'])} | {r['dropouts']} | {pct(r['file_median_us'])} | {r['file_rtf']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
