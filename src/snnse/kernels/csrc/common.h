// Shared by both C++ extensions of snnse (torch.ops.snnse_fused: neurons.cpp, misc.cpp, fused_ops.cpp;
// torch.ops.snnse_step: step_dpsnn.cpp, step_s4.cpp, step_ops.cpp): the standard and ATen headers every source uses,
// ATen's tensor type, and the restrict shorthand R of the inner loops.
//
// Include it (directly or through fused.h, step.h, real_fft.h) after every other header of a source file: the macro
// R must not reach a library header.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

using at::Tensor;
#define R __restrict
