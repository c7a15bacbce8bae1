// Where a buffer lives and where a backend computes.
#pragma once
#include <string>

namespace dn {

// Emulated: the CPU backend computing on separately allocated "device" memory, with every
// host<->device transfer a real copy. It runs the device-resident network protocol
// (uploads, downloads, which copy is newest, staging) exactly as a GPU network does,
// so that protocol is tested on machines without a GPU; it is never faster than Cpu.
enum class Device { Cpu = 0, Cuda = 1, Emulated = 2 };

const char* device_name(Device d);             // "cpu", "cuda", "emulated"
Device parse_device(const std::string& name);  // "cpu" | "cuda" (also "gpu") | "emulated"; throws otherwise

}  // namespace dn
