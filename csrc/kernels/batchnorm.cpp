#include "kernels/batchnorm.hpp"

#include <immintrin.h>

#include <algorithm>

#include "core/error.hpp"
#include "kernels/gemm.hpp"
#include "kernels/simd_avx2.hpp"

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

// ---------------------------------------------------------------- fused training batch norm
namespace {

// The pre-activation of one vector: fma(bn_apply(x), scale, bias).
struct BnLane {
  __m256 mean, inv, scale, bias;
};
__attribute__((target("avx2,fma"))) inline __m256 bn_normalized(const BnLane& l, __m256 x) {
  return _mm256_mul_ps(_mm256_sub_ps(x, l.mean), l.inv);
}
// Darknet's leaky: v > 0 ? v : .1 * v (NaN stays NaN); linear: v.
__attribute__((target("avx2,fma"))) inline __m256 bn_activate(__m256 v, bool leaky) {
  if (!leaky) return v;
  const __m256 positive = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ);
  return _mm256_blendv_ps(_mm256_mul_ps(v, _mm256_set1_ps(.1f)), v, positive);
}
// The activation's slope at v (1 or .1), as gradient_array's.
__attribute__((target("avx2,fma"))) inline __m256 bn_slope(__m256 v, bool leaky) {
  if (!leaky) return _mm256_set1_ps(1.f);
  const __m256 positive = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ);
  return _mm256_blendv_ps(_mm256_set1_ps(.1f), _mm256_set1_ps(1.f), positive);
}
__attribute__((target("avx2,fma"))) inline __m256d widen_low(__m256 v) {
  return _mm256_cvtps_pd(_mm256_castps256_ps128(v));
}
__attribute__((target("avx2,fma"))) inline __m256d widen_high(__m256 v) {
  return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}
__attribute__((target("avx2,fma"))) inline double sum_lanes(__m256d a) {
  alignas(32) double t[4];
  _mm256_store_pd(t, a);
  return (t[0] + t[1]) + (t[2] + t[3]);
}

__attribute__((target("avx2,fma"))) void forward_fused_avx2(const float* x, const float* mean, const float* variance,
                                                             const float* scales, const float* biases, int batch,
                                                             int filters, int spatial, bool leaky, float* out) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < batch; ++b)
    for (int f = 0; f < filters; ++f) {
      const size_t off = ((size_t)b * filters + f) * spatial;
      const float* px = x + off;
      float* po = out + off;
      const BnLane l{_mm256_set1_ps(mean[f]), _mm256_set1_ps(bn_inv_std(variance[f])), _mm256_set1_ps(scales[f]),
                     _mm256_set1_ps(biases[f])};
      int i = 0;
      for (; i + 8 <= spatial; i += 8) {
        const __m256 v = _mm256_fmadd_ps(bn_normalized(l, _mm256_loadu_ps(px + i)), l.scale, l.bias);
        _mm256_storeu_ps(po + i, bn_activate(v, leaky));
      }
      if (i < spatial) {
        const __m256i mask = tail_mask_avx2(spatial - i);
        const __m256 v = _mm256_fmadd_ps(bn_normalized(l, _mm256_maskload_ps(px + i, mask)), l.scale, l.bias);
        _mm256_maskstore_ps(po + i, mask, bn_activate(v, leaky));
      }
    }
}

// delta * slope * scale of one vector, recomputed from x in both backward passes (same bits).
struct BnBackLane {
  __m256 centered, normalized, through, scaled;
};
__attribute__((target("avx2,fma"))) inline BnBackLane bn_back_lane(const BnLane& l, __m256 x, __m256 d, bool leaky) {
  BnBackLane r;
  r.centered = _mm256_sub_ps(x, l.mean);
  r.normalized = _mm256_mul_ps(r.centered, l.inv);
  r.through = _mm256_mul_ps(d, bn_slope(_mm256_fmadd_ps(r.normalized, l.scale, l.bias), leaky));
  r.scaled = _mm256_mul_ps(r.through, l.scale);
  return r;
}
struct BnSums {
  __m256d bias, scale, delta, centered;
};
__attribute__((target("avx2,fma"))) inline void bn_add_sums(BnSums& s, const BnBackLane& v) {
  s.bias = _mm256_add_pd(s.bias, _mm256_add_pd(widen_low(v.through), widen_high(v.through)));
  s.scale = _mm256_fmadd_pd(widen_low(v.through), widen_low(v.normalized), s.scale);
  s.scale = _mm256_fmadd_pd(widen_high(v.through), widen_high(v.normalized), s.scale);
  s.delta = _mm256_add_pd(s.delta, _mm256_add_pd(widen_low(v.scaled), widen_high(v.scaled)));
  s.centered = _mm256_fmadd_pd(widen_low(v.scaled), widen_low(v.centered), s.centered);
  s.centered = _mm256_fmadd_pd(widen_high(v.scaled), widen_high(v.centered), s.centered);
}
// bn_input_delta: scaled * inv_std + vd * 2 * (x - m) / n + md / n.
__attribute__((target("avx2,fma"))) inline __m256 bn_input_lane(const BnLane& l, const BnBackLane& v, __m256 vd2,
                                                                 __m256 n, __m256 md_n) {
  const __m256 spread = _mm256_div_ps(_mm256_mul_ps(vd2, v.centered), n);
  return _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(v.scaled, l.inv), spread), md_n);
}

__attribute__((target("avx2,fma"))) void backward_fused_avx2(const float* x, const float* mean, const float* variance,
                                                              const float* scales, const float* biases, int batch,
                                                              int filters, int spatial, bool leaky,
                                                              float* bias_updates, float* scale_updates,
                                                              float* mean_delta, float* variance_delta,
                                                              float* delta) {
  const float n = (float)batch * spatial;
  const int full = spatial / 8 * 8;
  const __m256i mask = tail_mask_avx2(spatial - full);
#pragma omp parallel for schedule(static)
  for (int f = 0; f < filters; ++f) {
    const float m = mean[f];
    const BnLane l{_mm256_set1_ps(m), _mm256_set1_ps(bn_inv_std(variance[f])), _mm256_set1_ps(scales[f]),
                   _mm256_set1_ps(biases[f])};
    // Pass 1: the four double sums (the tail's masked lanes read as zero deltas: they add 0).
    BnSums sums;
    sums.bias = sums.scale = sums.delta = sums.centered = _mm256_setzero_pd();
    for (int b = 0; b < batch; ++b) {
      const size_t off = ((size_t)b * filters + f) * spatial;
      const float *px = x + off, *pd = delta + off;
      for (int i = 0; i < full; i += 8)
        bn_add_sums(sums, bn_back_lane(l, _mm256_loadu_ps(px + i), _mm256_loadu_ps(pd + i), leaky));
      if (full < spatial)
        bn_add_sums(sums, bn_back_lane(l, _mm256_maskload_ps(px + full, mask), _mm256_maskload_ps(pd + full, mask),
                                       leaky));
    }
    bias_updates[f] += (float)sum_lanes(sums.bias);
    scale_updates[f] += (float)sum_lanes(sums.scale);
    const float md = bn_mean_delta(sum_lanes(sums.delta), variance[f]);
    const float vd = bn_variance_delta(sum_lanes(sums.centered), variance[f]);
    mean_delta[f] = md;
    variance_delta[f] = vd;
    // Pass 2: the input delta.
    const __m256 vd2 = _mm256_set1_ps(vd * 2.f), nv = _mm256_set1_ps(n), md_n = _mm256_set1_ps(md / n);
    for (int b = 0; b < batch; ++b) {
      const size_t off = ((size_t)b * filters + f) * spatial;
      const float* px = x + off;
      float* pd = delta + off;
      for (int i = 0; i < full; i += 8) {
        const BnBackLane v = bn_back_lane(l, _mm256_loadu_ps(px + i), _mm256_loadu_ps(pd + i), leaky);
        _mm256_storeu_ps(pd + i, bn_input_lane(l, v, vd2, nv, md_n));
      }
      if (full < spatial) {
        const BnBackLane v =
            bn_back_lane(l, _mm256_maskload_ps(px + full, mask), _mm256_maskload_ps(pd + full, mask), leaky);
        _mm256_maskstore_ps(pd + full, mask, bn_input_lane(l, v, vd2, nv, md_n));
      }
    }
  }
}

}  // namespace

bool bn_fused_supported(CpuIsa isa, Activation act) {
  return isa != CpuIsa::Plain && (act == Activation::Leaky || act == Activation::Linear);
}

void bn_train_forward_fused(CpuIsa isa, const float* x, const float* mean, const float* variance,
                            const float* scales, const float* biases, int batch, int filters, int spatial,
                            Activation act, float* out) {
  check(bn_fused_supported(isa, act), "bn_train_forward_fused: needs AVX2 and a leaky or linear activation");
  require_cpu_isa(isa);
  forward_fused_avx2(x, mean, variance, scales, biases, batch, filters, spatial, act == Activation::Leaky, out);
}

void bn_train_backward_fused(CpuIsa isa, const float* x, const float* mean, const float* variance,
                             const float* scales, const float* biases, int batch, int filters, int spatial,
                             Activation act, float* bias_updates, float* scale_updates, float* mean_delta,
                             float* variance_delta, float* delta) {
  check(bn_fused_supported(isa, act), "bn_train_backward_fused: needs AVX2 and a leaky or linear activation");
  require_cpu_isa(isa);
  backward_fused_avx2(x, mean, variance, scales, biases, batch, filters, spatial, act == Activation::Leaky,
                      bias_updates, scale_updates, mean_delta, variance_delta, delta);
}

}  // namespace dn
