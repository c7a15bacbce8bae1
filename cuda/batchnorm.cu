// The batch-norm ops, mirroring csrc/kernels/batchnorm.cpp: per-filter
// statistics and gradient sums accumulate in double (one block per filter,
// coalesced over each filter's spatial planes; 1024 threads when there are
// too few filters to fill the device), and every per-element step calls the
// shared formulas of csrc/kernels/batchnorm.hpp.
#include "common.cuh"
#include "cuda_backend.cuh"
#include "kernels/batchnorm.hpp"

namespace dn {
namespace cuda {

namespace {

constexpr int kFilterThreadsMax = 1024;  // see CudaBackend::filter_threads

// Element j (0 <= j < batch*spatial) of filter f: image j / spatial, offset j % spatial.
__device__ inline size_t filter_offset(size_t j, int f, int filters, int spatial) {
  const size_t b = j / (size_t)spatial, i = j % (size_t)spatial;
  return (b * filters + f) * (size_t)spatial + i;
}

__global__ void __launch_bounds__(kFilterThreadsMax)
    mean_variance_kernel(const float* __restrict__ x, int batch, int filters, int spatial,
                         float* __restrict__ mean, float* __restrict__ variance) {
  const int f = blockIdx.x;
  const size_t count = (size_t)batch * spatial;
  const double n = (double)batch * spatial;
  double sum = 0;
  for (size_t j = threadIdx.x; j < count; j += blockDim.x) sum += x[filter_offset(j, f, filters, spatial)];
  const double m = block_sum(sum) / n;
  double sq = 0;
  for (size_t j = threadIdx.x; j < count; j += blockDim.x) {
    const float v = x[filter_offset(j, f, filters, spatial)];
    sq += (v - m) * (v - m);
  }
  sq = block_sum(sq);
  if (threadIdx.x == 0) {
    mean[f] = (float)m;
    variance[f] = (float)(sq / (n - 1));  // N-1, as Darknet
  }
}

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

// updates[f] += sum(delta) (x_norm == nullptr) or sum(delta * x_norm).
__global__ void __launch_bounds__(kFilterThreadsMax)
    filter_sum_kernel(const float* __restrict__ delta, const float* __restrict__ x_norm, int batch, int filters,
                      int spatial, float* __restrict__ updates) {
  const int f = blockIdx.x;
  const size_t count = (size_t)batch * spatial;
  double sum = 0;
  if (x_norm) {
    for (size_t j = threadIdx.x; j < count; j += blockDim.x) {
      const size_t o = filter_offset(j, f, filters, spatial);
      sum += (double)delta[o] * x_norm[o];
    }
  } else {
    for (size_t j = threadIdx.x; j < count; j += blockDim.x) sum += delta[filter_offset(j, f, filters, spatial)];
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) updates[f] += (float)sum;
}

// One block per filter: the two sums, mean_delta / variance_delta, then the
// element update. The block owns all of its filter's elements, so reading the
// old delta (sums) before writing the new one only needs the block barrier.
__global__ void __launch_bounds__(kFilterThreadsMax)
    bn_delta_kernel(const float* __restrict__ x, const float* __restrict__ mean,
                    const float* __restrict__ variance, int batch, int filters, int spatial,
                    float* __restrict__ mean_delta, float* __restrict__ variance_delta, float* __restrict__ delta) {
  const int f = blockIdx.x;
  const size_t count = (size_t)batch * spatial;
  const float mf = mean[f];
  double dsum = 0, vsum = 0;
  for (size_t j = threadIdx.x; j < count; j += blockDim.x) {
    const size_t o = filter_offset(j, f, filters, spatial);
    dsum += delta[o];
    vsum += (double)delta[o] * (x[o] - mf);
  }
  dsum = block_sum(dsum);  // also the barrier between the reads above and the writes below
  vsum = block_sum(vsum);
  const float md = bn_mean_delta(dsum, variance[f]);
  const float vd = bn_variance_delta(vsum, variance[f]);
  if (threadIdx.x == 0) {
    mean_delta[f] = md;
    variance_delta[f] = vd;
  }
  const float inv_std = bn_inv_std(variance[f]);
  const float n = (float)batch * spatial;
  for (size_t j = threadIdx.x; j < count; j += blockDim.x) {
    const size_t o = filter_offset(j, f, filters, spatial);
    delta[o] = bn_input_delta(delta[o], inv_std, vd, x[o], mf, md, n);
  }
}

}  // namespace

void CudaBackend::bn_mean_variance(const float* x, int batch, int filters, int spatial, float* mean,
                                   float* variance) {
  if (filters <= 0 || batch <= 0 || spatial <= 0) return;
  mean_variance_kernel<<<filters, filter_threads(filters), 0, stream_>>>(x, batch, filters, spatial, mean, variance);
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
  if (filters <= 0 || batch <= 0 || spatial <= 0) return;
  filter_sum_kernel<<<filters, filter_threads(filters), 0, stream_>>>(delta, nullptr, batch, filters, spatial,
                                                                      bias_updates);
  DN_CUDA_LAUNCH_CHECK();
}

void CudaBackend::backward_scale(const float* x_norm, const float* delta, int batch, int filters, int spatial,
                                 float* scale_updates) {
  if (filters <= 0 || batch <= 0 || spatial <= 0) return;
  filter_sum_kernel<<<filters, filter_threads(filters), 0, stream_>>>(delta, x_norm, batch, filters, spatial,
                                                                      scale_updates);
  DN_CUDA_LAUNCH_CHECK();
}

void CudaBackend::bn_backward_delta(const float* x, const float* mean, const float* variance, int batch, int filters,
                                    int spatial, float* mean_delta, float* variance_delta, float* delta) {
  if (filters <= 0 || batch <= 0 || spatial <= 0) return;
  bn_delta_kernel<<<filters, filter_threads(filters), 0, stream_>>>(x, mean, variance, batch, filters, spatial,
                                                                    mean_delta, variance_delta, delta);
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace dn
