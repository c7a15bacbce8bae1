// Error handling, device query, DeviceBuffer and small array kernels.
#include <string>

#include "common.cuh"
#include "cuda_layers.hpp"

namespace dn {
namespace cuda {

void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line) {
  // Clear a non-sticky error so later calls in this process can succeed.
  (void)cudaGetLastError();
  fail("CUDA error at ", file, ":", line, " (", call, "): ", cudaGetErrorName(e), ": ", cudaGetErrorString(e));
}

// ------------------------------------------------------------------ devices

int cuda_device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // no driver / no device is an answer, not an error
    return 0;
  }
  return n;
}

bool cuda_available() { return cuda_device_count() > 0; }

DeviceInfo cuda_device_info(int device) {
  const int n = cuda_device_count();
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

void cuda_set_device(int device) { DN_CUDA_CHECK(cudaSetDevice(device)); }

void cuda_synchronize() { DN_CUDA_CHECK(cudaDeviceSynchronize()); }

// ------------------------------------------------------------ DeviceBuffer

template <typename T>
DeviceBuffer<T>::DeviceBuffer(size_t n) {
  resize(n);
}

template <typename T>
DeviceBuffer<T>::~DeviceBuffer() {
  release();
}

template <typename T>
DeviceBuffer<T>::DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), n_(o.n_) {
  o.ptr_ = nullptr;
  o.n_ = 0;
}

template <typename T>
DeviceBuffer<T>& DeviceBuffer<T>::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    release();
    ptr_ = o.ptr_;
    n_ = o.n_;
    o.ptr_ = nullptr;
    o.n_ = 0;
  }
  return *this;
}

template <typename T>
void DeviceBuffer<T>::release() noexcept {
  if (ptr_) (void)cudaFree(ptr_);  // a destructor must not throw
  ptr_ = nullptr;
  n_ = 0;
}

template <typename T>
void DeviceBuffer<T>::resize(size_t n) {
  if (n == n_) return;
  release();
  if (n == 0) return;
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, n * sizeof(T));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    fail("CUDA error: cannot allocate ", n * sizeof(T), " bytes of device memory: ", cudaGetErrorName(e), ": ",
         cudaGetErrorString(e));
  }
  ptr_ = static_cast<T*>(p);
  n_ = n;
}

template <typename T>
void DeviceBuffer<T>::upload(const T* host, size_t n) {
  resize(n);
  if (n) DN_CUDA_CHECK(cudaMemcpy(ptr_, host, n * sizeof(T), cudaMemcpyHostToDevice));
}

template <typename T>
void DeviceBuffer<T>::download(T* host, size_t n) const {
  check(n <= n_, "DeviceBuffer::download: ", n, " elements requested, buffer holds ", n_);
  if (n) DN_CUDA_CHECK(cudaMemcpy(host, ptr_, n * sizeof(T), cudaMemcpyDeviceToHost));
}

template <typename T>
std::vector<T> DeviceBuffer<T>::to_host() const {
  std::vector<T> v(n_);
  download(v.data(), n_);
  return v;
}

template <typename T>
void DeviceBuffer<T>::zero() {
  if (n_) DN_CUDA_CHECK(cudaMemset(ptr_, 0, n_ * sizeof(T)));
}

template class DeviceBuffer<float>;
template class DeviceBuffer<int>;
template class DeviceBuffer<double>;

// -------------------------------------------------------- small array ops

namespace {

__global__ void fill_kernel(float* x, size_t n, float value) {
  DN_GRID_STRIDE(i, n) x[i] = value;
}

__global__ void axpy_kernel(size_t n, float alpha, const float* __restrict__ x, float* __restrict__ y) {
  DN_GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

}  // namespace

void cuda_copy(const float* d_src, float* d_dst, size_t n) {
  if (n) DN_CUDA_CHECK(cudaMemcpy(d_dst, d_src, n * sizeof(float), cudaMemcpyDeviceToDevice));
}

void cuda_fill(float* d_x, size_t n, float value) {
  if (!n) return;
  fill_kernel<<<grid_for(n), kThreads>>>(d_x, n, value);
  DN_CUDA_LAUNCH_CHECK();
}

void cuda_axpy(size_t n, float alpha, const float* d_x, float* d_y) {
  if (!n) return;
  axpy_kernel<<<grid_for(n), kThreads>>>(n, alpha, d_x, d_y);
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace dn
