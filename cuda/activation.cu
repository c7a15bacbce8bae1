// Activations and their gradients: the CPU's activate()/gradient() formulas
// (csrc/kernels/activations.hpp) applied element-wise on device.
#include "common.cuh"
#include "cuda_layers.hpp"
#include "kernels/activations.hpp"

namespace dn {
namespace cuda {

namespace {

__global__ void activate_kernel(float* __restrict__ x, size_t n, Activation a) {
  DN_GRID_STRIDE(i, n) x[i] = activate(x[i], a);
}

__global__ void gradient_kernel(const float* __restrict__ y, size_t n, Activation a, float* __restrict__ delta) {
  DN_GRID_STRIDE(i, n) delta[i] *= gradient(y[i], a);
}

}  // namespace

void cuda_activate_array(float* d_x, size_t n, Activation a) {
  if (a == Activation::Linear || n == 0) return;  // as activate_array: identity
  activate_kernel<<<grid_for(n), kThreads>>>(d_x, n, a);
  DN_CUDA_LAUNCH_CHECK();
}

void cuda_gradient_array(const float* d_y, size_t n, Activation a, float* d_delta) {
  if (a == Activation::Linear || n == 0) return;  // gradient 1
  gradient_kernel<<<grid_for(n), kThreads>>>(d_y, n, a, d_delta);
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace dn
