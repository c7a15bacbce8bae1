// Errors, counted allocations, and the backend's element-wise ops (fill, copy,
// axpy, sum_squares) and SGD step (csrc/kernels/sgd.hpp).
#include <cmath>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "common.cuh"
#include "cuda_backend.cuh"
#include "elementwise.cuh"
#include "kernels/sgd.hpp"

namespace dn {
namespace cuda {

void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line) {
  // Clears a non-sticky error so later calls in this process can succeed.
  (void)cudaGetLastError();
  fail("CUDA error at ", file, ":", line, " (", call, "): ", cudaGetErrorName(e), ": ", cudaGetErrorString(e));
}

// ------------------------------------------------------ counted allocations

namespace {

// Buffers free by pointer alone, so the sizes are kept here for bytes_in_use.
struct Ledger {
  std::mutex mutex;
  std::unordered_map<void*, size_t> sizes;
  AllocationStats stats;
};

Ledger& ledger() {
  static Ledger* l = new Ledger;  // never destroyed: buffers may be freed during static destruction
  return *l;
}

}  // namespace

void* device_alloc(size_t bytes, bool zero) {
  if (!bytes) return nullptr;
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    fail("CUDA error: cannot allocate ", bytes, " bytes of device memory: ", cudaGetErrorName(e), ": ",
         cudaGetErrorString(e));
  }
  if (zero) {
    const cudaError_t z = cudaMemset(p, 0, bytes);
    if (z != cudaSuccess) {
      (void)cudaFree(p);
      throw_cuda_error(z, "cudaMemset(p, 0, bytes)", __FILE__, __LINE__);
    }
  }
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lock(l.mutex);
  l.sizes[p] = bytes;
  ++l.stats.device_allocations;
  l.stats.device_bytes_in_use += (int64_t)bytes;
  return p;
}

void device_free(void* p) noexcept {
  if (!p) return;
  // Errors are dropped: this runs in destructors, possibly after the runtime shut down at exit.
  if (cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lock(l.mutex);
  const auto it = l.sizes.find(p);
  if (it != l.sizes.end()) {
    l.stats.device_bytes_in_use -= (int64_t)it->second;
    l.sizes.erase(it);
  }
  ++l.stats.device_frees;
}

void* pinned_alloc(size_t bytes) {
  void* p = nullptr;
  DN_CUDA_CHECK(cudaMallocHost(&p, bytes ? bytes : 1));
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lock(l.mutex);
  ++l.stats.pinned_allocations;
  return p;
}

void pinned_free(void* p) noexcept {
  if (p && cudaFreeHost(p) != cudaSuccess) (void)cudaGetLastError();
}

AllocationStats allocation_stats() {
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lock(l.mutex);
  return l.stats;
}

// ------------------------------------------------------------------ kernels

namespace {


__global__ void sum_squares_kernel(const float* __restrict__ x, size_t n, double* __restrict__ partial) {
  double sum = 0;
  DN_GRID_STRIDE(i, n) {
    const double v = x[i];
    sum += v * v;
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

// One block of kReduceBlocks threads: thread i takes partial i, so the order
// of the additions depends only on the number of partials.
__global__ void __launch_bounds__(kReduceBlocks) finish_sum_kernel(double* __restrict__ partial, unsigned count) {
  const double v = threadIdx.x < count ? partial[threadIdx.x] : 0.0;
  const double total = block_sum(v);
  if (threadIdx.x == 0) partial[kReduceBlocks] = total;
}


}  // namespace

double CudaBackend::finish_sum(unsigned blocks) {
  double* partial = reduction_partials();
  finish_sum_kernel<<<1, kReduceBlocks, 0, stream_>>>(partial, blocks);
  DN_CUDA_LAUNCH_CHECK();
  DN_CUDA_CHECK(cudaMemcpyAsync(result_, partial + kReduceBlocks, sizeof(double), cudaMemcpyDeviceToHost, stream_));
  DN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return *result_;
}

void CudaBackend::fill(float* x, size_t n, float value) {
  if (!n) return;
  if (value == 0.f && !std::signbit(value)) {  // +0.0f is all zero bytes
    DN_CUDA_CHECK(cudaMemsetAsync(x, 0, n * sizeof(float), stream_));
    return;
  }
  launch_elementwise<false>(x, nullptr, n, FillOp{value}, stream_);
}

void CudaBackend::copy(const float* src, float* dst, size_t n) {
  if (!n || src == dst) return;
  DN_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
}

void CudaBackend::axpy(size_t n, float alpha, const float* x, float* y) {
  if (!n) return;
  launch_elementwise<false>(y, x, n, AxpyOp{alpha}, stream_);
}

double CudaBackend::sum_squares(const float* x, size_t n) {
  if (!n) return 0.0;
  const unsigned blocks = reduce_grid(n);
  sum_squares_kernel<<<blocks, kThreads, 0, stream_>>>(x, n, reduction_partials());
  DN_CUDA_LAUNCH_CHECK();
  return finish_sum(blocks);
}

void CudaBackend::sgd(size_t n, float* param, float* update, float step, float decay_term, float momentum) {
  if (!n) return;
  launch_elementwise<true>(param, update, n, SgdOp{step, decay_term, momentum}, stream_);
}

}  // namespace cuda
}  // namespace dn
