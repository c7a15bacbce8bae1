// [dropout] on device, as csrc/layers/dropout.cpp. The uniform draws come from
// the caller (drawn on the host from the network's seeded generator), so a
// CUDA run drops exactly the units a CPU run with the same seed drops.
#include "common.cuh"
#include "cuda_layers.hpp"

namespace dn {
namespace cuda {

namespace {

__global__ void dropout_forward_kernel(size_t n, float probability, float scale, const float* __restrict__ input,
                                       const float* __restrict__ draws, float* __restrict__ output) {
  DN_GRID_STRIDE(i, n) output[i] = draws[i] < probability ? 0.f : input[i] * scale;
}

__global__ void dropout_backward_kernel(size_t n, float probability, float scale, const float* __restrict__ draws,
                                        const float* __restrict__ delta, float* __restrict__ prev_delta) {
  DN_GRID_STRIDE(i, n) {
    if (draws[i] >= probability) prev_delta[i] += delta[i] * scale;
  }
}

}  // namespace

void cuda_dropout_forward(size_t n, float probability, float scale, bool train, const float* d_input,
                          const float* d_draws, float* d_output) {
  if (!n) return;
  if (!train) {  // identity at inference
    cuda_copy(d_input, d_output, n);
    return;
  }
  check(d_draws != nullptr, "dropout (CUDA): a training forward needs the draws");
  dropout_forward_kernel<<<grid_for(n), kThreads>>>(n, probability, scale, d_input, d_draws, d_output);
  DN_CUDA_LAUNCH_CHECK();
}

void cuda_dropout_backward(size_t n, float probability, float scale, const float* d_draws, const float* d_delta,
                           float* d_prev_delta) {
  if (!n || !d_prev_delta) return;
  check(d_draws != nullptr, "dropout (CUDA): backward needs the draws of the forward");
  dropout_backward_kernel<<<grid_for(n), kThreads>>>(n, probability, scale, d_draws, d_delta, d_prev_delta);
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace dn
