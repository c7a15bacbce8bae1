// The CPU backend: the Backend ops on the kernels in csrc/kernels, with the
// arithmetic order and OpenMP split the CPU layers always had (tests compare
// against Darknet fixtures at 1e-5), plus the fused inference convolution.
#include <cfloat>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "backend/backend.hpp"
#include "kernels/activations.hpp"
#include "kernels/batchnorm.hpp"
#include "kernels/conv_fast.hpp"
#include "kernels/cost.hpp"
#include "kernels/gemm.hpp"
#include "kernels/im2col.hpp"
#include "kernels/pool.hpp"
#include "kernels/region_formulas.hpp"
#include "kernels/reorg_index.hpp"
#include "kernels/sgd.hpp"
#include "kernels/softmax.hpp"
#include "kernels/winograd.hpp"
#include "layers/convolutional.hpp"
#include "parse/tree.hpp"

namespace dn {

namespace {

// Element-wise loops below this many elements run on one thread (a team costs more).
constexpr size_t kParallelMin = 65536;

// region_softmax over one WordTree group at every cell of a plane at once. The
// group's rows are whole planes, contiguous in memory, so each pass runs along
// memory; the per-cell walk with stride `plane` touched one cache line per value,
// and over yolo9000's 9418 classes that made the softmax ~8% of a 544 forward.
// Per cell the operations and their order are region_softmax's, so the result
// is bit-identical to it (and to the CUDA kernel's formula).
void tree_group_softmax(const float* in, int size, int plane, float* out, std::vector<float>& largest,
                        std::vector<float>& sum) {
  largest.assign(plane, -INFINITY);
  sum.assign(plane, 0.f);
  for (int i = 0; i < size; ++i) {
    const float* row = in + (size_t)i * plane;
    for (int cell = 0; cell < plane; ++cell) largest[cell] = row[cell] > largest[cell] ? row[cell] : largest[cell];
  }
  for (int i = 0; i < size; ++i) {
    const float* row = in + (size_t)i * plane;
    float* out_row = out + (size_t)i * plane;
    for (int cell = 0; cell < plane; ++cell) {
      const float e = expf(row[cell] - largest[cell]);
      sum[cell] += e;
      out_row[cell] = e;
    }
  }
  for (int i = 0; i < size; ++i) {
    float* out_row = out + (size_t)i * plane;
    for (int cell = 0; cell < plane; ++cell) out_row[cell] /= sum[cell];
  }
}

// Darknet's reorg: gather dst[linear] = src[mapped], else scatter dst[mapped] = src[linear];
// the linear index always runs over the INPUT dims (c, h, w), as Darknet passes them.
void reorg_run(int batch, int c, int h, int w, int stride, const float* src, float* dst, bool gather,
               bool accumulate) {
  const long total = (long)batch * c * h * w;
#pragma omp parallel for schedule(static) if (total > 65536)
  for (long linear = 0; linear < total; ++linear) {
    const long mapped = reorg_index(linear, w, h, c, stride);
    if (gather) {
      if (accumulate) dst[linear] += src[mapped]; else dst[linear] = src[mapped];
    } else {
      if (accumulate) dst[mapped] += src[linear]; else dst[mapped] = src[linear];
    }
  }
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const ExecOptions& o) { CpuBackend::set_options(o); }

  // The same kernels serve the emulated device (its memory is host memory too).
  Device device() const override { return options_.device == Device::Emulated ? Device::Emulated : Device::Cpu; }
  void set_options(const ExecOptions& o) override {
    require_cpu_isa(o.isa);
    Backend::set_options(o);
  }

  // ------------------------------------------------------------ transfers
  // On the emulated device these are its (counted) transfers, as CUDA's are real copies.
  void upload(float* dst, const float* host_src, size_t n) override {
    if (!n || dst == host_src) return;
    if (device() == Device::Emulated)
      device_memory(Device::Emulated).upload(dst, host_src, sizeof(float) * n);
    else
      std::memcpy(dst, host_src, sizeof(float) * n);
  }
  void download(float* host_dst, const float* src, size_t n) override {
    if (!n || host_dst == src) return;
    if (device() == Device::Emulated)
      device_memory(Device::Emulated).download(host_dst, src, sizeof(float) * n);
    else
      std::memcpy(host_dst, src, sizeof(float) * n);
  }
  void synchronize() override {}

  // ------------------------------------------------------------ element-wise
  void fill(float* x, size_t n, float value) override {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (size_t i = 0; i < n; ++i) x[i] = value;
  }
  void copy(const float* src, float* dst, size_t n) override {
    if (n && dst != src) std::memcpy(dst, src, sizeof(float) * n);
  }
  void axpy(size_t n, float alpha, const float* x, float* y) override {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (size_t i = 0; i < n; ++i) y[i] += alpha * x[i];
  }
  void copy_rows(int rows, size_t cols, const float* src, size_t src_stride, float* dst, size_t dst_stride,
                 bool accumulate) override {
    for (int r = 0; r < rows; ++r) {
      const float* s = src + (size_t)r * src_stride;
      float* d = dst + (size_t)r * dst_stride;
      if (accumulate)
        for (size_t j = 0; j < cols; ++j) d[j] += s[j];
      else
        std::memcpy(d, s, sizeof(float) * cols);
    }
  }
  void activate(float* x, size_t n, Activation a) override { activate_array(x, n, a); }
  void gradient(const float* y, size_t n, Activation a, float* delta) override { gradient_array(y, n, a, delta); }
  double sum_squares(const float* x, size_t n) override {
    double sq = 0;
    for (size_t i = 0; i < n; ++i) sq += (double)x[i] * x[i];
    return sq;
  }

  // ------------------------------------------------------------ convolution
  void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
            int ldb, float beta, float* C, int ldc) override {
    ::dn::gemm(options_.isa, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  void im2col(const float* image, int channels, int height, int width, int size, int stride, int pad,
              float* columns) override {
    ::dn::im2col(image, channels, height, width, size, stride, pad, columns);
  }
  void col2im_add(const float* columns, int channels, int height, int width, int size, int stride, int pad,
                  float* image) override {
    ::dn::col2im_add(columns, channels, height, width, size, stride, pad, image);
  }

  // ------------------------------------------------------------ batch norm
  void bn_mean_variance(const float* x, int batch, int filters, int spatial, float* mean,
                        float* variance) override {
    if (options_.reference_kernels)
      ::dn::bn_mean_variance(x, batch, filters, spatial, mean, variance);
    else
      ::dn::bn_mean_variance_simd(x, batch, filters, spatial, mean, variance);
  }
  void bn_rolling_update(float* rolling_mean, float* rolling_variance, const float* mean, const float* variance,
                         int filters) override {
    for (int f = 0; f < filters; ++f) {
      rolling_mean[f] = bn_rolling(rolling_mean[f], mean[f]);
      rolling_variance[f] = bn_rolling(rolling_variance[f], variance[f]);
    }
  }
  void bn_normalize(float* x, const float* mean, const float* variance, int batch, int filters,
                    int spatial) override {
    bn_normalize_array(x, mean, variance, batch, filters, spatial);
  }
  void scale_bias(float* x, const float* scales, int batch, int filters, int spatial) override {
    ::dn::scale_bias(x, scales, batch, filters, spatial);
  }
  void add_bias(float* x, const float* biases, int batch, int filters, int spatial) override {
    ::dn::add_bias(x, biases, batch, filters, spatial);
  }
  void backward_bias(float* bias_updates, const float* delta, int batch, int filters, int spatial) override {
    ::dn::backward_bias(bias_updates, delta, batch, filters, spatial);
  }
  void backward_scale(const float* x_norm, const float* delta, int batch, int filters, int spatial,
                      float* scale_updates) override {
    ::dn::backward_scale(x_norm, delta, batch, filters, spatial, scale_updates);
  }
  void bn_backward_delta(const float* x, const float* mean, const float* variance, int batch, int filters,
                         int spatial, float* mean_delta, float* variance_delta, float* delta) override {
    ::dn::bn_backward_delta(x, mean, variance, batch, filters, spatial, mean_delta, variance_delta, delta);
  }

  // The fused batch norm (kernels/batchnorm.cpp) keeps no x_norm on AVX2 leaky/linear layers.
  bool bn_train_derives_x_norm(Activation act) const override {
    return !options_.reference_kernels && bn_fused_supported(options_.isa, act);
  }
  // One pass instead of six: each element is read once and x_norm and the output written
  // once, with the same per-element arithmetic as the single ops; or the fused kernel
  // (x_norm null): one read, one write.
  void bn_train_normalize(const float* mean, const float* variance, const float* scales, const float* biases,
                          int batch, int filters, int spatial, Activation act, const float* x, float* out,
                          float* x_norm) override {
    if (!x_norm) {
      bn_train_forward_fused(options_.isa, x, mean, variance, scales, biases, batch, filters, spatial, act, out);
      return;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < batch; ++b)
      for (int f = 0; f < filters; ++f) {
        const size_t off = ((size_t)b * filters + f) * spatial;
        float* p = out + off;
        const float* px = x + off;
        float* pn = x_norm + off;
        const float m = mean[f], inv = bn_inv_std(variance[f]), scale = scales[f], bias = biases[f];
        if (act == Activation::Leaky) {
#pragma omp simd
          for (int i = 0; i < spatial; ++i) {
            const float normalized = bn_apply(px[i], m, inv);
            pn[i] = normalized;
            const float y = normalized * scale + bias;
            p[i] = y > 0 ? y : .1f * y;
          }
        } else {
          for (int i = 0; i < spatial; ++i) {
            const float normalized = bn_apply(px[i], m, inv);
            pn[i] = normalized;
            p[i] = ::dn::activate(normalized * scale + bias, act);
          }
        }
      }
  }

  // Two passes per filter instead of six over the batch, with the same float products as the
  // single ops. The reference kernels keep their double sums in order (bit-identical to the
  // six ops); the fast leaky path vectorises them (differs by rounding only).
  void bn_train_backward(const float* y, Activation act, const float* x, const float* x_norm, const float* mean,
                         const float* variance, const float* scales, const float* biases, int batch, int filters,
                         int spatial, float* bias_updates, float* scale_updates, float* mean_delta,
                         float* variance_delta, float* delta) override {
    if (!x_norm) {
      bn_train_backward_fused(options_.isa, x, mean, variance, scales, biases, batch, filters, spatial, act,
                              bias_updates, scale_updates, mean_delta, variance_delta, delta);
      return;
    }
    const float n = (float)batch * spatial;
#pragma omp parallel for schedule(static)
    for (int f = 0; f < filters; ++f) {
      const float m = mean[f], scale = scales[f];
      double bias_sum = 0, scale_sum = 0, delta_sum = 0, centered_sum = 0;
      for (int b = 0; b < batch; ++b) {
        const size_t off = ((size_t)b * filters + f) * spatial;
        float* d = delta + off;
        const float *py = y + off, *px = x + off, *pn = x_norm + off;
        if (act == Activation::Leaky && !options_.reference_kernels) {
          // Vectorised double sums (lane order differs from the loop below by rounding only).
#pragma omp simd reduction(+ : bias_sum, scale_sum, delta_sum, centered_sum)
          for (int i = 0; i < spatial; ++i) {
            const float through_act = d[i] * (py[i] > 0 ? 1.f : .1f);
            bias_sum += through_act;
            scale_sum += (double)through_act * pn[i];
            const float scaled = through_act * scale;
            d[i] = scaled;
            delta_sum += scaled;
            centered_sum += (double)scaled * (px[i] - m);
          }
          continue;
        }
        for (int i = 0; i < spatial; ++i) {
          const float through_act = d[i] * ::dn::gradient(py[i], act);
          bias_sum += through_act;
          scale_sum += (double)through_act * pn[i];
          const float scaled = through_act * scale;
          d[i] = scaled;
          delta_sum += scaled;
          centered_sum += (double)scaled * (px[i] - m);
        }
      }
      bias_updates[f] += (float)bias_sum;
      scale_updates[f] += (float)scale_sum;
      const float md = bn_mean_delta(delta_sum, variance[f]), vd = bn_variance_delta(centered_sum, variance[f]);
      mean_delta[f] = md;
      variance_delta[f] = vd;
      const float inv_std = bn_inv_std(variance[f]);
      for (int b = 0; b < batch; ++b) {
        const size_t off = ((size_t)b * filters + f) * spatial;
        float* d = delta + off;
        const float* px = x + off;
        for (int i = 0; i < spatial; ++i) d[i] = bn_input_delta(d[i], inv_std, vd, px[i], m, md, n);
      }
    }
  }

  // ------------------------------------------------------------ pooling, reorg
  // Darknet's window: it starts at -padding/2; cells outside the input never win.
  // How many leading windows of output row i (top input row y0) are full 2x2 windows inside
  // the image (0 unless the layer is 2x2 / 2 with Darknet's default padding).
  static int pool2x2_interior_windows(const MaxpoolShape& s, int y0) {
    const bool pool2x2 = s.size == 2 && s.stride == 2 && -s.padding / 2 == 0;
    return pool2x2 && y0 >= 0 && y0 + 2 <= s.h ? std::min(s.out_w, s.w / 2) : 0;
  }
  void maxpool_forward(const MaxpoolShape& s, const float* input, float* output, int* argmax) override {
    if (!argmax && !options_.reference_kernels) {  // inference: values only, vectorised
      maxpool_forward_fast(options_.isa, input, output, s.batch, s.c, s.h, s.w, s.size, s.stride, s.padding, s.out_h,
                           s.out_w);
      return;
    }
    const int offset = -s.padding / 2;
    const int c = s.c, h = s.h, w = s.w, out_h = s.out_h, out_w = s.out_w;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < s.batch; ++b)
      for (int k = 0; k < c; ++k) {
        const float* in = input + ((size_t)b * c + k) * h * w;
        const int plane = (int)(((size_t)b * c + k) * h * w);
        for (int i = 0; i < out_h; ++i) {
          const int y0 = offset + i * s.stride;
          const size_t row_index = (((size_t)b * c + k) * out_h + i) * out_w;
          int j_start = 0;
          if (!options_.reference_kernels && (j_start = pool2x2_interior_windows(s, y0)) > 0) {
            // 2x2 / 2 windows inside the image: branchless selects (the compares are data-random,
            // so branches mispredict half the time), the reference's scan order and start value
            // (-FLT_MAX, index -1), so the first maximum wins and -inf or NaN windows match.
            const float* r0 = in + (size_t)y0 * w;
            const float* r1 = r0 + w;
            float* o = output + row_index;
            int* am = argmax + row_index;
            const int base = plane + y0 * w;
#pragma omp simd
            for (int j = 0; j < j_start; ++j) {
              const float a = r0[2 * j], bb = r0[2 * j + 1], cc = r1[2 * j], d = r1[2 * j + 1];
              float best = -FLT_MAX;
              int at = -1;
              at = a > best ? base + 2 * j : at;
              best = a > best ? a : best;
              at = bb > best ? base + 2 * j + 1 : at;
              best = bb > best ? bb : best;
              at = cc > best ? base + w + 2 * j : at;
              best = cc > best ? cc : best;
              at = d > best ? base + w + 2 * j + 1 : at;
              best = d > best ? d : best;
              o[j] = best;
              am[j] = at;
            }
          }
          for (int j = j_start; j < out_w; ++j) {  // border windows (and every window of other shapes)
            const size_t out_index = row_index + j;
            const int x0 = offset + j * s.stride;
            if (y0 >= 0 && y0 + s.size <= h && x0 >= 0 && x0 + s.size <= w) {
              // Window inside the image (all but the border): the same scan without the checks.
              float best = -FLT_MAX;
              int best_index = -1;
              for (int n = 0; n < s.size; ++n)
                for (int m = 0; m < s.size; ++m) {
                  const float v = in[(y0 + n) * w + x0 + m];
                  best_index = v > best ? plane + (y0 + n) * w + x0 + m : best_index;  // first maximum wins
                  best = v > best ? v : best;
                }
              output[out_index] = best;
              if (argmax) argmax[out_index] = best_index;
              continue;
            }
            float best = -FLT_MAX;
            int best_index = -1;
            for (int n = 0; n < s.size; ++n)
              for (int m = 0; m < s.size; ++m) {
                const int y = offset + i * s.stride + n, x = offset + j * s.stride + m;
                const bool valid = y >= 0 && y < h && x >= 0 && x < w;
                const float v = valid ? in[y * w + x] : -FLT_MAX;
                if (v > best) {  // first maximum wins
                  best = v;
                  best_index = valid ? (int)(((size_t)b * c + k) * h * w + (size_t)y * w + x) : best_index;
                }
              }
            output[out_index] = best;
            if (argmax) argmax[out_index] = best_index;
          }
        }
      }
  }
  // Sequential: overlapping windows add into the same input cell in output order.
  void maxpool_backward(const MaxpoolShape& s, const float* delta, const int* argmax, float* prev_delta) override {
    const size_t n = (size_t)s.batch * s.c * s.out_h * s.out_w;
    for (size_t i = 0; i < n; ++i)
      if (argmax[i] >= 0) prev_delta[argmax[i]] += delta[i];
  }
  void avgpool_forward(int batch, int c, int spatial, const float* input, float* output) override {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < batch; ++b)
      for (int k = 0; k < c; ++k) {
        const float* in = input + ((size_t)b * c + k) * spatial;
        float sum = 0;  // float accumulation in input order, as Darknet
        for (int i = 0; i < spatial; ++i) sum += in[i];
        output[(size_t)b * c + k] = sum / spatial;
      }
  }
  void avgpool_backward(int batch, int c, int spatial, const float* delta, float* prev_delta) override {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < batch; ++b)
      for (int k = 0; k < c; ++k) {
        float* d = prev_delta + ((size_t)b * c + k) * spatial;
        const float g = delta[(size_t)b * c + k] / spatial;
        for (int i = 0; i < spatial; ++i) d[i] += g;
      }
  }
  // Darknet: the non-reverse forward gathers, the reverse one scatters; backward inverts each.
  void reorg_forward(int batch, int c, int h, int w, int stride, bool reverse, const float* input,
                     float* output) override {
    reorg_run(batch, c, h, w, stride, input, output, /*gather=*/!reverse, /*accumulate=*/false);
  }
  void reorg_backward(int batch, int c, int h, int w, int stride, bool reverse, const float* delta,
                      float* prev_delta) override {
    reorg_run(batch, c, h, w, stride, delta, prev_delta, /*gather=*/reverse, /*accumulate=*/true);
  }

  // ------------------------------------------------------------ softmax, costs, dropout
  void softmax(int batch, size_t inputs, int groups, float temperature, const float* input,
               float* output) override {
    const int group_size = (int)(inputs / groups);
#pragma omp parallel for collapse(2) schedule(static) if (batch * groups > 8)
    for (int b = 0; b < batch; ++b)
      for (int g = 0; g < groups; ++g) {
        const size_t off = (size_t)b * inputs + (size_t)g * group_size;
        ::dn::softmax(input + off, group_size, temperature, 1, output + off);
      }
  }
  void softmax_tree(int batch, size_t inputs, const WordTree& tree, float temperature, const float* input,
                    float* output) override {
    const int n_groups = tree.groups();
#pragma omp parallel for collapse(2) schedule(static) if (batch * n_groups > 64)
    for (int b = 0; b < batch; ++b)
      for (int g = 0; g < n_groups; ++g) {
        const size_t off = (size_t)b * inputs + tree.group_offset[g];
        ::dn::softmax(input + off, tree.group_size[g], temperature, 1, output + off);
      }
  }
  float softmax_cross_entropy(size_t n, const float* truth, const float* output, float* delta) override {
    double total = 0;
    for (size_t i = 0; i < n; ++i) {
      const float t = truth[i], p = output[i];
      // Darknet's fill_hierarchy marks WordTree groups without a label with
      // -1234; its CUDA path masks them (no delta, no loss).
      if (t == kMaskedTruth) {
        delta[i] = 0;
        continue;
      }
      delta[i] = t - p;
      if (t) total += -t * std::log(p);
    }
    return (float)total;
  }
  float cost(CostType type, size_t n, const float* input, const float* truth, float* output,
             float* delta) override {
    double total = 0;
    for (size_t i = 0; i < n; ++i) {
      const CostTerm t = cost_term(type, truth[i], input[i]);
      output[i] = t.error;
      if (delta) delta[i] = t.delta;
      total += t.error;
    }
    return (float)total;
  }
  void dropout_forward(size_t n, float probability, float scale, const float* input, const float* draws,
                       float* output) override {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (size_t i = 0; i < n; ++i) output[i] = draws[i] < probability ? 0.f : input[i] * scale;
  }
  void dropout_backward(size_t n, float probability, float scale, const float* draws, const float* delta,
                        float* prev_delta) override {
#pragma omp parallel for schedule(static) if (n > kParallelMin)
    for (size_t i = 0; i < n; ++i)
      if (draws[i] >= probability) prev_delta[i] += delta[i] * scale;
  }

  // ------------------------------------------------------------ region
  // Logistic on x, y (and extra coords, objectness); class softmax (flat or per
  // tree group, temperature 1) or logistic. Every prediction is independent.
  void region_activate(const RegionShape& s, const float* input, float* output) override {
    const int plane = s.w * s.h;
    const int outputs = (int)s.outputs;
    if (output != input) std::memcpy(output, input, sizeof(float) * (size_t)s.batch * s.outputs);
#pragma omp parallel for collapse(2) if ((size_t)s.batch * s.outputs > 65536)
    for (int b = 0; b < s.batch; ++b) {
      for (int n = 0; n < s.num; ++n) {
        const int loc0 = n * plane;
        auto entry = [&](int e) { return region_entry_index(b, loc0, e, s.w, s.h, s.coords, s.classes, outputs); };
        auto logistic_planes = [&](int first_entry, int planes) {
          float* p = output + entry(first_entry);
          for (int i = 0; i < planes * plane; ++i) p[i] = region_logistic(p[i]);
        };
        logistic_planes(0, 2);
        if (s.coords > 4) logistic_planes(4, s.coords - 4);
        if (!s.background) logistic_planes(s.coords, 1);
        if (!s.softmax && !s.tree) logistic_planes(s.coords + 1, s.classes);

        if (s.softmax && !s.tree) {
          const int first = entry(s.coords + !s.background);
          for (int cell = 0; cell < plane; ++cell)
            region_softmax(input + first + cell, s.classes + s.background, plane, output + first + cell);
        }
      }
    }
    if (s.tree) {
      // Its own loop over (image, anchor, group): batch x num alone (3 for yolo9000 at
      // batch 1) leaves a core idle for a third of the largest part of the layer.
      const int groups = s.tree->groups();
      const int64_t tasks = (int64_t)s.batch * s.num * groups;
#pragma omp parallel if ((size_t)s.batch * s.outputs > 65536)
      {
        std::vector<float> largest, sum;  // per cell of the plane
#pragma omp for schedule(dynamic, 64)
        for (int64_t task = 0; task < tasks; ++task) {
          const int b = (int)(task / ((int64_t)s.num * groups));
          const int n = (int)(task / groups % s.num);
          const int g = (int)(task % groups);
          const size_t first =
              region_entry_index(b, n * plane, s.coords + 1, s.w, s.h, s.coords, s.classes, outputs) +
              (size_t)s.tree->group_offset[g] * plane;
          tree_group_softmax(input + first, s.tree->group_size[g], plane, output + first, largest, sum);
        }
      }
    }
  }
  void region_gradient(const RegionShape& s, const float* output, float* delta) override {
    const int plane = s.w * s.h;
    const int outputs = (int)s.outputs;
#pragma omp parallel for collapse(2) if ((size_t)s.batch * s.outputs > 65536)
    for (int b = 0; b < s.batch; ++b) {
      for (int n = 0; n < s.num; ++n) {
        auto scale_by_logistic_gradient = [&](int entry, int planes) {
          const int i0 = region_entry_index(b, n * plane, entry, s.w, s.h, s.coords, s.classes, outputs);
          for (int i = i0; i < i0 + planes * plane; ++i) delta[i] *= region_logistic_gradient(output[i]);
        };
        scale_by_logistic_gradient(0, 2);
        if (s.coords > 4) scale_by_logistic_gradient(4, s.coords - 4);
        if (!s.background) scale_by_logistic_gradient(s.coords, 1);
      }
    }
  }

  // ------------------------------------------------------------ update
  void sgd(size_t n, float* param, float* update, float step, float decay_term, float momentum) override {
    if (decay_term == 0.f) {
#pragma omp parallel for schedule(static) if (n > 65536)
      for (size_t i = 0; i < n; ++i) sgd_step(param[i], update[i], step, momentum);
    } else {
#pragma omp parallel for schedule(static) if (n > 65536)
      for (size_t i = 0; i < n; ++i) sgd_step_decay(param[i], update[i], step, decay_term, momentum);
    }
  }

  // ------------------------------------------------------------ specialisations
  // Training: the raw convolution on the packed GEMM, panels packed straight from the
  // image (the inference kernel with an empty epilogue), never Winograd (its extra
  // rounding is kept out of training).
  bool conv_forward_raw(ConvolutionalLayer& l, const float* input, float* output) override {
    if (options_.reference_kernels) return false;
    conv_forward_fast(options_.isa, l.shape(), input, l.weights.read(device()), ConvEpilogue{}, output);
    return true;
  }

  // Training backward: the images folded into the weight-gradient GEMM's K on small maps, and
  // the input gradient of stride-1 'same' convolutions as a forward convolution of the delta
  // with the flipped, transposed weights (no col2im); the rest runs the generic loop.
  bool conv_weight_gradient(ConvolutionalLayer& l, const float* input, const float* delta) override {
    if (options_.reference_kernels) return false;
    return conv_backward_weights_fast(options_.isa, l.shape(), input, delta, l.weight_updates.write(device()));
  }
  bool conv_input_gradient(ConvolutionalLayer& l, const float* delta, float* prev_delta) override {
    if (options_.reference_kernels || !conv_backward_input_applicable(l.shape())) return false;
    conv_backward_input_fast(options_.isa, l.shape(), delta, l.weights.read(device()), prev_delta);
    return true;
  }

  // Inference: BN folded into a per-filter scale/bias applied with the activation in
  // the GEMM epilogue; Winograd where the mode selects it, else the packed GEMM.
  bool conv_inference(ConvolutionalLayer& l, const float* input, float* output) override {
    if (options_.reference_kernels) return false;
    run_inference(l, input, output, false);
    return true;
  }

  // The direct 3x3 kernel and both Winograd variants pool in their epilogues (tiny-voc:
  // every conv before a 2x2 stride-2 pool; the largest maps of a net are the ones pooled);
  // the kernel is the one conv_inference picks, so the values are the unfused pair's.
  bool can_fuse_conv_maxpool(const ConvolutionalLayer& l) const override {
    const ConvShape s = l.shape();
    if (options_.reference_kernels || s.out_h % 2 || s.out_w % 2) return false;
    return winograd_plan(s, options_.winograd) != WinogradPlan::None || conv3x3_direct_applicable(options_.isa, s);
  }
  void conv_inference_maxpool(ConvolutionalLayer& l, const float* input, float* pooled) override {
    check(can_fuse_conv_maxpool(l), "layer ", l.index, ": this convolution cannot run with a fused max pool");
    run_inference(l, input, pooled, true);
  }

 private:
  void run_inference(ConvolutionalLayer& l, const float* input, float* output, bool pool) {
    ConvEpilogue ep = folded_epilogue(l);
    ep.maxpool2x2 = pool;
    const ConvShape shape = l.shape();
    const float* weights = l.weights.read(Device::Cpu);
    const WinogradPlan plan = winograd_plan(shape, options_.winograd);
    if (plan == WinogradPlan::Streamed) {
      if (!l.wino_u.empty()) std::vector<float>().swap(l.wino_u);
      conv3x3_winograd_streamed(options_.isa, shape, input, weights, ep, output);
      return;
    }
    if (plan == WinogradPlan::Cached) {
      // The cache key: a checksum of the raw weight bits plus the shape (cheap next to the conv: 9 reads per
      // 36 * out_h * out_w / 16 multiply-adds of the transformed GEMMs).
      const uint64_t key =
          float_checksum(weights, l.weights.size()) ^ ((uint64_t)l.filters << 40) ^ (uint64_t)l.c;
      if (l.wino_u.size() != winograd_weights_floats(l.filters, l.c) || key != l.wino_key) {
        l.wino_u.resize(winograd_weights_floats(l.filters, l.c));
        winograd_transform_weights(l.filters, l.c, weights, l.wino_u.data());
        l.wino_key = key;
      }
      conv3x3_winograd(options_.isa, shape, input, l.wino_u.data(), ep, output);
      return;
    }
    if (!l.wino_u.empty()) std::vector<float>().swap(l.wino_u);  // only layers that use Winograd keep U
    // conv_forward_fast takes the direct kernel first wherever it applies: the one that pools.
    if (pool) return conv3x3_direct(options_.isa, shape, input, weights, ep, output);
    conv_forward_fast(options_.isa, shape, input, weights, ep, output);
  }

  // Batch norm's rolling statistics folded into a per-filter scale and bias (kept in the
  // layer), with the layer's activation.
  static ConvEpilogue folded_epilogue(ConvolutionalLayer& l) {
    fold_batchnorm(l.filters, l.biases.read(Device::Cpu), l.batch_normalize ? l.scales.read(Device::Cpu) : nullptr,
                   l.batch_normalize ? l.rolling_mean.read(Device::Cpu) : nullptr,
                   l.batch_normalize ? l.rolling_variance.read(Device::Cpu) : nullptr, l.fold_scale, l.fold_bias);
    ConvEpilogue ep;
    ep.scale = l.fold_scale.empty() ? nullptr : l.fold_scale.data();
    ep.bias = l.fold_bias.data();
    ep.act = l.activation;
    return ep;
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const ExecOptions& o) { return std::make_unique<CpuBackend>(o); }

}  // namespace dn
