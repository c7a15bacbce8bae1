// Device-side helpers shared by the cuda/*.cu files: error checks that throw
// dn::DarknetError, launch geometry, grid-stride loops and block reductions.
// Every CUDA error becomes a DarknetError naming the CUDA error; nothing aborts.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/error.hpp"
#include "kernel_utils.cuh"

namespace dn {
namespace cuda {

// Throws DarknetError("CUDA error at file:line (call): <cudaGetErrorString>").
[[noreturn]] void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line);

#define DN_CUDA_CHECK(call)                                                        \
  do {                                                                             \
    const cudaError_t dn_cuda_err_ = (call);                                       \
    if (dn_cuda_err_ != cudaSuccess)                                               \
      ::dn::cuda::throw_cuda_error(dn_cuda_err_, #call, __FILE__, __LINE__);       \
  } while (0)

// After a <<<...>>> launch: reports bad launch configurations immediately.
#define DN_CUDA_LAUNCH_CHECK() DN_CUDA_CHECK(cudaGetLastError())

constexpr int kThreads = 256;  // threads per block for element-wise kernels
constexpr int kMaxBlocks = 65535;
// Blocks of a two-pass reduction (per-block partials, then one block sums them
// in a fixed order): a cap keeps the second pass to one block of kReduceBlocks threads.
constexpr int kReduceBlocks = 1024;

// Blocks for n elements in a grid-stride loop (at least 1).
inline unsigned grid_for(size_t n, int threads = kThreads) {
  size_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > (size_t)kMaxBlocks) blocks = kMaxBlocks;
  return (unsigned)blocks;
}

inline unsigned reduce_grid(size_t n) {
  const unsigned g = grid_for(n);
  return g > (unsigned)kReduceBlocks ? (unsigned)kReduceBlocks : g;
}

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

template <bool kWriteB, class F>
void launch_elementwise(float* a, const float* b, size_t n, F f, cudaStream_t stream) {
  if (!n) return;
  const bool aligned = reinterpret_cast<uintptr_t>(a) % 16 == 0 && reinterpret_cast<uintptr_t>(b) % 16 == 0;
  float* bw = const_cast<float*>(b);  // written only when kWriteB
  if (aligned && n / 4 < ((size_t)1 << 31)) {
    const unsigned groups = (unsigned)(n / 4), tail = (unsigned)(n % 4);
    elementwise_vec4_kernel<kWriteB><<<grid_for(groups ? groups : 1), kThreads, 0, stream>>>(a, bw, groups, tail, f);
  } else {
    elementwise_kernel<kWriteB><<<grid_for(n), kThreads, 0, stream>>>(a, bw, n, f);
  }
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace dn
