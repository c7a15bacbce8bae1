#include "layers/convolutional.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "kernels/batchnorm.hpp"
#include "kernels/conv_fast.hpp"
#include "kernels/gemm.hpp"
#include "kernels/im2col.hpp"
#include "kernels/sgd.hpp"
#include "kernels/winograd.hpp"
#include "layers/layers.hpp"
#include "network.hpp"

namespace dn {

namespace {
int conv_out_size(int in, int size, int stride, int pad) { return (in + 2 * pad - size) / stride + 1; }
}  // namespace

std::unique_ptr<Layer> make_convolutional(const CfgSection& s, const LayerInput& in, Network&) {
  auto l = std::make_unique<ConvolutionalLayer>();
  l->type = "convolutional";
  l->batch = in.batch;
  l->w = in.w;
  l->h = in.h;
  l->c = in.c;
  l->filters = s.get_int("filters", 1);
  l->size = s.get_int("size", 1);
  l->stride = s.get_int("stride", 1);
  const int pad_flag = s.get_int("pad", 0);
  const int padding = s.get_int("padding", 0);
  l->pad = pad_flag ? l->size / 2 : padding;
  l->groups = s.get_int("groups", 1);
  l->batch_normalize = s.get_int("batch_normalize", 0) != 0;
  l->learning_rate_scale = s.get_float("learning_rate", 1.f);
  const std::string act = s.get_str("activation", "logistic");
  if (!parse_activation(act, &l->activation)) s.fail_key("activation", "unknown activation '" + act + "'");
  // Keys Darknet reads for conv layers that do not change the computation here.
  for (const char* k : {"binary", "xnor", "flipped", "dot", "adam"}) s.touch(k);
  if (s.get_int("binary", 0) || s.get_int("xnor", 0)) s.fail_section("binary/xnor convolutions are not supported");

  if (l->filters <= 0) s.fail_key("filters", "must be > 0");
  if (l->size <= 0) s.fail_key("size", "must be > 0");
  if (l->stride <= 0) s.fail_key("stride", "must be > 0");
  if (l->pad < 0) s.fail_key("padding", "must be >= 0");
  if (l->groups <= 0) s.fail_key("groups", "must be > 0");
  if (in.c % l->groups != 0)
    s.fail_key("groups", "input channels (" + std::to_string(in.c) + ") not divisible by groups");
  if (l->filters % l->groups != 0) s.fail_key("groups", "filters not divisible by groups");
  if (in.w <= 0 || in.h <= 0 || in.c <= 0) s.fail_section("input has an empty shape");
  l->out_w = conv_out_size(in.w, l->size, l->stride, l->pad);
  l->out_h = conv_out_size(in.h, l->size, l->stride, l->pad);
  if (l->out_w <= 0 || l->out_h <= 0)
    s.fail_key("size", "kernel " + std::to_string(l->size) + " larger than the padded input " +
                           std::to_string(in.w) + "x" + std::to_string(in.h));
  l->out_c = l->filters;
  l->inputs = (size_t)l->w * l->h * l->c;
  l->outputs = (size_t)l->out_w * l->out_h * l->out_c;

  const size_t nf = l->filters;
  l->biases.assign(nf, 0.f);
  l->weights.assign(l->weight_count(), 0.f);
  if (l->batch_normalize) {
    l->scales.assign(nf, 1.f);
    l->rolling_mean.assign(nf, 0.f);
    l->rolling_variance.assign(nf, 1.f);  // a fresh layer normalises to identity
  }
  l->allocate();
  return l;
}

void ConvolutionalLayer::allocate() {
  Layer::allocate();
  const size_t nf = filters;
  if (training) {
    // Parameter-shaped state (momentum) survives resize/set_batch: multi-scale
    // training resizes the network every 10 batches.
    if (bias_updates.size() != nf) bias_updates.assign(nf, 0.f);
    if (weight_updates.size() != weight_count()) weight_updates.assign(weight_count(), 0.f);
    if (batch_normalize) {
      if (scale_updates.size() != nf) scale_updates.assign(nf, 0.f);
      mean.assign(nf, 0.f);
      variance.assign(nf, 0.f);
      mean_delta.assign(nf, 0.f);
      variance_delta.assign(nf, 0.f);
      x.assign((size_t)batch * outputs, 0.f);
      x_norm.assign((size_t)batch * outputs, 0.f);
    }
  } else {
    // Inference keeps no per-batch training buffers (updates kept: resuming keeps momentum).
    std::vector<float>().swap(x);
    std::vector<float>().swap(x_norm);
  }
}

void ConvolutionalLayer::resize(int new_w, int new_h) {
  w = new_w;
  h = new_h;
  out_w = conv_out_size(w, size, stride, pad);
  out_h = conv_out_size(h, size, stride, pad);
  if (out_w <= 0 || out_h <= 0) fail("layer ", index, " (convolutional): input ", w, "x", h, " too small");
  inputs = (size_t)w * h * c;
  outputs = (size_t)out_w * out_h * out_c;
  allocate();
}

size_t ConvolutionalLayer::workspace_floats() const {
  if (size == 1 && stride == 1 && pad == 0) return 0;  // 1x1: the input is already the column matrix
  return (size_t)out_w * out_h * size * size * (c / groups);
}

double ConvolutionalLayer::flops() const {
  return 2.0 * filters * size * size * (double)(c / groups) * out_h * out_w;
}

namespace {
ConvShape conv_shape(const ConvolutionalLayer& l) {
  ConvShape sh;
  sh.batch = l.batch;
  sh.c = l.c;
  sh.h = l.h;
  sh.w = l.w;
  sh.filters = l.filters;
  sh.size = l.size;
  sh.stride = l.stride;
  sh.pad = l.pad;
  sh.groups = l.groups;
  sh.out_h = l.out_h;
  sh.out_w = l.out_w;
  return sh;
}
}  // namespace

bool ConvolutionalLayer::uses_winograd() const { return winograd_selected(conv_shape(*this)); }

void ConvolutionalLayer::forward_fast(NetState& s) {
  fold_batchnorm(filters, biases.data(), batch_normalize ? scales.data() : nullptr, rolling_mean.data(),
                 rolling_variance.data(), fold_scale, fold_bias);
  const ConvShape shape = conv_shape(*this);
  if (winograd_selected(shape)) {
    // The cache key: a checksum of the raw weight bits plus the shape (cheap next to the conv: 9 reads per
    // 36 * out_h * out_w / 16 multiply-adds of the transformed GEMMs).
    const uint64_t key = float_checksum(weights.data(), weights.size()) ^ ((uint64_t)filters << 40) ^ (uint64_t)c;
    if (wino_u.size() != winograd_weights_floats(filters, c) || key != wino_key) {
      wino_u.resize(winograd_weights_floats(filters, c));
      winograd_transform_weights(filters, c, weights.data(), wino_u.data());
      wino_key = key;
    }
    ConvEpilogue ep;
    ep.scale = fold_scale.empty() ? nullptr : fold_scale.data();
    ep.bias = fold_bias.data();
    ep.act = activation;
    conv3x3_winograd(shape, s.input, wino_u.data(), ep, output.data());
    return;
  }
  if (!wino_u.empty()) std::vector<float>().swap(wino_u);  // only layers that use Winograd keep U
  ConvShape sh;
  sh.batch = batch;
  sh.c = c;
  sh.h = h;
  sh.w = w;
  sh.filters = filters;
  sh.size = size;
  sh.stride = stride;
  sh.pad = pad;
  sh.groups = groups;
  sh.out_h = out_h;
  sh.out_w = out_w;
  ConvEpilogue ep;
  ep.scale = fold_scale.empty() ? nullptr : fold_scale.data();
  ep.bias = fold_bias.data();
  ep.act = activation;
  conv_forward_fast(sh, s.input, weights.data(), ep, output.data());
}

void ConvolutionalLayer::forward(NetState& s) {
  if (!s.train && !s.net->reference_kernels) {
    forward_fast(s);
    return;
  }
  const int spatial = out_w * out_h;
  const int m = filters / groups;                    // output channels per group
  const int k = size * size * (c / groups);          // column rows
  const bool direct = workspace_floats() == 0;
  for (int b = 0; b < batch; ++b)
    for (int g = 0; g < groups; ++g) {
      const float* a = weights.data() + (size_t)g * m * k;
      const float* im = s.input + ((size_t)b * groups + g) * (c / groups) * h * w;
      float* out = output.data() + ((size_t)b * groups + g) * m * spatial;
      const float* col = im;
      if (!direct) {
        im2col(im, c / groups, h, w, size, stride, pad, s.workspace);
        col = s.workspace;
      }
      gemm(false, false, m, spatial, k, 1.f, a, k, col, spatial, 0.f, out, spatial);
    }

  if (batch_normalize) {
    if (s.train) {
      std::memcpy(x.data(), output.data(), sizeof(float) * output.size());
      bn_mean_variance(output.data(), batch, filters, spatial, mean.data(), variance.data());
      for (int f = 0; f < filters; ++f) {  // rolling stats as Darknet: 0.99 * old + 0.01 * batch
        rolling_mean[f] = bn_rolling(rolling_mean[f], mean[f]);
        rolling_variance[f] = bn_rolling(rolling_variance[f], variance[f]);
      }
      bn_normalize_array(output.data(), mean.data(), variance.data(), batch, filters, spatial);
      std::memcpy(x_norm.data(), output.data(), sizeof(float) * output.size());
    } else {
      bn_normalize_array(output.data(), rolling_mean.data(), rolling_variance.data(), batch, filters, spatial);
    }
    scale_bias(output.data(), scales.data(), batch, filters, spatial);
  }
  add_bias(output.data(), biases.data(), batch, filters, spatial);
  activate_array(output.data(), output.size(), activation);
}

void ConvolutionalLayer::backward(NetState& s) {
  check(training, "layer ", index, ": backward without training buffers");
  const int spatial = out_w * out_h;
  const int m = filters / groups;
  const int k = size * size * (c / groups);
  gradient_array(output.data(), output.size(), activation, delta.data());
  backward_bias(bias_updates.data(), delta.data(), batch, filters, spatial);
  if (batch_normalize) {
    const float* use_mean = s.train ? mean.data() : rolling_mean.data();
    const float* use_var = s.train ? variance.data() : rolling_variance.data();
    backward_scale(x_norm.data(), delta.data(), batch, filters, spatial, scale_updates.data());
    scale_bias(delta.data(), scales.data(), batch, filters, spatial);
    bn_backward_delta(x.data(), use_mean, use_var, batch, filters, spatial, mean_delta.data(),
                      variance_delta.data(), delta.data());
  }
  const bool direct = workspace_floats() == 0;
  for (int b = 0; b < batch; ++b)
    for (int g = 0; g < groups; ++g) {
      const float* d = delta.data() + ((size_t)b * groups + g) * m * spatial;
      const float* im = s.input + ((size_t)b * groups + g) * (c / groups) * h * w;
      float* wu = weight_updates.data() + (size_t)g * m * k;
      const float* col = im;
      if (!direct) {
        im2col(im, c / groups, h, w, size, stride, pad, s.workspace);
        col = s.workspace;
      }
      // weight_updates += delta * columns^T
      gemm(false, true, m, k, spatial, 1.f, d, spatial, col, spatial, 1.f, wu, k);
      if (s.delta) {
        float* prev = s.delta + ((size_t)b * groups + g) * (c / groups) * h * w;
        const float* a = weights.data() + (size_t)g * m * k;
        if (direct) {
          // Declared semantics: the 1x1 input gradient is ADDED (Darknet overwrites it).
          gemm(true, false, k, spatial, m, 1.f, a, k, d, spatial, 1.f, prev, spatial);
        } else {
          gemm(true, false, k, spatial, m, 1.f, a, k, d, spatial, 0.f, s.workspace, spatial);
          col2im_add(s.workspace, c / groups, h, w, size, stride, pad, prev);
        }
      }
    }
}

void ConvolutionalLayer::update(const UpdateArgs& a) {
  const float lr = a.learning_rate * learning_rate_scale;
  const float step = lr / a.batch;
  for (int f = 0; f < filters; ++f) sgd_step(biases[f], bias_updates[f], step, a.momentum);
  if (batch_normalize)
    for (int f = 0; f < filters; ++f) sgd_step(scales[f], scale_updates[f], step, a.momentum);
  const size_t n = weights.size();
  const float decay = -a.decay * a.batch;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; ++i) sgd_step_decay(weights[i], weight_updates[i], step, decay, a.momentum);
}

void ConvolutionalLayer::randomize(std::mt19937_64& rng) {
  // Darknet: weights ~ N(0, 1) * sqrt(2 / fan_in), biases 0, BN scales 1, rolling stats 0/1.
  const float scale = std::sqrt(2.f / (size * size * (c / groups)));
  std::normal_distribution<float> normal(0.f, 1.f);
  for (float& w : weights) w = scale * normal(rng);
  std::fill(biases.begin(), biases.end(), 0.f);
  if (batch_normalize) {
    std::fill(scales.begin(), scales.end(), 1.f);
    std::fill(rolling_mean.begin(), rolling_mean.end(), 0.f);
    std::fill(rolling_variance.begin(), rolling_variance.end(), 1.f);
  }
}

std::vector<Blob> ConvolutionalLayer::params() {
  const int64_t nf = filters;
  std::vector<Blob> p;
  p.push_back({"biases", biases.data(), biases.size(), {nf}});
  if (batch_normalize) {
    p.push_back({"scales", scales.data(), scales.size(), {nf}});
    p.push_back({"rolling_mean", rolling_mean.data(), rolling_mean.size(), {nf}});
    p.push_back({"rolling_variance", rolling_variance.data(), rolling_variance.size(), {nf}});
  }
  p.push_back({"weights", weights.data(), weights.size(), {nf, (int64_t)(c / groups), size, size}});
  return p;
}

std::vector<Blob> ConvolutionalLayer::buffers() {
  const int64_t nf = filters;
  const std::vector<int64_t> map_shape = {batch, nf, out_h, out_w};
  std::vector<Blob> b;
  auto add = [&](const char* name, std::vector<float>& v, std::vector<int64_t> shape) {
    if (!v.empty()) b.push_back({name, v.data(), v.size(), std::move(shape)});
  };
  add("bias_updates", bias_updates, {nf});
  add("scale_updates", scale_updates, {nf});
  add("weight_updates", weight_updates, {nf, (int64_t)(c / groups), size, size});
  add("mean", mean, {nf});
  add("variance", variance, {nf});
  add("x", x, map_shape);
  add("x_norm", x_norm, map_shape);
  return b;
}

std::string ConvolutionalLayer::describe() const {
  char buf[200];
  std::snprintf(buf, sizeof buf, "conv  %5d %2d x%2d /%2d  %4d x%4d x%4d   ->  %4d x%4d x%4d  %6.3f BFLOPs", filters,
                size, size, stride, w, h, c, out_w, out_h, out_c, flops() / 1e9);
  return buf;
}

}  // namespace dn
