// The batch-norm kernels of the multi-block reductions and the fused training passes
// (cuda/batchnorm.cu launches them; tests/cuda_emulation runs them on the CPU too, a thread per
// CUDA thread). A filter's batch x spatial elements are split into chunks so that filters x
// chunks blocks fill the device; each block writes double partial sums, one thread per filter
// adds them in chunk order (deterministic); every per-element step is a formula of
// csrc/kernels/batchnorm.hpp, the CPU's.
#pragma once
#include <algorithm>
#include <cstddef>

#include "core/error.hpp"
#include "kernel_utils.cuh"
#include "kernels/activations.hpp"
#include "kernels/batchnorm.hpp"


namespace dn {
namespace cuda {

// ------------------------------------------------------------ multi-block per-filter sums
constexpr int kPartialThreads = 256;
constexpr unsigned kMinPerChunk = 4096, kMaxChunks = 1024;

// Element j (0 <= j < batch*spatial, 32-bit) of filter f.
DN_KERNEL_INLINE size_t element_offset(unsigned j, int f, int filters, unsigned spatial) {
  const unsigned b = j / spatial, i = j - b * spatial;
  return ((size_t)b * filters + f) * spatial + i;
}

enum class Partial {
  Sum,              // s0 = sum x
  CenteredSquares,  // s0 = sum (x - mean_d[f])^2
  Product,          // s0 = sum delta (x_norm null) or sum delta * x_norm
  DeltaCentered,    // s0 = sum delta, s1 = sum delta * (x - mean[f])
  TrainBackward,    // delta = delta * act'(y) * scale written back; s0 = sum delta*act'(y),
                    // s1 = sum delta*act'(y) * x_norm, s2 = sum scaled, s3 = sum scaled * (x - mean[f])
};

struct PartialArgs {
  const float* x = nullptr;
  const float* y = nullptr;
  const float* x_norm = nullptr;  // TrainBackward / Product: null derives it (x - mean) * inv_std
  float* delta = nullptr;         // read (and written by TrainBackward)
  const float* mean = nullptr;
  const double* mean_d = nullptr;
  const float* variance = nullptr;
  const float* scales = nullptr;
  Activation act = Activation::Linear;
  int batch = 0, filters = 0;
  unsigned spatial = 0, per_chunk = 0, chunks = 1;
};

// Blocks (chunk, filter); partials[(f * chunks + chunk) * kSums + s].
template <Partial kOp, int kSums>
__global__ void __launch_bounds__(kPartialThreads) filter_partials_kernel(PartialArgs a, double* __restrict__ partials) {
  const unsigned chunk = blockIdx.x;
  const int f = (int)blockIdx.y;
  const unsigned count = (unsigned)a.batch * a.spatial;
  const unsigned begin = chunk * a.per_chunk;
  const unsigned end = min(count, begin + a.per_chunk);
  double s[kSums];
#pragma unroll
  for (int k = 0; k < kSums; ++k) s[k] = 0;
  const float mf = a.mean ? a.mean[f] : 0.f;
  const double md = a.mean_d ? a.mean_d[f] : 0.0;
  const float inv_std = a.variance ? bn_inv_std(a.variance[f]) : 1.f;
  const float scale = a.scales ? a.scales[f] : 1.f;
  for (unsigned j = begin + threadIdx.x; j < end; j += blockDim.x) {
    const size_t o = element_offset(j, f, a.filters, a.spatial);
    if (kOp == Partial::Sum) {
      s[0] += a.x[o];
    } else if (kOp == Partial::CenteredSquares) {
      const float v = a.x[o];
      s[0] += (v - md) * (v - md);
    } else if (kOp == Partial::Product) {
      s[0] += a.x_norm ? (double)a.delta[o] * a.x_norm[o] : (double)a.delta[o];
    } else if (kOp == Partial::DeltaCentered) {
      const float d = a.delta[o];
      s[0] += d;
      s[kSums > 1 ? 1 : 0] += (double)d * (a.x[o] - mf);
    } else {  // TrainBackward: the CPU backend's per-element arithmetic
      const float through_act = a.delta[o] * gradient(a.y[o], a.act);
      const float xn = a.x_norm ? a.x_norm[o] : bn_apply(a.x[o], mf, inv_std);
      const float scaled = through_act * scale;
      a.delta[o] = scaled;
      s[0] += through_act;
      s[kSums > 1 ? 1 : 0] += (double)through_act * xn;
      s[kSums > 2 ? 2 : 0] += scaled;
      s[kSums > 3 ? 3 : 0] += (double)scaled * (a.x[o] - mf);
    }
  }
#pragma unroll
  for (int k = 0; k < kSums; ++k) {
    const double total = block_sum(s[k]);
    if (threadIdx.x == 0) partials[((size_t)f * a.chunks + chunk) * kSums + k] = total;
  }
}

// sums[f * kSums + k] = partials of filter f added in chunk order.
template <int kSums>
DN_KERNEL_INLINE void filter_totals(const double* partials, unsigned chunks, int f, double* sums) {
#pragma unroll
  for (int k = 0; k < kSums; ++k) sums[k] = 0;
  for (unsigned c = 0; c < chunks; ++c)
#pragma unroll
    for (int k = 0; k < kSums; ++k) sums[k] += partials[((size_t)f * chunks + c) * kSums + k];
}

__global__ void finish_mean_kernel(const double* __restrict__ partials, unsigned chunks, int filters, double n,
                                   double* __restrict__ mean_d, float* __restrict__ mean) {
  DN_GRID_STRIDE(f, filters) {
    double s;
    filter_totals<1>(partials, chunks, (int)f, &s);
    mean_d[f] = s / n;
    mean[f] = (float)(s / n);
  }
}

__global__ void finish_variance_kernel(const double* __restrict__ partials, unsigned chunks, int filters, double n,
                                       float* __restrict__ variance) {
  DN_GRID_STRIDE(f, filters) {
    double s;
    filter_totals<1>(partials, chunks, (int)f, &s);
    variance[f] = (float)(s / (n - 1));  // N-1, as Darknet
  }
}

__global__ void finish_add_kernel(const double* __restrict__ partials, unsigned chunks, int filters,
                                  float* __restrict__ updates) {
  DN_GRID_STRIDE(f, filters) {
    double s;
    filter_totals<1>(partials, chunks, (int)f, &s);
    updates[f] += (float)s;
  }
}

// Sums 0..1 of the delta pass -> mean_delta, variance_delta (and, with kSums 4, the bias and
// scale gradients from sums 0..1 and the deltas from sums 2..3).
template <int kSums>
__global__ void finish_deltas_kernel(const double* __restrict__ partials, unsigned chunks, int filters,
                                     const float* __restrict__ variance, float* __restrict__ bias_updates,
                                     float* __restrict__ scale_updates, float* __restrict__ mean_delta,
                                     float* __restrict__ variance_delta) {
  DN_GRID_STRIDE(f, filters) {
    double s[kSums];
    filter_totals<kSums>(partials, chunks, (int)f, s);
    const int d = kSums == 4 ? 2 : 0;
    if (kSums == 4) {
      bias_updates[f] += (float)s[0];
      scale_updates[f] += (float)s[1];
    }
    mean_delta[f] = bn_mean_delta(s[d], variance[f]);
    variance_delta[f] = bn_variance_delta(s[d + 1], variance[f]);
  }
}

__global__ void input_delta_kernel(const float* __restrict__ x, const float* __restrict__ mean,
                                   const float* __restrict__ variance, const float* __restrict__ mean_delta,
                                   const float* __restrict__ variance_delta, int batch, int filters, int spatial,
                                   float* __restrict__ delta) {
  const unsigned total = (unsigned)batch * filters * spatial;
  const float n = (float)batch * spatial;
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += blockDim.x * gridDim.x) {
    const int f = (int)((i / (unsigned)spatial) % (unsigned)filters);
    delta[i] = bn_input_delta(delta[i], bn_inv_std(variance[f]), variance_delta[f], x[i], mean[f], mean_delta[f], n);
  }
}

// out = act(x_norm * scale + bias), x_norm = (x - mean) * inv_std kept when asked.
__global__ void train_normalize_kernel(const float* __restrict__ x, const float* __restrict__ mean,
                                       const float* __restrict__ variance, const float* __restrict__ scales,
                                       const float* __restrict__ biases, int batch, int filters, int spatial,
                                       Activation act, float* __restrict__ out, float* __restrict__ x_norm) {
  const unsigned total = (unsigned)batch * filters * spatial;
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += blockDim.x * gridDim.x) {
    const int f = (int)((i / (unsigned)spatial) % (unsigned)filters);
    const float normalized = bn_apply(x[i], mean[f], bn_inv_std(variance[f]));
    if (x_norm) x_norm[i] = normalized;
    out[i] = activate(normalized * scales[f] + biases[f], act);
  }
}

// ------------------------------------------------------------ planning (host)
// Chunks per filter for the multi-block sums: about 4 blocks per multiprocessor in all, at least
// kMinPerChunk elements per chunk.
inline PartialArgs chunked(int batch, int filters, int spatial, int multiprocessors) {
  const size_t count = (size_t)batch * spatial;
  check(count * filters < ((size_t)1 << 32), "batch norm (CUDA): ", batch, " x ", filters, " x ", spatial,
        " elements exceed 32-bit indexing");
  check(filters <= 65535, "batch norm (CUDA): ", filters, " filters exceed the grid limit");
  PartialArgs a;
  a.batch = batch, a.filters = filters, a.spatial = (unsigned)spatial;
  const size_t want = (4 * (size_t)multiprocessors + filters - 1) / filters;
  const size_t chunks = std::max<size_t>(1, std::min<size_t>({want, count / kMinPerChunk, (size_t)kMaxChunks}));
  a.per_chunk = (unsigned)((count + chunks - 1) / chunks);
  a.chunks = (unsigned)((count + a.per_chunk - 1) / a.per_chunk);
  return a;
}

}  // namespace cuda
}  // namespace dn
