// activate / gradient: the CPU's formulas (csrc/kernels/activations.hpp)
// applied element-wise (128-bit accesses: common.cuh's launch_elementwise).
#include "common.cuh"
#include "cuda_backend.cuh"
#include "elementwise.cuh"
#include "kernels/activations.hpp"

namespace dn {
namespace cuda {

void CudaBackend::activate(float* x, size_t n, Activation a) {
  if (a == Activation::Linear || n == 0) return;  // identity, as activate_array
  launch_elementwise<false>(x, nullptr, n, ActivateOp{a}, stream_);
}

void CudaBackend::gradient(const float* y, size_t n, Activation a, float* delta) {
  if (a == Activation::Linear || n == 0) return;  // gradient 1
  launch_elementwise<false>(delta, y, n, GradientOp{a}, stream_);
}

}  // namespace cuda
}  // namespace dn
