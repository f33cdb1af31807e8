"""C++ source of the fused neuron loops (see :mod:`snnse.kernels` and :mod:`snnse.fused`).

Same functions, arguments and results as :class:`snnse.fused.TorchLoops`, on ``[B, T, C]``
CPU tensors (float32/float64). The forward loops reproduce PyTorch's arithmetic
exactly — ``torch.lerp`` is ``fma(w, b − a, a)`` for ``|w| < 0.5`` and ``fma(w − 1, b − a, b)``
otherwise, every other operation rounds once — so they are compiled with ``-ffp-contract=off``
and the spikes and membranes are bit-identical to the PyTorch loops (checked when loading).
The matrix products of the recurrent ALIF are ATen calls (the same ``addmm`` as PyTorch).
"""

SOURCE = r"""
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

using at::Tensor;

template <typename T>
static inline T lerp_(T a, T b, T w) {  // bit-identical to torch.lerp on CPU
  return std::abs(w) < T(0.5) ? std::fma(w, b - a, a) : std::fma(w - T(1), b - a, b);
}

// All sequences are [B, T, C] (contiguous); element (b, t, c) is at (b * T + t) * C + c.

static std::tuple<Tensor, Tensor, Tensor> lif_forward(const Tensor& x_, const Tensor& v0_, const Tensor& k_,
                                                      bool decay_input, bool soft, double v_reset, double v_th) {
  Tensor x = x_.contiguous();
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  Tensor H = at::empty_like(x), M = at::empty(x.sizes(), x.options().dtype(at::kBool));
  Tensor vT = v0_.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lif_forward", [&] {
    const scalar_t k = k_.item<scalar_t>(), omk = scalar_t(1) - k;
    const scalar_t vr = static_cast<scalar_t>(v_reset), th = static_cast<scalar_t>(v_th);
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* hp = H.data_ptr<scalar_t>();
    bool* mp = M.data_ptr<bool>();
    for (int64_t b = 0; b < B; ++b) {  // the batch rows are independent: one row at a time
      scalar_t* v = vT.data_ptr<scalar_t>() + b * C;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t o = (b * T + t) * C;
        const scalar_t* xt = xp + o;
        scalar_t* ht = hp + o;
        bool* mt = mp + o;
        for (int64_t i = 0; i < C; ++i) {
          scalar_t h;
          if (decay_input) h = lerp_(v[i], xt[i], k);
          else if (v_reset != 0.0) h = lerp_(v[i], vr, k) + xt[i];
          else h = v[i] * omk + xt[i];
          const bool m = h >= th;
          ht[i] = h;
          mt[i] = m;
          v[i] = m ? (soft ? h - th : vr) : h;
        }
      }
    }
  });
  return {H, M, vT};
}

static std::tuple<Tensor, Tensor, Tensor> lif_backward(
    const Tensor& gS_, const Tensor& gvT_, const Tensor& SG_, const Tensor& H_, const Tensor& M_, const Tensor& xin_,
    const Tensor& v0_, const Tensor& k_, bool decay_input, bool soft, double v_reset, double v_th,
    bool detach_reset, bool need_k) {
  Tensor gS = gS_.contiguous(), SG = SG_.contiguous(), H = H_.contiguous(), M = M_.contiguous();
  Tensor xin = xin_.contiguous(), v0 = v0_.contiguous();
  const int64_t B = H.size(0), T = H.size(1), C = H.size(2);
  Tensor gx = at::empty_like(H), G = gvT_.contiguous().clone();
  double gk = 0.0;
  AT_DISPATCH_FLOATING_TYPES(H.scalar_type(), "lif_backward", [&] {
    const scalar_t k = k_.item<scalar_t>(), omk = scalar_t(1) - k;
    const scalar_t vr = static_cast<scalar_t>(v_reset), th = static_cast<scalar_t>(v_th);
    const scalar_t *gsp = gS.data_ptr<scalar_t>(), *sgp = SG.data_ptr<scalar_t>(), *hp = H.data_ptr<scalar_t>();
    const scalar_t *xp = xin.data_ptr<scalar_t>(), *v0p = v0.data_ptr<scalar_t>();
    const bool* mp = M.data_ptr<bool>();
    scalar_t* gxp = gx.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b) {
      scalar_t* g = G.data_ptr<scalar_t>() + b * C;  // dL/dv after step t
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t o = (b * T + t) * C;
        scalar_t acc = 0;
        for (int64_t i = 0; i < C; ++i) {
          const scalar_t sg = sgp[o + i], h = hp[o + i];
          scalar_t fac;  // dv/dh + [not detached] dv/ds · ds/dh
          if (soft) fac = detach_reset ? scalar_t(1) : scalar_t(1) - th * sg;
          else fac = (mp[o + i] ? scalar_t(0) : scalar_t(1)) - (detach_reset ? scalar_t(0) : (h - vr) * sg);
          const scalar_t gh = g[i] * fac + gsp[o + i] * sg;  // dL/dh
          gxp[o + i] = decay_input ? gh * k : gh;
          if (need_k) {
            scalar_t vp;
            if (t == 0) vp = v0p[b * C + i];
            else vp = mp[o - C + i] ? (soft ? hp[o - C + i] - th : vr) : hp[o - C + i];
            acc += gh * (decay_input ? xp[o + i] - vp : vr - vp);
          }
          g[i] = gh * omk;
        }
        gk += acc;
      }
    }
  });
  return {gx, G, at::scalar_tensor(gk, H.options())};
}

static Tensor linear_scan(const Tensor& m_, const Tensor& q_, const Tensor& g_) {
  Tensor q = q_.contiguous(), m = m_.contiguous();
  const int64_t B = q.size(0), T = q.size(1), C = q.size(2);
  Tensor G = at::empty({B, T + 1, C}, q.options());
  G.select(1, T).copy_(g_);
  const int64_t mn = m.numel();  // 1 (scalar), C (per channel) or B*T*C (per step)
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "linear_scan", [&] {
    const scalar_t* qp = q.data_ptr<scalar_t>();
    const scalar_t* mp = m.data_ptr<scalar_t>();
    scalar_t* gp = G.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t o = (b * T + t) * C;
        const scalar_t* qt = qp + o;
        const scalar_t* g1 = gp + (b * (T + 1) + t + 1) * C;
        scalar_t* g0 = gp + (b * (T + 1) + t) * C;
        if (mn == 1) {
          const scalar_t mm = mp[0];
          for (int64_t i = 0; i < C; ++i) g0[i] = mm * g1[i] + qt[i];
        } else {
          const scalar_t* mt = mn == C ? mp : mp + o;
          for (int64_t i = 0; i < C; ++i) g0[i] = mt[i] * g1[i] + qt[i];
        }
      }
  });
  return G;
}

static Tensor leaky_forward(const Tensor& x_, const Tensor& u0_, const Tensor& beta_) {
  Tensor x = x_.contiguous(), u0 = u0_.contiguous(), beta = beta_.contiguous();
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  Tensor U = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "leaky_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* bp = beta.data_ptr<scalar_t>();
    scalar_t* up = U.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b) {
      const scalar_t* prev = u0.data_ptr<scalar_t>() + b * C;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t o = (b * T + t) * C;
        for (int64_t i = 0; i < C; ++i) up[o + i] = lerp_(xp[o + i], prev[i], bp[i]);
        prev = up + o;
      }
    }
  });
  return U;
}

static std::tuple<Tensor, Tensor, Tensor, Tensor> alif_forward(
    const Tensor& c_, const std::optional<Tensor>& W, const Tensor& alpha_, const Tensor& rho_, double b0,
    double beta, const Tensor& v0_, const Tensor& eta0_, const Tensor& s0_, const std::optional<Tensor>& y0) {
  Tensor c = c_.contiguous(), alpha = alpha_.contiguous(), rho = rho_.contiguous();
  const bool rec = W.has_value() && W->defined();
  const int64_t B = c.size(0), T = c.size(1), C = c.size(2);
  Tensor V = at::empty_like(c), E = at::empty_like(c), S = at::empty_like(c);
  Tensor I = rec ? at::empty_like(c) : c;
  Tensor Wt = rec ? W->t() : Tensor();
  // the running state, one contiguous [B, C] block each; s is also the next step's y
  Tensor v = v0_.contiguous().clone(), eta = eta0_.contiguous().clone(), s = s0_.contiguous().clone();
  Tensor y = rec ? y0->contiguous() : Tensor();
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "alif_forward", [&] {
    const scalar_t *ap = alpha.data_ptr<scalar_t>(), *rp = rho.data_ptr<scalar_t>();
    const scalar_t bb = static_cast<scalar_t>(beta), b00 = static_cast<scalar_t>(b0);
    scalar_t *vp = v.data_ptr<scalar_t>(), *ep = eta.data_ptr<scalar_t>(), *sp = s.data_ptr<scalar_t>();
    scalar_t *Vp = V.data_ptr<scalar_t>(), *Ep = E.data_ptr<scalar_t>(), *Sp = S.data_ptr<scalar_t>();
    scalar_t *Ip = I.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      Tensor cur;
      if (rec) cur = at::addmm(c.select(1, t), t == 0 ? y : s, Wt);  // the same call as the PyTorch loop
      const scalar_t* cp = rec ? cur.data_ptr<scalar_t>() : nullptr;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t o = (b * T + t) * C, r = b * C;
        const scalar_t* it = rec ? cp + r : Ip + o;
        for (int64_t ch = 0; ch < C; ++ch) {
          const scalar_t spv = sp[r + ch];
          const scalar_t e = lerp_(spv, ep[r + ch], rp[ch]);
          const scalar_t th = e * bb + b00;
          const scalar_t vv = lerp_(it[ch], vp[r + ch], ap[ch]) - th * spv;
          const scalar_t sv = vv >= th ? scalar_t(1) : scalar_t(0);
          if (rec) Ip[o + ch] = it[ch];
          Ep[o + ch] = ep[r + ch] = e;
          Vp[o + ch] = vp[r + ch] = vv;
          Sp[o + ch] = sp[r + ch] = sv;
        }
      }
    }
  });
  return {V, E, I, S};
}

static std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> alif_backward(
    const Tensor& gS_, const Tensor& gvT_, const Tensor& geT_, const Tensor& SG_, const Tensor& TH_,
    const Tensor& V_, const Tensor& E_, const Tensor& I_, const Tensor& S_, const Tensor& v0_, const Tensor& eta0_,
    const Tensor& s0_, const Tensor& alpha_, const Tensor& rho_, double beta, const std::optional<Tensor>& Wp,
    bool detach_reset) {
  Tensor gS = gS_.contiguous(), SG = SG_.contiguous(), TH = TH_.contiguous(), V = V_.contiguous();
  Tensor E = E_.contiguous(), I = I_.contiguous(), S = S_.contiguous(), v0 = v0_.contiguous();
  Tensor eta0 = eta0_.contiguous(), s0 = s0_.contiguous(), alpha = alpha_.contiguous(), rho = rho_.contiguous();
  const bool rec = Wp.has_value() && Wp->defined();
  const int64_t B = gS.size(0), T = gS.size(1), C = gS.size(2);
  Tensor GI = at::empty_like(gS), gs = at::empty({B, C}, gS.options());
  Tensor gv1 = gvT_.contiguous().clone(), ge1 = geT_.contiguous().clone();  // dL/dv, dL/dη of step t+1
  Tensor ga = at::empty({C}, gS.options()), gr = at::empty({C}, gS.options());
  Tensor gv0 = at::empty({B, C}, gS.options()), ge0 = at::empty({B, C}, gS.options());
  Tensor gs0 = at::empty({B, C}, gS.options());
  AT_DISPATCH_FLOATING_TYPES(gS.scalar_type(), "alif_backward", [&] {
    const scalar_t *ap = alpha.data_ptr<scalar_t>(), *rp = rho.data_ptr<scalar_t>();
    const scalar_t bb = static_cast<scalar_t>(beta);
    const scalar_t *gSp = gS.data_ptr<scalar_t>(), *sgp = SG.data_ptr<scalar_t>(), *thp = TH.data_ptr<scalar_t>();
    const scalar_t *Vp = V.data_ptr<scalar_t>(), *Ep = E.data_ptr<scalar_t>(), *Ip = I.data_ptr<scalar_t>();
    const scalar_t *Sp = S.data_ptr<scalar_t>(), *v0p = v0.data_ptr<scalar_t>(), *e0p = eta0.data_ptr<scalar_t>();
    const scalar_t* s0p = s0.data_ptr<scalar_t>();
    scalar_t *gsp = gs.data_ptr<scalar_t>(), *gvp = gv1.data_ptr<scalar_t>(), *gep = ge1.data_ptr<scalar_t>();
    scalar_t* GIp = GI.data_ptr<scalar_t>();
    std::vector<double> ga_acc(C, 0.0), gr_acc(C, 0.0);
    for (int64_t t = T - 1; t >= 0; --t) {
      const bool last = t == T - 1;
      for (int64_t b = 0; b < B; ++b) {  // gradient on s_t through step t+1: η, reset
        const int64_t o = (b * T + t) * C, r = b * C;
        for (int64_t ch = 0; ch < C; ++ch) {
          scalar_t g = gSp[o + ch];
          if (!last) {
            g += (scalar_t(1) - rp[ch]) * gep[r + ch];
            if (!detach_reset) g -= thp[o + C + ch] * gvp[r + ch];
          }
          gsp[r + ch] = g;
        }
      }
      if (rec && !last) gs.addmm_(gv1, *Wp);  // ... and the recurrent current
      for (int64_t b = 0; b < B; ++b) {
        const int64_t o = (b * T + t) * C, r = b * C;
        const scalar_t* vprev = t ? Vp + o - C : v0p + r;
        const scalar_t* eprev = t ? Ep + o - C : e0p + r;
        const scalar_t* sprev = t ? Sp + o - C : s0p + r;
        for (int64_t ch = 0; ch < C; ++ch) {
          const scalar_t gz = gsp[r + ch] * sgp[o + ch];
          const scalar_t gv = last ? gz + gvp[r + ch] : gz + ap[ch] * gvp[r + ch];
          const scalar_t ge = (last ? gep[r + ch] : rp[ch] * gep[r + ch]) - bb * gz - bb * gv * sprev[ch];
          GIp[o + ch] = (scalar_t(1) - ap[ch]) * gv;
          ga_acc[ch] += gv * (vprev[ch] - Ip[o + ch]);  // v = lerp(I, v', α)
          gr_acc[ch] += ge * (eprev[ch] - sprev[ch]);   // η = lerp(s', η', ρ)
          gvp[r + ch] = gv;
          gep[r + ch] = ge;
        }
      }
    }
    scalar_t *gap = ga.data_ptr<scalar_t>(), *grp = gr.data_ptr<scalar_t>();
    for (int64_t ch = 0; ch < C; ++ch) {
      gap[ch] = static_cast<scalar_t>(ga_acc[ch]);
      grp[ch] = static_cast<scalar_t>(gr_acc[ch]);
    }
    scalar_t *gv0p = gv0.data_ptr<scalar_t>(), *ge0p = ge0.data_ptr<scalar_t>(), *gs0p = gs0.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t ch = 0; ch < C; ++ch) {
        const int64_t r = b * C + ch;
        gv0p[r] = ap[ch] * gvp[r];
        ge0p[r] = rp[ch] * gep[r];
        gs0p[r] = (scalar_t(1) - rp[ch]) * gep[r] - (detach_reset ? scalar_t(0) : thp[b * T * C + ch] * gvp[r]);
      }
  });
  return {GI, ga, gr, gv0, ge0, gs0};
}

static std::tuple<Tensor, Tensor> dw_backward(const Tensor& gy_, const Tensor& xc_, const Tensor& w_) {
  Tensor gy = gy_.contiguous(), xc = xc_.contiguous(), w = w_.contiguous();
  const int64_t Bt = xc.size(0), C = xc.size(1), L = xc.size(2), H = w.size(0), K = w.size(2);
  const int64_t T = L - K + 1, m = H / C;
  Tensor gx = at::zeros_like(xc), gw = at::empty_like(w);
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "dw_backward", [&] {
    const scalar_t *gyp = gy.data_ptr<scalar_t>(), *xp = xc.data_ptr<scalar_t>(), *wp = w.data_ptr<scalar_t>();
    scalar_t* gxp = gx.data_ptr<scalar_t>();
    std::vector<double> acc(H * K, 0.0);
    for (int64_t b = 0; b < Bt; ++b)
      for (int64_t h = 0; h < H; ++h) {
        const scalar_t* g = gyp + (b * H + h) * T;
        const scalar_t* x = xp + (b * C + h / m) * L;
        scalar_t* gxr = gxp + (b * C + h / m) * L;
        for (int64_t k = 0; k < K; ++k) {  // x[t + k] feeds y[t] with weight w[k]
          const scalar_t wk = wp[h * K + k];
          scalar_t a = 0;
          _Pragma("omp simd reduction(+ : a)")
          for (int64_t t = 0; t < T; ++t) {
            gxr[t + k] += wk * g[t];
            a += g[t] * x[t + k];
          }
          acc[h * K + k] += a;
        }
      }
    scalar_t* gwp = gw.data_ptr<scalar_t>();
    for (int64_t i = 0; i < H * K; ++i) gwp[i] = static_cast<scalar_t>(acc[i]);
  });
  return {gx, gw};
}

TORCH_LIBRARY(snnse_fused, m) {
  m.def("lif_forward(Tensor x, Tensor v0, Tensor k, bool decay_input, bool soft, float v_reset, float v_th)"
        " -> (Tensor, Tensor, Tensor)", &lif_forward);
  m.def("lif_backward(Tensor gS, Tensor gvT, Tensor SG, Tensor H, Tensor M, Tensor xin, Tensor v0, Tensor k,"
        " bool decay_input, bool soft, float v_reset, float v_th, bool detach_reset, bool need_k)"
        " -> (Tensor, Tensor, Tensor)", &lif_backward);
  m.def("linear_scan(Tensor m, Tensor q, Tensor g_last) -> Tensor", &linear_scan);
  m.def("leaky_forward(Tensor x, Tensor u0, Tensor beta) -> Tensor", &leaky_forward);
  m.def("alif_forward(Tensor c, Tensor? W, Tensor alpha, Tensor rho, float b0, float beta, Tensor v0,"
        " Tensor eta0, Tensor s0, Tensor? y0) -> (Tensor, Tensor, Tensor, Tensor)", &alif_forward);
  m.def("alif_backward(Tensor gS, Tensor gvT, Tensor geT, Tensor SG, Tensor TH, Tensor V, Tensor E, Tensor I,"
        " Tensor S, Tensor v0, Tensor eta0, Tensor s0, Tensor alpha, Tensor rho, float beta, Tensor? Wp,"
        " bool detach_reset) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)", &alif_backward);
  m.def("dw_backward(Tensor gy, Tensor xc, Tensor weight) -> (Tensor, Tensor)", &dw_backward);
}
"""
