// The fused neuron loops of snnse_fused (see snnse.kernels and snnse.fused): LIF/PLIF forward and backward, the
// linear scan of the backward recurrences, the leaky integrator, ALIF (recurrent or not) forward and backward.
//
// Same functions, arguments and results as snnse.kernels.loops.TorchLoops, on [B, T, C] CPU tensors
// (float32/float64); element (b, t, c) of a contiguous sequence is at (b·T + t)·C + c. The forward loops reproduce
// PyTorch's arithmetic exactly — torch.lerp is fma(w, b − a, a) for |w| < 0.5 and fma(w − 1, b − a, b) otherwise,
// every other operation rounds once — so they are compiled with -ffp-contract=off and the spikes and membranes are
// bit-identical to the PyTorch loops (checked when loading). The matrix products of the recurrent ALIF are ATen calls
// (the same addmm as PyTorch). The inner loops run over the C channels of one batch row with __restrict pointers and
// compile-time options, so that the compiler vectorises them.
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/zeros_like.h>

#include "fused.h"

namespace snnse::fused {

template <typename F> static void with_flag(bool b, F&& f) {  // a run-time flag as a compile-time constant
  if (b) f(std::true_type{}); else f(std::false_type{});
}

// torch.lerp(a, b, w) = fma(c, b − a, small ? a : b) with c = w (small: |w| < 0.5) or w − 1
// (explicit fma, compiled with -ffp-contract=off: bit-identical to PyTorch. step.h's lerp, for the streaming
// step, leaves the contraction to the compiler: not the same arithmetic, kept apart on purpose.)
template <typename T> static inline T lerp_c(T a, T b, T c, bool small) { return std::fma(c, b - a, small ? a : b); }

template <typename T> struct LerpW {  // per-channel weights, prepared once
  std::vector<T> c;
  std::vector<T> small;  // 1 or 0 (a vector of T so that the selection vectorises)
  explicit LerpW(const Tensor& w) {
    const T* p = w.data_ptr<T>();
    for (int64_t i = 0; i < w.numel(); ++i) {
      const bool s = std::abs(p[i]) < T(0.5);
      c.push_back(s ? p[i] : p[i] - T(1));
      small.push_back(s ? T(1) : T(0));
    }
  }
};

// ---------------------------------------------------------------------------------------------- LIF
template <typename T, bool DI, bool VR0, bool SOFT>
static void lif_fwd_row(const T* R x, T* R h, uint8_t* R m, T* R v, int64_t C, T c, bool small, T omk, T vr, T th) {
  for (int64_t i = 0; i < C; ++i) {
    T hi;
    if (DI) hi = lerp_c(v[i], x[i], c, small);
    else if (!VR0) hi = lerp_c(v[i], vr, c, small) + x[i];
    else hi = v[i] * omk + x[i];
    const bool mi = hi >= th;
    h[i] = hi;
    m[i] = mi ? 1 : 0;
    v[i] = mi ? (SOFT ? hi - th : vr) : hi;
  }
}

std::tuple<Tensor, Tensor, Tensor> lif_forward(const Tensor& x_, const Tensor& v0_, const Tensor& k_,
                                               bool decay_input, bool soft, double v_reset, double v_th) {
  Tensor x = x_.contiguous();
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  Tensor H = at::empty_like(x), M = at::empty(x.sizes(), x.options().dtype(at::kBool));
  Tensor vT = v0_.contiguous().clone();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lif_forward", [&] {
    using S = scalar_t;
    const S k = k_.item<S>(), omk = S(1) - k, vr = static_cast<S>(v_reset), th = static_cast<S>(v_th);
    const bool small = std::abs(k) < S(0.5);
    const S c = small ? k : k - S(1);
    with_flag(decay_input, [&](auto DI) { with_flag(v_reset == 0.0, [&](auto VR0) { with_flag(soft, [&](auto SOFT) {
      for (int64_t b = 0; b < B; ++b)  // batch rows are independent: one row at a time
        for (int64_t t = 0; t < T; ++t) {
          const int64_t o = (b * T + t) * C;
          lif_fwd_row<S, DI.value, VR0.value, SOFT.value>(x.data_ptr<S>() + o, H.data_ptr<S>() + o,
              reinterpret_cast<uint8_t*>(M.data_ptr<bool>()) + o, vT.data_ptr<S>() + b * C, C, c, small, omk, vr, th);
        }
    }); }); });
  });
  return {H, M, vT};
}

template <typename T, bool DI, bool SOFT, bool DETACH, bool NEEDK, bool FIRST>
static T lif_bwd_row(const T* R gs, const T* R sg, const T* R h, const uint8_t* R m, const T* R x, const T* R hp,
                     const uint8_t* R mp, const T* R v0, T* R gx, T* R g, int64_t C, T k, T omk, T vr, T th) {
  T acc = 0;
  _Pragma("omp simd reduction(+ : acc)")
  for (int64_t i = 0; i < C; ++i) {
    const T s = sg[i];
    T fac;  // dv/dh + [not detached] dv/ds · ds/dh
    if (SOFT) fac = DETACH ? T(1) : T(1) - th * s;
    else fac = (m[i] != 0 ? T(0) : T(1)) - (DETACH ? T(0) : (h[i] - vr) * s);
    const T gh = g[i] * fac + gs[i] * s;  // dL/dh
    gx[i] = DI ? gh * k : gh;
    if (NEEDK) {  // the membrane before this step
      const T vp = FIRST ? v0[i] : (mp[i] != 0 ? (SOFT ? hp[i] - th : vr) : hp[i]);
      acc += gh * (DI ? x[i] - vp : vr - vp);
    }
    g[i] = gh * omk;
  }
  return acc;
}

std::tuple<Tensor, Tensor, Tensor> lif_backward(
    const Tensor& gS_, const Tensor& gvT_, const Tensor& SG_, const Tensor& H_, const Tensor& M_, const Tensor& xin_,
    const Tensor& v0_, const Tensor& k_, bool decay_input, bool soft, double v_reset, double v_th,
    bool detach_reset, bool need_k) {
  Tensor gS = gS_.contiguous(), SG = SG_.contiguous(), H = H_.contiguous(), M = M_.contiguous();
  Tensor xin = xin_.contiguous(), v0 = v0_.contiguous();
  const int64_t B = H.size(0), T = H.size(1), C = H.size(2);
  Tensor gx = at::empty_like(H), G = gvT_.contiguous().clone();  // G: dL/dv after step t, per row
  double gk = 0.0;
  AT_DISPATCH_FLOATING_TYPES(H.scalar_type(), "lif_backward", [&] {
    using S = scalar_t;
    const S k = k_.item<S>(), omk = S(1) - k, vr = static_cast<S>(v_reset), th = static_cast<S>(v_th);
    const S *gsp = gS.data_ptr<S>(), *sgp = SG.data_ptr<S>(), *hp = H.data_ptr<S>(), *xp = xin.data_ptr<S>();
    const uint8_t* mp = reinterpret_cast<const uint8_t*>(M.data_ptr<bool>());  // bool: 0/1 bytes
    with_flag(decay_input, [&](auto DI) { with_flag(soft, [&](auto SOFT) { with_flag(detach_reset, [&](auto DT) {
    with_flag(need_k, [&](auto NK) {
      for (int64_t b = 0; b < B; ++b) {
        S* g = G.data_ptr<S>() + b * C;
        const S* v0r = v0.data_ptr<S>() + b * C;
        for (int64_t t = T - 1; t >= 0; --t) {
          const int64_t o = (b * T + t) * C, p = t ? o - C : o;
          auto row = [&](auto FIRST) {
            return lif_bwd_row<S, DI.value, SOFT.value, DT.value, NK.value, FIRST.value>(
                gsp + o, sgp + o, hp + o, mp + o, xp + o, hp + p, mp + p, v0r, gx.data_ptr<S>() + o, g, C, k, omk,
                vr, th);
          };
          gk += t ? row(std::false_type{}) : row(std::true_type{});
        }
      }
    }); }); }); });
  });
  return {gx, G, at::scalar_tensor(gk, H.options())};
}

Tensor linear_scan(const Tensor& m_, const Tensor& q_, const Tensor& g_) {
  Tensor q = q_.contiguous(), m = m_.contiguous();
  const int64_t B = q.size(0), T = q.size(1), C = q.size(2);
  Tensor G = at::empty({B, T + 1, C}, q.options());
  G.select(1, T).copy_(g_);
  const int64_t mn = m.numel();  // 1 (scalar), C (per channel) or B*T*C (per step)
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "linear_scan", [&] {
    using S = scalar_t;
    const S* qp = q.data_ptr<S>();
    const S* mp = m.data_ptr<S>();
    S* gp = G.data_ptr<S>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t o = (b * T + t) * C;
        const S* R qt = qp + o;
        const S* R g1 = gp + (b * (T + 1) + t + 1) * C;
        S* R g0 = gp + (b * (T + 1) + t) * C;
        if (mn == 1) {
          const S mm = mp[0];
          for (int64_t i = 0; i < C; ++i) g0[i] = mm * g1[i] + qt[i];
        } else {
          const S* R mt = mn == C ? mp : mp + o;
          for (int64_t i = 0; i < C; ++i) g0[i] = mt[i] * g1[i] + qt[i];
        }
      }
  });
  return G;
}

// --------------------------------------------------------------------------------- leaky integrator
Tensor leaky_forward(const Tensor& x_, const Tensor& u0_, const Tensor& beta_) {
  Tensor x = x_.contiguous(), u0 = u0_.contiguous(), beta = beta_.contiguous();
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  Tensor U = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "leaky_forward", [&] {
    using S = scalar_t;
    const LerpW<S> w(beta);
    const S *cw = w.c.data(), *sw = w.small.data(), *xp = x.data_ptr<S>();
    S* up = U.data_ptr<S>();
    for (int64_t b = 0; b < B; ++b) {
      const S* prev = u0.data_ptr<S>() + b * C;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t o = (b * T + t) * C;
        const S* R xt = xp + o;
        const S* R pv = prev;
        S* R ut = up + o;
        for (int64_t i = 0; i < C; ++i) ut[i] = std::fma(cw[i], pv[i] - xt[i], sw[i] != S(0) ? xt[i] : pv[i]);
        prev = up + o;
      }
    }
  });
  return U;
}

// --------------------------------------------------------------------------------------------- ALIF
template <typename T, bool REC>
static void alif_fwd_row(const T* R it, T* R v, T* R e, T* R s, T* R Vo, T* R Eo, T* R So, T* R Io, T* R Zo,
                         const T* R ca,
                         const T* R sa, const T* R cr, const T* R sr, int64_t C, T bb, T b0) {
  for (int64_t i = 0; i < C; ++i) {
    const T sp = s[i], cur = it[i];
    const T ei = std::fma(cr[i], e[i] - sp, sr[i] != T(0) ? sp : e[i]);  // lerp(s, η, ρ)
    const T th = ei * bb + b0;
    const T vi = std::fma(ca[i], v[i] - cur, sa[i] != T(0) ? cur : v[i]) - th * sp;  // lerp(I, v, α) − θs
    const T si = vi >= th ? T(1) : T(0);
    if (REC) Io[i] = cur;
    Eo[i] = e[i] = ei;
    Vo[i] = v[i] = vi;
    So[i] = s[i] = si;
    Zo[i] = vi - th;  // where the surrogate derivative is taken
  }
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> alif_forward(
    const Tensor& c_, const std::optional<Tensor>& W, const Tensor& alpha_, const Tensor& rho_, double b0,
    double beta, const Tensor& v0_, const Tensor& eta0_, const Tensor& s0_, const std::optional<Tensor>& y0) {
  Tensor c = c_.contiguous(), alpha = alpha_.contiguous(), rho = rho_.contiguous();
  const bool rec = W.has_value() && W->defined();
  const int64_t B = c.size(0), T = c.size(1), C = c.size(2);
  Tensor V = at::empty_like(c), E = at::empty_like(c), S_ = at::empty_like(c), Z = at::empty_like(c);
  Tensor I = rec ? at::empty_like(c) : c;
  Tensor Wt = rec ? W->t() : Tensor();
  // the running state, one contiguous [B, C] block each; s is also the next step's y
  Tensor v = v0_.contiguous().clone(), eta = eta0_.contiguous().clone(), s = s0_.contiguous().clone();
  Tensor y = rec ? y0->contiguous() : Tensor();
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "alif_forward", [&] {
    using S = scalar_t;
    const LerpW<S> a(alpha), r(rho);
    const S bb = static_cast<S>(beta), b00 = static_cast<S>(b0);
    for (int64_t t = 0; t < T; ++t) {
      Tensor cur;
      if (rec) cur = at::addmm(c.select(1, t), t == 0 ? y : s, Wt);  // the same call as the PyTorch loop
      for (int64_t b = 0; b < B; ++b) {
        const int64_t o = (b * T + t) * C, rr = b * C;
        auto row = [&](auto REC) {
          alif_fwd_row<S, REC.value>(REC.value ? cur.data_ptr<S>() + rr : c.data_ptr<S>() + o, v.data_ptr<S>() + rr,
              eta.data_ptr<S>() + rr, s.data_ptr<S>() + rr, V.data_ptr<S>() + o, E.data_ptr<S>() + o,
              S_.data_ptr<S>() + o, REC.value ? I.data_ptr<S>() + o : nullptr, Z.data_ptr<S>() + o, a.c.data(),
              a.small.data(), r.c.data(), r.small.data(), C, bb, b00);
        };
        if (rec) row(std::true_type{}); else row(std::false_type{});
      }
    }
  });
  return {V, E, I, S_, Z};
}

template <typename T, bool LAST>
static void alif_bwd_row(const T* R gs, const T* R sg, const T* R vprev, const T* R eprev, const T* R sprev,
                         const T* R I, T* R gv, T* R ge, T* R GI, T* R ga, T* R gr, const T* R a, const T* R r,
                         int64_t C, T bb) {
  for (int64_t i = 0; i < C; ++i) {
    const T gz = gs[i] * sg[i];
    const T gvi = LAST ? gz + gv[i] : gz + a[i] * gv[i];
    const T gei = (LAST ? ge[i] : r[i] * ge[i]) - bb * gz - bb * gvi * sprev[i];
    GI[i] = (T(1) - a[i]) * gvi;
    ga[i] += gvi * (vprev[i] - I[i]);   // v = lerp(I, v', α)
    gr[i] += gei * (eprev[i] - sprev[i]);  // η = lerp(s', η', ρ)
    gv[i] = gvi;
    ge[i] = gei;
  }
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> alif_backward(
    const Tensor& gS_, const Tensor& gvT_, const Tensor& geT_, const Tensor& SG_, const Tensor& V_, const Tensor& E_,
    const Tensor& I_, const Tensor& S_, const Tensor& v0_, const Tensor& eta0_, const Tensor& s0_,
    const Tensor& alpha_, const Tensor& rho_, double b0, double beta, const std::optional<Tensor>& Wp,
    bool detach_reset) {
  Tensor gS = gS_.contiguous(), SG = SG_.contiguous(), V = V_.contiguous();
  Tensor E = E_.contiguous(), I = I_.contiguous(), Sq = S_.contiguous(), v0 = v0_.contiguous();
  Tensor eta0 = eta0_.contiguous(), s0 = s0_.contiguous(), alpha = alpha_.contiguous(), rho = rho_.contiguous();
  const bool rec = Wp.has_value() && Wp->defined();
  const int64_t B = gS.size(0), T = gS.size(1), C = gS.size(2);
  Tensor GI = at::empty_like(gS), gs = at::empty({B, C}, gS.options());
  Tensor gv1 = gvT_.contiguous().clone(), ge1 = geT_.contiguous().clone();  // dL/dv, dL/dη of step t+1
  Tensor ga = at::zeros_like(alpha), gr = at::zeros_like(rho);
  Tensor gv0 = at::empty({B, C}, gS.options()), ge0 = at::empty({B, C}, gS.options());
  Tensor gs0 = at::empty({B, C}, gS.options());
  AT_DISPATCH_FLOATING_TYPES(gS.scalar_type(), "alif_backward", [&] {
    using S = scalar_t;
    const S *ap = alpha.data_ptr<S>(), *rp = rho.data_ptr<S>(), bb = static_cast<S>(beta), b00 = static_cast<S>(b0);
    const S *gSp = gS.data_ptr<S>(), *Ep = E.data_ptr<S>(), *Sp = Sq.data_ptr<S>();
    S *gsp = gs.data_ptr<S>(), *gvp = gv1.data_ptr<S>(), *gep = ge1.data_ptr<S>();
    std::vector<S> omr(C);
    for (int64_t i = 0; i < C; ++i) omr[i] = S(1) - rp[i];
    for (int64_t t = T - 1; t >= 0; --t) {
      const bool last = t == T - 1;
      for (int64_t b = 0; b < B; ++b) {  // gradient on s_t through step t+1: η, reset
        const int64_t o = (b * T + t) * C, rr = b * C;
        const S* R g0 = gSp + o;
        S* R g = gsp + rr;
        const S* R ge = gep + rr;
        const S* R gv = gvp + rr;
        const S* R e1 = Ep + o + C;  // θ_{t+1} = β η_{t+1} + b0, as in the forward
        const S* R om = omr.data();
        if (last) for (int64_t i = 0; i < C; ++i) g[i] = g0[i];
        else if (detach_reset) for (int64_t i = 0; i < C; ++i) g[i] = g0[i] + om[i] * ge[i];
        else for (int64_t i = 0; i < C; ++i) g[i] = g0[i] + om[i] * ge[i] - (e1[i] * bb + b00) * gv[i];
      }
      if (rec && !last) gs.addmm_(gv1, *Wp);  // ... and the recurrent current
      for (int64_t b = 0; b < B; ++b) {
        const int64_t o = (b * T + t) * C, rr = b * C;
        const S* vprev = t ? V.data_ptr<S>() + o - C : v0.data_ptr<S>() + rr;
        const S* eprev = t ? E.data_ptr<S>() + o - C : eta0.data_ptr<S>() + rr;
        const S* sprev = t ? Sp + o - C : s0.data_ptr<S>() + rr;
        auto row = [&](auto LAST) {
          alif_bwd_row<S, LAST.value>(gsp + rr, SG.data_ptr<S>() + o, vprev, eprev, sprev, I.data_ptr<S>() + o,
                                      gvp + rr, gep + rr, GI.data_ptr<S>() + o, ga.data_ptr<S>(), gr.data_ptr<S>(),
                                      ap, rp, C, bb);
        };
        if (last) row(std::true_type{}); else row(std::false_type{});
      }
    }
    S *gv0p = gv0.data_ptr<S>(), *ge0p = ge0.data_ptr<S>(), *gs0p = gs0.data_ptr<S>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < C; ++i) {
        const int64_t j = b * C + i;
        gv0p[j] = ap[i] * gvp[j];
        ge0p[j] = rp[i] * gep[j];
        gs0p[j] = omr[i] * gep[j] - (detach_reset ? S(0) : (Ep[b * T * C + i] * bb + b00) * gvp[j]);
      }
  });
  return {GI, ga, gr, gv0, ge0, gs0};
}

}  // namespace snnse::fused
