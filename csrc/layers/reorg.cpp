// [reorg]: Darknet's passthrough reorganisation. Its index mapping is NOT the
// usual space-to-depth (see the reference README): the formula lives in
// kernels/reorg_index.hpp, shared by the CPU and CUDA backends.
#include <cstdio>

#include "core/limits.hpp"
#include "layers/layers.hpp"

namespace dn {

class ReorgLayer : public Layer {
 public:
  int stride = 2;
  bool reverse = false;

  void compute_shape() {
    // 64-bit: a reverse reorg multiplies the map size by stride.
    if (reverse && ((int64_t)w * stride > kMaxSpatial || (int64_t)h * stride > kMaxSpatial))
      fail("layer ", index, " (reorg): reverse output ", (int64_t)w * stride, "x", (int64_t)h * stride,
           " is larger than the limit ", kMaxSpatial);
    if (reverse) {
      out_w = w * stride;
      out_h = h * stride;
      out_c = c / (stride * stride);
    } else {
      out_w = w / stride;
      out_h = h / stride;
      out_c = c * stride * stride;
    }
    inputs = (size_t)w * h * c;
    outputs = (size_t)out_w * out_h * out_c;
  }
  void resize(int nw, int nh) override {
    w = nw;
    h = nh;
    if (!reverse && (w % stride || h % stride))
      fail("layer ", index, " (reorg): input ", w, "x", h, " not divisible by stride ", stride);
    compute_shape();
    allocate();
  }
  // Darknet: non-reverse forward gathers (out[i] = in[reorg_index(i)]) using the
  // INPUT dims; reverse scatters. Backward is the inverse of each.
  void forward(LayerContext& ctx) override {
    ctx.backend->reorg_forward(batch, c, h, w, stride, reverse, ctx.input, output.write(ctx.device));
  }
  void backward(LayerContext& ctx) override {
    if (!ctx.prev_delta) return;
    check(!delta.empty(), "layer ", index, " (reorg): backward without training buffers");
    ctx.backend->reorg_backward(batch, c, h, w, stride, reverse, delta.read(ctx.device), ctx.prev_delta);
  }
  std::string describe() const override {
    char buf[160];
    std::snprintf(buf, sizeof buf, "reorg              /%2d  %4d x%4d x%4d   ->  %4d x%4d x%4d", stride, w, h, c,
                  out_w, out_h, out_c);
    return buf;
  }
};

std::unique_ptr<Layer> make_reorg(const CfgSection& s, const LayerInput& in) {
  auto l = std::make_unique<ReorgLayer>();
  l->kind = LayerType::Reorg;
  l->type = "reorg";
  l->index = in.index;
  l->batch = in.batch;
  l->w = in.w;
  l->h = in.h;
  l->c = in.c;
  l->stride = s.get_int("stride", 1);
  l->reverse = s.get_int("reverse", 0) != 0;
  s.touch("flatten");
  s.touch("extra");
  if (s.get_int("flatten", 0) || s.get_int("extra", 0)) s.fail_section("reorg flatten/extra are not supported");
  if (l->stride <= 0) s.fail_key("stride", "must be > 0");
  // 64-bit: stride=65536 must be an error, not stride^2 overflowing to 0 and a division by it.
  const long long s2 = (long long)l->stride * l->stride;
  if (!l->reverse && (in.w % l->stride || in.h % l->stride))
    s.fail_key("stride", "input " + std::to_string(in.w) + "x" + std::to_string(in.h) + " not divisible by stride");
  // Darknet's index map divides by c / stride^2 in both directions (the passthrough reorg
  // reads its input as stride^2 interleaved channel groups), so channels must divide.
  if (in.c % s2)
    s.fail_key("stride", std::string(l->reverse ? "reverse " : "") + "reorg needs channels (" + std::to_string(in.c) +
                             ") divisible by stride^2 (" + std::to_string(s2) + ")");
  if (l->stride > kMaxWindow) s.fail_key("stride", "must be <= " + std::to_string(kMaxWindow));
  try {
    l->compute_shape();
  } catch (const DarknetError& e) {
    s.fail_key("stride", e.what());
  }
  l->allocate();
  return l;
}

}  // namespace dn
