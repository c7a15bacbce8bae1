// Device-side loops and block reductions shared by the cuda/*.cu kernels. No CUDA runtime
// header: tests/cuda_emulation compiles the kernels that use these on the CPU too.
#pragma once
#include <cstddef>

namespace dn {
namespace cuda {

// for (size_t i = global thread index; i < n; i += total threads)
#ifndef DN_GRID_STRIDE
#define DN_GRID_STRIDE(i, n)                                                          \
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)(n); \
       i += (size_t)blockDim.x * gridDim.x)
#endif

__device__ inline double warp_sum(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

__device__ inline float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Sum of v over the whole block, returned to every thread. blockDim.x must be
// a multiple of 32 (at most 1024); every thread of the block must call it.
// Safe to call repeatedly in one kernel.
__device__ inline double block_sum(double v) {
  __shared__ double warp_sums[32];
  __shared__ double total;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    double s = lane < warps ? warp_sums[lane] : 0.0;
    s = warp_sum(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  const double result = total;
  __syncthreads();  // everyone has read `total` before a next call overwrites it
  return result;
}

}  // namespace cuda
}  // namespace dn
