// RealFFT (snnse_step): the real FFT of power-of-two lengths that the Spiking-S4 STFT hop uses (step_s4.cpp) and
// the Hop checks for (step_ops.cpp).
#pragma once

#include "common.h"

namespace snnse::step {

// Real FFT of a power-of-two length n >= 4 by a complex FFT of n/2 points (iterative radix 2) and the split of its
// result into the even and odd samples' spectra; the inverse with the 1/n of irfft, reading only the real parts of
// the DC and Nyquist bins (as irfft does). Twiddles computed in double. The Hop uses it instead of
// at::fft_rfft/irfft, whose per-call set-up (descriptors, twiddle tables, allocations, dispatch) took ~30 µs per
// Spiking-S4 hop against ~2 µs for the transforms themselves. real_fft(n): one per length and thread, kept.
struct RealFFT {
  int64_t n = 0, h = 0;
  std::vector<int32_t> rev;    // bit reversal of the h indices
  std::vector<double> wd, rd;  // (re, im) of e^{-2πi j/h}, j < h/2, and of e^{-2πi k/n}, k < h
  std::vector<float> wf, rf;
  static bool usable(int64_t n) { return n >= 4 && (n & (n - 1)) == 0; }
  RealFFT() = default;
  explicit RealFFT(int64_t n_) : n(n_), h(n_ / 2), rev(n_ / 2), wd(n_ / 2), rd(n_) {
    int bits = 0;
    while ((int64_t(1) << bits) < h) ++bits;
    for (int64_t i = 0; i < h; ++i) {
      int32_t r = 0;
      for (int k = 0; k < bits; ++k) r |= static_cast<int32_t>(((i >> k) & 1) << (bits - 1 - k));
      rev[i] = r;
    }
    const double pi = std::acos(-1.0);
    for (int64_t j = 0; j < h / 2; ++j) { wd[2 * j] = std::cos(2 * pi * j / h); wd[2 * j + 1] = -std::sin(2 * pi * j / h); }
    for (int64_t k = 0; k < h; ++k) { rd[2 * k] = std::cos(2 * pi * k / n); rd[2 * k + 1] = -std::sin(2 * pi * k / n); }
    wf.assign(wd.begin(), wd.end());
    rf.assign(rd.begin(), rd.end());
  }
  template <typename T> const T* tw() const {
    if constexpr (std::is_same_v<T, float>) return wf.data(); else return wd.data();
  }
  template <typename T> const T* rt() const {
    if constexpr (std::is_same_v<T, float>) return rf.data(); else return rd.data();
  }
  // in place on h complex values (re, im interleaved); inverse: conjugate twiddles, no scaling
  template <typename T> void cfft(T* R z, bool inverse) const {
    for (int64_t i = 0; i < h; ++i) {
      const int64_t j = rev[i];
      if (i < j) { std::swap(z[2 * i], z[2 * j]); std::swap(z[2 * i + 1], z[2 * j + 1]); }
    }
    const T* R w = tw<T>();
    const T sgn = inverse ? T(-1) : T(1);
    for (int64_t len = 2; len <= h; len <<= 1) {
      const int64_t half = len / 2, step = h / len;
      for (int64_t i = 0; i < h; i += len)
        for (int64_t k = 0; k < half; ++k) {
          const T wr = w[2 * k * step], wi = sgn * w[2 * k * step + 1];
          T* R a = z + 2 * (i + k);
          T* R b = z + 2 * (i + k + half);
          const T br = b[0] * wr - b[1] * wi, bi = b[0] * wi + b[1] * wr;
          b[0] = a[0] - br;
          b[1] = a[1] - bi;
          a[0] += br;
          a[1] += bi;
        }
    }
  }
  // x [n] real -> X [h + 1] complex (interleaved); work [n]
  template <typename T> void rfft(const T* R x, T* R X, T* R work) const {
    for (int64_t i = 0; i < n; ++i) work[i] = x[i];  // z[m] = x[2m] + i x[2m+1]: the same memory layout
    cfft<T>(work, false);
    const T* R r = rt<T>();
    X[0] = work[0] + work[1];
    X[1] = T(0);
    X[2 * h] = work[0] - work[1];
    X[2 * h + 1] = T(0);
    for (int64_t k = 1; k < h; ++k) {  // X[k] = E + e^{-2πik/n} O, E = (Z[k] + conj Z[h-k]) / 2, O = (Z[k] - conj Z[h-k]) / 2i
      const T ar = work[2 * k], ai = work[2 * k + 1], br = work[2 * (h - k)], bi = -work[2 * (h - k) + 1];
      const T er = T(0.5) * (ar + br), ei = T(0.5) * (ai + bi), or_ = T(0.5) * (ai - bi), oi = T(-0.5) * (ar - br);
      X[2 * k] = er + (r[2 * k] * or_ - r[2 * k + 1] * oi);
      X[2 * k + 1] = ei + (r[2 * k] * oi + r[2 * k + 1] * or_);
    }
  }
  // X [h + 1] complex -> x [n] real, times 1/n (irfft); work [n]
  template <typename T> void irfft(const T* R X, T* R x, T* R work) const {
    const T* R r = rt<T>();
    for (int64_t k = 0; k < h; ++k) {  // Z[k] = E' + i O', E' = X[k] + conj X[h-k], O' = (X[k] - conj X[h-k]) e^{2πik/n}
      const T ar = X[2 * k], ai = k ? X[2 * k + 1] : T(0), br = X[2 * (h - k)], bi = k ? -X[2 * (h - k) + 1] : T(0);
      const T er = ar + br, ei = ai + bi, dr = ar - br, di = ai - bi;
      const T or_ = dr * r[2 * k] + di * r[2 * k + 1], oi = di * r[2 * k] - dr * r[2 * k + 1];
      work[2 * k] = er - oi;
      work[2 * k + 1] = ei + or_;
    }
    cfft<T>(work, true);
    const T scale = T(1) / static_cast<T>(n);
    for (int64_t i = 0; i < n; ++i) x[i] = work[i] * scale;
  }
};

}  // namespace snnse::step
