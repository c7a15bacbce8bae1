// The dropout ops. The uniform draws come from the caller (drawn on the host
// from the network's seeded generator), so a CUDA run drops exactly the units
// a CPU run with the same seed drops.
#include "common.cuh"
#include "cuda_backend.cuh"

namespace dn {
namespace cuda {

namespace {

__global__ void dropout_forward_kernel(size_t n, float probability, float scale, const float* input,
                                       const float* __restrict__ draws, float* output) {
  DN_GRID_STRIDE(i, n) output[i] = draws[i] < probability ? 0.f : input[i] * scale;
}

__global__ void dropout_backward_kernel(size_t n, float probability, float scale, const float* __restrict__ draws,
                                        const float* __restrict__ delta, float* __restrict__ prev_delta) {
  DN_GRID_STRIDE(i, n) {
    if (draws[i] >= probability) prev_delta[i] += delta[i] * scale;
  }
}

}  // namespace

void CudaBackend::dropout_forward(size_t n, float probability, float scale, const float* input, const float* draws,
                                  float* output) {
  if (!n) return;
  check(draws != nullptr, "dropout (CUDA): the forward needs the draws");
  dropout_forward_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, probability, scale, input, draws, output);
  DN_CUDA_LAUNCH_CHECK();
}

void CudaBackend::dropout_backward(size_t n, float probability, float scale, const float* draws, const float* delta,
                                   float* prev_delta) {
  if (!n || !prev_delta) return;
  check(draws != nullptr, "dropout (CUDA): backward needs the draws of the forward");
  dropout_backward_kernel<<<grid_for(n), kThreads, 0, stream_>>>(n, probability, scale, draws, delta, prev_delta);
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace dn
