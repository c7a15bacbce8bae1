// Buffer<T>: a float (or int) array with a host copy and, when the network runs
// on a GPU, a device copy, kept coherent by a "newest copy" tag (the scheme of
// Caffe's SyncedMemory):
//
//   host()            host pointer, newest data (downloads first if the device copy is newer);
//                     the mutable form marks the host copy newest, so the next device
//                     access uploads it (numpy views, load_weights, the CPU layers)
//   on(d)             pointer on device d, newest data (uploads first if the host is newer);
//                     the mutable form marks that copy newest
//
// Memory is allocated on first touch (zero-filled), on the side that is touched, and
// kept until the size changes: a steady-state forward or training step allocates nothing.
// A buffer may instead borrow host memory (the inference activation pool): lend().
// The host storage is reference-counted: host_keepalive() lets a numpy view share it, so a
// view taken before a resize/batch change keeps valid (if detached) memory instead of a
// dangling pointer; assign() of the same size refills the storage in place, so views of
// parameters stay attached across randomize/assign.
// Not thread-safe: the owning Network serialises calls (Network::lock()).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "core/device.hpp"
#include "core/error.hpp"

namespace dn {

// Device memory primitives a Buffer needs; the CUDA backend provides them
// (csrc/backend/backend.cpp: device_memory()).
class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;
  virtual void* allocate(size_t bytes) = 0;  // zero-filled
  virtual void release(void* p) noexcept = 0;
  virtual void upload(void* device_dst, const void* host_src, size_t bytes) = 0;
  virtual void download(void* host_dst, const void* device_src, size_t bytes) = 0;  // waits for queued work
};
DeviceMemory& device_memory(Device d);  // throws DarknetError for a device this build/machine lacks

template <typename T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    Buffer tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~Buffer() { free_device(); }

  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  size_t bytes() const { return n_ * sizeof(T); }

  // n elements, all zero; memory comes on first touch (device memory is kept when n is unchanged).
  void reset(size_t n) {
    host_.reset();
    hp_ = nullptr;
    lent_ = false;
    if (n != n_) free_device();
    n_ = n;
    head_ = Head::Zero;
  }
  // n elements equal to value, on the host.
  void assign(size_t n, T value) {
    if (!reuse_host(n)) {
      reset(n);
      host_ = std::make_shared<std::vector<T>>(n, value);
      hp_ = host_->data();
    } else {
      std::fill(hp_, hp_ + n, value);
    }
    head_ = Head::Host;
  }
  void assign(const T* src, size_t n) {
    if (!reuse_host(n)) {
      reset(n);
      host_ = std::make_shared<std::vector<T>>(src, src + n);
      hp_ = host_->data();
    } else {
      std::copy(src, src + n, hp_);
    }
    head_ = Head::Host;
  }
  // Keeps the host storage alive for a borrower (a numpy view); null when not allocated or lent.
  std::shared_ptr<void> host_keepalive() const { return lent_ ? nullptr : std::shared_ptr<void>(host_); }
  // Frees everything (size 0).
  void clear() {
    reset(0);
    free_device();
  }
  // Borrows n elements of host memory (the inference pool); contents are the lender's.
  void lend(T* p, size_t n) {
    host_.reset();
    if (n != n_) free_device();
    hp_ = p;
    n_ = n;
    lent_ = true;
    head_ = Head::Host;
  }
  bool lent() const { return lent_; }

  // Newest data on the host; the mutable form makes the host copy the newest.
  T* host() {
    sync_host();
    if (head_ == Head::Synced || head_ == Head::Device) head_ = Head::Host;
    return hp_;
  }
  const T* host() const {
    const_cast<Buffer*>(this)->sync_host();
    return hp_;
  }
  // Newest data on device d; the mutable form makes that copy the newest.
  T* on(Device d) {
    if (d == Device::Cpu) return host();
    sync_device(d);
    head_ = Head::Device;
    return static_cast<T*>(dp_);
  }
  const T* on(Device d) const {
    if (d == Device::Cpu) return host();
    const_cast<Buffer*>(this)->sync_device(d);
    return static_cast<const T*>(dp_);
  }
  // Spelled-out forms for layer code: read(d) never marks, write(d) marks d newest.
  const T* read(Device d) const { return on(d); }
  T* write(Device d) { return on(d); }
  // For a caller that overwrites every element on device d: allocated there and marked
  // newest, without transferring the other copy's now-irrelevant contents.
  T* overwrite(Device d) {
    if (d == Device::Cpu) {
      alloc_host();
      head_ = Head::Host;
      return hp_;
    }
    if (dp_ && dev_ != d) free_device();
    if (!dp_ && n_) {
      dp_ = device_memory(d).allocate(bytes());
      dev_ = d;
    }
    head_ = Head::Device;
    return static_cast<T*>(dp_);
  }
  // Declares the host and device copies equal (the caller copied one onto the other itself,
  // e.g. through Backend::upload's asynchronous path).
  void mark_synced() {
    if (dp_ && hp_) head_ = Head::Synced;
  }
  // Drops the device copy (after pulling its data to the host if it is the newest).
  void to_host_only() {
    if (head_ == Head::Device) sync_host();
    if (head_ == Head::Synced) head_ = Head::Host;
    free_device();
  }
  bool on_device() const { return dp_ != nullptr; }
  Device device() const { return dp_ ? dev_ : Device::Cpu; }

  // Host-side conveniences (each call syncs: use host() once in loops).
  T* data() { return host(); }
  const T* data() const { return host(); }
  T& operator[](size_t i) { return host()[i]; }
  const T& operator[](size_t i) const { return host()[i]; }
  T* begin() { return host(); }
  T* end() { return host() + n_; }

  void swap(Buffer& o) noexcept {
    std::swap(host_, o.host_);
    std::swap(hp_, o.hp_);
    std::swap(dp_, o.dp_);
    std::swap(dev_, o.dev_);
    std::swap(n_, o.n_);
    std::swap(head_, o.head_);
    std::swap(lent_, o.lent_);
  }

 private:
  // Zero: nothing written yet (reads as zeros); Host / Device: that copy is newest;
  // Synced: both copies hold the same data.
  enum class Head { Zero, Host, Device, Synced };

  void alloc_host() {
    if (!hp_ && n_) {
      host_ = std::make_shared<std::vector<T>>(n_, T(0));
      hp_ = host_->data();
    }
  }
  // assign() of an unchanged size writes into the existing host storage (borrowers stay attached).
  bool reuse_host(size_t n) {
    if (lent_ || !host_ || n != n_ || host_->size() != n) return false;
    if (dp_ && head_ == Head::Device) head_ = Head::Host;  // the host copy is about to be overwritten
    return true;
  }
  void sync_host() {
    alloc_host();
    if (head_ == Head::Zero) {
      head_ = Head::Host;
    } else if (head_ == Head::Device) {
      device_memory(dev_).download(hp_, dp_, bytes());
      head_ = Head::Synced;
    }
  }
  void sync_device(Device d) {
    if (dp_ && dev_ != d) to_host_only();  // moving between devices goes through the host
    if (!dp_ && n_) {
      dp_ = device_memory(d).allocate(bytes());  // zero-filled
      dev_ = d;
      if (head_ == Head::Device || head_ == Head::Synced) head_ = Head::Host;  // stale: came from another device
    }
    if (head_ == Head::Zero) {
      head_ = Head::Device;
    } else if (head_ == Head::Host) {
      if (n_) device_memory(d).upload(dp_, hp_, bytes());
      head_ = Head::Synced;
    }
  }
  void free_device() noexcept {
    if (dp_) device_memory_release(dev_, dp_);
    dp_ = nullptr;
    if (head_ == Head::Device || head_ == Head::Synced) head_ = hp_ && head_ == Head::Synced ? Head::Host : Head::Zero;
  }
  static void device_memory_release(Device d, void* p) noexcept;

  std::shared_ptr<std::vector<T>> host_;
  T* hp_ = nullptr;
  void* dp_ = nullptr;
  Device dev_ = Device::Cpu;
  size_t n_ = 0;
  Head head_ = Head::Zero;
  bool lent_ = false;
};

template <typename T>
void Buffer<T>::device_memory_release(Device d, void* p) noexcept {
  try {
    device_memory(d).release(p);
  } catch (...) {
  }
}

using FloatBuffer = Buffer<float>;
using IntBuffer = Buffer<int>;

}  // namespace dn
