// Region decoding, NMS and WordTree bindings (filled in with csrc/detect.cpp).
#include "python/bind.hpp"

namespace dn {
void bind_detect(py::module_& m) { (void)m; }
}  // namespace dn
