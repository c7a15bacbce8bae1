// The batch-norm ops, mirroring csrc/kernels/batchnorm.cpp and the CPU backend's fused
// training passes: per-filter statistics and gradient sums accumulate in double over
// multi-block reductions (a filter's batch x spatial elements split into chunks so that
// filters x chunks blocks fill the device; each block writes its partial sums, one thread
// per filter adds them in chunk order: deterministic), and every per-element step calls the
// shared formulas of csrc/kernels/batchnorm.hpp. Training runs fused: the normalisation,
// scale, bias and activation in one element pass; the activation gradient, the bias, scale,
// mean and variance sums in one reduction pass, then one element pass for the input delta.
#include <algorithm>

#include "batchnorm.cuh"
#include "common.cuh"
#include "cuda_backend.cuh"

namespace dn {
namespace cuda {

namespace {

__global__ void normalize_kernel(float* __restrict__ x, const float* __restrict__ mean,
                                 const float* __restrict__ variance, size_t total, int filters, int spatial) {
  DN_GRID_STRIDE(i, total) {
    const int f = (int)((i / (size_t)spatial) % (size_t)filters);
    x[i] = bn_apply(x[i], mean[f], bn_inv_std(variance[f]));
  }
}

__global__ void rolling_kernel(float* __restrict__ rolling_mean, float* __restrict__ rolling_variance,
                               const float* __restrict__ mean, const float* __restrict__ variance, int filters) {
  DN_GRID_STRIDE(f, filters) {
    rolling_mean[f] = bn_rolling(rolling_mean[f], mean[f]);
    rolling_variance[f] = bn_rolling(rolling_variance[f], variance[f]);
  }
}

__global__ void scale_kernel(float* __restrict__ x, const float* __restrict__ scales, size_t total, int filters,
                             int spatial) {
  DN_GRID_STRIDE(i, total) x[i] *= scales[(i / (size_t)spatial) % (size_t)filters];
}

__global__ void bias_kernel(float* __restrict__ x, const float* __restrict__ biases, size_t total, int filters,
                            int spatial) {
  DN_GRID_STRIDE(i, total) x[i] += biases[(i / (size_t)spatial) % (size_t)filters];
}

}  // namespace

// delta = Darknet's normalize_delta of every element, from mean_delta / variance_delta.
static void launch_input_delta(const float* x, const float* mean, const float* variance, const float* mean_delta,
                               const float* variance_delta, int batch, int filters, int spatial, float* delta,
                               cudaStream_t stream) {
  const size_t total = (size_t)batch * filters * spatial;
  input_delta_kernel<<<grid_for(total), kThreads, 0, stream>>>(x, mean, variance, mean_delta, variance_delta, batch,
                                                               filters, spatial, delta);
  DN_CUDA_LAUNCH_CHECK();
}

template <Partial kOp, int kSums>
static void launch_partials(const PartialArgs& a, double* partials, cudaStream_t stream) {
  filter_partials_kernel<kOp, kSums><<<dim3(a.chunks, (unsigned)a.filters), kPartialThreads, 0, stream>>>(a, partials);
  DN_CUDA_LAUNCH_CHECK();
}


void CudaBackend::bn_mean_variance(const float* x, int batch, int filters, int spatial, float* mean,
                                   float* variance) {
  if (filters <= 0 || batch <= 0 || spatial <= 0) return;
  PartialArgs a = chunked(batch, filters, spatial, multiprocessors_);
  double* partials = partial_sums((size_t)filters * a.chunks + (size_t)filters);
  double* mean_d = partials + (size_t)filters * a.chunks;  // the mean in double for the second pass
  const double n = (double)batch * spatial;
  a.x = x;
  launch_partials<Partial::Sum, 1>(a, partials, stream_);
  finish_mean_kernel<<<grid_for(filters), kThreads, 0, stream_>>>(partials, a.chunks, filters, n, mean_d, mean);
  DN_CUDA_LAUNCH_CHECK();
  a.mean_d = mean_d;
  launch_partials<Partial::CenteredSquares, 1>(a, partials, stream_);
  finish_variance_kernel<<<grid_for(filters), kThreads, 0, stream_>>>(partials, a.chunks, filters, n, variance);
  DN_CUDA_LAUNCH_CHECK();
}

void CudaBackend::bn_rolling_update(float* rolling_mean, float* rolling_variance, const float* mean,
                                    const float* variance, int filters) {
  if (filters <= 0) return;
  rolling_kernel<<<grid_for(filters), kThreads, 0, stream_>>>(rolling_mean, rolling_variance, mean, variance,
                                                              filters);
  DN_CUDA_LAUNCH_CHECK();
}

void CudaBackend::bn_normalize(float* x, const float* mean, const float* variance, int batch, int filters,
                               int spatial) {
  if (batch <= 0 || filters <= 0 || spatial <= 0) return;
  const size_t total = (size_t)batch * filters * spatial;
  normalize_kernel<<<grid_for(total), kThreads, 0, stream_>>>(x, mean, variance, total, filters, spatial);
  DN_CUDA_LAUNCH_CHECK();
}

void CudaBackend::scale_bias(float* x, const float* scales, int batch, int filters, int spatial) {
  if (batch <= 0 || filters <= 0 || spatial <= 0) return;
  const size_t total = (size_t)batch * filters * spatial;
  scale_kernel<<<grid_for(total), kThreads, 0, stream_>>>(x, scales, total, filters, spatial);
  DN_CUDA_LAUNCH_CHECK();
}

void CudaBackend::add_bias(float* x, const float* biases, int batch, int filters, int spatial) {
  if (batch <= 0 || filters <= 0 || spatial <= 0) return;
  const size_t total = (size_t)batch * filters * spatial;
  bias_kernel<<<grid_for(total), kThreads, 0, stream_>>>(x, biases, total, filters, spatial);
  DN_CUDA_LAUNCH_CHECK();
}

void CudaBackend::backward_bias(float* bias_updates, const float* delta, int batch, int filters, int spatial) {
  backward_scale(nullptr, delta, batch, filters, spatial, bias_updates);  // sum of delta alone
}

void CudaBackend::backward_scale(const float* x_norm, const float* delta, int batch, int filters, int spatial,
                                 float* scale_updates) {
  if (filters <= 0 || batch <= 0 || spatial <= 0) return;
  PartialArgs a = chunked(batch, filters, spatial, multiprocessors_);
  a.x_norm = x_norm;
  a.delta = const_cast<float*>(delta);  // Product only reads it
  double* partials = partial_sums((size_t)filters * a.chunks);
  launch_partials<Partial::Product, 1>(a, partials, stream_);
  finish_add_kernel<<<grid_for(filters), kThreads, 0, stream_>>>(partials, a.chunks, filters, scale_updates);
  DN_CUDA_LAUNCH_CHECK();
}

void CudaBackend::bn_backward_delta(const float* x, const float* mean, const float* variance, int batch, int filters,
                                    int spatial, float* mean_delta, float* variance_delta, float* delta) {
  if (filters <= 0 || batch <= 0 || spatial <= 0) return;
  PartialArgs a = chunked(batch, filters, spatial, multiprocessors_);
  a.x = x, a.mean = mean, a.delta = delta;
  double* partials = partial_sums((size_t)filters * a.chunks * 2);
  launch_partials<Partial::DeltaCentered, 2>(a, partials, stream_);
  finish_deltas_kernel<2><<<grid_for(filters), kThreads, 0, stream_>>>(partials, a.chunks, filters, variance, nullptr,
                                                                       nullptr, mean_delta, variance_delta);
  DN_CUDA_LAUNCH_CHECK();
  launch_input_delta(x, mean, variance, mean_delta, variance_delta, batch, filters, spatial, delta, stream_);
}

void CudaBackend::bn_train_normalize(const float* mean, const float* variance, const float* scales,
                                     const float* biases, int batch, int filters, int spatial, Activation act,
                                     const float* x, float* out, float* x_norm) {
  if (filters <= 0 || batch <= 0 || spatial <= 0) return;
  (void)chunked(batch, filters, spatial, multiprocessors_);  // the 32-bit check
  const size_t total = (size_t)batch * filters * spatial;
  train_normalize_kernel<<<grid_for(total), kThreads, 0, stream_>>>(x, mean, variance, scales, biases, batch, filters,
                                                                    spatial, act, out, x_norm);
  DN_CUDA_LAUNCH_CHECK();
}

void CudaBackend::bn_train_backward(const float* y, Activation act, const float* x, const float* x_norm,
                                    const float* mean, const float* variance, const float* scales,
                                    const float* biases, int batch, int filters, int spatial, float* bias_updates,
                                    float* scale_updates, float* mean_delta, float* variance_delta, float* delta) {
  (void)biases;
  if (filters <= 0 || batch <= 0 || spatial <= 0) return;
  PartialArgs a = chunked(batch, filters, spatial, multiprocessors_);
  a.x = x, a.y = y, a.x_norm = x_norm, a.delta = delta, a.mean = mean, a.variance = variance, a.scales = scales;
  a.act = act;
  double* partials = partial_sums((size_t)filters * a.chunks * 4);
  launch_partials<Partial::TrainBackward, 4>(a, partials, stream_);
  finish_deltas_kernel<4><<<grid_for(filters), kThreads, 0, stream_>>>(partials, a.chunks, filters, variance,
                                                                       bias_updates, scale_updates, mean_delta,
                                                                       variance_delta);
  DN_CUDA_LAUNCH_CHECK();
  launch_input_delta(x, mean, variance, mean_delta, variance_delta, batch, filters, spatial, delta, stream_);
}

}  // namespace cuda
}  // namespace dn
