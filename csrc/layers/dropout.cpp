// [dropout]: in training zeroes each input with probability p and scales the
// rest by 1/(1-p); at inference it is the identity.
#include <cstdio>
#include <random>

#include "layers/layers.hpp"

namespace dn {

class DropoutLayer : public Layer {
 public:
  float probability = .5f, scale = 2.f;
  // One uniform [0,1) per element, drawn on the host from the network's seeded
  // generator so the CPU and CUDA backends drop the same units.
  FloatBuffer draws;

  void allocate() override {
    Layer::allocate();
    if (training)
      draws.reset((size_t)batch * inputs);
    else
      draws.clear();
  }
  std::vector<FloatBuffer*> all_buffers() override {
    std::vector<FloatBuffer*> v = Layer::all_buffers();
    v.push_back(&draws);
    return v;
  }
  void resize(int nw, int nh) override {
    w = out_w = nw;
    h = out_h = nh;
    inputs = outputs = (size_t)w * h * c;
    allocate();
  }
  void forward(LayerContext& ctx) override {
    const size_t n = (size_t)batch * inputs;
    if (!ctx.train) {
      ctx.backend->copy(ctx.input, output.write(ctx.device), n);
      return;
    }
    check(draws.size() == n, "layer ", index, " (dropout): training forward without training buffers");
    check(ctx.rng != nullptr, "layer ", index, " (dropout): training forward without a random generator");
    std::uniform_real_distribution<float> uniform(0.f, 1.f);
    float* r = draws.overwrite(Device::Cpu);
    for (size_t i = 0; i < n; ++i) r[i] = uniform(*ctx.rng);
    const float* device_draws = r;
    if (ctx.device != Device::Cpu) {
      // Queued on the backend's stream (pinned staging on CUDA): no stall of the step.
      float* d = draws.overwrite(ctx.device);
      ctx.backend->upload(d, r, n);
      draws.mark_synced();
      device_draws = d;
    }
    ctx.backend->dropout_forward(n, probability, scale, ctx.input, device_draws, output.write(ctx.device));
  }
  void backward(LayerContext& ctx) override {
    if (!ctx.prev_delta) return;
    check(!delta.empty() && !draws.empty(), "layer ", index, " (dropout): backward without training buffers");
    ctx.backend->dropout_backward((size_t)batch * inputs, probability, scale, draws.read(ctx.device),
                                  delta.read(ctx.device), ctx.prev_delta);
  }
  std::string describe() const override {
    char buf[96];
    std::snprintf(buf, sizeof buf, "dropout       p = %.2f               %4zu  ->  %4zu", probability, inputs, inputs);
    return buf;
  }
};

std::unique_ptr<Layer> make_dropout(const CfgSection& s, const LayerInput& in) {
  auto l = std::make_unique<DropoutLayer>();
  init_same_shape(*l, LayerType::Dropout, "dropout", in);
  l->probability = s.get_float("probability", .5f);
  if (l->probability < 0 || l->probability >= 1) s.fail_key("probability", "must be in [0, 1)");
  l->scale = 1.f / (1.f - l->probability);
  l->allocate();
  return l;
}

}  // namespace dn
