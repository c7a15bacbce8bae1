// [maxpool]: Darknet's max pooling. padding defaults to size-1, the window
// starts at -padding/2, so size=2 stride=1 pads only right/bottom (tiny-yolo).
#include <cstdio>

#include "core/limits.hpp"
#include "layers/layers.hpp"

namespace dn {

class MaxpoolLayer : public Layer {
 public:
  int size = 2, stride = 2, padding = 1;
  IntBuffer argmax;  // input index of each output's maximum (training only)

  void compute_shape() {
    out_w = (w + padding - size) / stride + 1;
    out_h = (h + padding - size) / stride + 1;
    out_c = c;
    if (out_w <= 0 || out_h <= 0) fail("layer ", index, " (maxpool): input ", w, "x", h, " too small for size ", size);
    inputs = (size_t)w * h * c;
    outputs = (size_t)out_w * out_h * out_c;
  }
  MaxpoolShape shape() const {
    MaxpoolShape s;
    s.batch = batch;
    s.c = c;
    s.h = h;
    s.w = w;
    s.out_h = out_h;
    s.out_w = out_w;
    s.size = size;
    s.stride = stride;
    s.padding = padding;
    return s;
  }
  void allocate() override {
    Layer::allocate();
    // -1 (no input) until a forward writes it, so a stray backward adds nothing.
    if (training)
      argmax.assign((size_t)batch * outputs, -1);
    else
      argmax.clear();
  }
  void resize(int nw, int nh) override {
    w = nw;
    h = nh;
    compute_shape();
    allocate();
  }
  double flops() const override { return (double)outputs * size * size; }
  bool is_maxpool_2x2_stride_2() const override {
    return size == 2 && stride == 2 && padding / 2 == 0 && w % 2 == 0 && h % 2 == 0 && out_w * 2 == w &&
           out_h * 2 == h && out_c == c;
  }

  // Without argmax (inference) the backend may take its values-only vectorised path.
  void forward(LayerContext& ctx) override {
    int* am = argmax.empty() ? nullptr : argmax.write(ctx.device);
    ctx.backend->maxpool_forward(shape(), ctx.input, output.write(ctx.device), am);
  }
  void backward(LayerContext& ctx) override {
    if (!ctx.prev_delta) return;
    check(!argmax.empty() && !delta.empty(), "layer ", index, " (maxpool): backward without training buffers");
    ctx.backend->maxpool_backward(shape(), delta.read(ctx.device), argmax.read(ctx.device), ctx.prev_delta);
  }
  std::string describe() const override {
    char buf[160];
    std::snprintf(buf, sizeof buf, "max         %2d x%2d /%2d  %4d x%4d x%4d   ->  %4d x%4d x%4d", size, size, stride,
                  w, h, c, out_w, out_h, out_c);
    return buf;
  }
};

std::unique_ptr<Layer> make_maxpool(const CfgSection& s, const LayerInput& in) {
  auto l = std::make_unique<MaxpoolLayer>();
  l->kind = LayerType::Maxpool;
  l->type = "maxpool";
  l->index = in.index;
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
  // size=1e9 stride=1 would otherwise load and scan a billion-square window per output.
  if (l->size > kMaxWindow) s.fail_key("size", "must be <= " + std::to_string(kMaxWindow));
  if (l->stride > kMaxWindow) s.fail_key("stride", "must be <= " + std::to_string(kMaxWindow));
  if (l->padding > kMaxWindow) s.fail_key("padding", "must be <= " + std::to_string(kMaxWindow));
  const int ow = (in.w + l->padding - l->size) / l->stride + 1, oh = (in.h + l->padding - l->size) / l->stride + 1;
  if (ow <= 0 || oh <= 0)
    s.fail_key("size", "window larger than the input " + std::to_string(in.w) + "x" + std::to_string(in.h));
  l->compute_shape();
  l->allocate();
  return l;
}

}  // namespace dn
