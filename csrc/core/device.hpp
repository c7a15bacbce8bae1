// Where a buffer lives and where a backend computes.
#pragma once
#include <string>

namespace dn {

enum class Device { Cpu = 0, Cuda = 1 };

const char* device_name(Device d);           // "cpu", "cuda"
Device parse_device(const std::string& name);  // "cpu" | "cuda" (also "gpu"); throws otherwise

}  // namespace dn
