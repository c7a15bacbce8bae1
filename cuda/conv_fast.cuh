// The CUDA backend's convolutions as one implicit GEMM: the device code and its planning.
// cuda/conv_fast.cu launches it for CudaBackend; tests/cuda_emulation runs the same code on
// the CPU (a thread per CUDA thread, wmma and cp.async emulated) so its index arithmetic, pipeline
// and fragment layout are tested without a GPU. The CPU's counterpart is csrc/kernels/conv_fast.cpp.
//
//   forward          out[f][n]  = sum_k W[f][k] * col[k][n]       n = (image, output pixel)
//   input gradient   the forward over the delta with the filters flipped and transposed
//                    (stride-1 'same' convolutions, as the CPU's conv_backward_input_fast)
//   weight gradient  dW[f][k] += sum_r delta[f][r] * col[k][r]     r = (image, output pixel)
//
// col is Darknet's im2col matrix (kernels/im2col.hpp: im2col_row decodes its rows for the
// CPU and here), gathered tile by tile from the image into shared memory with cp.async
// (4-byte copies, zero-filled outside the image; the weights in 16-byte copies when rows
// are 16-byte aligned), kStages tiles in flight.
//
// Block tile BM x BN x 32 with 8 warps. TF32 (the default, CudaMath::Tf32): each warp
// runs wmma m16n16k8 tensor-core products over a (BM/WARPS_M) x (BN/WARPS_N) tile, the
// operands rounded to TF32 (__float_to_tf32), float accumulation. Fp32: the same tiles and
// pipeline, each thread a (BM/16) x 8 register tile of plain fmaf in increasing k (the
// parity mode, 1e-4 against the CPU).
//
// Epilogue, fused: the accumulators go through shared memory so the stores are coalesced
// along n; inference applies batch norm folded per filter (kernels/batchnorm.hpp:
// bn_folded_scale/bias, the CPU's formula), the bias and the activation; the training
// forward stores the raw sums; the gradients add into their destination. Where the tiles
// alone leave the multiprocessors idle (batch-1 13x13 layers; the weight gradient of
// layers with few filters, K = batch x spatial), K is split over blockIdx.z: the raw
// partial sums go to scratch and conv_splitk_reduce adds them in split order (so results
// are deterministic) and applies the same epilogue.
#pragma once
#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "core/error.hpp"
#include "kernels/activations.hpp"
#include "kernels/batchnorm.hpp"
#include "kernels/conv_fast.hpp"
#include "kernels/im2col.hpp"
#include "kernel_utils.cuh"

// cp.async and the TF32 wmma shapes exist from sm_80; below, plain copies and the FP32 path
// (the host never asks for TF32 there). DN_CP_ASYNC: the copies as cp.async (off in the CPU
// emulation of tests/cuda_emulation, which provides nvcuda::wmma itself).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define DN_SM80 1
#ifndef DN_EMULATION
#include <mma.h>
#endif
#else
#define DN_SM80 0
#endif
#if DN_SM80 && !defined(DN_EMULATION)
#define DN_CP_ASYNC 1
#else
#define DN_CP_ASYNC 0
#endif
#ifndef DN_DYNAMIC_SHARED
#define DN_DYNAMIC_SHARED(name) extern __shared__ __align__(128) float name[]
#endif

namespace dn {
namespace cuda {

constexpr int kBK = 32;     // k per pipeline stage
constexpr int kStages = 3;  // tiles in flight
constexpr int kPad = 4;     // floats of row padding: keeps wmma's 32-byte alignment, spreads banks
constexpr int kGemmThreads = 256;

enum class GemmOp { Forward, WeightGradient };

template <int BM_, int BN_, int WARPS_M_, int WARPS_N_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, WARPS_M = WARPS_M_, WARPS_N = WARPS_N_;
  static constexpr int kWarpM = BM / WARPS_M, kWarpN = BN / WARPS_N;  // one warp's share (TF32)
  static constexpr int kFragM = kWarpM / 16, kFragN = kWarpN / 16;
  static constexpr int kThreadM = BM / 16, kThreadN = BN / 16;         // one thread's share (FP32)
  static_assert(WARPS_M * WARPS_N * 32 == kGemmThreads, "8 warps");
  static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0, "whole 16x16 fragments");
  static_assert(kGemmThreads % BN == 0 && kGemmThreads % kBK == 0, "fixed column per thread in the loaders");
  // Shared memory (floats) per stage: A [BM][kBK + kPad], then B: forward [kBK][BN + kPad],
  // weight gradient [BN][kBK + kPad] (column-major: B's k runs along the pixels).
  static constexpr int kLdA = kBK + kPad, kLdBF = BN + kPad, kLdBW = kBK + kPad, kLdC = BN + kPad;
  static constexpr int kStageA = BM * kLdA;
  static constexpr int kStageB = (kBK * kLdBF > BN * kLdBW ? kBK * kLdBF : BN * kLdBW);
  static constexpr int kPipelineFloats = kStages * (kStageA + kStageB);
  // Epilogue: the C tile, then the folded per-filter scale and shift.
  static constexpr int kEpilogueFloats = BM * kLdC + 2 * BM;
  static constexpr int kSmemFloats = kPipelineFloats > kEpilogueFloats ? kPipelineFloats : kEpilogueFloats;
  static constexpr size_t kSmemBytes = sizeof(float) * kSmemFloats;
};
using TileSmall = Tile<32, 128, 1, 8>;    // up to 32 rows (filters)
using TileMedium = Tile<64, 128, 2, 4>;   // up to 64
using TileLarge = Tile<128, 128, 2, 4>;

// What happens to C[m][n] (group g) once summed.
struct Epilogue {
  float* out = nullptr;
  bool to_map = true;          // out is an NCHW map [batch][groups*M][ohw] (n = image*ohw + pixel); else rows [groups*M][N]
  bool accumulate = false;     // out += sum (gradients); otherwise out = act(sum * scale + shift)
  int ohw = 1;                 // output pixels per image (to_map)
  const float* bias = nullptr; // per filter (may be null: no shift)
  const float* bn_scale = nullptr, *bn_mean = nullptr, *bn_var = nullptr;  // inference batch norm, folded
  Activation act = Activation::Linear;
  float* partial = nullptr;    // split-K: raw sums [groups][splits][M][N], finished by conv_splitk_reduce
  // Forward without split-K: per (filter, column tile) the sum and the sum of squares of the raw
  // sums, [groups*M][gridDim.x][2] in double; conv_stats_finish turns them into batch statistics.
  double* stats = nullptr;
};

struct ImplicitGemm {
  // The convolution whose im2col matrix is gathered: input [batch][c][h][w], groups.
  int batch = 1, c = 0, h = 0, w = 0, size = 1, stride = 1, pad = 0, out_h = 0, out_w = 0, groups = 1;
  // Per group: Forward M = filters, N = batch*out_h*out_w, K = (c/groups)*size*size;
  // WeightGradient M = filters, N = (c/groups)*size*size, K = batch*out_h*out_w.
  int M = 0, N = 0, K = 0;
  int k_split = 0, splits = 1;
  const float* a = nullptr;      // Forward: weights [groups][M][K]; WeightGradient: delta [batch][groups*M][ohw]
  const float* image = nullptr;  // the convolution's input
  Epilogue ep;
};


// ------------------------------------------------------------ cp.async (sm_80+)
// Under DN_EMULATION (tests/cuda_emulation) the copies are queued per thread and land only when
// a wait_group retires their group, the latest the hardware may deliver them: a tile read before
// its wait and barrier reads the previous contents and shows in the results.
DN_KERNEL_INLINE void copy4_async(float* smem, const float* gmem, bool valid) {
#if DN_CP_ASYNC
  const unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(gmem), "r"(valid ? 4 : 0));
#elif defined(DN_EMULATION)
  emu_copy_async(smem, gmem, 1, valid);
#else
  *smem = valid ? *gmem : 0.f;
#endif
}
DN_KERNEL_INLINE void copy16_async(float* smem, const float* gmem, bool valid) {
#if DN_CP_ASYNC
  const unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(valid ? 16 : 0));
#elif defined(DN_EMULATION)
  emu_copy_async(smem, gmem, 4, valid);
#else
  for (int i = 0; i < 4; ++i) smem[i] = valid ? gmem[i] : 0.f;
#endif
}
DN_KERNEL_INLINE void async_commit() {
#if DN_CP_ASYNC
  asm volatile("cp.async.commit_group;\n" ::);
#elif defined(DN_EMULATION)
  emu_commit_group();
#endif
}
template <int kPending>
DN_KERNEL_INLINE void async_wait() {  // at most kPending committed groups still in flight
#if DN_CP_ASYNC
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
#elif defined(DN_EMULATION)
  emu_wait_group(kPending);
#endif
}

// ------------------------------------------------------------ epilogue
// (scale, shift) of filter f: folded batch norm, or (1, bias), or (1, 0).
DN_KERNEL_INLINE void filter_affine(const Epilogue& ep, int f, float* scale, float* shift) {
  if (ep.bn_scale) {
    const float s = bn_folded_scale(ep.bn_scale[f], ep.bn_var[f]);
    *scale = s;
    *shift = bn_folded_bias(ep.bias[f], ep.bn_mean[f], s);
  } else {
    *scale = 1.f;
    *shift = ep.bias ? ep.bias[f] : 0.f;
  }
}

DN_KERNEL_INLINE size_t output_index(const ImplicitGemm& p, int f, int n) {
  if (!p.ep.to_map) return (size_t)f * p.N + n;
  const int image = n / p.ep.ohw;
  return ((size_t)image * p.groups * p.M + f) * p.ep.ohw + (n - image * p.ep.ohw);
}

DN_KERNEL_INLINE void store_final(const ImplicitGemm& p, int f, int n, float sum, float scale, float shift) {
  float* o = p.ep.out + output_index(p, f, n);
  if (p.ep.accumulate) *o += sum;
  else *o = activate(fmaf(sum, scale, shift), p.ep.act);
}

// Sums the splits of each C element in split order, then the epilogue.
__global__ void conv_splitk_reduce(ImplicitGemm p) {
  const size_t mn = (size_t)p.M * p.N;
  DN_GRID_STRIDE(idx, (size_t)p.groups * mn) {
    const int g = (int)(idx / mn);
    const size_t rest = idx - (size_t)g * mn;
    const int m = (int)(rest / p.N), n = (int)(rest - (size_t)m * p.N);
    const float* part = p.ep.partial + (size_t)g * p.splits * mn + rest;
    float sum = 0.f;
    for (int s = 0; s < p.splits; ++s) sum += part[(size_t)s * mn];
    const int f = g * p.M + m;
    float scale = 1.f, shift = 0.f;
    if (!p.ep.accumulate) filter_affine(p.ep, f, &scale, &shift);
    store_final(p, f, n, sum, scale, shift);
  }
}

// Batch statistics from the per-tile sums of implicit_gemm_kernel (tiles added in order):
// mean = S / n, variance = (SS - S * mean) / (n - 1) (Darknet's N-1; in double, clamped at 0).
__global__ void conv_stats_finish(const double* __restrict__ stats, int filters, int tiles, double n,
                                  float* __restrict__ mean, float* __restrict__ variance) {
  DN_GRID_STRIDE(f, filters) {
    double sum = 0, squares = 0;
    for (int t = 0; t < tiles; ++t) {
      sum += stats[(f * tiles + t) * 2];
      squares += stats[(f * tiles + t) * 2 + 1];
    }
    const double m = sum / n;
    mean[f] = (float)m;
    const double centered = squares - sum * m;
    variance[f] = (float)((centered > 0 ? centered : 0.0) / (n - 1));
  }
}

// out[ch][f][size-1-ky][size-1-kx] = w[f][ch][ky][kx]: the filters of the input gradient.
__global__ void flip_transpose_filters(const float* __restrict__ w, int filters, int channels, int taps,
                                       float* __restrict__ out) {
  DN_GRID_STRIDE(i, (size_t)filters * channels * taps) {
    const int t = (int)(i % taps);
    const size_t rest = i / taps;
    const int ch = (int)(rest % channels), f = (int)(rest / channels);
    out[((size_t)ch * filters + f) * taps + (taps - 1 - t)] = w[i];
  }
}

// ------------------------------------------------------------ implicit im2col
// Where output pixel n (n = image * ohw + pixel) of group g reads the input: the first channel
// plane of its image and group, and its top-left tap (y0, x0), outside the image in the padding.
struct TapOrigin {
  const float* planes;
  int image, pixel, y0, x0;
};
DN_KERNEL_INLINE TapOrigin tap_origin(const ImplicitGemm& p, int g, int n) {
  const int ohw = p.out_h * p.out_w;
  TapOrigin o;
  o.image = n / ohw;
  o.pixel = n - o.image * ohw;
  const int oy = o.pixel / p.out_w, ox = o.pixel - oy * p.out_w;
  o.y0 = oy * p.stride - p.pad;
  o.x0 = ox * p.stride - p.pad;
  o.planes = p.image + ((size_t)o.image * p.c + (size_t)g * (p.c / p.groups)) * ((size_t)p.h * p.w);
  return o;
}
// Element (row, pixel) of the im2col matrix: *src set and true inside the image, false (a zero)
// in the padding.
DN_KERNEL_INLINE bool im2col_source(const ImplicitGemm& p, const TapOrigin& o, int row, const float** src) {
  const Im2colRow r = im2col_row(row, p.size);
  const int iy = o.y0 + r.ky, ix = o.x0 + r.kx;
  if ((unsigned)iy >= (unsigned)p.h || (unsigned)ix >= (unsigned)p.w) return false;
  *src = o.planes + (size_t)r.channel * ((size_t)p.h * p.w) + (size_t)iy * p.w + ix;
  return true;
}

// ------------------------------------------------------------ the kernel
template <class T, GemmOp kOp, bool kTf32, bool kVecA>
__global__ void __launch_bounds__(kGemmThreads) implicit_gemm_kernel(const ImplicitGemm p) {
  DN_DYNAMIC_SHARED(smem);
  float* const a_stages = smem;
  float* const b_stages = smem + kStages * T::kStageA;
  const int tid = threadIdx.x;
  const int n0 = blockIdx.x * T::BN, m0 = blockIdx.y * T::BM;
  const int g = (int)blockIdx.z / p.splits, split = (int)blockIdx.z - g * p.splits;
  const int k_begin = split * p.k_split, k_end = min(p.K, k_begin + p.k_split);
  const int ohw = p.out_h * p.out_w;

  // Forward: this thread's B column (output pixel) is fixed for the whole k loop.
  constexpr int kBRowStep = kGemmThreads / T::BN;
  const int b_col = tid % T::BN;
  const bool pixel_valid = kOp == GemmOp::Forward && n0 + b_col < p.N;
  const TapOrigin pixel = pixel_valid ? tap_origin(p, g, n0 + b_col) : TapOrigin{p.image, 0, 0, 0, 0};

  // Queues the copies of k tile [k0, k0 + kBK) into stage `stage`.
  auto load_tile = [&](int stage, int k0) {
    float* As = a_stages + stage * T::kStageA;
    float* Bs = b_stages + stage * T::kStageB;
    if (kOp == GemmOp::Forward) {
      const float* A = p.a + (size_t)g * p.M * p.K;
      if (kVecA) {  // K % 4 == 0 and 16-byte aligned rows: whole float4s in or out
        constexpr int kVecsPerRow = kBK / 4;
#pragma unroll
        for (int v = tid; v < T::BM * kVecsPerRow; v += kGemmThreads) {
          const int m = v / kVecsPerRow, kk = (v - m * kVecsPerRow) * 4;
          const int gm = m0 + m, gk = k0 + kk;
          const bool ok = gm < p.M && gk < k_end;
          copy16_async(As + m * T::kLdA + kk, ok ? A + (size_t)gm * p.K + gk : p.a, ok);
        }
      } else {
#pragma unroll 4
        for (int e = tid; e < T::BM * kBK; e += kGemmThreads) {
          const int m = e / kBK, kk = e - m * kBK;
          const int gm = m0 + m, gk = k0 + kk;
          const bool ok = gm < p.M && gk < k_end;
          copy4_async(As + m * T::kLdA + kk, ok ? A + (size_t)gm * p.K + gk : p.a, ok);
        }
      }
#pragma unroll 4
      for (int kk = tid / T::BN; kk < kBK; kk += kBRowStep) {
        const int gk = k0 + kk;
        const float* src = p.image;
        const bool ok = pixel_valid && gk < k_end && im2col_source(p, pixel, gk, &src);
        copy4_async(Bs + kk * T::kLdBF + b_col, src, ok);
      }
    } else {
      // Weight gradient: this thread's reduction index r (image, output pixel) in this tile.
      const int r_local = tid % kBK;
      const int r = k0 + r_local;
      const bool r_valid = r < k_end;
      const TapOrigin o = r_valid ? tap_origin(p, g, r) : TapOrigin{p.image, 0, 0, 0, 0};
      const float* delta = p.a + ((size_t)o.image * p.groups * p.M + (size_t)g * p.M) * ohw + o.pixel;
      constexpr int kStep = kGemmThreads / kBK;
#pragma unroll 4
      for (int m = tid / kBK; m < T::BM; m += kStep) {
        const int gm = m0 + m;
        const bool ok = r_valid && gm < p.M;
        copy4_async(As + m * T::kLdA + r_local, ok ? delta + (size_t)gm * ohw : p.a, ok);
      }
#pragma unroll 4
      for (int nn = tid / kBK; nn < T::BN; nn += kStep) {
        const int gn = n0 + nn;
        const float* src = p.image;
        const bool ok = r_valid && gn < p.N && im2col_source(p, o, gn, &src);
        copy4_async(Bs + nn * T::kLdBW + r_local, src, ok);
      }
    }
  };

  const int tiles = (k_end - k_begin + kBK - 1) / kBK;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < tiles) load_tile(s, k_begin + s * kBK);
    async_commit();  // empty groups keep the count uniform
  }

  constexpr bool kTensorCores = kTf32 && DN_SM80;
#if DN_SM80
  using namespace nvcuda;
  using BLayout = typename std::conditional<kOp == GemmOp::Forward, wmma::row_major, wmma::col_major>::type;
#endif
#if DN_SM80
  const int warp = tid / 32;
  const int warp_m = warp / T::WARPS_N, warp_n = warp - warp_m * T::WARPS_N;
#endif
  const int tx = tid % 16, ty = tid / 16;
#if DN_SM80
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc_tc[kTensorCores ? T::kFragM : 1]
                                                         [kTensorCores ? T::kFragN : 1];
#endif
  float acc[kTensorCores ? 1 : T::kThreadM][kTensorCores ? 1 : T::kThreadN];
  if (kTensorCores) {
#if DN_SM80
#pragma unroll
    for (int i = 0; i < T::kFragM; ++i)
#pragma unroll
      for (int j = 0; j < T::kFragN; ++j) wmma::fill_fragment(acc_tc[i][j], 0.f);
#endif
  } else {
#pragma unroll
    for (int i = 0; i < T::kThreadM; ++i)
#pragma unroll
      for (int j = 0; j < T::kThreadN; ++j) acc[i][j] = 0.f;
  }

  for (int t = 0; t < tiles; ++t) {
    async_wait<kStages - 2>();  // tile t has landed (for this thread's copies)...
    __syncthreads();            // ...and everyone's; everyone is also done with tile t - 1
    const int next = t + kStages - 1;
    if (next < tiles) load_tile(next % kStages, k_begin + next * kBK);
    async_commit();
    const float* As = a_stages + (t % kStages) * T::kStageA;
    const float* Bs = b_stages + (t % kStages) * T::kStageB;
    if (kTensorCores) {
#if DN_SM80
#pragma unroll
      for (int kk = 0; kk < kBK; kk += 8) {
        wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a[T::kFragM];
#pragma unroll
        for (int i = 0; i < T::kFragM; ++i) {
          wmma::load_matrix_sync(a[i], As + (warp_m * T::kWarpM + i * 16) * T::kLdA + kk, T::kLdA);
#pragma unroll
          for (int e = 0; e < a[i].num_elements; ++e) a[i].x[e] = wmma::__float_to_tf32(a[i].x[e]);
        }
#pragma unroll
        for (int j = 0; j < T::kFragN; ++j) {
          wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, BLayout> b;
          const int col = warp_n * T::kWarpN + j * 16;
          if (kOp == GemmOp::Forward) wmma::load_matrix_sync(b, Bs + kk * T::kLdBF + col, T::kLdBF);
          else wmma::load_matrix_sync(b, Bs + col * T::kLdBW + kk, T::kLdBW);
#pragma unroll
          for (int e = 0; e < b.num_elements; ++e) b.x[e] = wmma::__float_to_tf32(b.x[e]);
#pragma unroll
          for (int i = 0; i < T::kFragM; ++i) wmma::mma_sync(acc_tc[i][j], a[i], b, acc_tc[i][j]);
        }
      }
#endif
    } else {
#pragma unroll 8
      for (int kk = 0; kk < kBK; ++kk) {
        float av[T::kThreadM], bv[T::kThreadN];
#pragma unroll
        for (int i = 0; i < T::kThreadM; ++i) av[i] = As[(ty + 16 * i) * T::kLdA + kk];
#pragma unroll
        for (int j = 0; j < T::kThreadN; ++j)
          bv[j] = kOp == GemmOp::Forward ? Bs[kk * T::kLdBF + tx + 16 * j] : Bs[(tx + 16 * j) * T::kLdBW + kk];
#pragma unroll
        for (int i = 0; i < T::kThreadM; ++i)
#pragma unroll
          for (int j = 0; j < T::kThreadN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
    }
  }
  async_wait<0>();
  __syncthreads();  // the pipeline's shared memory becomes the C tile

  float* const Cs = smem;
  float* const filter_scale = smem + T::BM * T::kLdC;
  float* const filter_shift = filter_scale + T::BM;
  if (kTensorCores) {
#if DN_SM80
#pragma unroll
    for (int i = 0; i < T::kFragM; ++i)
#pragma unroll
      for (int j = 0; j < T::kFragN; ++j)
        wmma::store_matrix_sync(Cs + (warp_m * T::kWarpM + i * 16) * T::kLdC + warp_n * T::kWarpN + j * 16,
                                acc_tc[i][j], T::kLdC, wmma::mem_row_major);
#endif
  } else {
#pragma unroll
    for (int i = 0; i < T::kThreadM; ++i)
#pragma unroll
      for (int j = 0; j < T::kThreadN; ++j) Cs[(ty + 16 * i) * T::kLdC + tx + 16 * j] = acc[i][j];
  }
  const bool to_partial = p.ep.partial != nullptr;
  if (!to_partial && !p.ep.accumulate && tid < T::BM && m0 + tid < p.M)
    filter_affine(p.ep, g * p.M + m0 + tid, filter_scale + tid, filter_shift + tid);
  __syncthreads();

  // Batch statistics of the raw sums (the training forward of a batch-norm layer): a warp per
  // row of the tile, lanes along n, double sums; written per (filter, column tile).
  if (p.ep.stats && !to_partial) {
    const int warp_id = tid / 32, lane = tid % 32;
    for (int m = warp_id; m < T::BM; m += kGemmThreads / 32) {
      double sum = 0, squares = 0;
      for (int n = lane; n < T::BN; n += 32)
        if (n0 + n < p.N) {
          const double v = Cs[m * T::kLdC + n];
          sum += v;
          squares += v * v;
        }
      sum = warp_sum(sum);
      squares = warp_sum(squares);
      if (lane == 0 && m0 + m < p.M) {
        double* o = p.ep.stats + (((size_t)g * p.M + m0 + m) * gridDim.x + blockIdx.x) * 2;
        o[0] = sum;
        o[1] = squares;
      }
    }
  }

  // Consecutive threads take consecutive n: coalesced stores along the pixels (or weight rows).
  for (int e = tid; e < T::BM * T::BN; e += kGemmThreads) {
    const int m = e / T::BN, n = e - m * T::BN;
    const int gm = m0 + m, gn = n0 + n;
    if (gm >= p.M || gn >= p.N) continue;
    const float sum = Cs[m * T::kLdC + n];
    if (to_partial) p.ep.partial[(((size_t)g * p.splits + split) * p.M + gm) * p.N + gn] = sum;
    else if (p.ep.accumulate) store_final(p, g * p.M + gm, gn, sum, 1.f, 0.f);
    else store_final(p, g * p.M + gm, gn, sum, filter_scale[m], filter_shift[m]);
  }
}


// ------------------------------------------------------------ planning (host)
inline int tile_rows(int M) {
  return M <= TileSmall::BM ? TileSmall::BM : M <= TileMedium::BM ? TileMedium::BM : TileLarge::BM;
}

// Split K when the tiles alone would leave most multiprocessors idle: about two blocks per
// multiprocessor, each split at least kMinTilesPerSplit k tiles, at most max_splits splits.
constexpr int kMinTilesPerSplit = 4;
constexpr int kForwardMaxSplits = 32, kWeightGradientMaxSplits = 256;
inline int choose_splits(size_t tiles, int K, int multiprocessors, int max_splits) {
  const size_t target = 2 * (size_t)multiprocessors;
  if (tiles >= (size_t)multiprocessors || K < 2 * kMinTilesPerSplit * kBK) return 1;
  const size_t by_fill = (target + tiles - 1) / tiles;
  const size_t by_k = (size_t)K / (kMinTilesPerSplit * kBK);
  return (int)std::max<size_t>(1, std::min<size_t>({by_fill, by_k, (size_t)max_splits}));
}

struct GemmLaunch {
  int tile_rows = 0;
  unsigned grid_x = 0, grid_y = 0, grid_z = 0;
  size_t partial_floats = 0;  // split-K scratch (0: not split)
};

// Sets p.splits and p.k_split and returns the launch geometry; throws DarknetError for
// problems beyond the grid or 32-bit in-image offsets.
inline GemmLaunch plan_gemm(ImplicitGemm& p, int multiprocessors, int max_splits) {
  check(p.M > 0 && p.N > 0 && p.K > 0, "implicit GEMM (CUDA): empty problem ", p.M, " x ", p.N, " x ", p.K);
  check((size_t)p.c * p.h * p.w < ((size_t)1 << 31) && (size_t)p.groups * p.M * p.out_h * p.out_w < ((size_t)1 << 31),
        "implicit GEMM (CUDA): one image's maps exceed 2^31 floats");
  GemmLaunch l;
  l.tile_rows = tile_rows(p.M);
  l.grid_x = (unsigned)((p.N + TileLarge::BN - 1) / TileLarge::BN);
  l.grid_y = (unsigned)((p.M + l.tile_rows - 1) / l.tile_rows);
  check(l.grid_y <= 65535u, "implicit GEMM (CUDA): ", p.M, " rows exceed the grid limit");
  p.splits = choose_splits((size_t)l.grid_x * l.grid_y * p.groups, p.K, multiprocessors, max_splits);
  p.k_split = ((p.K + p.splits - 1) / p.splits + kBK - 1) / kBK * kBK;
  p.splits = (p.K + p.k_split - 1) / p.k_split;
  check((size_t)p.groups * p.splits <= 65535u, "implicit GEMM (CUDA): ", p.groups, " groups x ", p.splits,
        " splits exceed the grid limit");
  l.grid_z = (unsigned)(p.groups * p.splits);
  l.partial_floats = p.splits > 1 ? (size_t)p.groups * p.splits * p.M * p.N : 0;
  return l;
}

// ------------------------------------------------------------ the three problems of a conv
// Forward of convolution s over input: out = the NCHW map; the caller sets the epilogue's
// arithmetic (raw sums by default).
inline ImplicitGemm forward_gemm(const ConvShape& s, const float* input, const float* weights, float* out) {
  ImplicitGemm p;
  p.batch = s.batch, p.c = s.c, p.h = s.h, p.w = s.w, p.size = s.size, p.stride = s.stride, p.pad = s.pad;
  p.out_h = s.out_h, p.out_w = s.out_w, p.groups = s.groups;
  p.M = s.filters / s.groups;
  p.N = s.batch * s.out_h * s.out_w;
  p.K = (s.c / s.groups) * s.size * s.size;
  p.a = weights;
  p.image = input;
  p.ep.out = out;
  p.ep.to_map = true;
  p.ep.ohw = s.out_h * s.out_w;
  return p;
}

// weight_updates += delta * im2col(input)^T over the whole batch.
inline ImplicitGemm weight_gradient_gemm(const ConvShape& s, const float* input, const float* delta,
                                         float* weight_updates) {
  ImplicitGemm p;
  p.batch = s.batch, p.c = s.c, p.h = s.h, p.w = s.w, p.size = s.size, p.stride = s.stride, p.pad = s.pad;
  p.out_h = s.out_h, p.out_w = s.out_w, p.groups = s.groups;
  p.M = s.filters / s.groups;
  p.N = (s.c / s.groups) * s.size * s.size;
  p.K = s.batch * s.out_h * s.out_w;
  p.a = delta;
  p.image = input;
  p.ep.out = weight_updates;
  p.ep.to_map = false;
  p.ep.accumulate = true;
  return p;
}

// The input gradient as a forward convolution applies to stride-1 'same' ungrouped
// convolutions (1x1 included).
inline bool input_gradient_as_forward(const ConvShape& s) {
  return s.groups == 1 && s.stride == 1 && s.size % 2 == 1 && s.pad == s.size / 2 && s.out_h == s.h &&
         s.out_w == s.w;
}
// prev_delta += the convolution of delta with `flipped` (flip_transpose_filters of the weights).
inline ImplicitGemm input_gradient_gemm(const ConvShape& s, const float* delta, const float* flipped,
                                        float* prev_delta) {
  ImplicitGemm p;
  p.batch = s.batch, p.c = s.filters, p.h = s.out_h, p.w = s.out_w, p.size = s.size, p.stride = 1;
  p.pad = s.size / 2, p.out_h = s.h, p.out_w = s.w, p.groups = 1;
  p.M = s.c;
  p.N = s.batch * s.h * s.w;
  p.K = s.filters * s.size * s.size;
  p.a = flipped;
  p.image = delta;
  p.ep.out = prev_delta;
  p.ep.to_map = true;
  p.ep.ohw = s.h * s.w;
  p.ep.accumulate = true;
  return p;
}

}  // namespace cuda
}  // namespace dn
