// cuda/conv_fast.cuh's kernels run on the CPU (emulation.hpp: one std::thread per CUDA thread), so their index
// arithmetic (implicit im2col gathers, tiles, pipeline stages, split-K partials, the epilogue's
// output mapping, the flipped filters) is tested on machines without a GPU
// (tests/test_cuda_emulation.py). emulation.hpp sets __CUDA_ARCH__ 800 with DN_EMULATION: the kernels take their
// FP32 and TF32 paths with cp.async copies landing at wait_group (the same loaders, barriers and epilogue; the TF32
// products through emulation.hpp's wmma). The launch sequence mirrors
// CudaBackend::implicit_gemm and conv_input_gradient (cuda/conv_fast.cu).
//
//   g++ -std=c++17 -O1 -pthread -shared -fPIC -Icsrc -Icuda tests/cuda_emulation/*_host.cpp
#include <cstdint>
#include <cstdio>
#include <exception>
#include <vector>

#include "emulation.hpp"
// emulation.hpp first: it defines the CUDA keywords the header uses.
#include "conv_fast.cuh"

namespace {
using namespace dn;
using namespace dn::cuda;

// The arithmetic of the emulated launches: false = FP32 FMA, true = TF32 (emulated wmma).
bool emu_tf32 = false;

template <class T, GemmOp kOp, bool kTf32>
void run_math(const ImplicitGemm& p, const EmuDim& grid, bool vec_a) {
  if (vec_a) emu_launch(grid, kGemmThreads, T::kSmemBytes, [&] { implicit_gemm_kernel<T, kOp, kTf32, true>(p); });
  else emu_launch(grid, kGemmThreads, T::kSmemBytes, [&] { implicit_gemm_kernel<T, kOp, kTf32, false>(p); });
}

template <class T, GemmOp kOp>
void run_tiles(const ImplicitGemm& p, const GemmLaunch& l, bool vec_a) {
  const EmuDim grid{l.grid_x, l.grid_y, l.grid_z};
  if (emu_tf32) run_math<T, kOp, true>(p, grid, vec_a);
  else run_math<T, kOp, false>(p, grid, vec_a);
}

template <GemmOp kOp>
void run_op(const ImplicitGemm& p, const GemmLaunch& l, bool vec_a) {
  if (l.tile_rows == TileSmall::BM) run_tiles<TileSmall, kOp>(p, l, vec_a);
  else if (l.tile_rows == TileMedium::BM) run_tiles<TileMedium, kOp>(p, l, vec_a);
  else run_tiles<TileLarge, kOp>(p, l, vec_a);
}

// CudaBackend::implicit_gemm, with host vectors for the scratch; returns whether the batch
// statistics were computed (mean and variance given, K not split).
bool implicit_gemm(ImplicitGemm& p, int multiprocessors, int max_splits, int* splits_out, float* mean = nullptr,
                   float* variance = nullptr) {
  const GemmLaunch l = plan_gemm(p, multiprocessors, max_splits);
  std::vector<float> partial(l.partial_floats, NAN);
  p.ep.partial = l.partial_floats ? partial.data() : nullptr;
  const bool stats = mean && variance && !p.ep.partial && p.ep.to_map;
  const int filters = p.groups * p.M;
  std::vector<double> tile_sums(stats ? (size_t)filters * l.grid_x * 2 : 0, NAN);
  p.ep.stats = stats ? tile_sums.data() : nullptr;
  if (p.ep.to_map) run_op<GemmOp::Forward>(p, l, p.K % 4 == 0 && reinterpret_cast<uintptr_t>(p.a) % 16 == 0);
  else run_op<GemmOp::WeightGradient>(p, l, false);
  if (p.ep.partial) {
    const size_t n = (size_t)p.groups * p.M * p.N;
    emu_launch({emu_blocks_for(n), 1, 1}, 256, 0, [&] { conv_splitk_reduce(p); });
  }
  if (stats)
    emu_launch({emu_blocks_for(filters), 1, 1}, 256, 0, [&] {
      conv_stats_finish(tile_sums.data(), filters, (int)l.grid_x, (double)p.N, mean, variance);
    });
  if (splits_out) *splits_out = p.splits;
  return stats;
}

ConvShape conv_shape(int batch, int c, int h, int w, int filters, int size, int stride, int pad, int groups) {
  ConvShape s;
  s.batch = batch, s.c = c, s.h = h, s.w = w, s.filters = filters, s.size = size, s.stride = stride, s.pad = pad;
  s.groups = groups;
  s.out_h = (h + 2 * pad - size) / stride + 1;
  s.out_w = (w + 2 * pad - size) / stride + 1;
  return s;
}

}  // namespace

extern "C" {

// The convolutions' arithmetic for the calls that follow: 0 FP32, 1 TF32 (CudaMath).
void emu_set_tf32(int on) { emu_tf32 = on != 0; }

// op 0: inference forward (folded batch norm when bn_scale, bias, activation act);
// 1: training forward (raw sums); 2: weight gradient (out += ...); 3: input gradient
// (out += ..., stride-1 'same' ungrouped only). a = weights (ops 0, 1, 3) or delta (op 2).
// Returns 0, or 1 with the error in err.
int emu_conv(int op, int batch, int c, int h, int w, int filters, int size, int stride, int pad, int groups,
             const float* input, const float* a, float* out, const float* bias, const float* bn_scale,
             const float* bn_mean, const float* bn_var, int act, int multiprocessors, int* splits, char* err,
             int err_len) {
  return emu_guarded(err, err_len, [&] {
    const ConvShape s = conv_shape(batch, c, h, w, filters, size, stride, pad, groups);
    if (op == 0 || op == 1) {
      ImplicitGemm p = forward_gemm(s, input, a, out);
      if (op == 0) {
        p.ep.bias = bias;
        p.ep.bn_scale = bn_scale, p.ep.bn_mean = bn_mean, p.ep.bn_var = bn_var;
        p.ep.act = static_cast<Activation>(act);
      }
      implicit_gemm(p, multiprocessors, kForwardMaxSplits, splits);
    } else if (op == 2) {
      ImplicitGemm p = weight_gradient_gemm(s, input, a, out);
      implicit_gemm(p, multiprocessors, kWeightGradientMaxSplits, splits);
    } else if (op == 3) {
      check(input_gradient_as_forward(s), "input gradient: not a stride-1 'same' ungrouped convolution");
      const int taps = size * size;
      const size_t count = (size_t)filters * c * taps;
      std::vector<float> flipped(count + 4, NAN);
      // 16-byte aligned as the device scratch (cudaMalloc) is.
      float* fl = flipped.data() + ((16 - reinterpret_cast<uintptr_t>(flipped.data()) % 16) % 16) / sizeof(float);
      emu_launch({emu_blocks_for(count), 1, 1}, 256, 0, [&] { flip_transpose_filters(a, filters, c, taps, fl); });
      ImplicitGemm p = input_gradient_gemm(s, input, fl, out);
      implicit_gemm(p, multiprocessors, kForwardMaxSplits, splits);
    } else {
      fail("unknown op ", op);
    }
  });
}

int emu_bn_mean_variance(const float* x, int batch, int filters, int spatial, float* mean, float* variance, int sms,
                         int* chunks, char* err, int err_len);

// CudaBackend::conv_forward_raw_stats: the raw forward with the batch statistics from its epilogue,
// or (K split) from the separate batch-norm reduction. *from_epilogue says which ran.
int emu_conv_stats(int batch, int c, int h, int w, int filters, int size, int stride, int pad, int groups,
                   const float* input, const float* weights, float* out, float* mean, float* variance,
                   int multiprocessors, int* splits, int* from_epilogue, char* err, int err_len) {
  int spatial = 0;
  const int rc = emu_guarded(err, err_len, [&] {
    const ConvShape s = conv_shape(batch, c, h, w, filters, size, stride, pad, groups);
    spatial = s.out_h * s.out_w;
    ImplicitGemm p = forward_gemm(s, input, weights, out);
    *from_epilogue = implicit_gemm(p, multiprocessors, kForwardMaxSplits, splits, mean, variance) ? 1 : 0;
  });
  if (rc || *from_epilogue) return rc;
  int chunks = 0;
  return emu_bn_mean_variance(out, batch, filters, spatial, mean, variance, multiprocessors, &chunks, err, err_len);
}

// The tile rows and split count the planner picks (no kernels run).
int emu_plan(int op, int M, int N, int K, int groups, int multiprocessors, int* tile_rows, int* splits) {
  ImplicitGemm p;
  p.M = M, p.N = N, p.K = K, p.groups = groups, p.c = 1, p.h = 1, p.w = 1, p.out_h = 1, p.out_w = 1;
  try {
    const GemmLaunch l = plan_gemm(p, multiprocessors, op == 2 ? kWeightGradientMaxSplits : kForwardMaxSplits);
    *tile_rows = l.tile_rows;
    *splits = p.splits;
    return 0;
  } catch (const std::exception&) {
    return 1;
  }
}

}  // extern "C"
