// The model Worker: the one place on the page that runs the exported step graph (onnxruntime-web,
// WASM). The AudioWorklet only moves audio; session.run is asynchronous and cannot run inside it.
//
// Messages in:  {type: 'load', graph, meta}            → {type: 'loaded'} | {type: 'error'}
//               {type: 'enhance', samples}             → {type: 'progress'}…, {type: 'enhanced'}
//               {type: 'live-start', port, ctxRate}    → {type: 'live-stats'} every 250 ms
//               {type: 'bypass', on}, {type: 'live-stop'} → {type: 'live-stopped', input, output, times}
// The step is snnse.export's packed graph: audio [1, hop], state [1, S] → enhanced [1, hop],
// new_state [1, S]; all-zeros state is the initial state; enhanced lags audio by delay_samples.
import * as ort from './vendor/ort.wasm.bundle.min.mjs';
import { StreamResampler } from './dsp.js';

const params = new URLSearchParams(self.location.search);
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Number(params.get('threads') || 1)) : 1;
ort.env.logLevel = 'error';

let model = null;  // {session, meta, hop, S, inName, stateName, outName, newStateName}
let live = null;

class Stepper {
  constructor(m) { this.m = m; this.reset(); }
  reset() { this.state = new Float32Array(this.m.S); }
  async step(x) {  // x: Float32Array(hop) → [Float32Array(hop), ms]
    const m = this.m;
    const feeds = { [m.inName]: new ort.Tensor('float32', x, [1, m.hop]),
                    [m.stateName]: new ort.Tensor('float32', this.state, [1, m.S]) };
    const t0 = performance.now();
    const res = await m.session.run(feeds);
    const dt = performance.now() - t0;
    this.state = res[m.newStateName].data;
    return [res[m.outName].data, dt];
  }
}

async function load(graphUrl, meta) {
  if (!meta.state_size) throw new Error('this graph has no packed state (export it with snnse ≥ the page\'s version)');
  const bytes = await (await fetch(graphUrl)).arrayBuffer();
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ['wasm'], graphOptimizationLevel: 'all', executionMode: 'sequential' });
  const [inName, stateName] = session.inputNames, [outName, newStateName] = session.outputNames;
  model = { session, meta, hop: meta.hop, S: meta.state_size, inName, stateName, outName, newStateName };
  // one warm-up step so that the first real hop does not pay for allocation
  await new Stepper(model).step(new Float32Array(model.hop));
}

// a whole signal, as snnse.export.OnnxStreamer does it: warm-up dropped, end padded, same length out
async function enhance(x) {
  const { hop, meta } = model, delay = meta.delay_samples, n = x.length;
  const hops = Math.ceil((n + meta.frame_length - hop) / hop);
  const padded = new Float32Array(hops * hop); padded.set(x);
  const y = new Float32Array(hops * hop), times = new Float32Array(hops), st = new Stepper(model);
  for (let i = 0; i < hops; i++) {
    const [out, dt] = await st.step(padded.subarray(i * hop, (i + 1) * hop));
    y.set(out, i * hop); times[i] = dt;
    if (i % 200 === 0) postMessage({ type: 'progress', done: i / hops });
  }
  return { samples: y.slice(delay, delay + n), times };
}

function quantile(a, q) {
  if (!a.length) return NaN;
  const s = Float64Array.from(a).sort();
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))];
}

// ---- live: blocks from the worklet, hops to the worklet ----------------------------------------
class Chunks {  // a growable Float32 buffer
  constructor() { this.buf = new Float32Array(1 << 14); this.n = 0; }
  push(x) {
    if (this.n + x.length > this.buf.length) {
      const b = new Float32Array(Math.max(2 * this.buf.length, this.n + x.length)); b.set(this.buf.subarray(0, this.n)); this.buf = b;
    }
    this.buf.set(x, this.n); this.n += x.length;
  }
  take(k) { const out = this.buf.slice(0, k); this.buf.copyWithin(0, k, this.n); this.n -= k; return out; }
  data() { return this.buf.slice(0, this.n); }
}

function startLive(port, ctxRate) {
  const rate = model.meta.sample_rate;
  live = { port, stepper: new Stepper(model), pending: new Chunks(), recIn: new Chunks(), recOut: new Chunks(),
           times: [], bypass: false, busy: false, dry: new Float32Array(model.meta.delay_samples),
           down: new StreamResampler(ctxRate, rate), up: new StreamResampler(rate, ctxRate),
           dropouts: 0, blocks: 0, fifo: 0, ctxRate, maxRecord: rate * 600 };
  port.onmessage = (e) => {
    if (e.data.type === 'audio') { live.pending.push(live.down.process(e.data.samples)); pump(); }
    else if (e.data.type === 'stats') { Object.assign(live, { dropouts: e.data.dropouts, warmupDropouts: e.data.warmupDropouts, blocks: e.data.blocks, fifo: e.data.fifo }); }
  };
  live.timer = setInterval(() => postMessage({ type: 'live-stats', ...liveStats(400) }), 250);
}

function liveStats(last) {
  const t = last ? live.times.slice(-last) : live.times, hopMs = 1000 * model.hop / model.meta.sample_rate;
  return { hops: live.times.length, median: quantile(t, 0.5), p99: quantile(t, 0.99), max: t.length ? Math.max(...t) : NaN,
           mean: t.length ? t.reduce((a, b) => a + b, 0) / t.length : NaN,
           hopMs, recent: live.times.slice(-160), dropouts: live.dropouts, warmupDropouts: live.warmupDropouts || 0,
           blocks: live.blocks, fifo: live.fifo, bypass: live.bypass, ctxRate: live.ctxRate };
}

async function pump() {
  if (!live || live.busy) return;
  live.busy = true;
  const L = live, hop = model.hop;
  try {
    while (L === live && L.pending.n >= hop) {
      const x = L.pending.take(hop);
      const [y, dt] = await L.stepper.step(x);
      L.times.push(dt);
      if (L.recIn.n < L.maxRecord) { L.recIn.push(x); L.recOut.push(y); }
      let out = y;
      if (L.bypass) {  // the dry input, delayed like the model's output so that switching is seamless
        const d = L.dry.length, both = new Float32Array(d + hop); both.set(L.dry); both.set(x, d);
        out = both.slice(0, hop); L.dry = both.slice(hop);
      } else if (L.dry.length) {
        const both = new Float32Array(L.dry.length + hop); both.set(L.dry); both.set(x, L.dry.length); L.dry = both.slice(hop);
      }
      const played = L.up.process(Float32Array.from(out));
      L.port.postMessage({ type: 'audio', samples: played }, [played.buffer]);
    }
  } finally { L.busy = false; }
}

function stopLive() {
  if (!live) return null;
  clearInterval(live.timer);
  const res = { type: 'live-stopped', input: live.recIn.data(), output: live.recOut.data(),
                times: Float32Array.from(live.times), ...liveStats(0) };
  live.port.close(); live = null;
  return res;
}

onmessage = async (e) => {
  const msg = e.data;
  try {
    if (msg.type === 'load') {
      stopLive(); model = null;
      const t0 = performance.now();
      await load(msg.graph, msg.meta);
      postMessage({ type: 'loaded', id: msg.meta.id, ms: performance.now() - t0, threads: ort.env.wasm.numThreads,
                    isolated: self.crossOriginIsolated, ortVersion: ort.env.versions?.web || '' });
    } else if (msg.type === 'enhance') {
      if (!model) throw new Error('no model loaded');
      const r = await enhance(msg.samples);
      postMessage({ type: 'enhanced', ...r }, [r.samples.buffer, r.times.buffer]);
    } else if (msg.type === 'live-start') {
      if (!model) throw new Error('no model loaded');
      startLive(msg.port, msg.ctxRate);
    } else if (msg.type === 'bypass') {
      if (live) live.bypass = msg.on;
    } else if (msg.type === 'live-stop') {
      const r = stopLive();
      if (r) postMessage(r, [r.input.buffer, r.output.buffer, r.times.buffer]);
    }
  } catch (err) {
    postMessage({ type: 'error', during: msg.type, message: String(err && err.message || err) });
  }
};
