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
// launch_elementwise: the kernels of kernel_utils.cuh over one array or two, in place.
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
