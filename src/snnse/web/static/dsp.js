// Signal helpers of the page: WAV encoding, spectrograms, a streaming resampler. No dependencies.

/** 16-bit PCM mono WAV of `samples` (Float32Array in [-1, 1]) at `rate` Hz, as an ArrayBuffer. */
export function encodeWav(samples, rate) {
  const n = samples.length, buf = new ArrayBuffer(44 + 2 * n), v = new DataView(buf);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  str(0, 'RIFF'); v.setUint32(4, 36 + 2 * n, true); str(8, 'WAVE'); str(12, 'fmt ');
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, 2 * rate, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  str(36, 'data'); v.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    v.setInt16(44 + 2 * i, s < 0 ? Math.round(s * 32768) : Math.round(s * 32767), true);
  }
  return buf;
}

/** In-place radix-2 FFT of (re, im), length a power of two. */
function fft(re, im) {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) { [re[i], re[j]] = [re[j], re[i]]; [im[i], im[j]] = [im[j], im[i]]; }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = -2 * Math.PI / len, wr = Math.cos(ang), wi = Math.sin(ang);
    for (let i = 0; i < n; i += len) {
      let cr = 1, ci = 0;
      for (let k = 0; k < len / 2; k++) {
        const a = i + k, b = a + len / 2;
        const tr = re[b] * cr - im[b] * ci, ti = re[b] * ci + im[b] * cr;
        re[b] = re[a] - tr; im[b] = im[a] - ti; re[a] += tr; im[a] += ti;
        const t = cr * wr - ci * wi; ci = cr * wi + ci * wr; cr = t;
      }
    }
  }
}

/** Log-magnitude spectrogram [frames][bins] in dB (n_fft 512, hop 128, Hann window). */
export function spectrogram(x, nfft = 512, hop = 128) {
  const win = new Float32Array(nfft).map((_, i) => 0.5 - 0.5 * Math.cos(2 * Math.PI * i / nfft));
  const frames = [], re = new Float64Array(nfft), im = new Float64Array(nfft);
  for (let s = 0; s + nfft <= Math.max(x.length, nfft); s += hop) {
    for (let i = 0; i < nfft; i++) { re[i] = (x[s + i] || 0) * win[i]; im[i] = 0; }
    fft(re, im);
    const row = new Float32Array(nfft / 2 + 1);
    for (let k = 0; k <= nfft / 2; k++) row[k] = 10 * Math.log10(re[k] * re[k] + im[k] * im[k] + 1e-10);
    frames.push(row);
  }
  return frames;
}

function colour(t) { // dark blue → magenta → yellow, t in [0, 1]
  const r = Math.min(255, Math.max(0, 255 * (1.6 * t - 0.1)));
  const g = Math.min(255, Math.max(0, 255 * (1.9 * t - 0.95)));
  const b = Math.min(255, Math.max(0, 255 * (t < 0.5 ? 0.25 + 1.2 * t : 1.4 - 1.6 * t)));
  return [r, g, b];
}

/** Draw the spectrogram of `x` on `canvas`, 80 dB below `top` dB (shared by both plots). */
export function drawSpectrogram(canvas, x, top) {
  const spec = spectrogram(x), ctx = canvas.getContext('2d'), W = canvas.width, H = canvas.height;
  const img = ctx.createImageData(W, H), bins = spec.length ? spec[0].length : 1;
  for (let px = 0; px < W; px++) {
    const row = spec[Math.min(spec.length - 1, Math.floor(px * spec.length / W))];
    for (let py = 0; py < H; py++) {
      const k = Math.floor((H - 1 - py) * bins / H);
      const t = row ? Math.max(0, Math.min(1, (row[k] - (top - 80)) / 80)) : 0;
      const [r, g, b] = colour(t), o = 4 * (py * W + px);
      img.data[o] = r; img.data[o + 1] = g; img.data[o + 2] = b; img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

/** Largest value of the spectrogram of `x` in dB (for a shared colour scale). */
export function spectrogramTop(x) {
  let top = -100;
  for (const row of spectrogram(x)) for (const v of row) top = Math.max(top, v);
  return top;
}

/** Streaming linear-interpolation resampler `from` → `to` Hz (for browsers that cannot open the
 * microphone at the model's rate; Chromium resamples itself and this is not used there). */
export class StreamResampler {
  constructor(from, to) { this.step = from / to; this.pos = 0; this.prev = 0; this.identity = from === to; }
  process(x) {
    if (this.identity) return x;
    // positions: the previous block's last sample is 0, x[j] is j + 1; output at this.pos, this.pos + step, ...
    const out = [];
    while (x.length && Math.floor(this.pos) + 1 <= x.length) {
      const i = Math.floor(this.pos), a = i === 0 ? this.prev : x[i - 1];
      out.push(a + (x[i] - a) * (this.pos - i));
      this.pos += this.step;
    }
    if (x.length) { this.prev = x[x.length - 1]; this.pos -= x.length; }
    return Float32Array.from(out);
  }
}
