// [cost] on device, as csrc/layers/cost.cpp, with the shared per-element
// formula cost_term (csrc/kernels/cost.hpp); the cost is summed in double
// (per-block partial sums added on the host in block order).
#include <vector>

#include "common.cuh"
#include "cuda_layers.hpp"
#include "kernels/cost.hpp"

namespace dn {
namespace cuda {

namespace {

__global__ void cost_kernel(CostType type, size_t n, const float* __restrict__ input, const float* __restrict__ truth,
                            float* __restrict__ output, float* __restrict__ delta, double* __restrict__ partial) {
  double sum = 0;
  DN_GRID_STRIDE(i, n) {
    const CostTerm t = cost_term(type, truth[i], input[i]);
    output[i] = t.error;
    if (delta) delta[i] = t.delta;
    sum += t.error;
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

}  // namespace

float cuda_cost_forward(CostType type, size_t n, const float* d_input, const float* d_truth, float* d_output,
                        float* d_delta) {
  if (!n || !d_truth) return 0.f;
  const unsigned blocks = grid_for(n);
  DeviceBuffer<double> partial(blocks);
  cost_kernel<<<blocks, kThreads>>>(type, n, d_input, d_truth, d_output, d_delta, partial.data());
  DN_CUDA_LAUNCH_CHECK();
  std::vector<double> h = partial.to_host();
  double total = 0;
  for (double v : h) total += v;
  return (float)total;
}

void cuda_cost_backward(size_t n, float scale, const float* d_delta, float* d_prev_delta) {
  if (d_prev_delta) cuda_axpy(n, scale, d_delta, d_prev_delta);
}

}  // namespace cuda
}  // namespace dn
