// [avgpool] on device (global average over each channel), as
// csrc/layers/avgpool.cpp: one warp per (image, channel) reads its plane with
// consecutive lanes on consecutive pixels and reduces with shuffles.
#include "common.cuh"
#include "cuda_layers.hpp"

namespace dn {
namespace cuda {

namespace {

constexpr int kWarpsPerBlock = kThreads / 32;

__global__ void avgpool_forward_kernel(size_t planes, int spatial, const float* __restrict__ input,
                                       float* __restrict__ output) {
  const size_t warp = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
  const size_t warps = (size_t)gridDim.x * blockDim.x / 32;
  const int lane = threadIdx.x & 31;
  for (size_t p = warp; p < planes; p += warps) {  // warp-uniform loop: all lanes shuffle together
    const float* in = input + p * spatial;
    float sum = 0;
    for (int i = lane; i < spatial; i += 32) sum += in[i];
    sum = warp_sum(sum);
    if (lane == 0) output[p] = sum / spatial;
  }
}

__global__ void avgpool_backward_kernel(size_t total, int spatial, const float* __restrict__ delta,
                                        float* __restrict__ prev_delta) {
  DN_GRID_STRIDE(i, total) prev_delta[i] += delta[i / (size_t)spatial] / spatial;
}

}  // namespace

void cuda_avgpool_forward(int batch, int c, int h, int w, const float* d_input, float* d_output) {
  const size_t planes = (size_t)batch * c;
  if (!planes) return;
  const size_t blocks = (planes + kWarpsPerBlock - 1) / kWarpsPerBlock;
  avgpool_forward_kernel<<<(unsigned)(blocks > (size_t)kMaxBlocks ? kMaxBlocks : blocks), kThreads>>>(
      planes, h * w, d_input, d_output);
  DN_CUDA_LAUNCH_CHECK();
}

void cuda_avgpool_backward(int batch, int c, int h, int w, const float* d_delta, float* d_prev_delta) {
  const size_t total = (size_t)batch * c * h * w;
  if (!total || !d_prev_delta) return;
  avgpool_backward_kernel<<<grid_for(total), kThreads>>>(total, h * w, d_delta, d_prev_delta);
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace dn
