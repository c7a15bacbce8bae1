// [reorg] on device with Darknet's index map (csrc/kernels/reorg_index.hpp),
// as csrc/layers/reorg.cpp: the linear index always runs over the INPUT dims;
// the non-reverse forward gathers, the reverse forward scatters, and each
// backward is the inverse, accumulating into the previous delta. The map is a
// bijection, so the scatters need no atomics.
#include "common.cuh"
#include "cuda_layers.hpp"
#include "kernels/reorg_index.hpp"

namespace dn {
namespace cuda {

namespace {

__global__ void reorg_kernel(long total, int w, int h, int c, int stride, bool gather, bool accumulate,
                             const float* __restrict__ src, float* __restrict__ dst) {
  for (long linear = (long)blockIdx.x * blockDim.x + threadIdx.x; linear < total;
       linear += (long)blockDim.x * gridDim.x) {
    const long mapped = reorg_index(linear, w, h, c, stride);
    if (gather) {
      if (accumulate)
        dst[linear] += src[mapped];
      else
        dst[linear] = src[mapped];
    } else {
      if (accumulate)
        dst[mapped] += src[linear];
      else
        dst[mapped] = src[linear];
    }
  }
}

void run(int batch, int c, int h, int w, int stride, bool gather, bool accumulate, const float* src, float* dst) {
  const long total = (long)batch * c * h * w;
  if (total <= 0) return;
  reorg_kernel<<<grid_for((size_t)total), kThreads>>>(total, w, h, c, stride, gather, accumulate, src, dst);
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace

void cuda_reorg_forward(int batch, int c, int h, int w, int stride, bool reverse, const float* d_input,
                        float* d_output) {
  run(batch, c, h, w, stride, !reverse, false, d_input, d_output);
}

void cuda_reorg_backward(int batch, int c, int h, int w, int stride, bool reverse, const float* d_delta,
                         float* d_prev_delta) {
  if (d_prev_delta) run(batch, c, h, w, stride, reverse, true, d_delta, d_prev_delta);
}

}  // namespace cuda
}  // namespace dn
