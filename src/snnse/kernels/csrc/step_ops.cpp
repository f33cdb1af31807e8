// snnse_step: the causal level control (snnse.agc) for one chunk, fused around a model's step or as its own call;
// the registered steps torch.ops.snnse_step.{dpsnn_step, s4_stft_step, level_step, s4_masker}; and the Hop class
// (torch.classes.snnse_step.Hop, snnse.streaming) that runs one stream's hops with its weights and state kept here.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/view_as_complex.h>
#include <ATen/ops/view_as_real.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include "real_fft.h"
#include "step.h"

namespace snnse::step {

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

}  // namespace snnse::step

using namespace snnse::step;

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
