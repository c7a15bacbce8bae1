// [route]: concatenates the outputs of earlier layers along channels
// (layers=-1,-4 relative or absolute indices). Backward adds each slice of
// the delta into the source layer's delta.
#include <cstdio>
#include <cstring>

#include "layers/layers.hpp"
#include "network.hpp"

namespace dn {

class RouteLayer : public Layer {
 public:
  std::vector<int> sources;
  Network* net = nullptr;

  void compute_shape() {
    const Layer& first = *net->layers[sources[0]];
    out_w = first.out_w;
    out_h = first.out_h;
    out_c = 0;
    outputs = 0;
    for (int src : sources) {
      const Layer& l = *net->layers[src];
      if (l.out_w != out_w || l.out_h != out_h)
        fail("layer ", index, " (route): layer ", src, " is ", l.out_w, "x", l.out_h, " but layer ", sources[0],
             " is ", out_w, "x", out_h, " (route needs equal sizes)");
      out_c += l.out_c;
      outputs += l.outputs;
    }
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
  void forward(NetState&) override {
    size_t offset = 0;
    for (int src : sources) {
      const Layer& l = *net->layers[src];
      for (int b = 0; b < batch; ++b)
        std::memcpy(output.data() + (size_t)b * outputs + offset, l.output.data() + (size_t)b * l.outputs,
                    sizeof(float) * l.outputs);
      offset += l.outputs;
    }
  }
  void backward(NetState&) override {
    size_t offset = 0;
    for (int src : sources) {
      Layer& l = *net->layers[src];
      if (!l.delta.empty())
        for (int b = 0; b < batch; ++b) {
          float* dst = l.delta.data() + (size_t)b * l.outputs;
          const float* d = delta.data() + (size_t)b * outputs + offset;
          for (size_t i = 0; i < l.outputs; ++i) dst[i] += d[i];
        }
      offset += l.outputs;
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

std::unique_ptr<Layer> make_route(const CfgSection& s, const LayerInput& in, Network& net) {
  auto l = std::make_unique<RouteLayer>();
  l->type = "route";
  l->batch = in.batch;
  l->net = &net;
  const int here = (int)net.layers.size();
  l->index = here;
  if (!s.has("layers")) s.fail_section("missing required key 'layers'");
  std::vector<int> raw = s.get_ints("layers");
  if (raw.empty()) s.fail_key("layers", "no layer given");
  for (int r : raw) {
    const int idx = r < 0 ? here + r : r;
    if (idx < 0 || idx >= here)
      s.fail_key("layers", "layer " + std::to_string(r) + " resolves to " + std::to_string(idx) +
                               ", outside the earlier layers 0.." + std::to_string(here - 1));
    l->sources.push_back(idx);
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
