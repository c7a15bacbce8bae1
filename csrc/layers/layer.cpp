#include "layers/layer.hpp"

#include <cstdio>

namespace dn {

WeightInit parse_weight_init(const std::string& name) {
  if (name == "uniform") return WeightInit::Uniform;
  if (name == "normal") return WeightInit::Normal;
  fail("weight init must be 'uniform' or 'normal', got '", name, "'");
}

void Layer::allocate() {
  output.reset((size_t)batch * outputs);
  if (training)
    delta.reset((size_t)batch * outputs);
  else
    delta.clear();
}

std::vector<FloatBuffer*> Layer::all_buffers() {
  std::vector<FloatBuffer*> v = {&output, &delta};
  for (const Blob& b : params()) v.push_back(b.buffer);
  for (const Blob& b : buffers()) v.push_back(b.buffer);
  return v;
}

std::string Layer::describe() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%-10s %4d x%4d x%4d -> %4d x%4d x%4d", type.c_str(), w, h, c, out_w, out_h,
                out_c);
  return buf;
}

}  // namespace dn
