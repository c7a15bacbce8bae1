// [route]: concatenates the outputs of earlier layers along channels
// (layers=-1,-4 relative or absolute indices). Backward adds each slice of
// the delta into the source layer's delta.
#include <cstdio>

#include "core/limits.hpp"
#include "layers/layers.hpp"

namespace dn {

class RouteLayer : public Layer {
 public:
  std::vector<int> sources;
  // The layers named by `sources`, taken from LayerInput::earlier at build time
  // (the network owns them and outlives this layer).
  std::vector<Layer*> source_layers;

  // Shape from the sources' current outputs (the network resizes in order, so
  // they are already resized when resize() runs).
  void compute_shape() {
    const Layer& first = *source_layers[0];
    out_w = first.out_w;
    out_h = first.out_h;
    int64_t channels = 0;
    outputs = 0;
    for (size_t k = 0; k < source_layers.size(); ++k) {
      const Layer& l = *source_layers[k];
      if (l.out_w != out_w || l.out_h != out_h)
        fail("layer ", index, " (route): layer ", sources[k], " is ", l.out_w, "x", l.out_h, " but layer ",
             sources[0], " is ", out_w, "x", out_h, " (route needs equal sizes)");
      channels += l.out_c;
      outputs += l.outputs;
    }
    // 64-bit sum: layers=-1,-1,-1,... repeated must not wrap the channel count.
    if (channels > kMaxChannels)
      fail("layer ", index, " (route): ", channels, " channels in all, more than the limit ", kMaxChannels);
    out_c = (int)channels;
    w = out_w;
    h = out_h;
    c = out_c;
    inputs = outputs;
  }
  std::vector<int> reads() const override { return sources; }
  void resize(int, int) override {
    compute_shape();
    allocate();
  }
  // Each source fills its channel slice of every image: batch rows of l.outputs floats.
  void forward(LayerContext& ctx) override {
    float* out = output.write(ctx.device);
    size_t offset = 0;
    for (const Layer* l : source_layers) {
      ctx.backend->copy_rows(batch, l->outputs, l->output.read(ctx.device), l->outputs, out + offset, outputs,
                             false);
      offset += l->outputs;
    }
  }
  void backward(LayerContext& ctx) override {
    check(!delta.empty(), "layer ", index, " (route): backward without training buffers");
    const float* d = delta.read(ctx.device);
    size_t offset = 0;
    for (Layer* l : source_layers) {
      if (!l->delta.empty())
        ctx.backend->copy_rows(batch, l->outputs, d + offset, outputs, l->delta.write(ctx.device), l->outputs, true);
      offset += l->outputs;
    }
  }
  std::string describe() const override {
    std::string s = "route ";
    for (int src : sources) s += " " + std::to_string(src);
    char buf[96];
    std::snprintf(buf, sizeof buf, "   ->  %4d x%4d x%4d", out_w, out_h, out_c);
    while (s.size() < 40) s += ' ';
    return s + buf;
  }
};

std::unique_ptr<Layer> make_route(const CfgSection& s, const LayerInput& in) {
  auto l = std::make_unique<RouteLayer>();
  l->kind = LayerType::Route;
  l->type = "route";
  l->index = in.index;
  l->batch = in.batch;
  const int here = in.index;
  check((int)in.earlier.size() == here, "layer ", here, " (route): ", in.earlier.size(),
        " earlier layers given, expected ", here);
  if (!s.has("layers")) s.fail_section("missing required key 'layers'");
  std::vector<int> raw = s.get_ints("layers");
  if (raw.empty()) s.fail_key("layers", "no layer given");
  for (int r : raw) {
    const int idx = r < 0 ? here + r : r;
    if (idx < 0 || idx >= here)
      s.fail_key("layers", "layer " + std::to_string(r) + " resolves to " + std::to_string(idx) +
                               ", outside the earlier layers 0.." + std::to_string(here - 1));
    check(in.earlier[idx] != nullptr, "layer ", here, " (route): earlier layer ", idx, " is missing");
    l->sources.push_back(idx);
    l->source_layers.push_back(in.earlier[idx]);
  }
  try {
    l->compute_shape();
  } catch (const DarknetError& e) {
    s.fail_key("layers", e.what());
  }
  s.touch("groups");
  s.touch("group_id");
  l->allocate();
  return l;
}

}  // namespace dn
