#include "layers/convolutional.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/limits.hpp"
#include "kernels/batchnorm.hpp"
#include "kernels/conv_fast.hpp"
#include "kernels/winograd.hpp"
#include "layers/layers.hpp"

namespace dn {

namespace {
int conv_out_size(int in, int size, int stride, int pad) { return (in + 2 * pad - size) / stride + 1; }
}  // namespace

std::unique_ptr<Layer> make_convolutional(const CfgSection& s, const LayerInput& in) {
  auto l = std::make_unique<ConvolutionalLayer>();
  l->kind = LayerType::Convolutional;
  l->type = "convolutional";
  l->index = in.index;
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
  l->learning_rate_scale = s.get_float("learning_rate", 1.f, 0.f, 1e3f);
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
  // Upper bounds before any arithmetic: sizes below are int and must not wrap.
  if (l->filters > kMaxChannels) s.fail_key("filters", "must be <= " + std::to_string(kMaxChannels));
  if (l->size > kMaxWindow) s.fail_key("size", "must be <= " + std::to_string(kMaxWindow));
  if (l->stride > kMaxWindow) s.fail_key("stride", "must be <= " + std::to_string(kMaxWindow));
  if (l->pad > kMaxWindow) s.fail_key(pad_flag ? "size" : "padding", "padding must be <= " + std::to_string(kMaxWindow));
  {
    // The parameters are allocated right here: refuse them before, not after, a huge allocation.
    const uint64_t weights = checked_mul(checked_mul((uint64_t)l->filters, (uint64_t)(in.c / l->groups), "filters x channels"),
                                         (uint64_t)l->size * l->size, "convolution weights");
    const uint64_t bytes = checked_mul(weights, 4, "convolution weights");
    if (bytes > memory_limit())
      s.fail_section("the weights need " + std::to_string(bytes) + " bytes, more than the memory limit of " +
                     std::to_string(memory_limit()) + " bytes (DARKNET_PY_MEMORY_LIMIT / darknet_py.set_memory_limit)");
  }
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
    if (bias_updates.size() != nf) bias_updates.reset(nf);
    if (weight_updates.size() != weight_count()) weight_updates.reset(weight_count());
    if (batch_normalize) {
      if (scale_updates.size() != nf) scale_updates.reset(nf);
      mean.reset(nf);
      variance.reset(nf);
      mean_delta.reset(nf);
      variance_delta.reset(nf);
      x.reset((size_t)batch * outputs);
      x_norm.reset((size_t)batch * outputs);  // host memory only on first use (not with the fused batch norm)
      x_norm_derived = false;
    }
  } else {
    // Inference keeps no per-batch training buffers (updates kept: resuming keeps momentum).
    x.clear();
    x_norm.clear();
    x_norm_derived = false;
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

size_t ConvolutionalLayer::workspace_floats(bool train_or_reference) const {
  // 1x1: the input is already the column matrix; the CPU's fused inference path packs
  // straight from the image.
  if (is_1x1() || !train_or_reference) return 0;
  return (size_t)out_w * out_h * size * size * (c / groups);
}

double ConvolutionalLayer::flops() const {
  return 2.0 * filters * size * size * (double)(c / groups) * out_h * out_w;
}

ConvShape ConvolutionalLayer::shape() const {
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
  return sh;
}

bool ConvolutionalLayer::uses_winograd(WinogradMode mode) const { return winograd_selected(shape(), mode); }

// The one algorithm, on any backend: per image and group, columns (im2col, or the
// input itself for 1x1) times the weights; then batch norm, bias, activation.
void ConvolutionalLayer::forward(LayerContext& ctx) {
  Backend& be = *ctx.backend;
  const Device dev = ctx.device;
  float* out = output.write(dev);
  if (!ctx.train && be.conv_inference(*this, ctx.input, out)) return;
  const int spatial = out_w * out_h;
  const int m = filters / groups;            // output channels per group
  const int k = size * size * (c / groups);  // column rows
  // Training batch norm keeps the raw convolution in x: the convolution writes it there.
  const bool train_bn = ctx.train && batch_normalize;
  float* conv_out = train_bn ? x.write(dev) : out;
  float* batch_mean = train_bn ? mean.write(dev) : nullptr;
  float* batch_var = train_bn ? variance.write(dev) : nullptr;
  // A backend may produce the batch statistics with the convolution (CUDA: in its epilogue).
  const bool stats_done = train_bn && be.conv_forward_raw_stats(*this, ctx.input, conv_out, batch_mean, batch_var);
  if (!stats_done && !be.conv_forward_raw(*this, ctx.input, conv_out)) {
    const float* wts = weights.read(dev);
    for (int b = 0; b < batch; ++b)
      for (int g = 0; g < groups; ++g) {
        const float* a = wts + (size_t)g * m * k;
        const float* im = ctx.input + ((size_t)b * groups + g) * (c / groups) * h * w;
        float* o = conv_out + ((size_t)b * groups + g) * m * spatial;
        const float* col = im;
        if (!is_1x1()) {
          be.im2col(im, c / groups, h, w, size, stride, pad, ctx.workspace);
          col = ctx.workspace;
        }
        be.gemm(false, false, m, spatial, k, 1.f, a, k, col, spatial, 0.f, o, spatial);
      }
  }

  const size_t n = output.size();
  if (batch_normalize) {
    if (train_bn) {
      if (!stats_done) be.bn_mean_variance(conv_out, batch, filters, spatial, batch_mean, batch_var);
      be.bn_rolling_update(rolling_mean.write(dev), rolling_variance.write(dev), batch_mean, batch_var, filters);
      x_norm_derived = be.bn_train_derives_x_norm(activation);
      be.bn_train_normalize(batch_mean, batch_var, scales.read(dev), biases.read(dev), batch, filters, spatial,
                            activation, conv_out, out, x_norm_derived ? nullptr : x_norm.write(dev));
      return;
    }
    be.bn_normalize(out, rolling_mean.read(dev), rolling_variance.read(dev), batch, filters, spatial);
    be.scale_bias(out, scales.read(dev), batch, filters, spatial);
  }
  be.add_bias(out, biases.read(dev), batch, filters, spatial);
  be.activate(out, n, activation);
}

void ConvolutionalLayer::backward(LayerContext& ctx) {
  check(training, "layer ", index, ": backward without training buffers");
  Backend& be = *ctx.backend;
  const Device dev = ctx.device;
  const int spatial = out_w * out_h;
  const int m = filters / groups;
  const int k = size * size * (c / groups);
  float* d_out = delta.write(dev);
  if (batch_normalize) {
    const float* use_mean = ctx.train ? mean.read(dev) : rolling_mean.read(dev);
    const float* use_var = ctx.train ? variance.read(dev) : rolling_variance.read(dev);
    be.bn_train_backward(output.read(dev), activation, x.read(dev), x_norm_derived ? nullptr : x_norm.read(dev),
                         use_mean, use_var, scales.read(dev), biases.read(dev), batch, filters, spatial,
                         bias_updates.write(dev), scale_updates.write(dev), mean_delta.write(dev),
                         variance_delta.write(dev), d_out);
  } else {
    be.gradient(output.read(dev), output.size(), activation, d_out);
    be.backward_bias(bias_updates.write(dev), d_out, batch, filters, spatial);
  }
  const float* wts = weights.read(dev);
  float* wu_all = weight_updates.write(dev);
  const bool weights_done = be.conv_weight_gradient(*this, ctx.input, d_out);
  const bool input_done = !ctx.prev_delta || be.conv_input_gradient(*this, d_out, ctx.prev_delta);
  if (weights_done && input_done) return;
  for (int b = 0; b < batch; ++b)
    for (int g = 0; g < groups; ++g) {
      const float* d = d_out + ((size_t)b * groups + g) * m * spatial;
      const float* im = ctx.input + ((size_t)b * groups + g) * (c / groups) * h * w;
      float* wu = wu_all + (size_t)g * m * k;
      if (!weights_done) {
        const float* col = im;
        if (!is_1x1()) {
          be.im2col(im, c / groups, h, w, size, stride, pad, ctx.workspace);
          col = ctx.workspace;
        }
        // weight_updates += delta * columns^T
        be.gemm(false, true, m, k, spatial, 1.f, d, spatial, col, spatial, 1.f, wu, k);
      }
      if (!input_done) {
        float* prev = ctx.prev_delta + ((size_t)b * groups + g) * (c / groups) * h * w;
        const float* a = wts + (size_t)g * m * k;
        if (is_1x1()) {
          // Declared semantics: the 1x1 input gradient is ADDED (Darknet overwrites it).
          be.gemm(true, false, k, spatial, m, 1.f, a, k, d, spatial, 1.f, prev, spatial);
        } else {
          be.gemm(true, false, k, spatial, m, 1.f, a, k, d, spatial, 0.f, ctx.workspace, spatial);
          be.col2im_add(ctx.workspace, c / groups, h, w, size, stride, pad, prev);
        }
      }
    }
}

void ConvolutionalLayer::update(const UpdateArgs& a, Backend& be) {
  const Device dev = be.device();
  const float lr = a.learning_rate * learning_rate_scale;
  const float step = lr / a.batch;
  be.sgd((size_t)filters, biases.write(dev), bias_updates.write(dev), step, 0.f, a.momentum);
  if (batch_normalize) be.sgd((size_t)filters, scales.write(dev), scale_updates.write(dev), step, 0.f, a.momentum);
  be.sgd(weights.size(), weights.write(dev), weight_updates.write(dev), step, -a.decay * a.batch, a.momentum);
}

void ConvolutionalLayer::randomize(std::mt19937_64& rng, WeightInit init) {
  // Weights scale * U(-1, 1) (YOLOv2-era Darknet, the default: see README "Initialisation")
  // or scale * N(0, 1) (later Darknet), scale = sqrt(2 / fan_in); biases 0, BN scales 1,
  // rolling stats 0/1.
  const float scale = std::sqrt(2.f / (size * size * (c / groups)));
  float* wts = weights.host();
  if (init == WeightInit::Normal) {
    std::normal_distribution<float> normal(0.f, 1.f);
    for (size_t i = 0; i < weights.size(); ++i) wts[i] = scale * normal(rng);
  } else {
    std::uniform_real_distribution<float> uniform(-1.f, 1.f);
    for (size_t i = 0; i < weights.size(); ++i) wts[i] = scale * uniform(rng);
  }
  biases.assign(biases.size(), 0.f);
  if (batch_normalize) {
    scales.assign(scales.size(), 1.f);
    rolling_mean.assign(rolling_mean.size(), 0.f);
    rolling_variance.assign(rolling_variance.size(), 1.f);
  }
}

std::vector<Blob> ConvolutionalLayer::params() {
  const int64_t nf = filters;
  std::vector<Blob> p;
  p.push_back({"biases", &biases, {nf}});
  if (batch_normalize) {
    p.push_back({"scales", &scales, {nf}});
    p.push_back({"rolling_mean", &rolling_mean, {nf}});
    p.push_back({"rolling_variance", &rolling_variance, {nf}});
  }
  p.push_back({"weights", &weights, {nf, (int64_t)(c / groups), size, size}});
  return p;
}

std::vector<Blob> ConvolutionalLayer::buffers() {
  const int64_t nf = filters;
  const std::vector<int64_t> map_shape = {batch, nf, out_h, out_w};
  std::vector<Blob> b;
  auto add = [&](const char* name, FloatBuffer& v, std::vector<int64_t> shape) {
    if (!v.empty()) b.push_back({name, &v, std::move(shape)});
  };
  add("bias_updates", bias_updates, {nf});
  add("scale_updates", scale_updates, {nf});
  add("weight_updates", weight_updates, {nf, (int64_t)(c / groups), size, size});
  add("mean", mean, {nf});
  add("variance", variance, {nf});
  add("x", x, map_shape);
  if (x_norm_derived) {
    // The fused training batch norm kept no x_norm: derive it from x with the forward's
    // arithmetic (bn_apply, the same bits the backward recomputes).
    const float *px = x.read(Device::Cpu), *pm = mean.read(Device::Cpu), *pv = variance.read(Device::Cpu);
    float* pn = x_norm.overwrite(Device::Cpu);
    const size_t spatial = (size_t)out_w * out_h;
    for (size_t i = 0; i < x.size(); ++i) {
      const size_t f = i / spatial % filters;
      pn[i] = bn_apply(px[i], pm[f], bn_inv_std(pv[f]));
    }
    x_norm_derived = false;
  }
  add("x_norm", x_norm, map_shape);
  return b;
}

std::vector<FloatBuffer*> ConvolutionalLayer::all_buffers() {
  std::vector<FloatBuffer*> v = Layer::all_buffers();
  v.push_back(&mean_delta);
  v.push_back(&variance_delta);
  return v;
}

std::string ConvolutionalLayer::describe() const {
  char buf[200];
  std::snprintf(buf, sizeof buf, "conv  %5d %2d x%2d /%2d  %4d x%4d x%4d   ->  %4d x%4d x%4d  %6.3f BFLOPs", filters,
                size, size, stride, w, h, c, out_w, out_h, out_c, flops() / 1e9);
  return buf;
}

}  // namespace dn
