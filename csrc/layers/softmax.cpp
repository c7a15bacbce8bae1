// [softmax]: softmax over `groups` equal slices of each image's input with a
// temperature; with truth present (training) it writes the cross-entropy
// delta t - p and cost sum(-t log p).
#include <cstdio>

#include "layers/layers.hpp"
#include "parse/tree.hpp"

namespace dn {

class SoftmaxLayer : public Layer {
 public:
  int groups = 1;
  float temperature = 1.f;
  std::shared_ptr<WordTree> tree;  // tree=: one softmax per sibling group (YOLO9000's WordTree)

  void resize(int nw, int nh) override {
    w = out_w = nw;
    h = out_h = nh;
    inputs = outputs = (size_t)w * h * c;
    allocate();
  }
  void forward(LayerContext& ctx) override {
    Backend& be = *ctx.backend;
    float* out = output.write(ctx.device);
    if (tree)
      be.softmax_tree(batch, inputs, *tree, temperature, ctx.input, out);
    else
      be.softmax(batch, inputs, groups, temperature, ctx.input, out);
    // WordTree truth marks unlabelled groups with kMaskedTruth; the op masks them (no delta, no loss).
    if (ctx.truth && !delta.empty())
      cost = be.softmax_cross_entropy((size_t)batch * inputs, ctx.truth, out, delta.write(ctx.device));
  }
  void backward(LayerContext& ctx) override {
    if (!ctx.prev_delta) return;
    check(!delta.empty(), "layer ", index, " (softmax): backward without training buffers");
    ctx.backend->axpy((size_t)batch * inputs, 1.f, delta.read(ctx.device), ctx.prev_delta);
  }
  std::string describe() const override {
    char buf[96];
    std::snprintf(buf, sizeof buf, "softmax                                        %4zu", outputs);
    return buf;
  }
};

std::unique_ptr<Layer> make_softmax(const CfgSection& s, const LayerInput& in) {
  auto l = std::make_unique<SoftmaxLayer>();
  init_same_shape(*l, LayerType::Softmax, "softmax", in);
  l->groups = s.get_int("groups", 1);
  l->temperature = s.get_float("temperature", 1.f, 1e-6f, 1e6f);
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
