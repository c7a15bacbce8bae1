#include <cstring>

#include "layers/layers.hpp"

namespace dn {

namespace {

const LayerKind kKinds[] = {
    {LayerType::Convolutional, "convolutional", "conv", make_convolutional},
    {LayerType::Maxpool, "maxpool", "max", make_maxpool},
    {LayerType::Avgpool, "avgpool", "avg", make_avgpool},
    {LayerType::Route, "route", nullptr, make_route},
    {LayerType::Reorg, "reorg", nullptr, make_reorg},
    {LayerType::Region, "region", nullptr, make_region},
    {LayerType::Softmax, "softmax", "soft", make_softmax},
    {LayerType::Cost, "cost", nullptr, make_cost},
    {LayerType::Dropout, "dropout", nullptr, make_dropout},
};

}  // namespace

const LayerKind* find_layer_kind(const std::string& section_type) {
  for (const LayerKind& k : kKinds)
    if (section_type == k.name || (k.alias && section_type == k.alias)) return &k;
  return nullptr;
}

const char* layer_type_name(LayerType t) {
  for (const LayerKind& k : kKinds)
    if (k.type == t) return k.name;
  return "?";
}

bool is_unsupported_darknet_type(const std::string& type) {
  static const char* known[] = {"shortcut", "connected", "conn", "crop", "detection", "local", "yolo", "upsample",
                                "batchnorm", "normalization", "lstm", "rnn", "gru", "crnn", "deconvolutional",
                                "deconv", "activation", "logistic", "l2norm", "iseg", "xnor"};
  for (const char* k : known)
    if (type == k) return true;
  return false;
}

}  // namespace dn
