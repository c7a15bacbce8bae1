#include "kernels/batchnorm.hpp"

namespace dn {

namespace {

// acc += the plane's values (kSquares: their squared distances to m), in order, or vectorised
// (lane partial sums: the order differs by rounding only).
template <bool kVectorised, bool kSquares>
inline void add_plane(const float* p, int n, double m, double& acc) {
  double s = acc;
  if constexpr (kVectorised) {
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; ++i) s += kSquares ? (p[i] - m) * (p[i] - m) : p[i];
  } else {
    for (int i = 0; i < n; ++i) s += kSquares ? (p[i] - m) * (p[i] - m) : p[i];
  }
  acc = s;
}

template <bool kVectorised>
void mean_variance(const float* x, int batch, int filters, int spatial, float* mean, float* variance) {
  const double n = (double)batch * spatial;
#pragma omp parallel for schedule(static)
  for (int f = 0; f < filters; ++f) {
    auto plane = [&](int b) { return x + ((size_t)b * filters + f) * spatial; };
    double sum = 0;
    for (int b = 0; b < batch; ++b) add_plane<kVectorised, false>(plane(b), spatial, 0, sum);
    const double m = sum / n;
    double sq = 0;
    for (int b = 0; b < batch; ++b) add_plane<kVectorised, true>(plane(b), spatial, m, sq);
    mean[f] = (float)m;
    variance[f] = (float)(sq / (n - 1));
  }
}

}  // namespace

void bn_mean_variance(const float* x, int batch, int filters, int spatial, float* mean, float* variance) {
  mean_variance<false>(x, batch, filters, spatial, mean, variance);
}

void bn_mean_variance_simd(const float* x, int batch, int filters, int spatial, float* mean, float* variance) {
  mean_variance<true>(x, batch, filters, spatial, mean, variance);
}

void bn_normalize_array(float* x, const float* mean, const float* variance, int batch, int filters, int spatial) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < batch; ++b)
    for (int f = 0; f < filters; ++f) {
      float* p = x + ((size_t)b * filters + f) * spatial;
      const float m = mean[f], inv = bn_inv_std(variance[f]);
      for (int i = 0; i < spatial; ++i) p[i] = bn_apply(p[i], m, inv);
    }
}

void scale_bias(float* x, const float* scales, int batch, int filters, int spatial) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < batch; ++b)
    for (int f = 0; f < filters; ++f) {
      float* p = x + ((size_t)b * filters + f) * spatial;
      for (int i = 0; i < spatial; ++i) p[i] *= scales[f];
    }
}

void add_bias(float* x, const float* biases, int batch, int filters, int spatial) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < batch; ++b)
    for (int f = 0; f < filters; ++f) {
      float* p = x + ((size_t)b * filters + f) * spatial;
      for (int i = 0; i < spatial; ++i) p[i] += biases[f];
    }
}

void backward_bias(float* bias_updates, const float* delta, int batch, int filters, int spatial) {
#pragma omp parallel for schedule(static)
  for (int f = 0; f < filters; ++f) {
    double sum = 0;
    for (int b = 0; b < batch; ++b) {
      const float* p = delta + ((size_t)b * filters + f) * spatial;
      for (int i = 0; i < spatial; ++i) sum += p[i];
    }
    bias_updates[f] += (float)sum;
  }
}

void backward_scale(const float* x_norm, const float* delta, int batch, int filters, int spatial,
                    float* scale_updates) {
#pragma omp parallel for schedule(static)
  for (int f = 0; f < filters; ++f) {
    double sum = 0;
    for (int b = 0; b < batch; ++b) {
      const size_t off = ((size_t)b * filters + f) * spatial;
      for (int i = 0; i < spatial; ++i) sum += (double)delta[off + i] * x_norm[off + i];
    }
    scale_updates[f] += (float)sum;
  }
}

void bn_backward_delta(const float* x, const float* mean, const float* variance, int batch, int filters,
                       int spatial, float* mean_delta, float* variance_delta, float* delta) {
  const float n = (float)batch * spatial;
#pragma omp parallel for schedule(static)
  for (int f = 0; f < filters; ++f) {
    double dsum = 0, vsum = 0;
    for (int b = 0; b < batch; ++b) {
      const size_t off = ((size_t)b * filters + f) * spatial;
      for (int i = 0; i < spatial; ++i) {
        dsum += delta[off + i];
        vsum += (double)delta[off + i] * (x[off + i] - mean[f]);
      }
    }
    mean_delta[f] = bn_mean_delta(dsum, variance[f]);
    variance_delta[f] = bn_variance_delta(vsum, variance[f]);
    const float inv_std = bn_inv_std(variance[f]);
    for (int b = 0; b < batch; ++b) {
      const size_t off = ((size_t)b * filters + f) * spatial;
      for (int i = 0; i < spatial; ++i)
        delta[off + i] = bn_input_delta(delta[off + i], inv_std, variance_delta[f], x[off + i], mean[f],
                                        mean_delta[f], n);
    }
  }
}

}  // namespace dn
