// Batch-norm arithmetic in Darknet's layout (batch, filters, spatial), with the
// declared semantics: normalise by sqrt(var + 1e-5) in training and inference.
#pragma once
#include <cmath>
#include <cstddef>

#include "core/hd.hpp"

namespace dn {

constexpr float kBatchNormEpsilon = 1e-5f;

DN_HD float bn_normalize(float x, float mean, float variance) {
  return (x - mean) / sqrtf(variance + kBatchNormEpsilon);
}

// Per-filter mean and variance (divisor N-1, as Darknet) over batch*spatial.
void bn_mean_variance(const float* x, int batch, int filters, int spatial, float* mean, float* variance);
void bn_normalize_array(float* x, const float* mean, const float* variance, int batch, int filters, int spatial);
void scale_bias(float* x, const float* scales, int batch, int filters, int spatial);
void add_bias(float* x, const float* biases, int batch, int filters, int spatial);
// updates[f] += sum over batch/spatial of delta (bias) or delta*x_norm (scale).
void backward_bias(float* bias_updates, const float* delta, int batch, int filters, int spatial);
void backward_scale(const float* x_norm, const float* delta, int batch, int filters, int spatial,
                    float* scale_updates);
// Darknet's batch-norm input gradient (mean_delta, variance_delta, normalize_delta).
void bn_backward_delta(const float* x, const float* mean, const float* variance, int batch, int filters,
                       int spatial, float* mean_delta, float* variance_delta, float* delta);

}  // namespace dn
