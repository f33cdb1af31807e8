"""``snnse web``: the site, the server, the vendored runtime, and the page in a real browser.

The browser tests drive the distribution's Chromium (``/usr/bin/chromium``, or ``$SNNSE_CHROMIUM``)
with Playwright for Python; nothing downloads a browser. They are skipped, with the reason, when
either is missing (``scripts/test.sh`` says so too); ``.ci/run`` installs both.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from snnse import pretrained
from snnse.web.server import Server, Site
from snnse.web.site import SiteError, entries, export_site, exported

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ["dpsnn-demo", "spiking-s4-demo"]
CHROMIUM = os.environ.get("SNNSE_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("web-cache")


@pytest.fixture(scope="module")
def server(cache):
    with Server(Site(entries(), cache=cache)) as s:
        yield s


def _get(url):
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.status, dict(r.headers), r.read()


# ---- without a browser -----------------------------------------------------------------------------
def test_vendored_runtime_matches_its_pins():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "refresh_ort_web.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    pinned = json.loads((ROOT / "src/snnse/web/vendor/VERSION.json").read_text())
    assert pinned["licence"] == "MIT" and set(pinned["sha256"]) >= {
        "ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm", "LICENSE", "ThirdPartyNotices.txt"}


def test_entries_bundled_and_files(tmp_path, ckpt):
    es = entries([str(ckpt), str(ckpt)])
    assert [e.id for e in es] == [*BUNDLED, "m", "m-2"]
    assert [e.id for e in entries([str(ckpt)], bundled=False)] == ["m"]
    with pytest.raises(SiteError, match="no such model file"):
        entries([str(tmp_path / "nope.pt")])
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SiteError, match="cannot load model"):
        exported(entries([str(bad)], bundled=False)[0], tmp_path / "c")


def test_server_serves_the_page_models_and_runtime(server, cache):
    status, headers, body = _get(server.url)
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"app.js" in body
    listing = json.loads(_get(server.url + "models.json")[2])
    assert [m["id"] for m in listing] == BUNDLED
    for m in listing:
        meta = json.loads(_get(server.url + m["meta"])[2])
        assert meta["id"] == m["id"] and meta["state_size"] == sum(t["size"] for t in meta["state_layout"])
        _, h, graph = _get(server.url + m["graph"])
        assert h["Content-Type"] == "application/octet-stream" and len(graph) == meta["graph_bytes"]
    _, h, _ = _get(server.url + "vendor/ort-wasm-simd-threaded.wasm")
    assert h["Content-Type"] == "application/wasm" and "Cross-Origin-Embedder-Policy" not in h
    for bad in ("nope.html", "models/nope.json", "../pyproject.toml", "vendor/../site.py"):
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(server.url + bad)
        assert err.value.code == 404
    # the second request is served from the cache (one folder per checkpoint)
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2


def test_isolation_headers_only_on_request(cache):
    with Server(Site(entries(), cache=cache, isolate=True)) as s:
        _, h, _ = _get(s.url)
    assert h["Cross-Origin-Opener-Policy"] == "same-origin"
    assert h["Cross-Origin-Embedder-Policy"] == "require-corp"


def test_export_static_site(tmp_path, cache, ckpt):
    models = entries([str(ckpt)], bundled=False)
    dest = export_site(tmp_path / "site", models, cache)
    names = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert {"index.html", "app.js", "worker.js", "worklet.js", "dsp.js", "models.json", "models/m.onnx",
            "models/m.json", "vendor/ort.wasm.bundle.min.mjs", "vendor/ort-wasm-simd-threaded.wasm",
            "vendor/LICENSE", "vendor/ThirdPartyNotices.txt"} <= names
    meta = json.loads((dest / "models/m.json").read_text())
    assert meta["graph_bytes"] == (dest / "models/m.onnx").stat().st_size
    with pytest.raises(SiteError, match="not an empty folder"):
        export_site(dest, models, cache)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site.")]  # no temporary left


def test_web_command_export_and_errors(tmp_path, ckpt, capsys):
    from snnse.cli import main

    assert main(["web", "--only", "--model", str(ckpt), "--export", str(tmp_path / "out")]) == 0
    assert "serve it over HTTP" in capsys.readouterr().out
    assert (tmp_path / "out" / "models" / "m.onnx").is_file()
    assert main(["web", "--only", "--model", str(tmp_path / "missing.pt"), "--export", str(tmp_path / "x")]) == 2
    assert "no such model file" in capsys.readouterr().err


# ---- in Chromium -----------------------------------------------------------------------------------
def _browser_missing() -> str | None:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set SNNSE_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright; no browser download needed)"
    return None


if _browser_missing() and os.environ.get("SNNSE_REQUIRE_BROWSER") == "1":  # set by .ci/run when Chromium is there
    raise RuntimeError(f"SNNSE_REQUIRE_BROWSER=1 but the browser tests cannot run: {_browser_missing()}")
needs_browser = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
BASE_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory):
    """10 s for Chromium's fake microphone: the bundled demo clip twice."""
    x, sr = sf.read(pretrained.folder() / "demo_noisy.wav", dtype="float32")
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    sf.write(path, np.concatenate([x, x]), sr, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def chromium(playwright, mic_wav):
    """Chromium with a fake microphone playing ``mic_wav`` and its permission prompt answered yes."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
        *BASE_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic_wav}%noloop"])
    yield browser
    browser.close()


def _array(page, expr: str) -> np.ndarray:
    b64 = page.evaluate("""(expr) => { const a = eval(expr); const b = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
        let s = ''; for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
        return btoa(s); }""", expr)
    return np.frombuffer(base64.b64decode(b64), np.float32)


def _open(browser, url, model):
    page = browser.new_page()
    logs = []
    page.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: logs.append(f"pageerror: {e}"))
    page.goto(f"{url}{'&' if '?' in url else '?'}model={model}")
    page.wait_for_function("window.snnse && window.snnse.ready", timeout=120_000)
    return page, logs


def _agreement_db(ref, out):
    return 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / max(np.sum((ref - out).astype(np.float64) ** 2), 1e-30))


@needs_browser
@pytest.mark.parametrize("model", BUNDLED)
def test_page_enhances_a_file_like_python(chromium, server, cache, model, tmp_path):
    from snnse.export import OnnxStreamer, session

    page, logs = _open(chromium, server.url, model)
    clip = pretrained.folder() / "demo_noisy.wav"
    page.set_input_files("#file", str(clip))
    page.wait_for_function("window.snnse.lastFile !== null", timeout=120_000)
    assert "enhanced demo_noisy.wav" in page.inner_text("#file-status"), logs
    x = _array(page, "window.snnse.lastFile.input")
    y = _array(page, "window.snnse.lastFile.output")
    wav, _ = sf.read(clip, dtype="float32")
    # decoded at the model's rate without resampling (Chromium scales positive PCM by 1/32767)
    np.testing.assert_allclose(x, wav, rtol=0, atol=1.5 / 32768)
    graph, _ = exported(next(e for e in entries() if e.id == model), cache)
    ref = OnnxStreamer(session(graph))(x)
    assert len(y) == len(ref) == len(wav)
    diff = float(np.abs(y - ref).max())
    agree = _agreement_db(ref, y)
    print(f"{model}: browser vs Python OnnxStreamer: max |diff| {diff:.2e}, agreement {agree:.1f} dB")
    assert diff <= 1e-4 or agree >= 60, (diff, agree)
    assert page.locator("#download").get_attribute("download") == f"demo_noisy.{model}.wav"
    page.screenshot(path=str(tmp_path / f"{model}.png"), full_page=True)
    page.close()


@needs_browser
def test_page_reports_bad_files_and_keeps_working(chromium, server, tmp_path):
    page, _ = _open(chromium, server.url, "dpsnn-demo")
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 4)
    page.set_input_files("#file", str(bad))
    page.wait_for_function("document.querySelector('#file-status').classList.contains('error')", timeout=60_000)
    assert "cannot enhance corrupt.wav" in page.inner_text("#file-status")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    page.set_input_files("#file", str(empty))
    page.wait_for_function("document.querySelector('#file-status').textContent.includes('empty.wav')", timeout=60_000)
    assert "empty" in page.inner_text("#file-status")
    # still works: a real file afterwards, stereo FLAC at 44.1 kHz (resampled and averaged in the page)
    import soxr

    clean, sr = sf.read(pretrained.folder() / "demo_clean.wav", dtype="float32")
    hi = soxr.resample(clean, sr, 44100).astype(np.float32)
    sf.write(tmp_path / "stereo.flac", np.stack([hi, 0.5 * hi], 1), 44100)
    page.set_input_files("#file", str(tmp_path / "stereo.flac"))
    page.wait_for_function("window.snnse.lastFile !== null", timeout=120_000)
    assert "2 channels averaged" in page.inner_text("#file-status")
    assert "enhanced stereo.flac" in page.inner_text("#file-status")
    x = _array(page, "window.snnse.lastFile.input")
    assert abs(len(x) - len(clean)) <= 2
    n = min(len(x), len(clean))
    assert np.corrcoef(x[:n], 0.75 * clean[:n])[0, 1] > 0.99  # the same signal at 16 kHz
    page.close()


@pytest.fixture(scope="module")
def isolated_server(cache):
    """The same site with the cross-origin isolation headers (the page's timer then resolves 5 µs, not 100 µs)."""
    with Server(Site(entries(), cache=cache, isolate=True)) as s:
        yield s


@needs_browser
@pytest.mark.parametrize(("model", "isolated", "ctx_rate"), [("dpsnn-demo", False, 16000), ("dpsnn-demo", True, 16000),
                                                         ("spiking-s4-demo", True, 16000), ("dpsnn-demo", False, 48000)])
def test_page_runs_live_on_the_microphone(chromium, server, isolated_server, cache, model, isolated, ctx_rate, tmp_path):
    """≥ 6 s live from Chromium's fake microphone: real time kept (no dropout after the first second),
    and the page's output == Python stepping the same graph on the input the page recorded. At a
    48 kHz sound card (Firefox's case) the Worker resamples both ways and the model still gets 16 kHz."""
    from snnse.export import OnnxStreamer, session

    page, logs = _open(chromium, (isolated_server if isolated else server).url + ("" if ctx_rate == 16000 else f"?ctxrate={ctx_rate}"), model)
    assert page.evaluate("crossOriginIsolated") is isolated
    page.click("#live-start")
    page.wait_for_function("!document.querySelector('#live-stop').disabled", timeout=30_000)
    page.wait_for_timeout(7_000)
    page.click("#live-stop")
    page.wait_for_function("window.snnse.lastLive !== null", timeout=30_000)
    live = page.evaluate("({seconds: snnse.lastLive.seconds, dropouts: snnse.lastLive.dropouts, "
                         "warmup: snnse.lastLive.warmupDropouts, hopMs: snnse.lastLive.hopMs, rate: snnse.lastLive.ctxRate})")
    times = _array(page, "window.snnse.lastLive.times").astype(np.float64)
    x = _array(page, "window.snnse.lastLive.input")
    y = _array(page, "window.snnse.lastLive.output")
    page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
    med, p99 = np.median(times), np.quantile(times, 0.99)
    print(f"live {model} (isolated: {isolated}): {live}, compute per hop median {1000 * med:.0f} µs "
          f"p99 {1000 * p99:.0f} µs mean {1000 * times.mean():.0f} µs "
          f"({100 * med / live['hopMs']:.1f} % / {100 * p99 / live['hopMs']:.1f} % of the hop)")
    assert live["rate"] == ctx_rate and live["seconds"] >= 6.5
    assert len(x) >= 6 * 16000 and np.sqrt(np.mean(x**2)) > 1e-3, "the fake microphone delivered no sound"
    assert live["dropouts"] == 0, logs
    assert med < 0.5 * live["hopMs"]
    # the page's output == Python stepping the graph on the input the page recorded
    graph, _ = exported(next(e for e in entries() if e.id == model), cache)
    st = OnnxStreamer(session(graph))
    ref = np.concatenate([st.step(x[i:i + st.hop]) for i in range(0, len(x) - st.hop + 1, st.hop)])
    assert len(ref) == len(y)
    diff = float(np.abs(y - ref).max())
    assert diff <= 1e-4 or _agreement_db(ref, y) >= 60, diff
    page.close()


@needs_browser
def test_denied_microphone_is_reported(playwright, server, tmp_path):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*BASE_ARGS, "--use-fake-device-for-media-stream"])
    try:
        context = browser.new_context()  # no permission granted and no fake prompt: the request is denied
        page = context.new_page()
        page.goto(f"{server.url}?model=dpsnn-demo")
        page.wait_for_function("window.snnse && window.snnse.ready", timeout=120_000)
        page.click("#live-start")
        page.wait_for_function("document.querySelector('#live-status').classList.contains('error')", timeout=30_000)
        text = page.inner_text("#live-status")
        assert "microphone access was denied" in text, text
        assert not page.locator("#live-start").is_disabled()  # the page keeps working
        page.set_input_files("#file", str(pretrained.folder() / "demo_noisy.wav"))
        page.wait_for_function("window.snnse.lastFile !== null", timeout=120_000)
    finally:
        browser.close()


@needs_browser
def test_exported_static_site_works_from_a_plain_web_server(chromium, cache, tmp_path):
    """``snnse web --export DIR`` served by Python's own ``http.server`` (any static host): the page
    loads, and its output equals the Python OnnxStreamer's."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from snnse.export import OnnxStreamer, session

    site = export_site(tmp_path / "site", entries(["dpsnn-demo"], bundled=False), cache)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        page, logs = _open(chromium, f"http://127.0.0.1:{httpd.server_address[1]}/", "dpsnn-demo")
        page.set_input_files("#file", str(pretrained.folder() / "demo_noisy.wav"))
        page.wait_for_function("window.snnse.lastFile !== null", timeout=120_000)
        x = _array(page, "window.snnse.lastFile.input")
        y = _array(page, "window.snnse.lastFile.output")
        ref = OnnxStreamer(session(site / "models" / "dpsnn-demo.onnx"))(x)
        assert float(np.abs(y - ref).max()) <= 1e-4, logs
        page.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
