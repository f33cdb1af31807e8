// The snnse_step extension (snnse.fast_cpp): the helpers both steps use (lerp, axpy_gemv) and the functions the
// sources share: dpsnn_step_ (step_dpsnn.cpp); s4_masker, s4_stft_step_ and s4_stft_rows (step_s4.cpp); all used
// by step_ops.cpp (the level control, the registered operators torch.ops.snnse_step.* and the Hop class).
#pragma once

#include "common.h"

namespace snnse::step {

// torch.lerp(a, b, w): a + w (b − a) for |w| < 0.5, else b − (b − a)(1 − w)
// (the streaming step is compiled without -ffp-contract=off: the compiler may contract these into FMAs;
// neurons.cpp's lerp_c, bit-identical to PyTorch, is another function on purpose)
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

// step_dpsnn.cpp: a DPSNN hop (the arguments are described there)
std::vector<Tensor> dpsnn_step_(const Tensor& x, std::vector<Tensor> w, std::vector<double> f, std::vector<Tensor> s,
                                bool inplace = false);

// step_s4.cpp: the Spiking-S4 masker, the whole STFT hop (tensors), the STFT hop on raw pointers (T: float, double)
std::vector<Tensor> s4_masker(const Tensor& input, std::vector<Tensor> w, std::vector<double> f, std::vector<Tensor> s,
                              bool stft, double eps);
std::vector<Tensor> s4_stft_step_(const Tensor& x, const Tensor& hist, const Tensor& pending,
                                  const std::optional<Tensor>& window, const Tensor& synth, std::vector<Tensor> w,
                                  std::vector<double> f, std::vector<Tensor> s, double eps, bool inplace = false,
                                  bool mode_major = false);
template <typename T> void s4_stft_rows(const T* R xin, T* R out, int64_t B, int64_t hop, int64_t ov, const T* ho,
                                        T* hn, const T* po, T* pn, const T* R win, const T* R sw, double eps,
                                        const std::vector<const T*>& wp, const std::vector<double>& f, int64_t D,
                                        int64_t M, bool mode_major, const std::vector<const T*>& xo,
                                        const std::vector<T*>& xn, const std::vector<const T*>& vo,
                                        const std::vector<T*>& vn, T* R scratch);

}  // namespace snnse::step
