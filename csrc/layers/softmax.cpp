// [softmax]: softmax over `groups` equal slices of each image's input with a
// temperature; with truth present (training) it writes the cross-entropy
// delta t - p and cost sum(-t log p).
#include <cmath>
#include <cstdio>
#include <cstring>

#include "kernels/cost.hpp"
#include "kernels/softmax.hpp"
#include "layers/layers.hpp"
#include "parse/tree.hpp"

namespace dn {

class SoftmaxLayer : public Layer {
 public:
  int groups = 1;
  float temperature = 1.f;
  std::shared_ptr<WordTree> tree;  // tree=: one softmax per sibling group (YOLO9000's WordTree)

  void resize(int nw, int nh) override {
    w = nw;
    h = nh;
    inputs = outputs = (size_t)w * h * c;
    allocate();
  }
  void forward(NetState& s) override {
    if (tree) {
      const int n_groups = tree->groups();
#pragma omp parallel for collapse(2) schedule(static) if (batch * n_groups > 64)
      for (int b = 0; b < batch; ++b)
        for (int g = 0; g < n_groups; ++g) {
          const size_t off = (size_t)b * inputs + tree->group_offset[g];
          softmax(s.input + off, tree->group_size[g], temperature, 1, output.data() + off);
        }
    } else {
      const int group_size = (int)(inputs / groups);
#pragma omp parallel for collapse(2) schedule(static) if (batch * groups > 8)
      for (int b = 0; b < batch; ++b)
        for (int g = 0; g < groups; ++g) {
          const size_t off = (size_t)b * inputs + (size_t)g * group_size;
          softmax(s.input + off, group_size, temperature, 1, output.data() + off);
        }
    }
    if (s.truth && !delta.empty()) {
      double total = 0;
      const size_t n = (size_t)batch * inputs;
      for (size_t i = 0; i < n; ++i) {
        const float t = s.truth[i], p = output[i];
        // Darknet's fill_hierarchy marks WordTree groups without a label with
        // -1234; its CUDA path masks them (no delta, no loss).
        if (t == kMaskedTruth) {
          delta[i] = 0;
          continue;
        }
        delta[i] = t - p;
        if (t) total += -t * std::log(p);
      }
      cost = (float)total;
    }
  }
  void backward(NetState& s) override {
    if (!s.delta) return;
    const size_t n = (size_t)batch * inputs;
    for (size_t i = 0; i < n; ++i) s.delta[i] += delta[i];
  }
  std::string describe() const override {
    char buf[96];
    std::snprintf(buf, sizeof buf, "softmax                                        %4zu", outputs);
    return buf;
  }
};

std::unique_ptr<Layer> make_softmax(const CfgSection& s, const LayerInput& in, Network&) {
  auto l = std::make_unique<SoftmaxLayer>();
  init_same_shape(*l, "softmax", in);
  l->groups = s.get_int("groups", 1);
  l->temperature = s.get_float("temperature", 1.f);
  l->has_cost = true;
  const std::string tree_value = s.get_str("tree", "");
  if (!tree_value.empty()) {
    l->tree = std::make_shared<WordTree>(read_tree(resolve_data_path(s, "tree", tree_value)));
    if ((size_t)l->tree->n() != l->inputs)
      s.fail_key("tree", "tree has " + std::to_string(l->tree->n()) + " nodes but the layer input has " +
                             std::to_string(l->inputs) + " values");
  }
  s.touch("noloss");
  s.touch("spatial");
  if (l->groups <= 0 || l->inputs % l->groups)
    s.fail_key("groups", "input size " + std::to_string(l->inputs) + " not divisible into groups");
  if (l->temperature <= 0) s.fail_key("temperature", "must be > 0");
  l->allocate();
  return l;
}

}  // namespace dn
