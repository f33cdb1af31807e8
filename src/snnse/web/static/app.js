// The page: the model list, the file path (decode → resample → Worker → play/A-B/download/spectrograms)
// and the live path (microphone → AudioWorklet ⇄ Worker → loudspeaker). The model runs only in the
// Worker (worker.js). `window.snnse` exposes the last results for the browser tests.
import { encodeWav, drawSpectrogram, spectrogramTop } from './dsp.js';

const $ = (id) => document.getElementById(id);
const page = window.snnse = { ready: false, model: null, lastFile: null, lastLive: null, errors: [] };
const worker = new Worker(new URL('worker.js', import.meta.url) + location.search, { type: 'module' });
let models = [], meta = null, pending = null, liveRun = null, urls = [];

function status(el, text, kind = '') {
  el.textContent = text; el.className = 'status ' + kind;
  if (kind === 'error') page.errors.push(text);
}

function call(msg, transfer = []) {  // one request to the Worker at a time (the UI serialises them)
  return new Promise((resolve, reject) => { pending = { resolve, reject }; worker.postMessage(msg, transfer); });
}

worker.onmessage = (e) => {
  const m = e.data;
  if (m.type === 'progress') { $('file-progress').value = m.done; return; }
  if (m.type === 'live-stats') { showLive(m); return; }
  if (m.type === 'live-stopped' && liveRun) { liveRun.resolve(m); return; }
  if (!pending) {
    if (m.type === 'error') status(m.during && m.during.startsWith('live') ? $('live-status') : $('model-status'), m.message, 'error');
    return;
  }
  const p = pending; pending = null;
  if (m.type === 'error') p.reject(new Error(m.message)); else p.resolve(m);
};
worker.onerror = (e) => status($('model-status'), `the model worker failed: ${e.message}`, 'error');

// ---- models ------------------------------------------------------------------------------------
async function init() {
  try {
    models = await (await fetch('models.json')).json();
  } catch (err) {
    status($('model-status'), `cannot read the model list (${err.message}); is the page served by snnse web?`, 'error');
    return;
  }
  const sel = $('model');
  sel.innerHTML = '';
  for (const m of models) sel.add(new Option(`${m.title} — ${m.description}`, m.id));
  const want = new URLSearchParams(location.search).get('model');
  if (want && models.some((m) => m.id === want)) sel.value = want;
  sel.disabled = false;
  sel.onchange = () => selectModel(sel.value);
  await selectModel(sel.value);
}

async function selectModel(id) {
  const m = models.find((x) => x.id === id);
  page.ready = false; page.model = null;
  setBusy(true);
  status($('model-status'), `loading ${id} (exported to ONNX on first use; this can take a few seconds)…`);
  try {
    const r = await fetch(m.meta);
    if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
    meta = await r.json();
    const info = await call({ type: 'load', graph: new URL(m.graph, location.href).href, meta });
    showMeta(meta);
    $('runtime-info').textContent = `onnxruntime-web ${info.ortVersion}, ${info.threads} thread(s), ` +
      (info.isolated ? 'cross-origin isolated' : 'not cross-origin isolated');
    status($('model-status'), `${id} ready (loaded in ${info.ms.toFixed(0)} ms)`, 'ok');
    page.model = id; page.ready = true;
  } catch (err) {
    status($('model-status'), `cannot load ${id}: ${err.message}`, 'error');
  }
  setBusy(false);
}

function showMeta(x) {
  const rows = [['sample rate', `${x.sample_rate} Hz`], ['hop', `${x.hop} samples (${(1000 * x.hop / x.sample_rate).toFixed(2)} ms)`],
    ['latency', `${x.latency_ms} ms (delay ${x.delay_samples} samples)`], ['state', `${x.state_size} floats in ${x.state_layout.length} tensors`],
    ['graph', `${(x.graph_bytes / 1e6).toFixed(2)} MB`], ['model', x.model]];
  $('model-meta').innerHTML = '';
  for (const [k, v] of rows) {
    const dt = document.createElement('dt'), dd = document.createElement('dd');
    dt.textContent = k; dd.textContent = v; $('model-meta').append(dt, dd);
  }
}

function setBusy(busy) {
  $('model').disabled = busy || !!liveRun;
  $('file').disabled = busy;
  $('live-start').disabled = busy || !!liveRun || !page.ready;
}

// ---- file path ---------------------------------------------------------------------------------
async function decode(file) {
  const bytes = await file.arrayBuffer();
  if (!bytes.byteLength) throw new Error('the file is empty');
  const rate = meta.sample_rate;
  // decodeAudioData resamples to the context's rate: the model's rate
  const ctx = new OfflineAudioContext(1, 1, rate);
  let buf;
  try { buf = await ctx.decodeAudioData(bytes); } catch (err) {
    throw new Error(`the browser cannot decode it as audio (unsupported format or a corrupt file: ${err.message || err.name})`);
  }
  if (!buf.length) throw new Error('it holds no samples');
  const x = new Float32Array(buf.length);
  for (let c = 0; c < buf.numberOfChannels; c++) {
    const ch = buf.getChannelData(c);
    for (let i = 0; i < x.length; i++) x[i] += ch[i] / buf.numberOfChannels;
  }
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) throw new Error('it holds NaN or infinite samples');
  return { x, channels: buf.numberOfChannels };
}

async function enhanceFile(file) {
  const st = $('file-status');
  if (!page.ready) { status(st, `cannot enhance ${file.name}: no model is loaded (see above)`, 'error'); return; }
  setBusy(true);
  $('file-progress').hidden = false; $('file-progress').value = 0;
  try {
    status(st, `decoding ${file.name}…`);
    const { x, channels } = await decode(file);
    const rate = meta.sample_rate, dur = x.length / rate;
    status(st, `enhancing ${file.name} (${dur.toFixed(1)} s${channels > 1 ? `, ${channels} channels averaged` : ''}, at ${rate / 1000} kHz)…`);
    const t0 = performance.now();
    const r = await call({ type: 'enhance', samples: x.slice() });
    const wall = (performance.now() - t0) / 1000;
    page.lastFile = { name: file.name, model: page.model, input: x, output: r.samples, times: r.times };
    showFile(file.name, x, r.samples, r.times, rate, wall);
    status(st, `enhanced ${file.name} with ${page.model}: ${dur.toFixed(1)} s of audio in ${wall.toFixed(2)} s` +
      (channels > 1 ? ` (${channels} channels averaged)` : ''), 'ok');
  } catch (err) {
    status(st, `cannot enhance ${file.name}: ${err.message}`, 'error');
  } finally {
    $('file-progress').hidden = true;
    setBusy(false);
  }
}

function wavUrl(x, rate) {
  const u = URL.createObjectURL(new Blob([encodeWav(x, rate)], { type: 'audio/wav' }));
  urls.push(u); return u;
}

function showFile(name, x, y, times, rate, wall) {
  urls.forEach(URL.revokeObjectURL); urls = [];
  const a = wavUrl(x, rate), b = wavUrl(y, rate), player = $('player');
  const pick = (which) => {
    const t = player.currentTime, playing = !player.paused;
    player.src = which === 'a' ? a : b;
    player.addEventListener('loadedmetadata', () => { player.currentTime = t; if (playing) player.play(); }, { once: true });
    $('ab-noisy').classList.toggle('on', which === 'a'); $('ab-enhanced').classList.toggle('on', which === 'b');
  };
  $('ab-noisy').onclick = () => pick('a'); $('ab-enhanced').onclick = () => pick('b');
  pick('b');
  const dl = $('download');
  dl.href = b; dl.download = name.replace(/\.[^.]*$/, '') + `.${page.model}.wav`;
  const hopMs = 1000 * meta.hop / rate, med = quantile(times, 0.5), p99 = quantile(times, 0.99);
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  $('file-stats').textContent = `${times.length} hops of ${hopMs.toFixed(2)} ms: compute per hop median ${(1000 * med).toFixed(0)} µs ` +
    `(${(100 * med / hopMs).toFixed(1)} % of the hop), p99 ${(1000 * p99).toFixed(0)} µs, mean ${(1000 * mean).toFixed(0)} µs; real-time factor ${(wall / (x.length / rate)).toFixed(3)}`;
  const top = Math.max(spectrogramTop(x), spectrogramTop(y));
  drawSpectrogram($('spec-in'), x, top); drawSpectrogram($('spec-out'), y, top);
  $('file-result').hidden = false;
}

function quantile(a, q) {
  if (!a.length) return NaN;
  const s = Float64Array.from(a).sort();
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))];
}

$('file').onchange = (e) => { if (e.target.files[0]) enhanceFile(e.target.files[0]); e.target.value = ''; };
const drop = $('drop');
drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('over'); };
drop.ondragleave = () => drop.classList.remove('over');
drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove('over'); if (e.dataTransfer.files[0]) enhanceFile(e.dataTransfer.files[0]); };

// ---- live path ---------------------------------------------------------------------------------
async function openMic() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error('this browser gives no microphone here (it needs https:// or http://127.0.0.1)');
  }
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  } catch (err) {
    if (err.name === 'NotAllowedError' || err.name === 'SecurityError') {
      throw new Error('microphone access was denied: allow it in the site settings and press Start again');
    }
    if (err.name === 'NotFoundError') throw new Error('no microphone was found');
    throw new Error(`cannot open the microphone (${err.name}: ${err.message})`);
  }
}

async function startLive() {
  const st = $('live-status');
  setBusy(true);
  let stream = null, ctx = null;
  try {
    stream = await openMic();
    const rate = meta.sample_rate;
    let source;
    // ?ctxrate=N runs the sound card side at N Hz (the path Firefox takes; the tests use it)
    const forced = Number(new URLSearchParams(location.search).get('ctxrate')) || 0;
    ctx = new AudioContext({ sampleRate: forced || rate, latencyHint: 'interactive' });
    try { source = ctx.createMediaStreamSource(stream); } catch (err) {
      // Firefox cannot connect a microphone to a context at another rate: run at the device's
      // rate and let the Worker resample both ways
      await ctx.close();
      ctx = new AudioContext({ latencyHint: 'interactive' });
      source = ctx.createMediaStreamSource(stream);
    }
    await ctx.audioWorklet.addModule(new URL('worklet.js', import.meta.url));
    const hopCtx = Math.ceil(meta.hop * ctx.sampleRate / rate);
    // one audio block, two hops and a margin (4 ms; ?margin=MS trades latency for robustness)
    const margin = Number(new URLSearchParams(location.search).get('margin') ?? 4);
    const prebuffer = 128 + 2 * hopCtx + Math.round(Math.max(0, margin) / 1000 * ctx.sampleRate);
    const node = new AudioWorkletNode(ctx, 'snnse-io', { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
                                                          processorOptions: { prebuffer, warmup: 1 } });
    const ch = new MessageChannel();
    worker.postMessage({ type: 'live-start', port: ch.port2, ctxRate: ctx.sampleRate }, [ch.port2]);
    node.port.postMessage({ type: 'port', port: ch.port1 }, [ch.port1]);
    worker.postMessage({ type: 'bypass', on: !$('live-model').checked });
    source.connect(node); node.connect(ctx.destination);
    let resolve; const stopped = new Promise((r) => { resolve = r; });
    liveRun = { stream, ctx, node, source, resolve, stopped, t0: performance.now(), prebuffer };
    const extra = 1000 * prebuffer / ctx.sampleRate;
    status(st, `live: ${page.model} at ${ctx.sampleRate / 1000} kHz, model latency ${meta.latency_ms} ms + ${extra.toFixed(1)} ms of buffering ` +
      `+ the sound card's (${(1000 * (ctx.baseLatency || 0)).toFixed(1)} ms base, ${(1000 * (ctx.outputLatency || 0)).toFixed(1)} ms output)`, 'ok');
    $('live-stop').disabled = false;
  } catch (err) {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    if (ctx) ctx.close();
    liveRun = null;
    status(st, err.message, 'error');
  }
  setBusy(false);
}

async function stopLive() {
  if (!liveRun) return;
  const run = liveRun;
  $('live-stop').disabled = true;
  run.stream.getTracks().forEach((t) => t.stop());
  run.source.disconnect(); run.node.disconnect();
  await run.ctx.close();
  worker.postMessage({ type: 'live-stop' });
  const r = await run.stopped;
  liveRun = null;
  page.lastLive = { model: page.model, input: r.input, output: r.output, times: r.times, dropouts: r.dropouts,
                    warmupDropouts: r.warmupDropouts, hopMs: r.hopMs, seconds: (performance.now() - run.t0) / 1000, ctxRate: r.ctxRate };
  showLive(r);
  status($('live-status'), `stopped after ${page.lastLive.seconds.toFixed(1)} s: ${r.hops} hops, ${r.dropouts} dropout(s) after warm-up`, r.dropouts ? 'error' : 'ok');
  setBusy(false);
}

function showLive(s) {
  const pct = (v) => (100 * v / s.hopMs).toFixed(1);
  $('live-stats').textContent = `${s.hops} hops of ${s.hopMs.toFixed(2)} ms   compute per hop: median ${(1000 * s.median).toFixed(0)} µs (${pct(s.median)} % of the hop), ` +
    `p99 ${(1000 * s.p99).toFixed(0)} µs (${pct(s.p99)} %), mean ${(1000 * s.mean).toFixed(0)} µs\ndropouts: ${s.dropouts} (+${s.warmupDropouts} during the first second)   model ${s.bypass ? 'OFF (dry input)' : 'on'}`;
  const cv = $('live-chart'), g = cv.getContext('2d'), W = cv.width, H = cv.height, r = s.recent || [];
  g.clearRect(0, 0, W, H);
  const scale = H / (1.25 * s.hopMs), bw = W / 160;
  g.fillStyle = '#2f6fde';
  r.forEach((v, i) => { const h = Math.min(H, v * scale); g.fillRect(i * bw, H - h, Math.max(1, bw - 1), h); });
  g.strokeStyle = '#b3261e'; g.beginPath(); g.moveTo(0, H - s.hopMs * scale); g.lineTo(W, H - s.hopMs * scale); g.stroke();
  g.font = '12px sans-serif';
  const label = `hop ${s.hopMs.toFixed(2)} ms: the real-time limit`;
  g.fillStyle = '#b3261e'; g.fillText(label, W - g.measureText(label).width - 6, H - s.hopMs * scale + 14);
  g.fillStyle = '#1d2330'; g.fillText('compute per hop, last 160 hops', 6, H - s.hopMs * scale + 14);
}

$('live-start').onclick = startLive;
$('live-stop').onclick = stopLive;
$('live-model').onchange = (e) => worker.postMessage({ type: 'bypass', on: !e.target.checked });

init();
