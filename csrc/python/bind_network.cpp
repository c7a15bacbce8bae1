// TEMPORARY stub on branch `data` so the module links before main's
// bind_network.cpp lands. On merging main, take main's version of this file.
#include "python/bind.hpp"

namespace dn {
void bind_network(py::module_& m) { (void)m; }
}  // namespace dn
