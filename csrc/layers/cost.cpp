// [cost]: compares its input with the network truth. Output holds the
// per-element error, delta = truth - input, backward adds scale * delta.
#include <cmath>
#include <cstdio>

#include "kernels/cost.hpp"
#include "layers/layers.hpp"

namespace dn {

class CostLayer : public Layer {
 public:
  CostType cost_type = CostType::Sse;
  float scale = 1.f;

  void resize(int nw, int nh) override {
    w = nw;
    h = nh;
    inputs = outputs = (size_t)w * h * c;
    allocate();
  }
  void forward(NetState& s) override {
    if (!s.truth) return;
    const size_t n = (size_t)batch * inputs;
    double total = 0;
    for (size_t i = 0; i < n; ++i) {
      const CostTerm t = cost_term(cost_type, s.truth[i], s.input[i]);
      output[i] = t.error;
      if (!delta.empty()) delta[i] = t.delta;
      total += t.error;
    }
    cost = (float)total;
  }
  void backward(NetState& s) override {
    if (!s.delta) return;
    const size_t n = (size_t)batch * inputs;
    for (size_t i = 0; i < n; ++i) s.delta[i] += scale * delta[i];
  }
  std::string describe() const override {
    char buf[96];
    std::snprintf(buf, sizeof buf, "cost                                           %4zu", inputs);
    return buf;
  }
};

std::unique_ptr<Layer> make_cost(const CfgSection& s, const LayerInput& in, Network&) {
  auto l = std::make_unique<CostLayer>();
  init_same_shape(*l, "cost", in);
  l->has_cost = true;
  const std::string type = s.get_str("type", "sse");
  if (type == "sse") l->cost_type = CostType::Sse;
  else if (type == "masked") l->cost_type = CostType::Masked;
  else if (type == "L1") l->cost_type = CostType::L1;
  else if (type == "smooth") l->cost_type = CostType::Smooth;
  else s.fail_key("type", "unknown cost type '" + type + "' (sse, masked, L1, smooth)");
  l->scale = s.get_float("scale", 1.f);
  for (const char* k : {"ratio", "noobject_scale", "thresh"}) s.touch(k);
  l->allocate();
  return l;
}

}  // namespace dn
