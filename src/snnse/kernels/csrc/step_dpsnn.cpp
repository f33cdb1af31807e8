// snnse_step: one DPSNN hop (the learned front-end and the masker) for every batch row, as one call (snnse.fast_dpsnn
// through step_ops.cpp). The matrix-vector products in axpy form over the transposed weights, skipping zero inputs
// (binary spikes, the ReLU zeros of the encoder output, the suppressed readout), and every element-wise step in one
// pass over the channels. Same formulas as the modules; sums in another order than MKL's, so the outputs equal the
// module path up to float rounding.
#include <ATen/ops/empty.h>

#include "step.h"

namespace snnse::step {

// w: enc_w [L,N], enc_b [N], dec_w [N,L], dec_b [1], ln_g [N], ln_b [N], proj_w [N,C], proj_b [C],
//    th_proj [], then per block: scnn_w [C,K], scnn_b [C], k_plif [], in_w [C,C], in_b [C], rec_w [C,C],
//    alpha [C], rho [C]; then ro_w [X*C,C], ro_b [C], beta_ro [C], th_sup [], mask_w [C,N], mask_b [N]
// f: ln_eps, then per block: v_th, b0, beta
// s: fe_hist [B,ov], pending [B,ov], per block: hist [B,C,K-1], v1 [B,C], v [B,C], eta [B,C], s [B,C], y [B,C];
//    then u [B,C]
// returns: out [B,hop], then the new state in the order of s (inplace: the tensors of s, updated; y is then s)
std::vector<Tensor> dpsnn_step_(const Tensor& x, std::vector<Tensor> w, std::vector<double> f,
                                std::vector<Tensor> s, bool inplace) {
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

}  // namespace snnse::step
