// Factories: one per layer type, each defined in its own csrc/layers/<type>.cpp.
#pragma once
#include <memory>

#include "layers/layer.hpp"
#include "parse/cfg.hpp"

namespace dn {

// Shape of the tensor flowing into the layer being built.
struct LayerInput {
  int batch = 1;
  int w = 0, h = 0, c = 0;
};

// Type, batch and shapes of a layer whose output has its input's shape
// (softmax, cost, dropout).
inline void init_same_shape(Layer& l, const char* type, const LayerInput& in) {
  l.type = type;
  l.batch = in.batch;
  l.w = l.out_w = in.w;
  l.h = l.out_h = in.h;
  l.c = l.out_c = in.c;
  l.inputs = l.outputs = (size_t)in.w * in.h * in.c;
}

std::unique_ptr<Layer> make_convolutional(const CfgSection& s, const LayerInput& in, Network& net);
std::unique_ptr<Layer> make_maxpool(const CfgSection& s, const LayerInput& in, Network& net);
std::unique_ptr<Layer> make_avgpool(const CfgSection& s, const LayerInput& in, Network& net);
std::unique_ptr<Layer> make_route(const CfgSection& s, const LayerInput& in, Network& net);
std::unique_ptr<Layer> make_reorg(const CfgSection& s, const LayerInput& in, Network& net);
std::unique_ptr<Layer> make_region(const CfgSection& s, const LayerInput& in, Network& net);
std::unique_ptr<Layer> make_softmax(const CfgSection& s, const LayerInput& in, Network& net);
std::unique_ptr<Layer> make_cost(const CfgSection& s, const LayerInput& in, Network& net);
std::unique_ptr<Layer> make_dropout(const CfgSection& s, const LayerInput& in, Network& net);

}  // namespace dn
