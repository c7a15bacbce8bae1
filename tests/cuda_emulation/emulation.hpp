// A CPU stand-in for the CUDA execution model, enough to run the kernels of cuda/*.cuh:
// one std::thread per CUDA thread, blocks one after another; __syncthreads is a barrier of
// the block, __shfl_down_sync a barrier of the warp around a shared table (every lane of the
// warp must call it, as the kernels do); __shared__ variables are static (one block runs at a
// time); dynamic shared memory is a host array filled with NaN so reads of unwritten shared
// memory show in the results. __CUDA_ARCH__ is set below 800: the kernels take their FP32
// paths with synchronous copies (no cp.async, no tensor cores).
#pragma once
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
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
#define __CUDA_ARCH__ 700
#define DN_DYNAMIC_SHARED(name) float* name = emu_block.shared
#define DN_KERNEL_INLINE inline

inline void __syncthreads() { emu_block.block->wait(); }

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

// Runs body() as grid x threads CUDA threads, block after block, with smem_bytes of dynamic
// shared memory. threads must be a multiple of 32.
template <class Body>
void emu_launch(EmuDim grid, unsigned threads, size_t smem_bytes, Body body) {
  gridDim = grid;
  blockDim = {threads, 1, 1};
  std::vector<float> shared(smem_bytes / sizeof(float) + 1, NAN);
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
            threadIdx = {t, 0, 0};
            blockIdx = {x, y, z};
            emu_block = {&barrier, &warps, lanes.data(), shared.data()};
            body();
          });
        for (auto& th : team) th.join();
      }
}

// Blocks for n elements of a grid-stride kernel, kept small (the emulation runs them in turn).
inline unsigned emu_blocks_for(size_t n, unsigned threads = 256) {
  return (unsigned)std::max<size_t>(1, std::min<size_t>((n + threads - 1) / threads, 8));
}
