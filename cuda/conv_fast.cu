// CudaBackend's convolutions: the implicit GEMM of conv_fast.cuh (kernels, planning, the
// three problems of a convolution), launched here for the inference forward (batch norm
// folded, bias and activation fused), the training forward (raw sums), the weight gradient
// and the input gradient. reference_kernels keeps the layer's im2col + SGEMM path
// (convolutional.cu), the baseline these are tested against.
#include <cstdint>
#include <mutex>

#include "common.cuh"
#include "conv_fast.cuh"
#include "cuda_backend.cuh"
#include "layers/convolutional.hpp"

namespace dn {
namespace cuda {

namespace {

template <class T, GemmOp kOp, bool kTf32, bool kVecA>
void launch_tile(const ImplicitGemm& p, dim3 grid, cudaStream_t stream) {
  auto kernel = implicit_gemm_kernel<T, kOp, kTf32, kVecA>;
  static std::once_flag attribute_set;  // above 48 KB of shared memory; one device per process
  std::call_once(attribute_set, [&] {
    DN_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)T::kSmemBytes));
  });
  kernel<<<grid, kGemmThreads, T::kSmemBytes, stream>>>(p);
  DN_CUDA_LAUNCH_CHECK();
}

template <class T, GemmOp kOp>
void launch_math(const ImplicitGemm& p, bool tf32, bool vec_a, dim3 grid, cudaStream_t stream) {
  if (kOp == GemmOp::WeightGradient) {
    if (tf32) launch_tile<T, kOp, true, false>(p, grid, stream);
    else launch_tile<T, kOp, false, false>(p, grid, stream);
  } else if (tf32) {
    if (vec_a) launch_tile<T, kOp, true, true>(p, grid, stream);
    else launch_tile<T, kOp, true, false>(p, grid, stream);
  } else {
    if (vec_a) launch_tile<T, kOp, false, true>(p, grid, stream);
    else launch_tile<T, kOp, false, false>(p, grid, stream);
  }
}

template <GemmOp kOp>
void launch_op(const ImplicitGemm& p, int tile_rows, bool tf32, bool vec_a, dim3 grid, cudaStream_t stream) {
  if (tile_rows == TileSmall::BM) launch_math<TileSmall, kOp>(p, tf32, vec_a, grid, stream);
  else if (tile_rows == TileMedium::BM) launch_math<TileMedium, kOp>(p, tf32, vec_a, grid, stream);
  else launch_math<TileLarge, kOp>(p, tf32, vec_a, grid, stream);
}

}  // namespace

bool CudaBackend::implicit_gemm(ImplicitGemm& p, int max_splits, float* mean, float* variance) {
  const GemmLaunch launch = plan_gemm(p, multiprocessors_, max_splits);
  p.ep.partial = launch.partial_floats
                     ? static_cast<float*>(scratch(launch.partial_floats * sizeof(float), kScratchWork))
                     : nullptr;
  // Batch statistics in the epilogue need whole sums: not with split K.
  const bool stats = mean && variance && !p.ep.partial && p.ep.to_map;
  const int filters = p.groups * p.M;
  p.ep.stats = stats ? static_cast<double*>(scratch((size_t)filters * launch.grid_x * 2 * sizeof(double),
                                                    kScratchFilters))
                     : nullptr;
  const dim3 grid(launch.grid_x, launch.grid_y, launch.grid_z);
  const bool tf32 = options_.cuda_math == CudaMath::Tf32 && compute_major_ >= 8;
  if (p.ep.to_map) {
    // 16-byte weight copies: K % 4 == 0 keeps every row (and group) 16-byte aligned.
    const bool vec_a = p.K % 4 == 0 && reinterpret_cast<uintptr_t>(p.a) % 16 == 0;
    launch_op<GemmOp::Forward>(p, launch.tile_rows, tf32, vec_a, grid, stream_);
  } else {
    launch_op<GemmOp::WeightGradient>(p, launch.tile_rows, tf32, false, grid, stream_);
  }
  if (p.ep.partial) {
    conv_splitk_reduce<<<grid_for((size_t)p.groups * p.M * p.N), kThreads, 0, stream_>>>(p);
    DN_CUDA_LAUNCH_CHECK();
  }
  if (stats) {
    conv_stats_finish<<<grid_for((size_t)filters), kThreads, 0, stream_>>>(p.ep.stats, filters, (int)launch.grid_x,
                                                                          (double)p.N, mean, variance);
    DN_CUDA_LAUNCH_CHECK();
  }
  return stats;
}

bool CudaBackend::conv_inference(ConvolutionalLayer& l, const float* input, float* output) {
  if (options_.reference_kernels) return false;
  ImplicitGemm p = forward_gemm(l.shape(), input, l.weights.read(Device::Cuda), output);
  p.ep.bias = l.biases.read(Device::Cuda);
  if (l.batch_normalize) {
    p.ep.bn_scale = l.scales.read(Device::Cuda);
    p.ep.bn_mean = l.rolling_mean.read(Device::Cuda);
    p.ep.bn_var = l.rolling_variance.read(Device::Cuda);
  }
  p.ep.act = l.activation;
  implicit_gemm(p, kForwardMaxSplits);
  return true;
}

bool CudaBackend::conv_forward_raw(ConvolutionalLayer& l, const float* input, float* output) {
  if (options_.reference_kernels) return false;
  ImplicitGemm p = forward_gemm(l.shape(), input, l.weights.read(Device::Cuda), output);
  implicit_gemm(p, kForwardMaxSplits);
  return true;
}

bool CudaBackend::conv_forward_raw_stats(ConvolutionalLayer& l, const float* input, float* output, float* mean,
                                         float* variance) {
  if (options_.reference_kernels) return false;
  ImplicitGemm p = forward_gemm(l.shape(), input, l.weights.read(Device::Cuda), output);
  if (!implicit_gemm(p, kForwardMaxSplits, mean, variance))  // K was split: the separate reduction
    bn_mean_variance(output, l.batch, l.filters, l.out_h * l.out_w, mean, variance);
  return true;
}

bool CudaBackend::conv_weight_gradient(ConvolutionalLayer& l, const float* input, const float* delta) {
  if (options_.reference_kernels) return false;
  ImplicitGemm p = weight_gradient_gemm(l.shape(), input, delta, l.weight_updates.write(Device::Cuda));
  implicit_gemm(p, kWeightGradientMaxSplits);
  return true;
}

bool CudaBackend::conv_input_gradient(ConvolutionalLayer& l, const float* delta, float* prev_delta) {
  const ConvShape s = l.shape();
  if (options_.reference_kernels || !input_gradient_as_forward(s)) return false;
  const int taps = s.size * s.size;
  const size_t count = (size_t)s.filters * s.c * taps;
  float* flipped = static_cast<float*>(scratch(count * sizeof(float), kScratchFilters));
  flip_transpose_filters<<<grid_for(count), kThreads, 0, stream_>>>(l.weights.read(Device::Cuda), s.filters, s.c,
                                                                     taps, flipped);
  DN_CUDA_LAUNCH_CHECK();
  ImplicitGemm p = input_gradient_gemm(s, delta, flipped, prev_delta);
  implicit_gemm(p, kForwardMaxSplits);
  return true;
}

}  // namespace cuda
}  // namespace dn
