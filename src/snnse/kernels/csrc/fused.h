// The operators of the snnse_fused extension (snnse.kernels, used by snnse.fused): defined in neurons.cpp (the
// time loops of LIF/PLIF, the leaky integrator and ALIF) and misc.cpp (the depthwise convolution's backward, the
// surrogate derivatives), registered as torch.ops.snnse_fused.* in fused_ops.cpp. Same functions, arguments and
// results as snnse.kernels.loops.TorchLoops.
#pragma once

#include "common.h"

namespace snnse::fused {

std::tuple<Tensor, Tensor, Tensor> lif_forward(const Tensor& x_, const Tensor& v0_, const Tensor& k_, bool decay_input,
                                               bool soft, double v_reset, double v_th);
std::tuple<Tensor, Tensor, Tensor> lif_backward(
    const Tensor& gS_, const Tensor& gvT_, const Tensor& SG_, const Tensor& H_, const Tensor& M_, const Tensor& xin_,
    const Tensor& v0_, const Tensor& k_, bool decay_input, bool soft, double v_reset, double v_th,
    bool detach_reset, bool need_k);
Tensor linear_scan(const Tensor& m_, const Tensor& q_, const Tensor& g_);
Tensor leaky_forward(const Tensor& x_, const Tensor& u0_, const Tensor& beta_);
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> alif_forward(
    const Tensor& c_, const std::optional<Tensor>& W, const Tensor& alpha_, const Tensor& rho_, double b0,
    double beta, const Tensor& v0_, const Tensor& eta0_, const Tensor& s0_, const std::optional<Tensor>& y0);
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> alif_backward(
    const Tensor& gS_, const Tensor& gvT_, const Tensor& geT_, const Tensor& SG_, const Tensor& V_, const Tensor& E_,
    const Tensor& I_, const Tensor& S_, const Tensor& v0_, const Tensor& eta0_, const Tensor& s0_,
    const Tensor& alpha_, const Tensor& rho_, double b0, double beta, const std::optional<Tensor>& Wp,
    bool detach_reset);
std::tuple<Tensor, Tensor> dw_backward(const Tensor& gy_, const Tensor& xc_, const Tensor& w_);
Tensor surrogate_grad(const Tensor& x_, const std::optional<Tensor>& g_, int64_t kind, double a, double b, double c);

}  // namespace snnse::fused
