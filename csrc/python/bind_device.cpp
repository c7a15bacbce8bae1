// Device queries for Python: whether CUDA is built and usable, device facts,
// and the CUDA allocation counters (tests prove a warmed-up step allocates nothing).
#include "backend/backend.hpp"
#include "python/bind.hpp"
#ifdef DN_WITH_CUDA
#include "backend/cuda_entry.hpp"
#endif

namespace dn {

void bind_device(py::module_& m) {
  m.def("cuda_built", &cuda_built, "True when this build includes the CUDA backend.");
  m.def("cuda_available", &cuda_available, "True when the CUDA backend is built and a device can be used.");
  m.def("cuda_unavailable_reason", &cuda_unavailable_reason, "Why CUDA cannot be used here ('' when it can).");
  m.def("cuda_device_count", [] {
#ifdef DN_WITH_CUDA
    return cuda::device_count();
#else
    return 0;
#endif
  });
  m.def(
      "cuda_device_info",
      [](int device) {
#ifdef DN_WITH_CUDA
        const cuda::DeviceInfo info = cuda::device_info(device);
        py::dict d;
        d["index"] = info.index;
        d["name"] = info.name;
        d["major"] = info.major;
        d["minor"] = info.minor;
        d["total_memory"] = info.total_memory;
        d["multiprocessors"] = info.multiprocessors;
        return d;
#else
        (void)device;
        fail(cuda_unavailable_reason());
#endif
      },
      py::arg("device") = 0);
  m.def(
      "cuda_peak_gflops",
      [](const std::string& math) {
        const CudaMath m = parse_cuda_math(math);
#ifdef DN_WITH_CUDA
        if (!cuda_available()) fail(cuda_unavailable_reason());
        py::gil_scoped_release release;
        return cuda::measure_peak_gflops(m == CudaMath::Tf32);
#else
        (void)m;
        fail(cuda_unavailable_reason());
#endif
      },
      py::arg("math") = "fp32",
      "The device's measured peak GFLOP/s: 'fp32' (FMA) or 'tf32' (tensor-core mma.sync).");
  m.def("cuda_bandwidth_gbs", [] {
#ifdef DN_WITH_CUDA
    if (!cuda_available()) fail(cuda_unavailable_reason());
    py::gil_scoped_release release;
    return cuda::measure_bandwidth_gbs();
#else
    fail(cuda_unavailable_reason());
#endif
  }, "The device memory's measured bandwidth in GB/s (a 256 MB device-to-device copy, read + write).");
  m.def("cuda_synchronize", [] {
#ifdef DN_WITH_CUDA
    if (cuda_available()) cuda::synchronize_device();
#endif
  }, "Waits for all queued GPU work (a no-op without CUDA); raises a pending kernel error.");
  m.def("emulated_memory_stats", [] {
    const EmulatedMemoryStats s = emulated_memory_stats();
    py::dict d;
    d["allocations"] = s.allocations;
    d["frees"] = s.frees;
    d["bytes_in_use"] = s.bytes_in_use;
    d["uploads"] = s.uploads;
    d["downloads"] = s.downloads;
    return d;
  }, "Counters of the 'emulated' device (the CPU backend on separately allocated device memory).");
  m.def("cuda_allocation_stats", [] {
    py::dict d;
#ifdef DN_WITH_CUDA
    const cuda::AllocationStats s = cuda::allocation_stats();
#else
    struct {
      long device_allocations = 0, device_frees = 0, device_bytes_in_use = 0, pinned_allocations = 0;
    } s;
#endif
    d["device_allocations"] = s.device_allocations;
    d["device_frees"] = s.device_frees;
    d["device_bytes_in_use"] = s.device_bytes_in_use;
    d["pinned_allocations"] = s.pinned_allocations;
    return d;
  });
}

}  // namespace dn
