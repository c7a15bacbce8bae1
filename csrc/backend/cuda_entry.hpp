// Entry points of the CUDA backend (cuda/cuda_backend.cu), linked only in a
// build with DN_WITH_CUDA. Host code reaches CUDA through these and the Backend
// interface only; csrc/backend/backend.cpp wraps them for builds without CUDA.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "backend/backend.hpp"

namespace dn {
namespace cuda {

// Never throws: false (with the reason in *why) without a device or driver.
bool device_present(std::string* why);
std::unique_ptr<Backend> make_backend(const ExecOptions& o);
// Device memory for Buffer (cudaMalloc'ed, zero-filled, counted).
DeviceMemory& memory();

struct DeviceInfo {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;  // compute capability
  size_t total_memory = 0;   // bytes
  int multiprocessors = 0;
};
int device_count();                      // 0 without a device or driver
void synchronize_device();               // cudaDeviceSynchronize; throws a pending kernel error
DeviceInfo device_info(int device = 0);  // throws for a bad index

// Allocation counters: every cudaMalloc / cudaMallocHost made by darknet_py
// (buffers, workspace, pinned staging, per-backend caches). A warmed-up
// forward or training step must not move them (tests assert it).
struct AllocationStats {
  int64_t device_allocations = 0;
  int64_t device_frees = 0;
  int64_t device_bytes_in_use = 0;
  int64_t pinned_allocations = 0;
};
AllocationStats allocation_stats();

// The device's measured arithmetic peak in GFLOP/s (cuda/peak.cu): FP32 FMA, or TF32 tensor-core
// products (mma.sync; throws below compute capability 8.0). Takes a few milliseconds.
double measure_peak_gflops(bool tensor_cores);
// The device memory's measured bandwidth in GB/s (read + write bytes of a 256 MB copy kernel).
double measure_bandwidth_gbs();

}  // namespace cuda
}  // namespace dn
