// The reorg ops with Darknet's index map (csrc/kernels/reorg_index.hpp): the
// linear index always runs over the INPUT dims (c, h, w); the non-reverse
// forward gathers, the reverse forward scatters, and each backward is the
// inverse, accumulating into the previous delta. The map is a bijection, so
// the scatters need no atomics.
#include "common.cuh"
#include "cuda_backend.cuh"
#include "kernels/reorg_index.hpp"

namespace dn {
namespace cuda {

namespace {

__global__ void reorg_kernel(long total, int w, int h, int c, int stride, bool gather, bool accumulate,
                             const float* __restrict__ src, float* __restrict__ dst) {
  for (long linear = (long)blockIdx.x * blockDim.x + threadIdx.x; linear < total;
       linear += (long)blockDim.x * gridDim.x) {
    const long mapped = reorg_index(linear, w, h, c, stride);
    const long from = gather ? mapped : linear, to = gather ? linear : mapped;
    if (accumulate)
      dst[to] += src[from];
    else
      dst[to] = src[from];
  }
}

void run_reorg(cudaStream_t stream, int batch, int c, int h, int w, int stride, bool gather, bool accumulate,
               const float* src, float* dst) {
  if (batch <= 0 || c <= 0 || h <= 0 || w <= 0) return;
  // reorg_index divides by c / stride^2 (a GPU integer division by zero would not trap).
  check(stride > 0 && c >= stride * stride, "reorg (CUDA): ", c, " channels, fewer than stride^2 = ",
        stride * stride);
  const long total = (long)batch * c * h * w;
  reorg_kernel<<<grid_for((size_t)total), kThreads, 0, stream>>>(total, w, h, c, stride, gather, accumulate, src,
                                                                  dst);
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace

void CudaBackend::reorg_forward(int batch, int c, int h, int w, int stride, bool reverse, const float* input,
                                float* output) {
  run_reorg(stream_, batch, c, h, w, stride, !reverse, false, input, output);
}

void CudaBackend::reorg_backward(int batch, int c, int h, int w, int stride, bool reverse, const float* delta,
                                 float* prev_delta) {
  if (prev_delta) run_reorg(stream_, batch, c, h, w, stride, reverse, true, delta, prev_delta);
}

}  // namespace cuda
}  // namespace dn
