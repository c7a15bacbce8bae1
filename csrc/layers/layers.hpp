// The layer registry: one factory per layer type, each defined in its own
// csrc/layers/<type>.cpp, looked up by cfg section name (layers/registry.cpp).
#pragma once
#include <memory>
#include <vector>

#include "layers/layer.hpp"
#include "parse/cfg.hpp"

namespace dn {

// What a factory sees: the shape flowing into the layer being built and the
// layers built before it (a route reads their shapes and outputs).
struct LayerInput {
  int batch = 1;
  int w = 0, h = 0, c = 0;
  int index = 0;                     // the new layer's index
  std::vector<Layer*> earlier;       // layers 0 .. index-1
};

using LayerFactory = std::unique_ptr<Layer> (*)(const CfgSection& s, const LayerInput& in);

struct LayerKind {
  LayerType type;
  const char* name;     // canonical section name
  const char* alias;    // Darknet's short name (or nullptr)
  LayerFactory make;
};

// The registered kind for a section name, or nullptr.
const LayerKind* find_layer_kind(const std::string& section_type);
const char* layer_type_name(LayerType t);
// Darknet layer types this project does not implement (for a clearer error).
bool is_unsupported_darknet_type(const std::string& section_type);

// Type, batch and shapes of a layer whose output has its input's shape
// (softmax, cost, dropout).
inline void init_same_shape(Layer& l, LayerType kind, const char* type, const LayerInput& in) {
  l.kind = kind;
  l.type = type;
  l.index = in.index;
  l.batch = in.batch;
  l.w = l.out_w = in.w;
  l.h = l.out_h = in.h;
  l.c = l.out_c = in.c;
  l.inputs = l.outputs = (size_t)in.w * in.h * in.c;
}

std::unique_ptr<Layer> make_convolutional(const CfgSection& s, const LayerInput& in);
std::unique_ptr<Layer> make_maxpool(const CfgSection& s, const LayerInput& in);
std::unique_ptr<Layer> make_avgpool(const CfgSection& s, const LayerInput& in);
std::unique_ptr<Layer> make_route(const CfgSection& s, const LayerInput& in);
std::unique_ptr<Layer> make_reorg(const CfgSection& s, const LayerInput& in);
std::unique_ptr<Layer> make_region(const CfgSection& s, const LayerInput& in);
std::unique_ptr<Layer> make_softmax(const CfgSection& s, const LayerInput& in);
std::unique_ptr<Layer> make_cost(const CfgSection& s, const LayerInput& in);
std::unique_ptr<Layer> make_dropout(const CfgSection& s, const LayerInput& in);

}  // namespace dn
