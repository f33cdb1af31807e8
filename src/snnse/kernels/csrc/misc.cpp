// snnse_fused, besides the neuron loops: the backward of DPSNN's depthwise convolution (dw_backward) and the
// derivatives of the built-in surrogates (surrogate_grad), one pass each.
//
// The surrogate derivatives use their own exp (Cody–Waite reduction, polynomial, 2^n by integer arithmetic; ~1 ulp)
// so that the compiler vectorises the loop: one pass over memory instead of the dozen temporaries of the PyTorch
// formula.
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>

#include "fused.h"

namespace snnse::fused {

// ------------------------------------------------------------------------- depthwise convolution
std::tuple<Tensor, Tensor> dw_backward(const Tensor& gy_, const Tensor& xc_, const Tensor& w_) {
  Tensor gy = gy_.contiguous(), xc = xc_.contiguous(), w = w_.contiguous();
  const int64_t Bt = xc.size(0), C = xc.size(1), L = xc.size(2), H = w.size(0), K = w.size(2);
  const int64_t T = L - K + 1, m = H / C;
  Tensor gx = at::zeros_like(xc), gw = at::empty_like(w);
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "dw_backward", [&] {
    using S = scalar_t;
    const S *gyp = gy.data_ptr<S>(), *xp = xc.data_ptr<S>(), *wp = w.data_ptr<S>();
    S* gxp = gx.data_ptr<S>();
    std::vector<double> acc(H * K, 0.0);
    for (int64_t b = 0; b < Bt; ++b)
      for (int64_t h = 0; h < H; ++h) {
        const S* R g = gyp + (b * H + h) * T;
        const S* R x = xp + (b * C + h / m) * L;
        S* R gxr = gxp + (b * C + h / m) * L;
        for (int64_t k = 0; k < K; ++k) {  // x[t + k] feeds y[t] with weight w[k]
          const S wk = wp[h * K + k];
          S a = 0;
          _Pragma("omp simd reduction(+ : a)")
          for (int64_t t = 0; t < T; ++t) {
            gxr[t + k] += wk * g[t];
            a += g[t] * x[t + k];
          }
          acc[h * K + k] += a;
        }
      }
    S* gwp = gw.data_ptr<S>();
    for (int64_t i = 0; i < H * K; ++i) gwp[i] = static_cast<S>(acc[i]);
  });
  return {gx, gw};
}

// ---------------------------------------------------------------------- surrogate derivatives
// exp(x) to ~1 ulp in a form the compiler vectorises (Cody-Waite reduction, polynomial, 2^n by
// integer arithmetic); deep underflow gives 0 (PyTorch gives a subnormal or 0 there).
static inline float exp_v(float x) {
  const float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);  // (std::fmin is a libm call)
  const float n = std::floor(xc * 1.44269504088896341f + 0.5f);
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float big = n + 12582912.0f;  // 1.5 * 2^23: n in the low mantissa bits
  int32_t i;
  std::memcpy(&i, &big, 4);
  i = (i - 0x4B400000 + 127) << 23;
  float scale;
  std::memcpy(&scale, &i, 4);
  return x < -87.0f ? 0.0f : p * scale;
}

static inline double exp_v(double x) {
  const double xc = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
  const double n = std::floor(xc * 1.4426950408889634074 + 0.5);
  double r = xc - n * 6.93145751953125e-1;
  r = r - n * 1.42860682030941723212e-6;
  double p = 1.0 / 6227020800.0;  // Taylor to r^13 (|r| <= 0.35: remainder < 1e-17)
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const double big = n + 6755399441055744.0;  // 1.5 * 2^52
  int64_t i;
  std::memcpy(&i, &big, 8);
  i = (i - 0x4338000000000000LL + 1023) << 52;
  double scale;
  std::memcpy(&scale, &i, 8);
  return x < -708.0 ? 0.0 : p * scale;
}

// kind 0: ATan(α = a); 1: Sigmoid(α = a); 2: MultiGaussian(σ = a, h = b, γ = c). Returns g · g'(x).
template <typename T, int KIND, bool HAS_G>  // not inlined: vectorised as a whole function
__attribute__((noinline)) static void surrogate_row(const T* R x, const T* R g, T* R out, int64_t n, T a, T b, T c) {
  const T k0 = T(M_PI / 2) * a, half = a / T(2);
  const T inv_n0 = T(1) / (T(std::sqrt(2 * M_PI)) * a), inv_n1 = T(1) / (T(std::sqrt(2 * M_PI)) * T(6) * a);
  const T q0 = T(-0.5) / (a * a), q1 = T(-0.5) / (T(36) * a * a);
  _Pragma("omp simd")
  for (int64_t i = 0; i < n; ++i) {
    const T xi = x[i];
    T d;
    if (KIND == 0) {
      const T u = k0 * xi;
      d = half / (T(1) + u * u);
    } else if (KIND == 1) {
      const T s = T(1) / (T(1) + exp_v(-a * xi));
      d = a * s * (T(1) - s);
    } else {
      const T xm = xi - a, xp = xi + a;
      d = c * ((T(1) + b) * exp_v(q0 * xi * xi) * inv_n0 - b * exp_v(q1 * xm * xm) * inv_n1 -
               b * exp_v(q1 * xp * xp) * inv_n1);
    }
    out[i] = HAS_G ? g[i] * d : d;
  }
}

Tensor surrogate_grad(const Tensor& x_, const std::optional<Tensor>& g_, int64_t kind, double a, double b,
                      double c) {
  Tensor x = x_.contiguous();
  const bool has_g = g_.has_value() && g_->defined();
  Tensor g = has_g ? g_->expand_as(x).contiguous() : Tensor();
  Tensor out = at::empty_like(x);
  TORCH_CHECK(kind >= 0 && kind <= 2, "unknown surrogate kind ", kind);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "surrogate_grad", [&] {
    using S = scalar_t;
    const S* xp = x.data_ptr<S>();
    const S* gp = has_g ? g.data_ptr<S>() : nullptr;
    S* op = out.data_ptr<S>();
    auto run = [&](auto KIND) {  // element-wise and large: shared between the intra-op threads
      at::parallel_for(0, x.numel(), 1 << 15, [&](int64_t lo, int64_t hi) {
        if (has_g) surrogate_row<S, KIND.value, true>(xp + lo, gp + lo, op + lo, hi - lo, S(a), S(b), S(c));
        else surrogate_row<S, KIND.value, false>(xp + lo, nullptr, op + lo, hi - lo, S(a), S(b), S(c));
      });
    };
    if (kind == 0) run(std::integral_constant<int, 0>{});
    else if (kind == 1) run(std::integral_constant<int, 1>{});
    else run(std::integral_constant<int, 2>{});
  });
  return out;
}

}  // namespace snnse::fused
