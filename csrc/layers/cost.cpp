// [cost]: compares its input with the network truth. Output holds the
// per-element error, delta = truth - input, backward adds scale * delta.
#include <cstdio>

#include "layers/layers.hpp"

namespace dn {

class CostLayer : public Layer {
 public:
  CostType cost_type = CostType::Sse;
  float scale = 1.f;

  void resize(int nw, int nh) override {
    w = out_w = nw;
    h = out_h = nh;
    inputs = outputs = (size_t)w * h * c;
    allocate();
  }
  void forward(LayerContext& ctx) override {
    if (!ctx.truth) return;
    float* d = delta.empty() ? nullptr : delta.write(ctx.device);
    cost = ctx.backend->cost(cost_type, (size_t)batch * inputs, ctx.input, ctx.truth, output.write(ctx.device), d);
  }
  void backward(LayerContext& ctx) override {
    if (!ctx.prev_delta) return;
    check(!delta.empty(), "layer ", index, " (cost): backward without training buffers");
    ctx.backend->axpy((size_t)batch * inputs, scale, delta.read(ctx.device), ctx.prev_delta);
  }
  std::string describe() const override {
    char buf[96];
    std::snprintf(buf, sizeof buf, "cost                                           %4zu", inputs);
    return buf;
  }
};

std::unique_ptr<Layer> make_cost(const CfgSection& s, const LayerInput& in) {
  auto l = std::make_unique<CostLayer>();
  init_same_shape(*l, LayerType::Cost, "cost", in);
  l->has_cost = true;
  const std::string type = s.get_str("type", "sse");
  if (type == "sse") l->cost_type = CostType::Sse;
  else if (type == "masked") l->cost_type = CostType::Masked;
  else if (type == "L1") l->cost_type = CostType::L1;
  else if (type == "smooth") l->cost_type = CostType::Smooth;
  else s.fail_key("type", "unknown cost type '" + type + "' (sse, masked, L1, smooth)");
  l->scale = s.get_float("scale", 1.f, 0.f, 1e6f);
  for (const char* k : {"ratio", "noobject_scale", "thresh"}) s.touch(k);
  l->allocate();
  return l;
}

}  // namespace dn
