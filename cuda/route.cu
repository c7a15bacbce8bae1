// copy_rows, route's op: a rows x cols block between two strided arrays
// (each image's channel slice of the concatenation), copied or accumulated.
#include "common.cuh"
#include "cuda_backend.cuh"

namespace dn {
namespace cuda {

namespace {

template <bool kAccumulate>
__global__ void copy_rows_kernel(size_t total, size_t cols, const float* __restrict__ src, size_t src_stride,
                                 float* __restrict__ dst, size_t dst_stride) {
  DN_GRID_STRIDE(i, total) {
    const size_t r = i / cols, j = i % cols;
    if (kAccumulate)
      dst[r * dst_stride + j] += src[r * src_stride + j];
    else
      dst[r * dst_stride + j] = src[r * src_stride + j];
  }
}

}  // namespace

void CudaBackend::copy_rows(int rows, size_t cols, const float* src, size_t src_stride, float* dst,
                            size_t dst_stride, bool accumulate) {
  if (rows <= 0 || cols == 0) return;
  const size_t total = (size_t)rows * cols;
  if (accumulate)
    copy_rows_kernel<true><<<grid_for(total), kThreads, 0, stream_>>>(total, cols, src, src_stride, dst, dst_stride);
  else
    copy_rows_kernel<false><<<grid_for(total), kThreads, 0, stream_>>>(total, cols, src, src_stride, dst,
                                                                       dst_stride);
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace dn
