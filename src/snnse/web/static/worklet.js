// The page's AudioWorklet: moves audio only (the model runs in the Worker, see worker.js).
// Microphone blocks go to the Worker through a MessagePort; the enhanced hops that come back are
// queued and played once `prebuffer` samples are waiting. A block that finds too few samples is a
// dropout (silence is played); dropouts in the first `warmup` seconds are counted apart.
class SnnseIO extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.prebuffer = o.prebuffer || 512; this.warmupBlocks = Math.ceil((o.warmup || 1) * sampleRate / 128);
    this.queue = []; this.queued = 0; this.head = 0; this.playing = false;
    this.blocks = 0; this.dropouts = 0; this.warmupDropouts = 0; this.model = null;
    this.port.onmessage = (e) => {
      if (e.data.type === 'port') {
        this.model = e.data.port;
        this.model.onmessage = (m) => { if (m.data.type === 'audio') { this.queue.push(m.data.samples); this.queued += m.data.samples.length; } };
      }
    };
  }

  pull(out) {  // fill `out` from the queue; false if there were too few samples
    if (this.queued < out.length) return false;
    let k = 0;
    while (k < out.length) {
      const q = this.queue[0], take = Math.min(out.length - k, q.length - this.head);
      out.set(q.subarray(this.head, this.head + take), k);
      k += take; this.head += take;
      if (this.head === q.length) { this.queue.shift(); this.head = 0; }
    }
    this.queued -= out.length;
    return true;
  }

  process(inputs, outputs) {
    const input = inputs[0] && inputs[0][0], out = outputs[0][0];
    if (this.model && input) this.model.postMessage({ type: 'audio', samples: input.slice() });
    this.blocks++;
    if (!this.playing && this.queued >= this.prebuffer) this.playing = true;
    if (this.playing && !this.pull(out)) {
      out.fill(0);
      if (this.blocks <= this.warmupBlocks) this.warmupDropouts++; else this.dropouts++;
    }
    if (this.model && this.blocks % 32 === 0) {
      this.model.postMessage({ type: 'stats', dropouts: this.dropouts, warmupDropouts: this.warmupDropouts,
                               blocks: this.blocks, fifo: this.queued });
    }
    return true;
  }
}
registerProcessor('snnse-io', SnnseIO);
