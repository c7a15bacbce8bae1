// activate / gradient: the CPU's formulas (csrc/kernels/activations.hpp)
// applied element-wise.
#include "common.cuh"
#include "cuda_backend.cuh"
#include "kernels/activations.hpp"

namespace dn {
namespace cuda {

namespace {

__global__ void activate_kernel(float* __restrict__ x, size_t n, Activation a) {
  DN_GRID_STRIDE(i, n) x[i] = dn::activate(x[i], a);
}

__global__ void gradient_kernel(const float* __restrict__ y, size_t n, Activation a, float* __restrict__ delta) {
  DN_GRID_STRIDE(i, n) delta[i] *= dn::gradient(y[i], a);
}

}  // namespace

void CudaBackend::activate(float* x, size_t n, Activation a) {
  if (a == Activation::Linear || n == 0) return;  // identity, as activate_array
  activate_kernel<<<grid_for(n), kThreads, 0, stream_>>>(x, n, a);
  DN_CUDA_LAUNCH_CHECK();
}

void CudaBackend::gradient(const float* y, size_t n, Activation a, float* delta) {
  if (a == Activation::Linear || n == 0) return;  // gradient 1
  gradient_kernel<<<grid_for(n), kThreads, 0, stream_>>>(y, n, a, delta);
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace dn
