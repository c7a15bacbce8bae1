#include "core/device.hpp"

#include "core/error.hpp"

namespace dn {

const char* device_name(Device d) {
  switch (d) {
    case Device::Cpu: return "cpu";
    case Device::Cuda: return "cuda";
    case Device::Emulated: return "emulated";
  }
  return "?";
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::Cpu;
  if (name == "cuda" || name == "gpu") return Device::Cuda;
  if (name == "emulated") return Device::Emulated;
  fail("unknown device '", name, "' (cpu, cuda, emulated)");
}

}  // namespace dn
