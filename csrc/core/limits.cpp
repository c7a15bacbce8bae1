#include "core/limits.hpp"

#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdlib>

namespace dn {

namespace {

constexpr uint64_t kDefaultMemoryLimit = 32ull << 30;
std::atomic<uint64_t> g_memory_limit{0};  // 0: not yet read from the environment

uint64_t limit_from_environment() {
  const char* env = std::getenv("DARKNET_PY_MEMORY_LIMIT");
  if (!env || !*env) return kDefaultMemoryLimit;
  try {
    return parse_byte_size(env);
  } catch (const DarknetError& e) {
    fail("DARKNET_PY_MEMORY_LIMIT: ", e.what());
  }
}

}  // namespace

uint64_t parse_byte_size(const std::string& text) {
  const char* begin = text.c_str();
  char* end = nullptr;
  const double v = std::strtod(begin, &end);
  if (end == begin || !std::isfinite(v) || v <= 0) fail("'", text, "' is not a positive byte count");
  double mult = 1;
  std::string suffix(end);
  if (!suffix.empty()) {
    const char u = (char)std::toupper((unsigned char)suffix[0]);
    const std::string rest = suffix.substr(1);
    if (!(rest.empty() || rest == "B" || rest == "iB" || rest == "b")) fail("'", text, "': unknown unit '", suffix, "'");
    switch (u) {
      case 'K': mult = 1024.0; break;
      case 'M': mult = 1024.0 * 1024; break;
      case 'G': mult = 1024.0 * 1024 * 1024; break;
      case 'T': mult = 1024.0 * 1024 * 1024 * 1024; break;
      case 'B': if (rest.empty()) break; [[fallthrough]];
      default: fail("'", text, "': unknown unit '", suffix, "' (K, M, G, T)");
    }
  }
  const double bytes = v * mult;
  if (bytes >= 9.2e18) fail("'", text, "' is too large");
  return (uint64_t)bytes;
}

uint64_t memory_limit() {
  uint64_t v = g_memory_limit.load();
  if (!v) {
    v = limit_from_environment();
    g_memory_limit.store(v);
  }
  return v;
}

void set_memory_limit(uint64_t bytes) { g_memory_limit.store(bytes ? bytes : limit_from_environment()); }

}  // namespace dn
