// Backend construction, device memory and CUDA presence: wraps the CUDA entry
// points (backend/cuda_entry.hpp) so that a build without CUDA links and says why.
#include "backend/backend.hpp"

#include "core/error.hpp"

#ifdef DN_WITH_CUDA
#include "backend/cuda_entry.hpp"
#endif

namespace dn {

namespace {

constexpr const char* kBuiltWithoutCuda =
    "darknet_py was built without CUDA (install with nvcc on PATH or DARKNET_PY_CUDA=1)";

#ifdef DN_WITH_CUDA
// Asked once per process: device_memory() runs on every Buffer transfer.
struct CudaPresence {
  bool present = false;
  std::string why;
  CudaPresence() { present = cuda::device_present(&why); }
};
const CudaPresence& cuda_presence() {
  static const CudaPresence presence;
  return presence;
}
void require_cuda_device() {
  if (!cuda_presence().present) fail(cuda_unavailable_reason());
}
#endif

}  // namespace

std::unique_ptr<Backend> make_backend(const ExecOptions& o) {
  if (o.device == Device::Cpu) return make_cpu_backend(o);
  check(o.device == Device::Cuda, "make_backend: unknown device ", (int)o.device);
#ifdef DN_WITH_CUDA
  require_cuda_device();
  return cuda::make_backend(o);
#else
  fail(kBuiltWithoutCuda);
#endif
}

DeviceMemory& device_memory(Device d) {
  if (d == Device::Cpu) fail("device_memory: the CPU has no device memory (host buffers need none)");
#ifdef DN_WITH_CUDA
  require_cuda_device();
  return cuda::memory();
#else
  fail(kBuiltWithoutCuda);
#endif
}

bool cuda_built() {
#ifdef DN_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_available() {
#ifdef DN_WITH_CUDA
  return cuda_presence().present;
#else
  return false;
#endif
}

std::string cuda_unavailable_reason() {
#ifdef DN_WITH_CUDA
  return cuda_presence().present ? std::string() : "no usable CUDA device: " + cuda_presence().why;
#else
  return kBuiltWithoutCuda;
#endif
}

}  // namespace dn
