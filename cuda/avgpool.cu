// The avgpool ops (global average over each channel's `spatial` values): one
// thread per (image, channel) sums its plane in input order in float, as the
// CPU (and Darknet) does, so the results match bit for bit; the maps are small
// (the last feature map of a classifier). The backward broadcasts.
#include "common.cuh"
#include "cuda_backend.cuh"

namespace dn {
namespace cuda {

namespace {

__global__ void avgpool_forward_kernel(size_t planes, int spatial, const float* __restrict__ input,
                                       float* __restrict__ output) {
  DN_GRID_STRIDE(p, planes) {
    const float* in = input + p * spatial;
    float sum = 0;
    for (int i = 0; i < spatial; ++i) sum += in[i];
    output[p] = sum / spatial;
  }
}

__global__ void avgpool_backward_kernel(size_t total, int spatial, const float* __restrict__ delta,
                                        float* __restrict__ prev_delta) {
  DN_GRID_STRIDE(i, total) prev_delta[i] += delta[i / (size_t)spatial] / spatial;
}

}  // namespace

void CudaBackend::avgpool_forward(int batch, int c, int spatial, const float* input, float* output) {
  if (batch <= 0 || c <= 0 || spatial <= 0) return;
  const size_t planes = (size_t)batch * c;
  avgpool_forward_kernel<<<grid_for(planes), kThreads, 0, stream_>>>(planes, spatial, input, output);
  DN_CUDA_LAUNCH_CHECK();
}

void CudaBackend::avgpool_backward(int batch, int c, int spatial, const float* delta, float* prev_delta) {
  if (!prev_delta || batch <= 0 || c <= 0 || spatial <= 0) return;
  const size_t total = (size_t)batch * c * spatial;
  avgpool_backward_kernel<<<grid_for(total), kThreads, 0, stream_>>>(total, spatial, delta, prev_delta);
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace dn
