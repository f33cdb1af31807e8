// snnse_step, the Spiking-S4 part (snnse.fast_s4, LIF/PLIF units): the S4D recurrences in both layouts, the
// masker on one frame (s4_masker_row) and for a batch (s4_masker_, registered as s4_masker), the whole STFT hop on
// raw pointers (s4_stft_rows, with RealFFT of real_fft.h for power-of-two frames) and as a tensor call
// (s4_stft_step_). Uses lerp and axpy_gemv of step.h.
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/fft_irfft.h>
#include <ATen/ops/fft_rfft.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/view_as_complex.h>
#include <ATen/ops/view_as_real.h>

#include "real_fft.h"
#include "step.h"

namespace snnse::step {

// One S4D channel: x <- dA x + dB u (complex, in real pairs), returns 2 Re sum C x (vectorised over the M modes;
// sums in another order than the module path). p: the channel's constants [6, M] (Re dA, Im dA, Re dB, Im dB,
// 2 Re C, -2 Im C), each a unit-stride row; the state [M, 2] (interleaved, the module path's complex layout).
// xo and xn may be the same memory (in place: each slot is read before it is written).
template <typename T> static inline T s4d_channel(const T* R p, const T* xo, T* xn, int64_t M, T u) {
  T acc = T(0);
  _Pragma("omp simd reduction(+:acc)")
  for (int64_t m = 0; m < M; ++m) {
    const T ar = p[m], ai = p[M + m], r = xo[2 * m], im = xo[2 * m + 1];
    const T nr = (ar * r - ai * im) + p[2 * M + m] * u, ni = (ar * im + ai * r) + p[3 * M + m] * u;
    xn[2 * m] = nr;
    xn[2 * m + 1] = ni;
    acc += nr * p[4 * M + m] + ni * p[5 * M + m];
  }
  return acc;
}

// A whole S4D layer, mode-major (the Hop's own layout): vectorised over the D channels, no horizontal sums.
// p: constants [6, M, D] (the six rows of s4d_channel, each [M, D]); x: the state [2, M, D] (Re rows, then Im rows),
// updated in place; u: the input [D]; y [D] = D u + 2 Re sum_m C x (summed over m in order).
template <typename T> static inline void s4d_layer_mode_major(const T* R p, T* R x, const T* R u, const T* R Dk,
                                                             T* R y, int64_t M, int64_t D) {
  for (int64_t h = 0; h < D; ++h) y[h] = T(0);
  for (int64_t m = 0; m < M; ++m) {
    const T *R ar = p + m * D, *R ai = p + (M + m) * D, *R br = p + (2 * M + m) * D, *R bi = p + (3 * M + m) * D,
            *R cr = p + (4 * M + m) * D, *R ci = p + (5 * M + m) * D;
    T *R xr = x + m * D, *R xi = x + (M + m) * D;
    _Pragma("omp simd")
    for (int64_t h = 0; h < D; ++h) {
      const T r = xr[h], im = xi[h];
      const T nr = (ar[h] * r - ai[h] * im) + br[h] * u[h], ni = (ar[h] * im + ai[h] * r) + bi[h] * u[h];
      xr[h] = nr;
      xi[h] = ni;
      y[h] += nr * cr[h] + ni * ci[h];
    }
  }
  for (int64_t h = 0; h < D; ++h) y[h] += Dk[h] * u[h];
}

// Spiking-S4 masker on one frame, LIF/PLIF units: feats [F] -> mask m [F] (one batch row; the weights as data
// pointers wp in the order of w below, M: the S4D state size). Per layer: the S4D state xo -> xn (the same memory in
// the mode-major layout), the LIF membrane vo -> vn. x, y, cur: scratch [D].
template <typename T> static void s4_masker_row(const T* R feats, T* R m, const std::vector<const T*>& wp,
                                                const std::vector<double>& f, int64_t F, int64_t D, int64_t M,
                                                bool mode_major, const std::vector<const T*>& xo,
                                                const std::vector<T*>& xn, const std::vector<const T*>& vo,
                                                const std::vector<T*>& vn, T* R x, T* R y, T* R cur) {
  const int64_t n_layers = static_cast<int64_t>(xo.size()), M2 = 2 * M;
  axpy_gemv<T>(feats, F, wp[0], D, wp[1], x);
  for (int64_t l = 0; l < n_layers; ++l) {
    const T* const* wl = &wp[2 + 7 * l];
    // S4D: x <- dA x + dB u; y = 2 Re sum C x + D u
    if (mode_major) {
      s4d_layer_mode_major<T>(wl[0], xn[l], x, wl[1], y, M, D);
    } else {
      for (int64_t h = 0; h < D; ++h)
        y[h] = s4d_channel<T>(wl[0] + h * 6 * M, xo[l] + h * M2, xn[l] + h * M2, M, x[h]) + wl[1][h] * x[h];
    }
    axpy_gemv<T>(y, D, wl[2], D, wl[3], cur);
    const T k = *wl[4], v_th = static_cast<T>(f[2 * l]);
    const T* R v_o = vo[l];
    T* R v_n = vn[l];
    double mean = 0, var = 0;
    for (int64_t h = 0; h < D; ++h) {  // LIF (hard reset to 0), residual
      const T v = lerp(v_o[h], cur[h], k);
      const bool fired = v >= v_th;
      v_n[h] = fired ? T(0) : v;
      x[h] += fired ? T(1) : T(0);
      mean += x[h];
    }
    mean /= D;
    for (int64_t h = 0; h < D; ++h) var += (x[h] - mean) * (x[h] - mean);
    const T rstd = static_cast<T>(1.0 / std::sqrt(var / D + f[2 * l + 1])), mu = static_cast<T>(mean);
    const T *R g = wl[5], *R be = wl[6];
    for (int64_t h = 0; h < D; ++h) x[h] = (x[h] - mu) * rstd * g[h] + be[h];
  }
  const int64_t last = 2 + 7 * n_layers;
  axpy_gemv<T>(x, D, wp[last], F, wp[last + 1], m);
  for (int64_t i = 0; i < F; ++i) m[i] = m[i] > T(0) ? m[i] : T(0);
}

// The masker for a batch [B,F] -> mask [B,F], the weights and the state as tensors:
// w: enc_w [F,D], enc_b [D] (input offset folded in), per layer: s4d [D,6,M] (see s4d_channel), Dskip [D],
//    em_w [D,D], em_b [D], k [], ln_g [D], ln_b [D]; then dec_w [D,F], dec_b [F] (+1 folded)
// f: per layer v_th, ln_eps.  s: per layer x [B,D,M] complex, v [B,D].
// mode_major: per layer s4d [6,M,D] and x real [B,2,M,D], updated in place (see s4d_layer_mode_major).
// returns: mask [B,F], then the new state in the order of s.
// stft: feats_ is the complex spectrum [B,F]; the features are sqrt(re² + im² + eps) and the first result is
// the masked spectrum (complex [B,F]) instead of the mask.
static std::vector<Tensor> s4_masker_(const Tensor& input, std::vector<Tensor> w, std::vector<double> f,
                                      std::vector<Tensor> s, bool stft, double eps, bool inplace,
                                      bool mode_major = false) {
  const int64_t n_layers = (static_cast<int64_t>(w.size()) - 4) / 7;
  TORCH_CHECK(n_layers >= 1 && static_cast<int64_t>(w.size()) == 4 + 7 * n_layers &&
              static_cast<int64_t>(s.size()) == 2 * n_layers, "s4_masker: bad argument lists");
  Tensor spec = stft ? at::view_as_real(input).contiguous() : Tensor();
  Tensor feats = stft ? at::empty({input.size(0), input.size(1)}, spec.options()) : input.contiguous();
  const int64_t B = feats.size(0), F = feats.size(1), D = w[0].size(1);
  const int64_t M = mode_major ? w[2].size(1) : w[2].size(2);
  for (auto& t : w) t = t.contiguous();
  std::vector<Tensor> out{at::empty({B, F}, feats.options())}, xr(n_layers);
  for (int64_t l = 0; l < n_layers; ++l) {
    xr[l] = mode_major ? s[2 * l].contiguous() : at::view_as_real(s[2 * l]).contiguous();
    s[2 * l + 1] = s[2 * l + 1].contiguous();
    out.push_back(inplace ? xr[l] : at::empty_like(xr[l]));  // the recurrences read each slot before writing it
    out.push_back(inplace ? s[2 * l + 1] : at::empty({B, D}, feats.options()));
  }
  TORCH_CHECK(!mode_major || inplace, "s4_masker: the mode-major layout is in place only");
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "s4_masker", [&] {
    using T = scalar_t;
    auto P = [&](const Tensor& t) { return t.data_ptr<T>(); };
    std::vector<const T*> wp, xo(n_layers), vo(n_layers);
    std::vector<T*> xn(n_layers), vn(n_layers);
    for (const auto& t : w) wp.push_back(P(t));
    std::vector<T> x(D), y(D), cur(D);
    for (int64_t b = 0; b < B; ++b) {
      if (stft) {
        const T* R z = P(spec) + b * 2 * F;
        T* R mag = P(feats) + b * F;
        for (int64_t i = 0; i < F; ++i) mag[i] = std::sqrt(z[2 * i] * z[2 * i] + z[2 * i + 1] * z[2 * i + 1] + T(eps));
      }
      for (int64_t l = 0; l < n_layers; ++l) {
        xo[l] = P(xr[l]) + b * D * 2 * M;
        xn[l] = P(out[1 + 2 * l]) + b * D * 2 * M;
        vo[l] = P(s[2 * l + 1]) + b * D;
        vn[l] = P(out[2 + 2 * l]) + b * D;
      }
      s4_masker_row<T>(P(feats) + b * F, P(out[0]) + b * F, wp, f, F, D, M, mode_major, xo, xn, vo, vn, x.data(),
                       y.data(), cur.data());
    }
  });
  if (!mode_major)
    for (int64_t l = 0; l < n_layers; ++l) out[1 + 2 * l] = at::view_as_complex(out[1 + 2 * l]);
  if (stft) {  // masked spectrum = spectrum · mask
    Tensor masked = at::empty_like(spec);
    AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "s4_masker_stft", [&] {
      using T = scalar_t;
      const T *z = spec.data_ptr<T>(), *m = out[0].data_ptr<T>();
      T* o = masked.data_ptr<T>();
      for (int64_t i = 0; i < B * F; ++i) { o[2 * i] = z[2 * i] * m[i]; o[2 * i + 1] = z[2 * i + 1] * m[i]; }
    });
    out[0] = at::view_as_complex(masked);
  }
  return out;
}

std::vector<Tensor> s4_masker(const Tensor& input, std::vector<Tensor> w, std::vector<double> f,
                              std::vector<Tensor> s, bool stft, double eps) {
  return s4_masker_(input, std::move(w), std::move(f), std::move(s), stft, eps, false);
}

static const RealFFT& real_fft(int64_t n) {
  static thread_local std::vector<std::unique_ptr<RealFFT>> cache;
  for (const auto& p : cache)
    if (p->n == n) return *p;
  cache.push_back(std::make_unique<RealFFT>(n));
  return *cache.back();
}

// Spiking-S4 hops with the STFT front-end on raw pointers, for a power-of-two frame length L = hop + ov: per batch
// row, frame [history, x] (times the window unless rectangular), rfft, magnitude, the masker (s4_masker_row),
// masking, irfft times the synthesis window, overlap-add. The new history, pending samples and masker state go to
// hn, pn, xn, vn, which may be ho, po, xo, vo (in place: every value is read before it is written; the mode-major
// layout is in place only). xo ... vn: per layer, batch row 0 (row strides 2 M D and D). scratch: 3 L + 4 F + 3 D.
template <typename T> void s4_stft_rows(const T* R xin, T* R out, int64_t B, int64_t hop, int64_t ov,
                                        const T* ho, T* hn, const T* po, T* pn, const T* R win, const T* R sw,
                                        double eps, const std::vector<const T*>& wp, const std::vector<double>& f,
                                        int64_t D, int64_t M, bool mode_major, const std::vector<const T*>& xo,
                                        const std::vector<T*>& xn, const std::vector<const T*>& vo,
                                        const std::vector<T*>& vn, T* R scratch) {
  const int64_t L = hop + ov, F = L / 2 + 1, n_layers = static_cast<int64_t>(xo.size());
  const RealFFT& fft = real_fft(L);
  T *R frame = scratch, *R work = frame + L, *R yl = work + L, *R spec = yl + L, *R feats = spec + 2 * F,
    *R m = feats + F, *R x = m + F, *R y = x + D, *R cur = y + D;
  std::vector<const T*> xo_b(n_layers), vo_b(n_layers);
  std::vector<T*> xn_b(n_layers), vn_b(n_layers);
  for (int64_t b = 0; b < B; ++b) {
    const T* hb = ho + b * ov;
    for (int64_t i = 0; i < ov; ++i) frame[i] = hb[i];
    for (int64_t i = 0; i < hop; ++i) frame[ov + i] = xin[b * hop + i];
    for (int64_t i = 0; i < ov; ++i) hn[b * ov + i] = frame[hop + i];  // the new history: the frame's last ov samples
    if (win)
      for (int64_t i = 0; i < L; ++i) frame[i] *= win[i];
    fft.rfft<T>(frame, spec, work);
    for (int64_t i = 0; i < F; ++i)
      feats[i] = std::sqrt(spec[2 * i] * spec[2 * i] + spec[2 * i + 1] * spec[2 * i + 1] + T(eps));
    for (int64_t l = 0; l < n_layers; ++l) {
      xo_b[l] = xo[l] + b * 2 * M * D;
      xn_b[l] = xn[l] + b * 2 * M * D;
      vo_b[l] = vo[l] + b * D;
      vn_b[l] = vn[l] + b * D;
    }
    s4_masker_row<T>(feats, m, wp, f, F, D, M, mode_major, xo_b, xn_b, vo_b, vn_b, x, y, cur);
    for (int64_t i = 0; i < F; ++i) { spec[2 * i] *= m[i]; spec[2 * i + 1] *= m[i]; }
    fft.irfft<T>(spec, yl, work);
    const T* pb = po + b * ov;
    T *o = out + b * hop, *pnb = pn + b * ov;
    for (int64_t i = 0; i < L; ++i) {  // pending[i] is read (i < ov) before pending[i - hop] is written
      T v = yl[i] * sw[i];
      if (i < ov) v += pb[i];
      if (i < hop) o[i] = v; else pnb[i - hop] = v;
    }
  }
}

// the instantiations step_ops.cpp's Hop calls
template void s4_stft_rows<float>(const float* R, float* R, int64_t, int64_t, int64_t, const float*, float*,
                                  const float*, float*, const float* R, const float* R, double,
                                  const std::vector<const float*>&, const std::vector<double>&, int64_t, int64_t,
                                  bool, const std::vector<const float*>&, const std::vector<float*>&,
                                  const std::vector<const float*>&, const std::vector<float*>&, float* R);
template void s4_stft_rows<double>(const double* R, double* R, int64_t, int64_t, int64_t, const double*, double*,
                                   const double*, double*, const double* R, const double* R, double,
                                   const std::vector<const double*>&, const std::vector<double>&, int64_t, int64_t,
                                   bool, const std::vector<const double*>&, const std::vector<double*>&,
                                   const std::vector<const double*>&, const std::vector<double*>&, double* R);

// A whole Spiking-S4 hop with the STFT front-end: frame [history, x] (times the window unless rectangular),
// rfft, the masker above (magnitude and masking inside), irfft times the synthesis window, overlap-add; with
// s4_stft_rows for a power-of-two frame length, else with at::fft_rfft/irfft.
// returns: out [B,hop], history [B,ov], pending [B,ov], then the masker state in the order of s
std::vector<Tensor> s4_stft_step_(const Tensor& x, const Tensor& hist, const Tensor& pending,
                                 const std::optional<Tensor>& window, const Tensor& synth, std::vector<Tensor> w,
                                 std::vector<double> f, std::vector<Tensor> s, double eps,
                                 bool inplace, bool mode_major) {
  const int64_t B = x.size(0), hop = x.size(1), ov = hist.size(1), L = hop + ov;
  if (RealFFT::usable(L) && ov < L) {  // raw pointers and the own FFT (s4_stft_rows)
    const int64_t n_layers = (static_cast<int64_t>(w.size()) - 4) / 7, F = L / 2 + 1, D = w[0].size(1);
    TORCH_CHECK(n_layers >= 1 && static_cast<int64_t>(w.size()) == 4 + 7 * n_layers &&
                static_cast<int64_t>(s.size()) == 2 * n_layers && w[0].size(0) == F, "s4_stft_step: bad arguments");
    TORCH_CHECK(!mode_major || inplace, "s4_stft_step: the mode-major layout is in place only");
    const int64_t M = mode_major ? w[2].size(1) : w[2].size(2);
    for (auto& t : w) t = t.contiguous();
    const Tensor xc = x.contiguous(), hc = hist.contiguous(), pc = pending.contiguous(), sc = synth.contiguous();
    const Tensor wc = window.has_value() && window->defined() ? window->contiguous() : Tensor();
    std::vector<Tensor> out{at::empty({B, hop}, x.options()), inplace ? hc : at::empty({B, ov}, x.options()),
                            inplace ? pc : at::empty({B, ov}, x.options())}, xr(n_layers), vr(n_layers);
    for (int64_t l = 0; l < n_layers; ++l) {
      xr[l] = mode_major ? s[2 * l].contiguous() : at::view_as_real(s[2 * l]).contiguous();
      vr[l] = s[2 * l + 1].contiguous();
      out.push_back(inplace ? xr[l] : at::empty_like(xr[l]));
      out.push_back(inplace ? vr[l] : at::empty_like(vr[l]));
    }
    Tensor scratch = at::empty({3 * L + 4 * F + 3 * D}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "s4_stft_step", [&] {
      using T = scalar_t;
      std::vector<const T*> wp, xo, vo;
      std::vector<T*> xn, vn;
      for (const auto& t : w) wp.push_back(t.data_ptr<T>());
      for (int64_t l = 0; l < n_layers; ++l) {
        xo.push_back(xr[l].data_ptr<T>());
        vo.push_back(vr[l].data_ptr<T>());
        xn.push_back(out[3 + 2 * l].data_ptr<T>());
        vn.push_back(out[4 + 2 * l].data_ptr<T>());
      }
      s4_stft_rows<T>(xc.data_ptr<T>(), out[0].data_ptr<T>(), B, hop, ov, hc.data_ptr<T>(), out[1].data_ptr<T>(),
                      pc.data_ptr<T>(), out[2].data_ptr<T>(), wc.defined() ? wc.data_ptr<T>() : nullptr,
                      sc.data_ptr<T>(), eps, wp, f, D, M, mode_major, xo, xn, vo, vn, scratch.data_ptr<T>());
    });
    if (!mode_major)
      for (int64_t l = 0; l < n_layers; ++l) out[3 + 2 * l] = at::view_as_complex(out[3 + 2 * l]);
    return out;
  }
  Tensor buf = at::cat({hist, x}, 1);
  Tensor spec = at::fft_rfft(window.has_value() && window->defined() ? at::mul(buf, *window) : buf);
  std::vector<Tensor> r = s4_masker_(spec, std::move(w), std::move(f), std::move(s), true, eps, inplace, mode_major);
  Tensor y = at::fft_irfft(r[0], L).contiguous();
  Tensor pend = pending.contiguous(), synth_c = synth.contiguous();
  // in place: pending[i] is read (i < ov) before pending[i - hop] is written; history comes from buf
  std::vector<Tensor> out{at::empty({B, hop}, x.options()), inplace ? hist : at::empty({B, ov}, x.options()),
                          inplace ? pend : at::empty({B, ov}, x.options())};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "s4_stft_step", [&] {
    using T = scalar_t;
    const T *yp = y.data_ptr<T>(), *pp = pend.data_ptr<T>(), *bp = buf.data_ptr<T>(), *sw = synth_c.data_ptr<T>();
    T *o = out[0].data_ptr<T>(), *hn = out[1].data_ptr<T>(), *pn = out[2].data_ptr<T>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < L; ++i) {
        T v = yp[b * L + i] * sw[i];
        if (i < ov) v += pp[b * ov + i];
        if (i < hop) o[b * hop + i] = v; else pn[b * ov + i - hop] = v;
        if (i >= hop) hn[b * ov + i - hop] = bp[b * L + i];
      }
  });
  for (size_t i = 1; i < r.size(); ++i) out.push_back(r[i]);
  return out;
}

}  // namespace snnse::step
