// One error type for the whole core. It carries its context in the message
// (file:line, layer index, expected vs found) so the Python side, the C API and
// a C++ host all see the same text.
#pragma once
#include <stdexcept>
#include <string>
#include <sstream>

namespace dn {

class DarknetError : public std::runtime_error {
 public:
  explicit DarknetError(const std::string& what) : std::runtime_error(what) {}
};

// Build a message from any streamable parts: fail("layer ", i, ": bad size ", s).
template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw DarknetError(os.str());
}

template <typename... Parts>
void check(bool ok, const Parts&... parts) {
  if (!ok) fail(parts...);
}

}  // namespace dn
