// [dropout]: in training zeroes each input with probability p and scales the
// rest by 1/(1-p); at inference it is the identity.
#include <cstdio>
#include <cstring>

#include "layers/layers.hpp"
#include "network.hpp"

namespace dn {

class DropoutLayer : public Layer {
 public:
  float probability = .5f, scale = 2.f;
  Network* net = nullptr;
  std::vector<float> draws;

  void allocate() override {
    Layer::allocate();
    if (training) draws.assign((size_t)batch * inputs, 0.f); else std::vector<float>().swap(draws);
  }
  void resize(int nw, int nh) override {
    w = out_w = nw;
    h = out_h = nh;
    inputs = outputs = (size_t)w * h * c;
    allocate();
  }
  void forward(NetState& s) override {
    const size_t n = (size_t)batch * inputs;
    if (!s.train) {
      std::memcpy(output.data(), s.input, sizeof(float) * n);
      return;
    }
    std::uniform_real_distribution<float> uniform(0.f, 1.f);
    for (size_t i = 0; i < n; ++i) {
      draws[i] = uniform(net->rng);
      output[i] = draws[i] < probability ? 0.f : s.input[i] * scale;
    }
  }
  void backward(NetState& s) override {
    if (!s.delta) return;
    const size_t n = (size_t)batch * inputs;
    for (size_t i = 0; i < n; ++i)
      if (draws[i] >= probability) s.delta[i] += delta[i] * scale;
  }
  std::string describe() const override {
    char buf[96];
    std::snprintf(buf, sizeof buf, "dropout       p = %.2f               %4zu  ->  %4zu", probability, inputs, inputs);
    return buf;
  }
};

std::unique_ptr<Layer> make_dropout(const CfgSection& s, const LayerInput& in, Network& net) {
  auto l = std::make_unique<DropoutLayer>();
  init_same_shape(*l, "dropout", in);
  l->net = &net;
  l->probability = s.get_float("probability", .5f);
  if (l->probability < 0 || l->probability >= 1) s.fail_key("probability", "must be in [0, 1)");
  l->scale = 1.f / (1.f - l->probability);
  l->allocate();
  return l;
}

}  // namespace dn
