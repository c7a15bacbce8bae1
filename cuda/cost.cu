// The cost op: the shared per-element formula cost_term (csrc/kernels/cost.hpp);
// the summed error is reduced on the device in double (fixed order: deterministic).
#include "common.cuh"
#include "cuda_backend.cuh"
#include "kernels/cost.hpp"

namespace dn {
namespace cuda {

namespace {

__global__ void cost_kernel(CostType type, size_t n, const float* input, const float* __restrict__ truth,
                            float* output, float* __restrict__ delta, double* __restrict__ partial) {
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

float CudaBackend::cost(CostType type, size_t n, const float* input, const float* truth, float* output,
                        float* delta) {
  if (!n) return 0.f;
  check(truth != nullptr, "cost (CUDA): no truth");
  const unsigned blocks = reduce_grid(n);
  cost_kernel<<<blocks, kThreads, 0, stream_>>>(type, n, input, truth, output, delta, reduction_partials());
  DN_CUDA_LAUNCH_CHECK();
  return (float)finish_sum(blocks);
}

}  // namespace cuda
}  // namespace dn
