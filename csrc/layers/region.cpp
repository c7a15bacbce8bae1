// Placeholder until the region layer lands (tracked in issue 2); building a
// network with [region] reports it instead of failing at link time.
#include "layers/layers.hpp"

namespace dn {
std::unique_ptr<Layer> make_region(const CfgSection& s, const LayerInput&, Network&) {
  s.fail_section("region layer not built yet");
}
}  // namespace dn
