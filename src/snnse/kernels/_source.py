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
#include <torch/library.h>
#include <cmath>
#include <optional>
#include <tuple>

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
  // running state, one contiguous [B, C] block each (like the tensors of the PyTorch loop)
  Tensor v = v0_.contiguous().clone(), eta = eta0_.contiguous().clone(), s = s0_.contiguous().clone();
  Tensor y = rec ? y0->contiguous().clone() : Tensor();
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "alif_forward", [&] {
    const scalar_t* ap = alpha.data_ptr<scalar_t>();
    const scalar_t* rp = rho.data_ptr<scalar_t>();
    const scalar_t bb = static_cast<scalar_t>(beta), b00 = static_cast<scalar_t>(b0);
    scalar_t* vp = v.data_ptr<scalar_t>();
    scalar_t* ep = eta.data_ptr<scalar_t>();
    scalar_t* sp = s.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      Tensor cur;
      if (rec) {
        cur = at::addmm(c.select(1, t), y, Wt);  // the same call as the PyTorch loop
        I.select(1, t).copy_(cur);
      }
      const scalar_t* ip = rec ? cur.data_ptr<scalar_t>() : nullptr;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t o = (b * T + t) * C, r = b * C;
        const scalar_t* it = rec ? ip + r : c.data_ptr<scalar_t>() + o;
        scalar_t* vt = V.data_ptr<scalar_t>() + o;
        scalar_t* et = E.data_ptr<scalar_t>() + o;
        scalar_t* st = S.data_ptr<scalar_t>() + o;
        for (int64_t ch = 0; ch < C; ++ch) {
          const scalar_t spv = sp[r + ch];
          const scalar_t e = lerp_(spv, ep[r + ch], rp[ch]);
          const scalar_t th = e * bb + b00;
          const scalar_t vv = lerp_(it[ch], vp[r + ch], ap[ch]) - th * spv;
          const scalar_t sv = vv >= th ? scalar_t(1) : scalar_t(0);
          et[ch] = ep[r + ch] = e;
          vt[ch] = vp[r + ch] = vv;
          st[ch] = sp[r + ch] = sv;
        }
      }
      if (rec) y.copy_(s);
    }
  });
  return {V, E, I, S};
}

static std::tuple<Tensor, Tensor> alif_backward(
    const Tensor& gS_, const Tensor& SG_, const Tensor& TH_, const Tensor& S_, const Tensor& s0_,
    const Tensor& alpha_, const Tensor& rho_, double beta, const std::optional<Tensor>& Wp, bool detach_reset,
    const Tensor& gvT_, const Tensor& geT_) {
  Tensor gS = gS_.contiguous(), SG = SG_.contiguous(), TH = TH_.contiguous(), S = S_.contiguous();
  Tensor s0 = s0_.contiguous(), alpha = alpha_.contiguous(), rho = rho_.contiguous();
  Tensor gvT = gvT_.contiguous(), geT = geT_.contiguous();
  const bool rec = Wp.has_value() && Wp->defined();
  const int64_t B = gS.size(0), T = gS.size(1), C = gS.size(2);
  Tensor GV = at::empty_like(gS), GE = at::empty_like(gS);
  Tensor gs = at::empty({B, C}, gS.options()), gv1 = at::empty({B, C}, gS.options());
  AT_DISPATCH_FLOATING_TYPES(gS.scalar_type(), "alif_backward", [&] {
    const scalar_t* ap = alpha.data_ptr<scalar_t>();
    const scalar_t* rp = rho.data_ptr<scalar_t>();
    const scalar_t bb = static_cast<scalar_t>(beta);
    scalar_t* gsp = gs.data_ptr<scalar_t>();
    scalar_t* gvp = gv1.data_ptr<scalar_t>();  // dL/dv of step t+1, contiguous for the product
    for (int64_t t = T - 1; t >= 0; --t) {
      const bool last = t == T - 1;
      for (int64_t b = 0; b < B; ++b) {  // gradient on s_t through step t+1: η, reset
        const int64_t o = (b * T + t) * C, r = b * C;
        const scalar_t* gst = gS.data_ptr<scalar_t>() + o;
        if (last) {
          for (int64_t ch = 0; ch < C; ++ch) gsp[r + ch] = gst[ch];
        } else {
          const scalar_t* ge1 = GE.data_ptr<scalar_t>() + o + C;
          const scalar_t* th1 = TH.data_ptr<scalar_t>() + o + C;
          for (int64_t ch = 0; ch < C; ++ch) {
            scalar_t g = gst[ch] + (scalar_t(1) - rp[ch]) * ge1[ch];
            if (!detach_reset) g -= th1[ch] * gvp[r + ch];
            gsp[r + ch] = g;
          }
        }
      }
      if (rec && !last) gs.addmm_(gv1, *Wp);  // ... and the recurrent current
      for (int64_t b = 0; b < B; ++b) {
        const int64_t o = (b * T + t) * C, r = b * C;
        const scalar_t* sgt = SG.data_ptr<scalar_t>() + o;
        const scalar_t* spt = t ? S.data_ptr<scalar_t>() + o - C : s0.data_ptr<scalar_t>() + r;
        const scalar_t* ge1 = last ? geT.data_ptr<scalar_t>() + r : GE.data_ptr<scalar_t>() + o + C;
        const scalar_t* gvT_r = gvT.data_ptr<scalar_t>() + r;
        scalar_t* gvt = GV.data_ptr<scalar_t>() + o;
        scalar_t* gep = GE.data_ptr<scalar_t>() + o;
        for (int64_t ch = 0; ch < C; ++ch) {
          const scalar_t gz = gsp[r + ch] * sgt[ch];
          const scalar_t gv = last ? gz + gvT_r[ch] : gz + ap[ch] * gvp[r + ch];
          const scalar_t ge0 = last ? ge1[ch] : rp[ch] * ge1[ch];
          gvt[ch] = gvp[r + ch] = gv;
          gep[ch] = ge0 - bb * gz - bb * gv * spt[ch];
        }
      }
    }
  });
  return {GV, GE};
}

TORCH_LIBRARY(snnse_fused, m) {
  m.def("lif_forward(Tensor x, Tensor v0, Tensor k, bool decay_input, bool soft, float v_reset, float v_th)"
        " -> (Tensor, Tensor, Tensor)", &lif_forward);
  m.def("linear_scan(Tensor m, Tensor q, Tensor g_last) -> Tensor", &linear_scan);
  m.def("leaky_forward(Tensor x, Tensor u0, Tensor beta) -> Tensor", &leaky_forward);
  m.def("alif_forward(Tensor c, Tensor? W, Tensor alpha, Tensor rho, float b0, float beta, Tensor v0,"
        " Tensor eta0, Tensor s0, Tensor? y0) -> (Tensor, Tensor, Tensor, Tensor)", &alif_forward);
  m.def("alif_backward(Tensor gS, Tensor SG, Tensor TH, Tensor S, Tensor s0, Tensor alpha, Tensor rho, float beta,"
        " Tensor? Wp, bool detach_reset, Tensor gvT, Tensor geT) -> (Tensor, Tensor)", &alif_backward);
}
"""
