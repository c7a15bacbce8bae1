// Device-side loops and block reductions shared by the cuda/*.cu kernels. No CUDA runtime
// header: tests/cuda_emulation compiles the kernels that use these on the CPU too.
#pragma once
#include <cstddef>

namespace dn {
namespace cuda {

// Device helpers of the kernels (tests/cuda_emulation defines it as plain inline first).
#ifndef DN_KERNEL_INLINE
#define DN_KERNEL_INLINE __device__ inline
#endif

// for (size_t i = global thread index; i < n; i += total threads)
#ifndef DN_GRID_STRIDE
#define DN_GRID_STRIDE(i, n)                                                          \
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (size_t)(n); \
       i += (size_t)blockDim.x * gridDim.x)
#endif

// ------------------------------------------------------------ element-wise, 128-bit
// f(a[i], b[i]) for i < n over one array a (b null) or two, in place: float4 groups in a
// grid-stride loop with 32-bit indices, the n % 4 tail elements by the first threads of block 0.
// b is written back only when kWriteB. launch_elementwise takes this path when every pointer is
// 16-byte aligned (whole buffers from cudaMalloc are) and falls back to a scalar 64-bit loop.
template <bool kWriteB, class F>
__global__ void elementwise_vec4_kernel(float* __restrict__ a, float* __restrict__ b, unsigned groups,
                                        unsigned tail, F f) {
  float4* a4 = reinterpret_cast<float4*>(a);
  float4* b4 = reinterpret_cast<float4*>(b);
  for (unsigned g = blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += blockDim.x * gridDim.x) {
    float4 va = a4[g];
    float4 vb = b ? b4[g] : make_float4(0.f, 0.f, 0.f, 0.f);
    f(va.x, vb.x);
    f(va.y, vb.y);
    f(va.z, vb.z);
    f(va.w, vb.w);
    a4[g] = va;
    if (kWriteB && b) b4[g] = vb;
  }
  if (blockIdx.x == 0 && threadIdx.x < tail) {
    const size_t i = (size_t)groups * 4 + threadIdx.x;
    float vb = b ? b[i] : 0.f;
    f(a[i], vb);
    if (kWriteB && b) b[i] = vb;
  }
}

template <bool kWriteB, class F>
__global__ void elementwise_kernel(float* __restrict__ a, float* __restrict__ b, size_t n, F f) {
  DN_GRID_STRIDE(i, n) {
    float vb = b ? b[i] : 0.f;
    f(a[i], vb);
    if (kWriteB && b) b[i] = vb;
  }
}

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
