// [avgpool]: global average pooling over each channel (Darknet's avgpool).
#include <cstdio>

#include "layers/layers.hpp"

namespace dn {

class AvgpoolLayer : public Layer {
 public:
  void compute_shape() {
    out_w = 1;
    out_h = 1;
    out_c = c;
    inputs = (size_t)w * h * c;
    outputs = (size_t)c;
  }
  void resize(int nw, int nh) override {
    w = nw;
    h = nh;
    compute_shape();
    allocate();
  }
  double flops() const override { return (double)inputs; }
  void forward(LayerContext& ctx) override {
    ctx.backend->avgpool_forward(batch, c, w * h, ctx.input, output.write(ctx.device));
  }
  void backward(LayerContext& ctx) override {
    if (!ctx.prev_delta) return;
    check(!delta.empty(), "layer ", index, " (avgpool): backward without training buffers");
    ctx.backend->avgpool_backward(batch, c, w * h, delta.read(ctx.device), ctx.prev_delta);
  }
  std::string describe() const override {
    char buf[160];
    std::snprintf(buf, sizeof buf, "avg                     %4d x%4d x%4d   ->  %4d", w, h, c, c);
    return buf;
  }
};

std::unique_ptr<Layer> make_avgpool(const CfgSection&, const LayerInput& in) {
  auto l = std::make_unique<AvgpoolLayer>();
  l->kind = LayerType::Avgpool;
  l->type = "avgpool";
  l->index = in.index;
  l->batch = in.batch;
  l->w = in.w;
  l->h = in.h;
  l->c = in.c;
  l->compute_shape();
  l->allocate();
  return l;
}

}  // namespace dn
