#include "layers/layer.hpp"

#include <cstdio>

namespace dn {

void Layer::allocate() {
  output.assign((size_t)batch * outputs, 0.f);
  if (training)
    delta.assign((size_t)batch * outputs, 0.f);
  else
    std::vector<float>().swap(delta);
}

std::string Layer::describe() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%-10s %4d x%4d x%4d -> %4d x%4d x%4d", type.c_str(), w, h, c, out_w, out_h,
                out_c);
  return buf;
}

}  // namespace dn
