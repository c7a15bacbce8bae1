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
