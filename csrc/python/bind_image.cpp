// Image resize / letterbox / augmentation bindings (filled in with csrc/image.cpp).
#include "python/bind.hpp"

namespace dn {
void bind_image(py::module_& m) { (void)m; }
}  // namespace dn
