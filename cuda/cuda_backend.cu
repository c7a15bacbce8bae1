// CudaBackend's own state (stream, pinned staging, scratch, WordTree cache),
// its transfers, and the entry points of csrc/backend/cuda_entry.hpp: device
// query, cuda::memory() for Buffer, make_backend.
#include <algorithm>
#include <cstring>
#include <string>

#include "cuda_backend.cuh"
#include "parse/tree.hpp"

namespace dn {
namespace cuda {

// ------------------------------------------------------------------ devices

void synchronize_device() { DN_CUDA_CHECK(cudaDeviceSynchronize()); }

bool device_present(std::string* why) {
  try {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();  // no driver / no device is an answer, not an error
      if (why) *why = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
      return false;
    }
    if (n == 0) {
      if (why) *why = "cudaGetDeviceCount found no device";
      return false;
    }
    if (why) why->clear();
    return true;
  } catch (...) {  // std::bad_alloc from the message: still an answer, never an error
    return false;
  }
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

DeviceInfo device_info(int device) {
  const int n = device_count();
  check(device >= 0 && device < n, "CUDA device ", device, " does not exist (", n, " device(s) found)");
  cudaDeviceProp prop;
  DN_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  DeviceInfo info;
  info.index = device;
  info.name = prop.name;
  info.major = prop.major;
  info.minor = prop.minor;
  info.total_memory = prop.totalGlobalMem;
  info.multiprocessors = prop.multiProcessorCount;
  return info;
}

// ------------------------------------------------------------ Buffer memory

namespace {

// Parameters and lazily synced buffers: synchronous copies on the legacy
// default stream, which orders them against every backend's (blocking) stream.
class CudaMemory final : public DeviceMemory {
 public:
  void* allocate(size_t bytes) override { return device_alloc(bytes, true); }
  void release(void* p) noexcept override { device_free(p); }
  void upload(void* device_dst, const void* host_src, size_t bytes) override {
    if (bytes) DN_CUDA_CHECK(cudaMemcpy(device_dst, host_src, bytes, cudaMemcpyHostToDevice));
  }
  void download(void* host_dst, const void* device_src, size_t bytes) override {
    if (bytes) DN_CUDA_CHECK(cudaMemcpy(host_dst, device_src, bytes, cudaMemcpyDeviceToHost));
  }
};

}  // namespace

DeviceMemory& memory() {
  static CudaMemory* m = new CudaMemory;  // never destroyed: Buffers may outlive static destruction order
  return *m;
}

// ------------------------------------------------------------------ backend

CudaBackend::CudaBackend(const ExecOptions& o) {
  options_ = o;
  int device = 0;
  DN_CUDA_CHECK(cudaGetDevice(&device));
  DN_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, device));
  DN_CUDA_CHECK(cudaDeviceGetAttribute(&compute_major_, cudaDevAttrComputeCapabilityMajor, device));
  try {
    // Blocking stream: ordered with the legacy-stream copies of cuda::memory() (see cuda_backend.cuh).
    DN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamDefault));
    DN_CUDA_CHECK(cudaEventCreateWithFlags(&staging_done_, cudaEventDisableTiming));
    result_ = static_cast<double*>(pinned_alloc(sizeof(double)));
  } catch (...) {
    if (staging_done_) (void)cudaEventDestroy(staging_done_);
    if (stream_) (void)cudaStreamDestroy(stream_);
    throw;
  }
}

CudaBackend::~CudaBackend() {
  // No throwing here: errors of queued work were reported by the last synchronize().
  if (stream_ && cudaStreamSynchronize(stream_) != cudaSuccess) (void)cudaGetLastError();
  for (auto& t : trees_) device_free(t.second.device);
  for (void* s : scratch_) device_free(s);
  for (cudaEvent_t e : events_) (void)cudaEventDestroy(e);
  graph_reset();
  pinned_free(staging_);
  pinned_free(result_);
  if (staging_done_) (void)cudaEventDestroy(staging_done_);
  if (stream_) (void)cudaStreamDestroy(stream_);
}

void CudaBackend::upload(float* dst, const float* host_src, size_t n) {
  if (!n) return;
  const size_t bytes = n * sizeof(float);
  // The previous upload's copy must have left the staging buffer before it is refilled or freed.
  DN_CUDA_CHECK(cudaEventSynchronize(staging_done_));
  if (bytes > staging_bytes_) {
    pinned_free(staging_);
    staging_ = nullptr;
    staging_bytes_ = 0;
    staging_ = static_cast<float*>(pinned_alloc(bytes));
    staging_bytes_ = bytes;
  }
  std::memcpy(staging_, host_src, bytes);
  DN_CUDA_CHECK(cudaMemcpyAsync(dst, staging_, bytes, cudaMemcpyHostToDevice, stream_));
  DN_CUDA_CHECK(cudaEventRecord(staging_done_, stream_));
}

void CudaBackend::download(float* host_dst, const float* src, size_t n) {
  if (n) DN_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  DN_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::synchronize() {
  DN_CUDA_CHECK(cudaStreamSynchronize(stream_));
  DN_CUDA_CHECK(cudaGetLastError());
}

// Recording: every launch and copy queued on stream_ from graph_capture_begin to
// graph_capture_end becomes a node of one graph, instead of running. Thread-local capture mode:
// an unsafe call from this thread inside the window (a synchronous copy, an allocation, a
// synchronisation) fails the capture; the caller then discards it and runs eagerly.
bool CudaBackend::graph_capture_begin() {
  graph_reset();
  DN_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  return true;
}

bool CudaBackend::graph_capture_end() {
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(stream_, &graph);  // always leaves capture mode
  if (e == cudaSuccess && graph) {
    cudaGraphExec_t exec = nullptr;
    e = cudaGraphInstantiate(&exec, graph, 0);
    if (e == cudaSuccess) graph_exec_ = exec;
  }
  if (graph) (void)cudaGraphDestroy(graph);
  if (e != cudaSuccess) (void)cudaGetLastError();  // a failed capture is not a sticky error
  return graph_exec_ != nullptr;
}

bool CudaBackend::graph_launch() {
  if (!graph_exec_) return false;
  DN_CUDA_CHECK(cudaGraphLaunch(graph_exec_, stream_));
  return true;
}

void CudaBackend::graph_reset() {
  if (graph_exec_) (void)cudaGraphExecDestroy(graph_exec_);
  graph_exec_ = nullptr;
}

void CudaBackend::timing_start() {
  events_used_ = 0;
  marked_layers_.clear();
  timing_mark(-1);
}

void CudaBackend::timing_mark(int layer) {
  if (events_used_ == events_.size()) {
    cudaEvent_t e = nullptr;
    DN_CUDA_CHECK(cudaEventCreate(&e));
    events_.push_back(e);
  }
  DN_CUDA_CHECK(cudaEventRecord(events_[events_used_++], stream_));
  if (layer >= 0) marked_layers_.push_back(layer);
}

bool CudaBackend::timing_collect(std::vector<double>* seconds) {
  if (events_used_ < 2) return false;
  DN_CUDA_CHECK(cudaEventSynchronize(events_[events_used_ - 1]));
  for (size_t k = 0; k + 1 < events_used_; ++k) {
    float ms = 0.f;
    DN_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[k], events_[k + 1]));
    const int layer = marked_layers_[k];
    if ((size_t)layer >= seconds->size()) seconds->resize((size_t)layer + 1, 0.0);
    (*seconds)[(size_t)layer] = ms * 1e-3;
  }
  events_used_ = 0;
  marked_layers_.clear();
  return true;
}

void* CudaBackend::scratch(size_t bytes, int slot) {
  if (bytes > scratch_bytes_[slot]) {
    // Work queued earlier may still read the old scratch.
    DN_CUDA_CHECK(cudaStreamSynchronize(stream_));
    device_free(scratch_[slot]);
    scratch_[slot] = nullptr;
    scratch_bytes_[slot] = 0;
    scratch_[slot] = device_alloc(bytes, false);
    scratch_bytes_[slot] = bytes;
  }
  return scratch_[slot];
}

const int* CudaBackend::tree_groups(const WordTree& tree) {
  TreeCache& c = trees_[&tree];
  if (c.device && c.offset == tree.group_offset && c.size == tree.group_size) return c.device;
  // First use (or a different tree at a reused address): upload once.
  check(tree.group_offset.size() == tree.group_size.size(), "WordTree ", tree.file, ": ",
        tree.group_offset.size(), " group offsets but ", tree.group_size.size(), " group sizes");
  const size_t groups = tree.group_size.size();
  if (c.device) {
    DN_CUDA_CHECK(cudaStreamSynchronize(stream_));
    device_free(c.device);
    c.device = nullptr;
  }
  std::vector<int> host(2 * groups);
  std::copy(tree.group_offset.begin(), tree.group_offset.end(), host.begin());
  std::copy(tree.group_size.begin(), tree.group_size.end(), host.begin() + (long)groups);
  c.device = static_cast<int*>(device_alloc(std::max<size_t>(host.size(), 1) * sizeof(int), false));
  if (groups) DN_CUDA_CHECK(cudaMemcpy(c.device, host.data(), host.size() * sizeof(int), cudaMemcpyHostToDevice));
  c.offset = tree.group_offset;
  c.size = tree.group_size;
  return c.device;
}

std::unique_ptr<Backend> make_backend(const ExecOptions& o) {
  std::string why;
  if (!device_present(&why)) fail("device 'cuda' is not available: ", why);
  return std::make_unique<CudaBackend>(o);
}

}  // namespace cuda
}  // namespace dn
