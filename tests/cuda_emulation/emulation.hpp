// A CPU stand-in for the CUDA execution model, enough to run the kernels of cuda/*.cuh:
// one std::thread per CUDA thread, blocks one after another; __syncthreads is a barrier of
// the block, __shfl_down_sync a barrier of the warp around a shared table (every lane of the
// warp must call it, as the kernels do); __shared__ variables are static (one block runs at a
// time); dynamic shared memory is a host array filled with NaN so reads of unwritten shared
// memory show in the results. __CUDA_ARCH__ is 800 with DN_EMULATION: cp.async copies are queued
// per thread and land when a wait_group retires their commit group (the latest the hardware may
// deliver them), and nvcuda::wmma's TF32 m16n16k8 API is emulated below (each lane holds a whole
// tile; lane 0 computes and stores, the other lanes' fragments are never stored), with
// __float_to_tf32 rounding to nearest, ties away from zero (cvt.rna.tf32.f32), and float
// accumulation in k order.
#pragma once
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <type_traits>
#include <thread>
#include <vector>

struct EmuDim {
  unsigned x = 1, y = 1, z = 1;
};
inline thread_local EmuDim threadIdx, blockIdx;
inline EmuDim blockDim, gridDim;

// A reusable barrier for n threads.
class EmuBarrier {
 public:
  explicit EmuBarrier(unsigned n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    const unsigned gen = generation_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  unsigned n_, arrived_ = 0, generation_ = 0;
};

struct EmuBlock {
  EmuBarrier* block = nullptr;
  std::deque<EmuBarrier>* warps = nullptr;  // deque: barriers do not move
  double* lanes = nullptr;  // one slot per thread: the shuffle table
  float* shared = nullptr;  // dynamic shared memory
};
inline thread_local EmuBlock emu_block;

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(n)
#define __shared__ static
#define __CUDA_ARCH__ 800
#define DN_EMULATION 1
#define DN_DYNAMIC_SHARED(name) float* name = emu_block.shared
#define DN_KERNEL_INLINE inline

inline void __syncthreads() { emu_block.block->wait(); }

// cp.async: per-thread queues of copies; commit closes a group, wait_group(n) performs every
// committed group but the newest n, oldest first.
struct EmuCopy {
  float* dst;
  const float* src;
  int floats;
  bool valid;  // false: zero fill (src-size 0)
};
inline thread_local std::vector<EmuCopy> emu_open_group;
inline thread_local std::deque<std::vector<EmuCopy>> emu_committed_groups;
inline void emu_copy_async(float* dst, const float* src, int floats, bool valid) {
  emu_open_group.push_back({dst, src, floats, valid});
}
inline void emu_commit_group() {
  emu_committed_groups.push_back(std::move(emu_open_group));
  emu_open_group.clear();
}
inline void emu_wait_group(int pending) {
  while ((int)emu_committed_groups.size() > pending) {
    for (const EmuCopy& c : emu_committed_groups.front())
      for (int i = 0; i < c.floats; ++i) c.dst[i] = c.valid ? c.src[i] : 0.f;
    emu_committed_groups.pop_front();
  }
}

struct float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

template <class T>
T __shfl_down_sync(unsigned /*mask*/, T v, int offset) {
  const unsigned t = threadIdx.x, lane = t % 32;
  EmuBarrier& warp = (*emu_block.warps)[t / 32];
  emu_block.lanes[t] = (double)v;
  warp.wait();
  const T r = lane + offset < 32 ? (T)emu_block.lanes[t + offset] : v;
  warp.wait();  // every lane has read before the table is written again
  return r;
}

using std::max;
using std::min;

namespace nvcuda {
namespace wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment;
// matrix_a: 16 x 8 (row m, column k) at x[m * 8 + k]; matrix_b: 8 x 16 at x[k * 16 + n];
// accumulator: 16 x 16 at x[m * 16 + n].
template <class Layout>
struct fragment<matrix_a, 16, 16, 8, precision::tf32, Layout> {
  static constexpr int num_elements = 16 * 8;
  float x[num_elements];
};
template <class Layout>
struct fragment<matrix_b, 16, 16, 8, precision::tf32, Layout> {
  static constexpr int num_elements = 8 * 16;
  float x[num_elements];
};
template <>
struct fragment<accumulator, 16, 16, 8, float, void> {
  static constexpr int num_elements = 16 * 16;
  float x[num_elements];
};

inline float __float_to_tf32(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;  // finite: 10-bit mantissa
  std::memcpy(&f, &u, 4);
  return f;
}

// wmma's load/store pointers must be 256-bit aligned, and ldm a multiple of 4 floats (16 bytes).
inline void check_fragment_address(const float* p, unsigned ldm) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || ldm % 4 != 0) {
    std::fprintf(stderr, "wmma emulation: misaligned fragment pointer %p or ldm %u\n", (const void*)p, ldm);
    std::abort();
  }
}

template <class Frag>
void fill_fragment(Frag& f, float v) {
  for (float& e : f.x) e = v;
}

// A rows x cols tile into x (row-major), read from p in the Layout's order.
template <class Layout>
void load_tile(float* x, int rows, int cols, const float* p, unsigned ldm) {
  constexpr bool row = std::is_same<Layout, row_major>::value;
  check_fragment_address(p, ldm);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) x[r * cols + c] = row ? p[r * ldm + c] : p[c * ldm + r];
}
template <class Layout>
void load_matrix_sync(fragment<matrix_a, 16, 16, 8, precision::tf32, Layout>& a, const float* p, unsigned ldm) {
  load_tile<Layout>(a.x, 16, 8, p, ldm);  // m x k
}
template <class Layout>
void load_matrix_sync(fragment<matrix_b, 16, 16, 8, precision::tf32, Layout>& b, const float* p, unsigned ldm) {
  load_tile<Layout>(b.x, 8, 16, p, ldm);  // k x n
}

template <class LA, class LB>
void mma_sync(fragment<accumulator, 16, 16, 8, float>& d, const fragment<matrix_a, 16, 16, 8, precision::tf32, LA>& a,
              const fragment<matrix_b, 16, 16, 8, precision::tf32, LB>& b,
              const fragment<accumulator, 16, 16, 8, float>& c) {
  if (threadIdx.x % 32 != 0) return;  // lane 0 computes and stores for the warp
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 16; ++n) {
      float acc = c.x[m * 16 + n];
      for (int k = 0; k < 8; ++k) acc = std::fma(a.x[m * 8 + k], b.x[k * 16 + n], acc);
      d.x[m * 16 + n] = acc;
    }
}

inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 8, float>& c, unsigned ldm,
                              layout_t layout) {
  check_fragment_address(p, ldm);
  if (threadIdx.x % 32 != 0) return;
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 16; ++n) {
      if (layout == mem_row_major) p[m * ldm + n] = c.x[m * 16 + n];
      else p[n * ldm + m] = c.x[m * 16 + n];
    }
}
}  // namespace wmma
}  // namespace nvcuda

// Runs body() as grid x threads CUDA threads, block after block, with smem_bytes of dynamic
// shared memory. threads must be a multiple of 32.
template <class Body>
void emu_launch(EmuDim grid, unsigned threads, size_t smem_bytes, Body body) {
  gridDim = grid;
  blockDim = {threads, 1, 1};
  // Dynamic shared memory 128-byte aligned, as the kernels declare it (__align__(128)).
  std::vector<float> shared_storage(smem_bytes / sizeof(float) + 1 + 32, NAN);
  float* shared = shared_storage.data() + ((128 - reinterpret_cast<uintptr_t>(shared_storage.data()) % 128) % 128) / 4;
  std::vector<double> lanes(threads);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        EmuBarrier barrier(threads);
        std::deque<EmuBarrier> warps;
        for (unsigned w = 0; w < threads / 32; ++w) warps.emplace_back(32);
        std::vector<std::thread> team;
        team.reserve(threads);
        for (unsigned t = 0; t < threads; ++t)
          team.emplace_back([&, t] {
            emu_open_group.clear();
            emu_committed_groups.clear();
            threadIdx = {t, 0, 0};
            blockIdx = {x, y, z};
            emu_block = {&barrier, &warps, lanes.data(), shared};
            body();
          });
        for (auto& th : team) th.join();
      }
}

// Runs f, returning 0, or 1 with the exception's message in err: the emulator's C entry points
// report errors as the C API does, never by unwinding into ctypes.
template <class F>
int emu_guarded(char* err, int err_len, F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(err, (size_t)err_len, "%s", e.what());
    return 1;
  }
}

// Blocks for n elements of a grid-stride kernel, kept small (the emulation runs them in turn).
inline unsigned emu_blocks_for(size_t n, unsigned threads = 256) {
  return (unsigned)std::max<size_t>(1, std::min<size_t>((n + threads - 1) / threads, 8));
}
