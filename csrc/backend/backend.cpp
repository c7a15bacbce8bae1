// Backend construction, device memory and CUDA presence: wraps the CUDA entry
// points (backend/cuda_entry.hpp) so that a build without CUDA links and says why.
#include "backend/backend.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

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

// The emulated device's memory: separate host allocations, every transfer a real copy.
class EmulatedMemory final : public DeviceMemory {
 public:
  void* allocate(size_t bytes) override {
    void* p = std::calloc(bytes ? bytes : 1, 1);
    if (!p) fail("emulated device: out of memory allocating ", bytes, " bytes");
    std::lock_guard<std::mutex> lock(mutex_);
    sizes_[p] = bytes;
    ++allocations;
    bytes_in_use += (int64_t)bytes;
    return p;
  }
  void release(void* p) noexcept override {
    if (!p) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = sizes_.find(p);
      if (it != sizes_.end()) {
        bytes_in_use -= (int64_t)it->second;
        sizes_.erase(it);
      }
      ++frees;
    }
    std::free(p);
  }
  void upload(void* device_dst, const void* host_src, size_t bytes) override {
    ++uploads;
    std::memcpy(device_dst, host_src, bytes);
  }
  void download(void* host_dst, const void* device_src, size_t bytes) override {
    ++downloads;
    std::memcpy(host_dst, device_src, bytes);
  }
  std::atomic<int64_t> allocations{0}, frees{0}, bytes_in_use{0}, uploads{0}, downloads{0};

 private:
  std::mutex mutex_;
  std::unordered_map<void*, size_t> sizes_;
};

EmulatedMemory& emulated_memory() {
  static EmulatedMemory memory;
  return memory;
}

}  // namespace

EmulatedMemoryStats emulated_memory_stats() {
  EmulatedMemory& m = emulated_memory();
  EmulatedMemoryStats s;
  s.allocations = m.allocations;
  s.frees = m.frees;
  s.bytes_in_use = m.bytes_in_use;
  s.uploads = m.uploads;
  s.downloads = m.downloads;
  return s;
}

std::unique_ptr<Backend> make_backend(const ExecOptions& o) {
  if (o.device == Device::Cpu || o.device == Device::Emulated) return make_cpu_backend(o);
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
  if (d == Device::Emulated) return emulated_memory();
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
