// Batch-norm arithmetic in Darknet's layout (batch, filters, spatial), with the
// declared semantics: normalise by sqrt(var + 1e-5) in training and inference.
#pragma once
#include <math.h>

#include <cmath>
#include <cstddef>

#include "core/hd.hpp"
#include "core/options.hpp"
#include "kernels/activations.hpp"

namespace dn {

constexpr float kBatchNormEpsilon = 1e-5f;

DN_HD float bn_normalize(float x, float mean, float variance) {
  return (x - mean) / sqrtf(variance + kBatchNormEpsilon);
}

// The per-element pieces the CPU loops (batchnorm.cpp, convolutional.cpp) and
// the CUDA kernels (cuda/batchnorm.cu) share, written once so both round alike.
// 1 / sqrt(var + eps), computed once per filter.
DN_HD float bn_inv_std(float variance) { return 1.f / sqrtf(variance + kBatchNormEpsilon); }
// Inference batch norm folded into the convolution's epilogue, y = conv * scale' + bias':
// scale' = scale / sqrt(var + eps), bias' = bias - mean * scale' (CPU: fold_batchnorm;
// CUDA: the implicit-GEMM epilogue of cuda/conv_fast.cu).
DN_HD float bn_folded_scale(float scale, float variance) { return scale / sqrtf(variance + kBatchNormEpsilon); }
DN_HD float bn_folded_bias(float bias, float mean, float folded_scale) { return bias - mean * folded_scale; }
// Normalisation with the per-filter factor above: (x - mean) * inv_std.
DN_HD float bn_apply(float x, float mean, float inv_std) { return (x - mean) * inv_std; }
// Rolling statistics as Darknet: 0.99 * old + 0.01 * batch value. The two factors are named so a
// data-parallel job can compose several processes' updates (darknet_py/distributed.py); the 0.01
// stays its own literal (1 - 0.99f rounds to another float).
constexpr float kBatchNormRollingKeep = .99f;
constexpr float kBatchNormRollingTake = .01f;
DN_HD float bn_rolling(float old_value, float batch_value) {
  return kBatchNormRollingKeep * old_value + kBatchNormRollingTake * batch_value;
}
// Darknet's mean_delta / variance_delta from the per-filter sums
// sum(delta) and sum(delta * (x - mean)) (accumulated in double).
DN_HD float bn_mean_delta(double delta_sum, float variance) {
  const float var_eps = variance + kBatchNormEpsilon;
  return (float)(delta_sum * (-1.0 / ::sqrt((double)var_eps)));
}
DN_HD float bn_variance_delta(double centered_sum, float variance) {
  const float var_eps = variance + kBatchNormEpsilon;
  return (float)(centered_sum * -.5 * ::pow((double)var_eps, -1.5));
}
// Darknet's normalize_delta for one element; n = batch * spatial.
DN_HD float bn_input_delta(float delta, float inv_std, float variance_delta, float x, float mean, float mean_delta,
                           float n) {
  return delta * inv_std + variance_delta * 2.f * (x - mean) / n + mean_delta / n;
}

// Per-filter mean and variance (divisor N-1, as Darknet) over batch*spatial.
void bn_mean_variance(const float* x, int batch, int filters, int spatial, float* mean, float* variance);
// The same statistics with the double sums vectorised (lanes summed at the end, so the
// order differs from the reference loop by rounding only); per filter, so the result
// does not depend on the thread count.
void bn_mean_variance_simd(const float* x, int batch, int filters, int spatial, float* mean, float* variance);
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

// ---- the training path's fused batch norm (CPU, AVX2 and up; leaky and linear layers)
// It keeps only x (the raw conv output) for the backward: x_norm and the activation's slope
// are recomputed from x with the forward's float operations (same bits), so the forward
// writes one array instead of three and the backward reads two instead of four.
bool bn_fused_supported(CpuIsa isa, Activation act);
// out = act(bn_apply(x, mean, inv_std) * scale + bias), the product and sum as one fma.
void bn_train_forward_fused(CpuIsa isa, const float* x, const float* mean, const float* variance,
                            const float* scales, const float* biases, int batch, int filters, int spatial,
                            Activation act, float* out);
// Given delta at the output: bias/scale gradients added, mean/variance deltas written, and
// delta replaced by Darknet's input delta of the batch norm; two reads of x and delta per filter.
void bn_train_backward_fused(CpuIsa isa, const float* x, const float* mean, const float* variance,
                             const float* scales, const float* biases, int batch, int filters, int spatial,
                             Activation act, float* bias_updates, float* scale_updates, float* mean_delta,
                             float* variance_delta, float* delta);

}  // namespace dn
