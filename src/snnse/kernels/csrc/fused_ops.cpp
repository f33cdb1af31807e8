// The operators of snnse_fused (neurons.cpp, misc.cpp) registered as torch.ops.snnse_fused.*.
#include <torch/library.h>

#include "fused.h"

using namespace snnse::fused;

TORCH_LIBRARY(snnse_fused, m) {
  m.def("lif_forward(Tensor x, Tensor v0, Tensor k, bool decay_input, bool soft, float v_reset, float v_th)"
        " -> (Tensor, Tensor, Tensor)", &lif_forward);
  m.def("lif_backward(Tensor gS, Tensor gvT, Tensor SG, Tensor H, Tensor M, Tensor xin, Tensor v0, Tensor k,"
        " bool decay_input, bool soft, float v_reset, float v_th, bool detach_reset, bool need_k)"
        " -> (Tensor, Tensor, Tensor)", &lif_backward);
  m.def("linear_scan(Tensor m, Tensor q, Tensor g_last) -> Tensor", &linear_scan);
  m.def("leaky_forward(Tensor x, Tensor u0, Tensor beta) -> Tensor", &leaky_forward);
  m.def("alif_forward(Tensor c, Tensor? W, Tensor alpha, Tensor rho, float b0, float beta, Tensor v0,"
        " Tensor eta0, Tensor s0, Tensor? y0) -> (Tensor, Tensor, Tensor, Tensor, Tensor)", &alif_forward);
  m.def("alif_backward(Tensor gS, Tensor gvT, Tensor geT, Tensor SG, Tensor V, Tensor E, Tensor I,"
        " Tensor S, Tensor v0, Tensor eta0, Tensor s0, Tensor alpha, Tensor rho, float b0, float beta, Tensor? Wp,"
        " bool detach_reset) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)", &alif_backward);
  m.def("dw_backward(Tensor gy, Tensor xc, Tensor weight) -> (Tensor, Tensor)", &dw_backward);
  m.def("surrogate_grad(Tensor x, Tensor? g, int kind, float a, float b, float c) -> Tensor", &surrogate_grad);
}
