// [maxpool]: Darknet's max pooling. padding defaults to size-1, the window
// starts at -padding/2, so size=2 stride=1 pads only right/bottom (tiny-yolo).
#include <cfloat>
#include <cstdio>

#include "kernels/pool.hpp"
#include "layers/layers.hpp"
#include "network.hpp"

namespace dn {

class MaxpoolLayer : public Layer {
 public:
  int size = 2, stride = 2, padding = 1;
  std::vector<int> argmax;  // input index of each output's maximum (training only)

  void compute_shape() {
    out_w = (w + padding - size) / stride + 1;
    out_h = (h + padding - size) / stride + 1;
    out_c = c;
    if (out_w <= 0 || out_h <= 0) fail("layer ", index, " (maxpool): input ", w, "x", h, " too small for size ", size);
    inputs = (size_t)w * h * c;
    outputs = (size_t)out_w * out_h * out_c;
  }
  void allocate() override {
    Layer::allocate();
    if (training)
      argmax.assign((size_t)batch * outputs, -1);
    else
      std::vector<int>().swap(argmax);
  }
  void resize(int nw, int nh) override {
    w = nw;
    h = nh;
    compute_shape();
    allocate();
  }
  double flops() const override { return (double)outputs * size * size; }

  void forward(NetState& s) override {
    if (argmax.empty() && !s.net->reference_kernels) {  // inference: values only, vectorised
      maxpool_forward_fast(s.input, output.data(), batch, c, h, w, size, stride, padding, out_h, out_w);
      return;
    }
    const int offset = -padding / 2;
    const bool keep_argmax = !argmax.empty();
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < batch; ++b)
      for (int k = 0; k < c; ++k) {
        const float* in = s.input + ((size_t)b * c + k) * h * w;
        for (int i = 0; i < out_h; ++i)
          for (int j = 0; j < out_w; ++j) {
            const size_t out_index = (((size_t)b * c + k) * out_h + i) * out_w + j;
            float best = -FLT_MAX;
            int best_index = -1;
            for (int n = 0; n < size; ++n)
              for (int m = 0; m < size; ++m) {
                const int y = offset + i * stride + n, x = offset + j * stride + m;
                const bool valid = y >= 0 && y < h && x >= 0 && x < w;
                const float v = valid ? in[y * w + x] : -FLT_MAX;
                if (v > best) {  // first maximum wins
                  best = v;
                  best_index = valid ? (int)(((size_t)b * c + k) * h * w + (size_t)y * w + x) : best_index;
                }
              }
            output[out_index] = best;
            if (keep_argmax) argmax[out_index] = best_index;
          }
      }
  }
  void backward(NetState& s) override {
    if (!s.delta) return;
    const size_t n = (size_t)batch * outputs;
    for (size_t i = 0; i < n; ++i)
      if (argmax[i] >= 0) s.delta[argmax[i]] += delta[i];
  }
  std::string describe() const override {
    char buf[160];
    std::snprintf(buf, sizeof buf, "max         %2d x%2d /%2d  %4d x%4d x%4d   ->  %4d x%4d x%4d", size, size, stride,
                  w, h, c, out_w, out_h, out_c);
    return buf;
  }
};

std::unique_ptr<Layer> make_maxpool(const CfgSection& s, const LayerInput& in, Network&) {
  auto l = std::make_unique<MaxpoolLayer>();
  l->type = "maxpool";
  l->batch = in.batch;
  l->w = in.w;
  l->h = in.h;
  l->c = in.c;
  l->stride = s.get_int("stride", 1);
  l->size = s.get_int("size", l->stride);
  l->padding = s.get_int("padding", l->size - 1);
  if (l->size <= 0) s.fail_key("size", "must be > 0");
  if (l->stride <= 0) s.fail_key("stride", "must be > 0");
  if (l->padding < 0) s.fail_key("padding", "must be >= 0");
  const int ow = (in.w + l->padding - l->size) / l->stride + 1, oh = (in.h + l->padding - l->size) / l->stride + 1;
  if (ow <= 0 || oh <= 0)
    s.fail_key("size", "window larger than the input " + std::to_string(in.w) + "x" + std::to_string(in.h));
  l->compute_shape();
  l->allocate();
  return l;
}

}  // namespace dn
