// The device's arithmetic peaks and memory bandwidth, measured (the profiler's "% of peak" and
// roofline, like the CPU's
// FMA microbenchmark of bench/peak_fma.py): FP32 as independent fmaf chains on every
// thread of a full grid, TF32 as wmma m16n16k8 products from registers (mma.sync: the
// instruction the implicit-GEMM convolutions issue, cuda/conv_fast.cuh). Each is timed with
// CUDA events over a few launches; the best launch counts.
#include <cuda_runtime.h>

#include <algorithm>

#include "backend/cuda_entry.hpp"
#include "common.cuh"
#include "cuda_backend.cuh"
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#include <mma.h>
#define DN_PEAK_TF32 1
#else
#define DN_PEAK_TF32 0
#endif

namespace dn {
namespace cuda {

namespace {

constexpr int kChains = 8;  // independent FMA chains per thread: cover the FMA latency

__global__ void fp32_peak_kernel(int iterations, float a, float b, float* sink) {
  float x[kChains];
#pragma unroll
  for (int i = 0; i < kChains; ++i) x[i] = threadIdx.x * 1e-3f + i;
  for (int it = 0; it < iterations; ++it)
#pragma unroll
    for (int i = 0; i < kChains; ++i) x[i] = fmaf(x[i], a, b);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kChains; ++i) s += x[i];
  if (s == -1.f) *sink = s;  // never true; keeps the chains alive
}

constexpr int kTensorChains = 4;  // independent accumulators per warp

__global__ void tf32_peak_kernel(int iterations, float* sink) {
#if DN_PEAK_TF32
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[kTensorChains];
  wmma::fill_fragment(a, wmma::__float_to_tf32(1e-3f * (threadIdx.x & 7)));
  wmma::fill_fragment(b, wmma::__float_to_tf32(1e-3f));
#pragma unroll
  for (int j = 0; j < kTensorChains; ++j) wmma::fill_fragment(acc[j], 0.f);
  for (int it = 0; it < iterations; ++it)
#pragma unroll
    for (int j = 0; j < kTensorChains; ++j) wmma::mma_sync(acc[j], a, b, acc[j]);
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < kTensorChains; ++j) s += acc[j].x[0];
  if (s == -1.f) *sink = s;
#else
  (void)iterations, (void)sink;
#endif
}

__global__ void copy_bandwidth_kernel(const float4* __restrict__ src, float4* __restrict__ dst, size_t n4) {
  DN_GRID_STRIDE(i, n4) dst[i] = src[i];
}

}  // namespace

double measure_bandwidth_gbs() {
  constexpr size_t kBytes = (size_t)256 << 20;  // per buffer: far beyond any L2
  const size_t n4 = kBytes / sizeof(float4);
  float* src = static_cast<float*>(device_alloc(kBytes, true));
  float* dst = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  double best = 0;
  try {
    dst = static_cast<float*>(device_alloc(kBytes, false));
    DN_CUDA_CHECK(cudaEventCreate(&start));
    DN_CUDA_CHECK(cudaEventCreate(&stop));
    int device = 0, sms = 1;
    DN_CUDA_CHECK(cudaGetDevice(&device));
    DN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    for (int launch = 0; launch < 5; ++launch) {
      DN_CUDA_CHECK(cudaEventRecord(start));
      copy_bandwidth_kernel<<<sms * 16, 256>>>(reinterpret_cast<const float4*>(src), reinterpret_cast<float4*>(dst),
                                               n4);
      DN_CUDA_LAUNCH_CHECK();
      DN_CUDA_CHECK(cudaEventRecord(stop));
      DN_CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0.f;
      DN_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      if (launch > 0 && ms > 0) best = std::max(best, 2.0 * kBytes / (ms * 1e-3) / 1e9);  // read + write
    }
  } catch (...) {
    if (start) (void)cudaEventDestroy(start);
    if (stop) (void)cudaEventDestroy(stop);
    device_free(src);
    device_free(dst);
    throw;
  }
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  device_free(src);
  device_free(dst);
  return best;
}

double measure_peak_gflops(bool tensor_cores) {
  int device = 0, sms = 1, major = 0;
  DN_CUDA_CHECK(cudaGetDevice(&device));
  DN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  DN_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  check(!tensor_cores || major >= 8, "TF32 tensor cores need compute capability 8.0 or newer (this device: ", major,
        ")");
  float* sink = static_cast<float*>(device_alloc(sizeof(float), true));
  cudaEvent_t start = nullptr, stop = nullptr;
  double best = 0;
  try {
    DN_CUDA_CHECK(cudaEventCreate(&start));
    DN_CUDA_CHECK(cudaEventCreate(&stop));
    const int threads = 256, blocks = sms * 8;
    const int iterations = tensor_cores ? 2048 : 16384;
    // FLOPs of one launch: an FMA is 2; an m16n16k8 product 2 * 16 * 16 * 8 per warp.
    const double flops = tensor_cores ? 2.0 * 16 * 16 * 8 * kTensorChains * iterations * (threads / 32.0) * blocks
                                      : 2.0 * kChains * iterations * (double)threads * blocks;
    for (int launch = 0; launch < 4; ++launch) {  // the first warms the clocks up
      DN_CUDA_CHECK(cudaEventRecord(start));
      if (tensor_cores) tf32_peak_kernel<<<blocks, threads>>>(iterations, sink);
      else fp32_peak_kernel<<<blocks, threads>>>(iterations, 0.9999f, 1e-4f, sink);
      DN_CUDA_LAUNCH_CHECK();
      DN_CUDA_CHECK(cudaEventRecord(stop));
      DN_CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0.f;
      DN_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      if (launch > 0 && ms > 0) best = std::max(best, flops / (ms * 1e-3) / 1e9);
    }
  } catch (...) {
    if (start) (void)cudaEventDestroy(start);
    if (stop) (void)cudaEventDestroy(stop);
    device_free(sink);
    throw;
  }
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
  device_free(sink);
  return best;
}

}  // namespace cuda
}  // namespace dn
