"""Compiled one-hop steps: the DPSNN plan (:mod:`snnse.fast_dpsnn`) and the Spiking-S4 masker
(:mod:`snnse.fast_s4`, LIF/PLIF units), each as one C++ call; and the input level control of
:mod:`snnse.agc` for one chunk.

Optional, with the PyTorch plan as the fallback: :func:`load` compiles the source below with
``torch.utils.cpp_extension.load_inline`` on first use (light ATen headers, cached under
``~/.cache/torch_extensions`` like :mod:`snnse.kernels`, but a separate extension, so that a
failure here never changes the training kernels), registers ``torch.ops.snnse_step.dpsnn_step``
and ``s4_masker``, and returns None (with one warning) if the build fails.

One DPSNN call does a whole hop of the learned front-end and the masker for every batch row: the
matrix-vector products in ``axpy`` form over the transposed weights, skipping zero inputs (binary
spikes, the ReLU zeros of the encoder output, the suppressed readout), and every element-wise
step in one pass over the channels. Same formulas as the modules (``torch.lerp``'s two-sided
form, ``H(x − θ) = x >= θ``, hard and soft resets); sums are accumulated in another order than
MKL's, so the outputs equal the module path up to float rounding. The Spiking-S4 call runs the
masker (encoder, the S4D recurrences in real pairs, emission, LIF, residual, layer norm, decoder),
and with the STFT front-end the whole hop (framing, the real FFT, the magnitude, the masking, the
inverse FFT and the overlap-add) in the same call. For a power-of-two frame length the transforms are
the source's own (``RealFFT``: a radix-2 complex FFT of half the length, twiddles computed in
double), because ``at::fft_rfft``/``at::fft_irfft`` spent ~30 µs per hop on set-up (descriptors,
twiddle tables, allocations, dispatch) around ~2 µs of transform; other lengths use ATen's.

``torch.classes.snnse_step.Hop`` runs either whole hop for one stream (:mod:`snnse.streaming`): it
takes the weights once and keeps the state, updated in place, so that a hop is one call with one
tensor in and one out. The Spiking-S4 constants are laid out as unit-stride rows (``[D, 6, M]``:
Re/Im of ``dA``, ``dB`` and ``2C`` per channel, for the module path's interleaved complex state),
and the Hop keeps its S4D state mode-major (``[B, 2, M, D]``, constants ``[6, M, D]``): the
recurrence is then vectorised over the channels, unit-stride, with no horizontal sums. The
interleaved per-channel loop was ~2/3 of a Spiking-S4 hop; unit-stride rows made it ~2× faster
and the mode-major layout ~3× (a micro-benchmark of the recurrence alone).
The Spiking-S4 part of the source (S4D, masker, ``RealFFT``, the STFT hop) lives in
:mod:`snnse.fast_cpp_s4`; both parts compile as one translation unit.
:meth:`Hop.get_state` converts back to the module path's complex state. A Spiking-S4 Hop with a
power-of-two frame runs without any ATen call but its output's allocation (scratch memory kept in
the object, the level control in place on its state); with the Streamer calling the Hop's bound
``step`` this took the default Spiking-S4 hop from ~160 to ~100 µs (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import hashlib
import warnings

import torch

from .fast_cpp_s4 import S4_SOURCE

SOURCE = r"""
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/fft_irfft.h>
#include <ATen/ops/fft_rfft.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/view_as_complex.h>
#include <ATen/ops/view_as_real.h>
#include <torch/custom_class.h>
#include <torch/library.h>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

using at::Tensor;
#define R __restrict

// torch.lerp(a, b, w): a + w (b − a) for |w| < 0.5, else b − (b − a)(1 − w)
template <typename T> static inline T lerp(T a, T b, T w) {
  return std::abs(w) < T(0.5) ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

// y[o] = bias[o] + sum_i x[i] W[i, o] over the nonzero x[i] (W: [n_in, n_out] contiguous)
// (bias == nullptr with accumulate: add to y as it is). The nonzero rows are added four at a time, so that y is
// loaded and stored once per four rows (binary spikes, ReLU zeros and a suppressed readout are skipped).
template <typename T> static inline void axpy_gemv(const T* R x, int64_t n_in, const T* R W, int64_t n_out,
                                                   const T* R bias, T* R y, bool accumulate = false) {
  if (!accumulate)
    for (int64_t o = 0; o < n_out; ++o) y[o] = bias ? bias[o] : T(0);
  int64_t idx[4];
  int k = 0;
  for (int64_t i = 0; i < n_in; ++i) {
    if (x[i] == T(0)) continue;
    idx[k++] = i;
    if (k < 4) continue;
    k = 0;
    const T a0 = x[idx[0]], a1 = x[idx[1]], a2 = x[idx[2]], a3 = x[idx[3]];
    const T *R w0 = W + idx[0] * n_out, *R w1 = W + idx[1] * n_out, *R w2 = W + idx[2] * n_out,
            *R w3 = W + idx[3] * n_out;
    _Pragma("omp simd")
    for (int64_t o = 0; o < n_out; ++o) y[o] += (a0 * w0[o] + a1 * w1[o]) + (a2 * w2[o] + a3 * w3[o]);
  }
  for (int j = 0; j < k; ++j) {
    const T xi = x[idx[j]];
    const T* R w = W + idx[j] * n_out;
    _Pragma("omp simd")
    for (int64_t o = 0; o < n_out; ++o) y[o] += xi * w[o];
  }
}

// w: enc_w [L,N], enc_b [N], dec_w [N,L], dec_b [1], ln_g [N], ln_b [N], proj_w [N,C], proj_b [C],
//    th_proj [], then per block: scnn_w [C,K], scnn_b [C], k_plif [], in_w [C,C], in_b [C], rec_w [C,C],
//    alpha [C], rho [C]; then ro_w [X*C,C], ro_b [C], beta_ro [C], th_sup [], mask_w [C,N], mask_b [N]
// f: ln_eps, then per block: v_th, b0, beta
// s: fe_hist [B,ov], pending [B,ov], per block: hist [B,C,K-1], v1 [B,C], v [B,C], eta [B,C], s [B,C], y [B,C];
//    then u [B,C]
// returns: out [B,hop], then the new state in the order of s (inplace: the tensors of s, updated; y is then s)
static std::vector<Tensor> dpsnn_step_(const Tensor& x, std::vector<Tensor> w, std::vector<double> f,
                                       std::vector<Tensor> s, bool inplace = false) {
  const int64_t B = x.size(0), hop = x.size(1), L = w[0].size(0), N = w[0].size(1), C = w[6].size(1);
  const int64_t X = (static_cast<int64_t>(w.size()) - 15) / 8, ov = L - hop;
  TORCH_CHECK(static_cast<int64_t>(w.size()) == 15 + 8 * X && static_cast<int64_t>(s.size()) == 3 + 6 * X,
              "dpsnn_step: bad argument lists");
  for (auto& t : w) t = t.contiguous();
  for (auto& t : s) t = t.contiguous();
  std::vector<Tensor> out;
  out.push_back(at::empty({B, hop}, x.options()));
  if (inplace) {  // every state value is read before its slot is written (same index, or history shifted down)
    for (int64_t j = 0; j < X; ++j) s[2 + 6 * j + 5] = s[2 + 6 * j + 4];  // y and s: one tensor
    out.insert(out.end(), s.begin(), s.end());
  } else {
    out.push_back(at::empty({B, ov}, x.options()));
    out.push_back(at::empty({B, ov}, x.options()));
    for (int64_t j = 0; j < X; ++j) {
      const int64_t K = w[9 + 8 * j].size(1);
      out.push_back(at::empty({B, C, K - 1}, x.options()));
      for (int q = 0; q < 4; ++q) out.push_back(at::empty({B, C}, x.options()));
      out.push_back(out.back());  // y is the ALIF's spikes (the same tensor, as in the module path)
    }
    out.push_back(at::empty({B, C}, x.options()));
  }
  Tensor xin = x.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dpsnn_step", [&] {
    using T = scalar_t;
    auto P = [&](const Tensor& t) { return t.data_ptr<T>(); };
    std::vector<T> frame(L), enc(N), z(N), hcur(C), spk(C), cur(C), all(X * C), r(C), a(C), m(N), yf(L);
    for (int64_t b = 0; b < B; ++b) {
      // frame = [history, chunk]; encoder; layer norm; proj + threshold
      const T* R hist = P(s[0]) + b * ov;
      for (int64_t i = 0; i < ov; ++i) frame[i] = hist[i];
      for (int64_t i = 0; i < hop; ++i) frame[ov + i] = P(xin)[b * hop + i];
      axpy_gemv<T>(frame.data(), L, P(w[0]), N, P(w[1]), enc.data());
      double mean = 0, var = 0;
      for (int64_t i = 0; i < N; ++i) { enc[i] = enc[i] > T(0) ? enc[i] : T(0); mean += enc[i]; }
      mean /= N;
      for (int64_t i = 0; i < N; ++i) var += (enc[i] - mean) * (enc[i] - mean);
      const T rstd = static_cast<T>(1.0 / std::sqrt(var / N + f[0])), mu = static_cast<T>(mean);
      for (int64_t i = 0; i < N; ++i) z[i] = (enc[i] - mu) * rstd * P(w[4])[i] + P(w[5])[i];
      axpy_gemv<T>(z.data(), N, P(w[6]), C, P(w[7]), hcur.data());
      const T th = *P(w[8]);
      for (int64_t c = 0; c < C; ++c) spk[c] = hcur[c] >= th ? T(1) : T(0);
      for (int64_t j = 0; j < X; ++j) {
        const Tensor* wj = &w[9 + 8 * j];
        const Tensor* sj = &s[2 + 6 * j];
        Tensor* oj = &out[3 + 6 * j];
        const int64_t K = wj[0].size(1);
        const T *cw = P(wj[0]), *cb = P(wj[1]), kp = *P(wj[2]), *al = P(wj[6]), *rh = P(wj[7]);
        const T v_th = static_cast<T>(f[1 + 3 * j]), b0 = static_cast<T>(f[2 + 3 * j]),
                beta = static_cast<T>(f[3 + 3 * j]);
        const T *hb = P(sj[0]) + b * C * (K - 1), *v1o = P(sj[1]) + b * C, *vo = P(sj[2]) + b * C,
                *eo = P(sj[3]) + b * C, *so = P(sj[4]) + b * C, *yo = P(sj[5]) + b * C;
        T *hn = P(oj[0]) + b * C * (K - 1), *v1n = P(oj[1]) + b * C, *vn = P(oj[2]) + b * C,
          *en = P(oj[3]) + b * C, *sn = P(oj[4]) + b * C;
        // SCNN: depthwise conv over [history, spikes], PLIF with hard reset to 0
        for (int64_t c = 0; c < C; ++c) {
          T acc = T(0);
          for (int64_t k = 0; k < K - 1; ++k) acc += hb[c * (K - 1) + k] * cw[c * K + k];
          acc += spk[c] * cw[c * K + K - 1];
          for (int64_t k = 0; k + 1 < K - 1; ++k) hn[c * (K - 1) + k] = hb[c * (K - 1) + k + 1];
          if (K > 1) hn[c * (K - 1) + K - 2] = spk[c];
          T v1 = lerp(v1o[c], acc + cb[c], kp);
          const bool fired = v1 >= v_th;
          spk[c] = fired ? T(1) : T(0);
          v1n[c] = fired ? T(0) : v1;
        }
        // SRNN: input and recurrent maps (binary inputs: rows added), ALIF with soft reset
        axpy_gemv<T>(spk.data(), C, P(wj[3]), C, P(wj[4]), cur.data());
        axpy_gemv<T>(yo, C, P(wj[5]), C, nullptr, cur.data(), true);
        for (int64_t c = 0; c < C; ++c) {
          const T eta = lerp(so[c], eo[c], rh[c]);
          const T theta = b0 + beta * eta;
          const T v = lerp(cur[c], vo[c], al[c]) - theta * so[c];
          en[c] = eta;
          vn[c] = v;
          sn[c] = v >= theta ? T(1) : T(0);
          spk[c] = all[j * C + c] = sn[c];
        }
      }
      // readout (leaky integrator), suppression, mask, decoder, overlap-add
      const Tensor* wr = &w[9 + 8 * X];
      axpy_gemv<T>(all.data(), X * C, P(wr[0]), C, P(wr[1]), r.data());
      const T *uo = P(s[2 + 6 * X]) + b * C, *bro = P(wr[2]), ths = *P(wr[3]);
      T* un = P(out[3 + 6 * X]) + b * C;
      for (int64_t c = 0; c < C; ++c) {
        un[c] = lerp(r[c], uo[c], bro[c]);
        a[c] = un[c] * (un[c] >= ths ? T(1) : T(0));
      }
      axpy_gemv<T>(a.data(), C, P(wr[4]), N, P(wr[5]), m.data());
      for (int64_t i = 0; i < N; ++i) m[i] = enc[i] * (T(1) / (T(1) + std::exp(-m[i])));
      axpy_gemv<T>(m.data(), N, P(w[2]), L, nullptr, yf.data());
      const T* R pend = P(s[1]) + b * ov;
      for (int64_t i = 0; i < ov; ++i) yf[i] += pend[i];
      const T db = *P(w[3]);
      T *o = P(out[0]) + b * hop, *hn = P(out[1]) + b * ov, *pn = P(out[2]) + b * ov;
      for (int64_t i = 0; i < hop; ++i) o[i] = yf[i] + db;
      for (int64_t i = 0; i < ov; ++i) { hn[i] = frame[hop + i]; pn[i] = yf[hop + i]; }
    }
  });
  return out;
}

""" + S4_SOURCE + r"""
// Causal level control of one chunk (snnse.agc.LevelControl.step, same formulas), on raw pointers:
// x [B,n] (n = k·hop), d [B], past [B,ov] (per-sample gains in dB of the last ov input samples);
// p: hop, target_db, c_attack, c_release, max_gain_db, floor. Writes x times its gains, the output
// divisors (linear), the new d and the new past (dnp, pnp may be dp, pp: each row is read before it is written).
template <typename T> static void level_apply(const T* R xp, T* R xsp, T* R gop, const T* dp, const T* pp, T* dnp,
                                              T* pnp, int64_t B, int64_t n, int64_t ov, const std::vector<double>& p) {
  const int64_t hop = static_cast<int64_t>(p[0]), k = n / hop;
  const T ln = static_cast<T>(std::log(10.0) / 20.0), target = static_cast<T>(p[1]), ca = static_cast<T>(p[2]),
          cr = static_cast<T>(p[3]), gmax = static_cast<T>(p[4]), floor = static_cast<T>(p[5]);
  std::vector<T> gdb(ov + n);
  for (int64_t b = 0; b < B; ++b) {
    const T* R xb = xp + b * n;
    T* R xs = xsp + b * n;
    T dv = dp[b];
    for (int64_t i = 0; i < ov; ++i) gdb[i] = pp[b * ov + i];
    for (int64_t j = 0; j < k; ++j) {
      T acc = T(0);
      for (int64_t s = 0; s < hop; ++s) acc += xb[j * hop + s] * xb[j * hop + s];
      const T e = (T(10) * std::log10(acc / T(hop) + floor) - target) - dv;
      dv = dv + (e > T(0) ? e * ca : e * cr);
      const T g = std::min(std::max(-dv, -gmax), gmax), lin = std::exp(g * ln);
      for (int64_t s = 0; s < hop; ++s) {
        gdb[ov + j * hop + s] = g;
        xs[j * hop + s] = xb[j * hop + s] * lin;
      }
    }
    T* R go = gop + b * n;
    for (int64_t i = 0; i < n; ++i) go[i] = std::exp(gdb[i] * ln);
    for (int64_t i = 0; i < ov; ++i) pnp[b * ov + i] = gdb[n + i];
    dnp[b] = dv;
  }
}

// The level control as its own call: returns x times its gains [B,n], the output divisors [B,n], the new d [B,1]
// and past [B,ov]
static std::vector<Tensor> level_step(const Tensor& x_, const Tensor& d_, const Tensor& past_, std::vector<double> p) {
  const Tensor x = x_.contiguous(), d = d_.contiguous(), past = past_.contiguous();
  const int64_t B = x.size(0), n = x.size(1), ov = past.size(1), hop = static_cast<int64_t>(p[0]);
  TORCH_CHECK(p.size() == 6 && hop > 0 && n % hop == 0, "level_step: bad arguments");
  std::vector<Tensor> out{at::empty_like(x), at::empty_like(x), at::empty_like(d), at::empty_like(past)};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "level_step", [&] {
    using T = scalar_t;
    level_apply<T>(x.data_ptr<T>(), out[0].data_ptr<T>(), out[1].data_ptr<T>(), d.data_ptr<T>(), past.data_ptr<T>(),
                   out[2].data_ptr<T>(), out[3].data_ptr<T>(), B, n, ov, p);
  });
  return out;
}

// A model's step with the level control fused around it: scales x, runs `step` on it, divides the output (the
// first result) by the divisors and appends the new level state (d, past). lvl: {d [B,1], past [B,ov]} or empty.
template <typename F> static std::vector<Tensor> with_level(const Tensor& x_, const std::vector<Tensor>& lvl,
                                                            const std::vector<double>& p, F step) {
  if (lvl.empty()) return step(x_);
  TORCH_CHECK(lvl.size() == 2 && p.size() == 6, "level control: bad arguments");
  std::vector<Tensor> l = level_step(x_, lvl[0], lvl[1], p);
  std::vector<Tensor> out = step(l[0]);
  out[0] = out[0].contiguous();
  AT_DISPATCH_FLOATING_TYPES(out[0].scalar_type(), "with_level", [&] {
    using T = scalar_t;
    T* R o = out[0].data_ptr<T>();
    const T* R g = l[1].data_ptr<T>();
    for (int64_t i = 0; i < out[0].numel(); ++i) o[i] /= g[i];
  });
  out.push_back(l[2]);
  out.push_back(l[3]);
  return out;
}

// The registered steps: the plain ones with an optional fused level control (lvl, lp empty: none)
static std::vector<Tensor> dpsnn_step(const Tensor& x, std::vector<Tensor> w, std::vector<double> f, std::vector<Tensor> s,
                                      std::vector<Tensor> lvl, std::vector<double> lp) {
  return with_level(x, lvl, lp, [&](const Tensor& xi) { return dpsnn_step_(xi, w, f, s); });
}

static std::vector<Tensor> s4_stft_step(const Tensor& x, const Tensor& hist, const Tensor& pending,
                                        const std::optional<Tensor>& window, const Tensor& synth, std::vector<Tensor> w,
                                        std::vector<double> f, std::vector<Tensor> s, double eps, std::vector<Tensor> lvl,
                                        std::vector<double> lp) {
  return with_level(x, lvl, lp, [&](const Tensor& xi) { return s4_stft_step_(xi, hist, pending, window, synth, w, f, s, eps); });
}

// One stream's hops as one object (torch.classes.snnse_step.Hop): the weights are passed once, and the state is
// kept here and updated in place, so that a hop is one call with one tensor in and one out (snnse.streaming).
// step(x): x [batch, hop] -> [batch, hop], or [hop] -> [hop] (batch 1).
// kind 0: DPSNN (w, f, s as dpsnn_step); kind 1: Spiking-S4 with the STFT (s: history, pending, then the masker
// state; window, synth and eps as s4_stft_step). lvl/lp: the level control's state and parameters, or empty.
// A Spiking-S4 hop whose frame length is a power of two runs without any ATen call but the output's allocation
// (s4_rows: RealFFT, the workspace below); other lengths go through s4_stft_step_. The level control runs in place
// on its state, into the workspace.
struct Hop : torch::CustomClassHolder {
  int64_t kind;
  std::vector<Tensor> w, s, lvl;
  std::vector<double> f, lp;
  std::optional<Tensor> window;
  Tensor synth, ws, ls;  // ws, ls: scratch memory in the weights' dtype, made on first use
  double eps;
  int64_t fft_n = 0;  // the frame length where it is a power of two (s4_rows), else 0
  Hop(int64_t kind_, std::vector<Tensor> w_, std::vector<double> f_, std::vector<Tensor> s_, std::vector<Tensor> lvl_,
      std::vector<double> lp_, std::optional<Tensor> window_, std::optional<Tensor> synth_, double eps_)
      : kind(kind_), w(std::move(w_)), f(std::move(f_)), lp(std::move(lp_)), eps(eps_) {
    TORCH_CHECK(kind == 0 || (kind == 1 && synth_.has_value() && s_.size() >= 4), "Hop: bad arguments");
    TORCH_CHECK(lvl_.empty() || (lvl_.size() == 2 && lp.size() == 6), "Hop: bad level control arguments");
    if (synth_.has_value()) synth = synth_->contiguous();
    if (window_.has_value() && window_->defined()) window = window_->contiguous();
    for (auto& t : w) t = t.contiguous();
    for (const auto& t : s_) s.push_back(t.clone(at::MemoryFormat::Contiguous));  // never the caller's tensors
    for (const auto& t : lvl_) lvl.push_back(t.clone(at::MemoryFormat::Contiguous));
    if (kind == 0) {  // y (the ALIF's spikes) and s are one tensor, as dpsnn_step returns them
      TORCH_CHECK((s.size() - 3) % 6 == 0, "Hop: bad DPSNN state");
      for (size_t j = 2; j + 6 <= s.size(); j += 6) s[j + 5] = s[j + 4];
    } else {  // the S4D states mode-major [B, 2, M, D] (w: the constants [6, M, D], see s4d_layer_mode_major)
      for (size_t i = 2; i < s.size(); i += 2) s[i] = at::view_as_real(s[i]).permute({0, 3, 2, 1}).contiguous();
      const int64_t L = synth.numel();
      if (RealFFT::usable(L) && s[0].size(1) < L) fft_n = L;
    }
  }
  // the tensors the weights above were derived from (a model's parameters and buffers), their version counters
  // and storage: step() refuses to run once any of them changed (the caller rebuilds its constants)
  std::vector<Tensor> watched;
  std::vector<int64_t> versions;
  std::vector<const void*> ptrs;
  void watch(std::vector<Tensor> ts) {
    watched = std::move(ts);
    versions.clear();
    ptrs.clear();
    for (const auto& t : watched) {
      versions.push_back(t._version());
      ptrs.push_back(t.data_ptr());
    }
  }
  // at least n elements of scratch memory in the weights' dtype (buf: ws for s4_rows, ls for the level control)
  template <typename T> T* scratch(Tensor& buf, int64_t n) {
    if (!buf.defined() || buf.numel() < n) buf = at::empty({n}, w[0].options());
    return buf.data_ptr<T>();
  }
  // A Spiking-S4 hop (s4_stft_rows, in place on the state): x [B,hop] -> out [B,hop]
  template <typename T> void s4_rows(const T* xin, T* out, int64_t B, int64_t hop) {
    const int64_t ov = s[0].size(1), L = hop + ov, F = L / 2 + 1, D = w[0].size(1), M = w[2].size(1);
    const int64_t n_layers = (static_cast<int64_t>(s.size()) - 2) / 2;
    TORCH_CHECK(L == fft_n && F == w[0].size(0) && static_cast<int64_t>(w.size()) == 4 + 7 * n_layers,
                "Hop: bad Spiking-S4 sizes");
    std::vector<const T*> wp, xo, vo;
    std::vector<T*> xn, vn;
    for (const auto& t : w) wp.push_back(t.data_ptr<T>());
    for (int64_t l = 0; l < n_layers; ++l) {
      xn.push_back(s[2 + 2 * l].data_ptr<T>());
      vn.push_back(s[3 + 2 * l].data_ptr<T>());
      xo.push_back(xn.back());
      vo.push_back(vn.back());
    }
    T *hist = s[0].data_ptr<T>(), *pend = s[1].data_ptr<T>();
    s4_stft_rows<T>(xin, out, B, hop, ov, hist, hist, pend, pend, window.has_value() ? window->data_ptr<T>() : nullptr,
                    synth.data_ptr<T>(), eps, wp, f, D, M, true, xo, xn, vo, vn,
                    scratch<T>(ws, 3 * L + 4 * F + 3 * D));
  }
  Tensor step(const Tensor& x_) {
    for (size_t i = 0; i < watched.size(); ++i)
      TORCH_CHECK(watched[i]._version() == versions[i] && watched[i].data_ptr() == ptrs[i], "snnse Hop: weights changed");
    TORCH_CHECK((x_.dim() == 2 || x_.dim() == 1) && x_.scalar_type() == w[0].scalar_type(),
                "Hop: expected [batch, hop] or [hop] input of the weights' dtype");
    const int64_t B = x_.dim() == 2 ? x_.size(0) : 1, n = x_.size(-1);
    TORCH_CHECK(B == s[0].size(0), "Hop: the input's batch size is not the state's");
    Tensor x = x_.contiguous(), out;
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "Hop", [&] {
      using T = scalar_t;
      const T* xp = x.data_ptr<T>();
      T* gains = nullptr;
      if (!lvl.empty()) {  // the level control, in place on its state: x times its gains, then the output divisors
        T* scaled = scratch<T>(ls, 2 * B * n);
        gains = scaled + B * n;
        level_apply<T>(xp, scaled, gains, lvl[0].data_ptr<T>(), lvl[1].data_ptr<T>(), lvl[0].data_ptr<T>(),
                       lvl[1].data_ptr<T>(), B, n, lvl[1].size(1), lp);
        xp = scaled;
      }
      if (kind == 1 && fft_n) {
        out = at::empty(x_.dim() == 1 ? at::IntArrayRef{n} : at::IntArrayRef{B, n}, x.options());
        s4_rows<T>(xp, out.data_ptr<T>(), B, n);
      } else {
        const Tensor xi = gains ? ls.narrow(0, 0, B * n).view({B, n}) : x.dim() == 1 ? x.view({B, n}) : x;
        out = kind == 0 ? dpsnn_step_(xi, w, f, s, true)[0]
                        : s4_stft_step_(xi, s[0], s[1], window, synth, w, f, std::vector<Tensor>(s.begin() + 2, s.end()),
                                        eps, true, true)[0];
        out = out.contiguous();
      }
      if (gains) {
        T* R o = out.data_ptr<T>();
        for (int64_t i = 0; i < B * n; ++i) o[i] /= gains[i];
      }
    });
    return x_.dim() == 1 && out.dim() == 2 ? out.view({n}) : out;
  }
  // copies of the state (then the level control's), in the order and layout it was given
  std::vector<Tensor> get_state() {
    std::vector<Tensor> out;
    for (size_t i = 0; i < s.size(); ++i)
      out.push_back(kind == 1 && i >= 2 && i % 2 == 0 ? at::view_as_complex(s[i].permute({0, 3, 2, 1}).contiguous())
                                                      : s[i].clone());
    for (const auto& t : lvl) out.push_back(t.clone());
    return out;
  }
};

TORCH_LIBRARY(snnse_step, m) {
  m.class_<Hop>("Hop")
      .def(torch::init<int64_t, std::vector<Tensor>, std::vector<double>, std::vector<Tensor>, std::vector<Tensor>,
                       std::vector<double>, std::optional<Tensor>, std::optional<Tensor>, double>())
      .def("step", &Hop::step)
      .def("watch", &Hop::watch)
      .def("get_state", &Hop::get_state);
  m.def("s4_stft_step(Tensor x, Tensor hist, Tensor pending, Tensor? window, Tensor synth, Tensor[] w, float[] f,"
        " Tensor[] s, float eps, Tensor[] lvl, float[] lp) -> Tensor[]", &s4_stft_step);
  m.def("dpsnn_step(Tensor x, Tensor[] w, float[] f, Tensor[] s, Tensor[] lvl, float[] lp) -> Tensor[]", &dpsnn_step);
  m.def("level_step(Tensor x, Tensor d, Tensor past, float[] p) -> Tensor[]", &level_step);
  m.def("s4_masker(Tensor feats, Tensor[] w, float[] f, Tensor[] s, bool stft, float eps) -> Tensor[]", &s4_masker);
}
"""

FLAGS = ["-O3", "-march=native", "-fno-trapping-math", "-fno-math-errno", "-fopenmp-simd"]
_state: dict = {"tried": False, "ops": None}


def load():
    """The compiled operators (``torch.ops.snnse_step``), or None if they cannot be built."""
    if not _state["tried"]:
        _state["tried"] = True
        try:
            from torch.utils.cpp_extension import load_inline

            from .kernels import _cpu_id

            name = "snnse_step_" + hashlib.sha256((SOURCE + " ".join(FLAGS) + _cpu_id()).encode()).hexdigest()[:12]
            load_inline(name=name, cpp_sources=[SOURCE], is_python_module=False, no_implicit_headers=True,
                        extra_cflags=FLAGS, verbose=False)
            _state["ops"] = torch.ops.snnse_step
        except Exception as e:  # noqa: BLE001 - any build problem means: use the PyTorch plan
            warnings.warn(f"snnse: compiled streaming step unavailable, using the PyTorch plan ({e})", stacklevel=2)
    return _state["ops"]
