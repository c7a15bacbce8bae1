#include "kernels/conv_fast.hpp"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.hpp"
#include "kernels/batchnorm.hpp"
#include "kernels/gemm.hpp"
#include "kernels/im2col.hpp"
#include "kernels/pool.hpp"
#include "kernels/simd_avx2.hpp"

namespace dn {

void fold_batchnorm(int filters, const float* biases, const float* scales, const float* mean, const float* var,
                    std::vector<float>& out_scale, std::vector<float>& out_bias) {
  out_bias.assign(biases, biases + filters);
  if (!scales) {
    out_scale.clear();
    return;
  }
  out_scale.resize(filters);
  for (int f = 0; f < filters; ++f) {
    const float s = bn_folded_scale(scales[f], var[f]);
    out_scale[f] = s;
    out_bias[f] = bn_folded_bias(biases[f], mean[f], s);
  }
}

namespace {
// Columns [j0, j0+nr) of rows [k0, k0+kc) of one image's virtual im2col matrix into dst (row
// stride `stride`); nothing past column nr is touched.
void pack_im2col_columns(const ConvShape& s, const float* image, int k0, int kc, int j0, int nr, int stride,
                         float* dst) {
  const int ksz = s.size * s.size;
  const int oy0 = j0 / s.out_w, ox0 = j0 % s.out_w;
  for (int kk = 0; kk < kc; ++kk) {
    const int k = k0 + kk;
    const int ch = k / ksz, r = k % ksz, ky = r / s.size, kx = r % s.size;
    const float* plane = image + (size_t)ch * s.h * s.w;
    float* d = dst + (size_t)kk * stride;
    int oy = oy0, ox = ox0, j = 0;
    while (j < nr) {
      const int seg = std::min(nr - j, s.out_w - ox);
      const int iy = oy * s.stride - s.pad + ky;
      float* out = d + j;
      if (iy < 0 || iy >= s.h) {
        std::memset(out, 0, sizeof(float) * seg);
      } else {
        const float* row = plane + (size_t)iy * s.w;
        if (s.stride == 1) {
          const int ix0 = ox - s.pad + kx;  // column t reads row[ix0 + t]
          const int lo = std::min(seg, std::max(0, -ix0));
          const int hi = std::max(lo, std::min(seg, s.w - ix0));
          for (int t = 0; t < lo; ++t) out[t] = 0.f;
          if (hi > lo) std::memcpy(out + lo, row + ix0 + lo, sizeof(float) * (hi - lo));
          for (int t = hi; t < seg; ++t) out[t] = 0.f;
        } else {
          for (int t = 0; t < seg; ++t) {
            const int ix = (ox + t) * s.stride - s.pad + kx;
            out[t] = (ix >= 0 && ix < s.w) ? row[ix] : 0.f;
          }
        }
      }
      j += seg;
      ox += seg;
      if (ox == s.out_w) {
        ox = 0;
        ++oy;
      }
    }
  }
}
}  // namespace

void pack_im2col_panel(const ConvShape& s, const float* image, int k0, int kc, int j0, int nr, int width,
                       float* dst) {
  pack_im2col_columns(s, image, k0, kc, j0, nr, width, dst);
  for (int kk = 0; kk < kc; ++kk)
    for (int t = nr; t < width; ++t) dst[(size_t)kk * width + t] = 0.f;
}

void check_fused_pool(const char* kernel, const ConvShape& s, const ConvEpilogue& ep) {
  check(!ep.maxpool2x2 || (s.out_h % 2 == 0 && s.out_w % 2 == 0 && !ep.accumulate), kernel,
        ": the fused 2x2 max pool needs an even output (", s.out_h, "x", s.out_w, ") and no accumulation");
}

// ---------------------------------------------------------------- direct 3x3, few channels
namespace {

// Rows [first, first + count) of each of the c planes of an h x w image into dst as count
// rows of w + 2 with a zero column each side (plane stride plane_rows * (w + 2)); rows
// outside the image are zeros (3x3, pad 1).
void pad_rows(const float* image, int c, int h, int w, int first, int count, int plane_rows, float* dst) {
  const size_t wp = (size_t)w + 2;
  for (int ch = 0; ch < c; ++ch) {
    const float* src = image + (size_t)ch * h * w;
    float* plane = dst + (size_t)ch * plane_rows * wp;
    for (int r = 0; r < count; ++r) {
      float* row = plane + (size_t)r * wp;
      const int y = first + r;
      if (y < 0 || y >= h) {
        std::fill(row, row + wp, 0.f);
        continue;
      }
      row[0] = row[wp - 1] = 0.f;
      std::memcpy(row + 1, src + (size_t)y * w, sizeof(float) * w);
    }
  }
}

// One band of the direct kernel: RB filters x NJ*8 consecutive output pixels of one row.
// B is never packed: row k of the virtual im2col matrix is the zero-padded input at
// koff[k] (channel, tap row, tap column) past the output row's origin, contiguous along x.
struct DirectBand {
  const float* a;     // weights of the strip's first filter, row stride lda (= K)
  int lda, K;
  const int* koff;    // K offsets into the padded input
  const float* b;     // padded input at the output row's first pixel
  float* c;           // output at (strip's first filter, row, 0); filter stride ldc
  size_t ldc;
  int mv;             // valid filters in the strip (<= 8)
  int width;          // output pixels in the row
  const float* scale; // at the strip's first filter, or null
  const float* bias;
  Activation act;
  bool accumulate;    // add to the output (the epilogue is then the identity)
};

template <int RB, int NJ>
__attribute__((target("avx2,fma"), always_inline)) inline void direct_band_store(const DirectBand& t, int i0, int j0,
                                                                                 __m256 (&acc)[RB][NJ]);

template <int RB, int NJ>
__attribute__((target("avx2,fma"))) inline void direct_band(const DirectBand& t, int i0, int j0) {
  __m256 acc[RB][NJ];
#pragma GCC unroll 8
  for (int i = 0; i < RB; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NJ; ++j) acc[i][j] = _mm256_setzero_ps();
  const float* ap[RB];
#pragma GCC unroll 8
  for (int i = 0; i < RB; ++i) ap[i] = t.a + (size_t)std::min(i0 + i, t.mv - 1) * t.lda;
  const float* b = t.b + j0;
  // K = 9c: the three taps of a kernel row sit at consecutive offsets, so one offset-table
  // read serves three steps with constant displacements (fewer instructions per FMA).
  for (int k = 0; k < t.K; k += 3) {
    const float* bk = b + t.koff[k];
#pragma GCC unroll 3
    for (int u = 0; u < 3; ++u) {
      __m256 bv[NJ];
#pragma GCC unroll 4
      for (int j = 0; j < NJ; ++j) bv[j] = _mm256_loadu_ps(bk + u + 8 * j);
#pragma GCC unroll 8
      for (int i = 0; i < RB; ++i) {
        const __m256 x = _mm256_broadcast_ss(ap[i] + k + u);
#pragma GCC unroll 4
        for (int j = 0; j < NJ; ++j) acc[i][j] = _mm256_fmadd_ps(x, bv[j], acc[i][j]);
      }
    }
  }
  direct_band_store<RB, NJ>(t, i0, j0, acc);
}

// The 4 x 24 band as hand-scheduled code: per tap the three input vectors are held and each
// weight is broadcast once for its three FMAs (12 accumulators + 3 inputs + 1 broadcast = the
// 16 ymm registers; GCC's allocation of the intrinsics above spills an accumulator every step
// and stalls on the reload). Kernel lab, 1 thread, the band time over the (unchanged)
// filter-vector time in the same runs, two runs each: 104x104 64->32 1.19-1.32 against
// 1.52-1.64 with the intrinsics, 52x52 64->64 1.29-1.37 against 1.61-1.72, 208x208 32->16
// 0.68-0.76 against 0.84-0.87, 416x416 3->16 0.60-0.63 against 0.68-0.81. The same products
// in the same k order, so the results are the intrinsics' bit for bit.
#define DN_BAND_TAP(U)                                  \
  "vmovups " #U "*4(%[b]), %%ymm12\n\t"                 \
  "vmovups " #U "*4+32(%[b]), %%ymm13\n\t"              \
  "vmovups " #U "*4+64(%[b]), %%ymm14\n\t"              \
  "vbroadcastss " #U "*4(%[w0]), %%ymm15\n\t"           \
  "vfmadd231ps %%ymm12, %%ymm15, %[a00]\n\t"            \
  "vfmadd231ps %%ymm13, %%ymm15, %[a01]\n\t"            \
  "vfmadd231ps %%ymm14, %%ymm15, %[a02]\n\t"            \
  "vbroadcastss " #U "*4(%[w1]), %%ymm15\n\t"           \
  "vfmadd231ps %%ymm12, %%ymm15, %[a10]\n\t"            \
  "vfmadd231ps %%ymm13, %%ymm15, %[a11]\n\t"            \
  "vfmadd231ps %%ymm14, %%ymm15, %[a12]\n\t"            \
  "vbroadcastss " #U "*4(%[w2]), %%ymm15\n\t"           \
  "vfmadd231ps %%ymm12, %%ymm15, %[a20]\n\t"            \
  "vfmadd231ps %%ymm13, %%ymm15, %[a21]\n\t"            \
  "vfmadd231ps %%ymm14, %%ymm15, %[a22]\n\t"            \
  "vbroadcastss " #U "*4(%[w3]), %%ymm15\n\t"           \
  "vfmadd231ps %%ymm12, %%ymm15, %[a30]\n\t"            \
  "vfmadd231ps %%ymm13, %%ymm15, %[a31]\n\t"            \
  "vfmadd231ps %%ymm14, %%ymm15, %[a32]\n\t"

template <>
__attribute__((target("avx2,fma"))) inline void direct_band<4, 3>(const DirectBand& t, int i0, int j0) {
  __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00, a20 = a00, a21 = a00,
         a22 = a00, a30 = a00, a31 = a00, a32 = a00;
  const float* w0 = t.a + (size_t)std::min(i0 + 0, t.mv - 1) * t.lda;
  const float* w1 = t.a + (size_t)std::min(i0 + 1, t.mv - 1) * t.lda;
  const float* w2 = t.a + (size_t)std::min(i0 + 2, t.mv - 1) * t.lda;
  const float* w3 = t.a + (size_t)std::min(i0 + 3, t.mv - 1) * t.lda;
  const float* b = t.b + j0;
  for (int k = 0; k < t.K; k += 3) {
    // vfmadd231ps x, w, acc in AT&T order: acc += w * x (the intrinsics' weight * input).
    asm(DN_BAND_TAP(0) DN_BAND_TAP(1) DN_BAND_TAP(2)
        : [a00] "+x"(a00), [a01] "+x"(a01), [a02] "+x"(a02), [a10] "+x"(a10), [a11] "+x"(a11), [a12] "+x"(a12),
          [a20] "+x"(a20), [a21] "+x"(a21), [a22] "+x"(a22), [a30] "+x"(a30), [a31] "+x"(a31), [a32] "+x"(a32)
        : [b] "r"(b + t.koff[k]), [w0] "r"(w0 + k), [w1] "r"(w1 + k), [w2] "r"(w2 + k), [w3] "r"(w3 + k)
        : "ymm12", "ymm13", "ymm14", "ymm15", "memory");
  }
  __m256 acc[4][3] = {{a00, a01, a02}, {a10, a11, a12}, {a20, a21, a22}, {a30, a31, a32}};
  direct_band_store<4, 3>(t, i0, j0, acc);
}
#undef DN_BAND_TAP

// The band's accumulators through the epilogue into the output (masked past the row's end).
template <int RB, int NJ>
__attribute__((target("avx2,fma"), always_inline)) inline void direct_band_store(const DirectBand& t, int i0, int j0,
                                                                                 __m256 (&acc)[RB][NJ]) {
  const int rows = std::min(RB, t.mv - i0);
#pragma GCC unroll 8
  for (int i = 0; i < RB; ++i) {
    if (i >= rows) break;
    float* c = t.c + (size_t)(i0 + i) * t.ldc + j0;
    const __m256 s = _mm256_set1_ps(t.scale ? t.scale[i0 + i] : 1.f);
    const __m256 bi = _mm256_set1_ps(t.bias ? t.bias[i0 + i] : 0.f);
#pragma GCC unroll 4
    for (int j = 0; j < NJ; ++j) {
      const int n = t.width - j0 - 8 * j;  // valid pixels of this vector
      if (n <= 0) break;
      __m256 v = activate_avx2(_mm256_fmadd_ps(acc[i][j], s, bi), t.act);
      if (n >= 8) {
        if (t.accumulate) v = _mm256_add_ps(_mm256_loadu_ps(c + 8 * j), v);
        _mm256_storeu_ps(c + 8 * j, v);
      } else {
        const __m256i mask = tail_mask_avx2(n);
        if (t.accumulate) v = _mm256_add_ps(_mm256_maskload_ps(c + 8 * j, mask), v);
        _mm256_maskstore_ps(c + 8 * j, mask, v);
      }
    }
  }
}

// One output row for the filters of strip [8s, 8s+8): 4 x 24 bands, the last 8 or 16
// pixels as 8 x 8 bands (as the GEMM's AVX2 tile).
__attribute__((target("avx2,fma"))) void direct_row_strip(const DirectBand& t) {
  int j0 = 0;
  while (j0 < t.width) {
    if (t.width - j0 > 16) {
      direct_band<4, 3>(t, 0, j0);
      if (t.mv > 4) direct_band<4, 3>(t, 4, j0);
      j0 += 24;
    } else {
      direct_band<8, 1>(t, 0, j0);
      j0 += 8;
    }
  }
}

// ---- The direct kernel with the roles swapped, for layers with few filters (AVX2): a block
// of FV*8 filters is the vector operand (the weights repacked k-major, [k][FV*8], which stays
// in L1: 18 KB for 16 channels and 32 filters) and PX consecutive pixels of the padded input
// are broadcast, so each input value is read once per block instead of once per 4 filters,
// and the input streams through once per block. The tile comes out pixel-major; 8 x 8
// register transposes write it back as NCHW rows with the epilogue. Every output is the same
// FMA chain in the same k order as direct_band's, so the results are bit-identical to it.
// Measured: the README's Performance section and the kernel lab's `direct` section.
template <int PX, int FV>
__attribute__((target("avx2,fma"))) inline void fv_tile(const float* in, size_t plane, int wp, int channels,
                                                         const float* wt, float* tile) {
  constexpr int FBW = FV * 8;
  __m256 acc[PX][FV];
#pragma GCC unroll 8
  for (int p = 0; p < PX; ++p)
#pragma GCC unroll 4
    for (int v = 0; v < FV; ++v) acc[p][v] = _mm256_setzero_ps();
  for (int c = 0; c < channels; ++c)
    for (int ky = 0; ky < 3; ++ky) {
      const float* r = in + c * plane + ky * wp;
      const float* w = wt + (size_t)((c * 3 + ky) * 3) * FBW;
      for (int kx = 0; kx < 3; ++kx)
#pragma GCC unroll 8
        for (int p = 0; p < PX; ++p) {
          const __m256 x = _mm256_broadcast_ss(r + kx + p);
#pragma GCC unroll 4
          for (int v = 0; v < FV; ++v) acc[p][v] = _mm256_fmadd_ps(_mm256_loadu_ps(w + kx * FBW + 8 * v), x, acc[p][v]);
        }
    }
#pragma GCC unroll 8
  for (int p = 0; p < PX; ++p)
#pragma GCC unroll 4
    for (int v = 0; v < FV; ++v) _mm256_store_ps(tile + p * FBW + 8 * v, acc[p][v]);
}

// The full tile, 3 pixels x 32 filters, as MLAS-style hand-scheduled code: per tap the three
// broadcasts are held and each weight vector is loaded once for its three FMAs (12
// accumulators + 3 broadcasts + 1 weight vector = the 16 ymm registers; GCC's allocation of
// the same intrinsics spills). 19 instructions per 12 FMAs.
#define DN_FV_TAP(KX)                                   \
  "vbroadcastss " #KX "*4(%[r]), %%ymm13\n\t"          \
  "vbroadcastss " #KX "*4+4(%[r]), %%ymm14\n\t"        \
  "vbroadcastss " #KX "*4+8(%[r]), %%ymm15\n\t"        \
  "vmovups " #KX "*128(%[w]), %%ymm12\n\t"             \
  "vfmadd231ps %%ymm13, %%ymm12, %[a00]\n\t"          \
  "vfmadd231ps %%ymm14, %%ymm12, %[a10]\n\t"          \
  "vfmadd231ps %%ymm15, %%ymm12, %[a20]\n\t"          \
  "vmovups " #KX "*128+32(%[w]), %%ymm12\n\t"          \
  "vfmadd231ps %%ymm13, %%ymm12, %[a01]\n\t"          \
  "vfmadd231ps %%ymm14, %%ymm12, %[a11]\n\t"          \
  "vfmadd231ps %%ymm15, %%ymm12, %[a21]\n\t"          \
  "vmovups " #KX "*128+64(%[w]), %%ymm12\n\t"          \
  "vfmadd231ps %%ymm13, %%ymm12, %[a02]\n\t"          \
  "vfmadd231ps %%ymm14, %%ymm12, %[a12]\n\t"          \
  "vfmadd231ps %%ymm15, %%ymm12, %[a22]\n\t"          \
  "vmovups " #KX "*128+96(%[w]), %%ymm12\n\t"          \
  "vfmadd231ps %%ymm13, %%ymm12, %[a03]\n\t"          \
  "vfmadd231ps %%ymm14, %%ymm12, %[a13]\n\t"          \
  "vfmadd231ps %%ymm15, %%ymm12, %[a23]\n\t"

template <>
__attribute__((target("avx2,fma"))) inline void fv_tile<3, 4>(const float* in, size_t plane, int wp, int channels,
                                                               const float* wt, float* tile) {
  __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00,
         a20 = a00, a21 = a00, a22 = a00, a23 = a00;
  const float* w = wt;
  for (int c = 0; c < channels; ++c) {
    const float* r = in + c * plane;
    for (int ky = 0; ky < 3; ++ky, r += wp, w += 3 * 32) {
      // vfmadd231ps a, b, c in AT&T order: c += b * a, i.e. acc += weights * input (direct_band's product).
      asm(DN_FV_TAP(0) DN_FV_TAP(1) DN_FV_TAP(2)
          : [a00] "+x"(a00), [a01] "+x"(a01), [a02] "+x"(a02), [a03] "+x"(a03), [a10] "+x"(a10), [a11] "+x"(a11),
            [a12] "+x"(a12), [a13] "+x"(a13), [a20] "+x"(a20), [a21] "+x"(a21), [a22] "+x"(a22), [a23] "+x"(a23)
          : [r] "r"(r), [w] "r"(w)
          : "ymm12", "ymm13", "ymm14", "ymm15", "memory");
    }
  }
  const __m256 acc[12] = {a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23};
#pragma GCC unroll 12
  for (int q = 0; q < 12; ++q) _mm256_store_ps(tile + 8 * q, acc[q]);
}
#undef DN_FV_TAP

// One output row of one filter block (or, pooled, the 2x2 max pool of two): the input,
// weights and output of fv_row.
struct FvRow {
  const float* in;     // padded input at the (first) output row's origin
  size_t plane;        // floats per padded channel plane
  int wp, channels, width;
  const float* wt;     // the block's repacked weights [9 * channels][FV * 8]
  float* out;          // output at (the block's first filter, row, 0); filter stride ldc
  size_t ldc;
  int filters;         // valid filters in the block
  const float* scale;  // at the block's first filter, or null
  const float* bias;
  Activation act;
  bool accumulate;
  bool pool;           // rows y and y + 1 (in + wp), written as one pooled row (width / 2)
};

// The tiles of n consecutive output pixels of one row, pixel-major, into tiles[n][FV * 8].
template <int FV>
__attribute__((target("avx2,fma"))) inline void fv_tiles(const FvRow& t, const float* in, int n, float* tiles) {
  constexpr int FBW = FV * 8, PX = 3;
  int p = 0;
  for (; p + PX <= n; p += PX) fv_tile<PX, FV>(in + p, t.plane, t.wp, t.channels, t.wt, tiles + p * FBW);
  switch (n - p) {  // the row's last 1..PX-1 pixels
    case 1: fv_tile<1, FV>(in + p, t.plane, t.wp, t.channels, t.wt, tiles + p * FBW); break;
    case 2: fv_tile<2, FV>(in + p, t.plane, t.wp, t.channels, t.wt, tiles + p * FBW); break;
    default: break;
  }
}

template <int FV>
__attribute__((target("avx2,fma"))) void fv_row(const FvRow& t) {
  // Chunks of up to 96 pixels (a multiple of 3 and of 16): the tiles fill `tiles` (and
  // `tiles2` for the second row of a pool) pixel-major, where the epilogue is per-filter
  // vectors and the 2x2 pool is a vertical max of four pixel vectors, no shuffles; the
  // transposes then fill `rows` filter-major, and each filter's output row is written as one
  // contiguous run (transposing straight into the output wrote 32 rows 32 bytes at a time
  // and cost a third of the layer's time).
  constexpr int FBW = FV * 8, kChunk = 96;
  // 48 KB per thread, kept off the stack (a host thread's stack may be small) and reused.
  static thread_local std::vector<float> scratch;
  if (scratch.size() < (size_t)3 * kChunk * FBW + 8) scratch.resize((size_t)3 * kChunk * FBW + 8);
  float* tiles = scratch.data() + ((32 - reinterpret_cast<uintptr_t>(scratch.data()) % 32) % 32) / sizeof(float);
  float* tiles2 = tiles + kChunk * FBW;
  float* rows = tiles2 + kChunk * FBW;
  // The block's scale and bias as filter vectors (identity past its last filter).
  alignas(32) float scale[FBW], bias[FBW];
  for (int f = 0; f < FBW; ++f) {
    scale[f] = t.scale && f < t.filters ? t.scale[f] : 1.f;
    bias[f] = t.bias && f < t.filters ? t.bias[f] : 0.f;
  }
  const __m256 lowest = _mm256_set1_ps(-FLT_MAX);
  for (int x0 = 0; x0 < t.width; x0 += kChunk) {
    const int n = std::min(kChunk, t.width - x0);
    // The n pixels' tiles of one row at `in`, through the epilogue unless accumulating.
    auto row_tiles = [&](const float* in, float* tl) __attribute__((always_inline, target("avx2,fma"))) {
      fv_tiles<FV>(t, in, n, tl);
      if (t.accumulate) return;
      for (int p = 0; p < n; ++p)
#pragma GCC unroll 4
        for (int v = 0; v < FV; ++v) {
          float* q = tl + p * FBW + 8 * v;
          const __m256 y = _mm256_fmadd_ps(_mm256_load_ps(q), _mm256_load_ps(scale + 8 * v), _mm256_load_ps(bias + 8 * v));
          _mm256_store_ps(q, activate_avx2(y, t.act));
        }
    };
    row_tiles(t.in + x0, tiles);
    if (t.pool) row_tiles(t.in + t.wp + x0, tiles2);
    int out_n = n;
    if (t.pool) {
      // Darknet's scan order (row y even, odd; row y + 1 even, odd) from -FLT_MAX, as the
      // maxpool layer's kernel (vmaxps keeps its second operand on ties and NaNs).
      out_n = n / 2;
      for (int q = 0; q < out_n; ++q)
#pragma GCC unroll 4
        for (int v = 0; v < FV; ++v) {
          const int e = 2 * q * FBW + 8 * v, o = e + FBW;
          __m256 m = _mm256_max_ps(_mm256_load_ps(tiles + e), lowest);
          m = _mm256_max_ps(_mm256_load_ps(tiles + o), m);
          m = _mm256_max_ps(_mm256_load_ps(tiles2 + e), m);
          m = _mm256_max_ps(_mm256_load_ps(tiles2 + o), m);
          _mm256_store_ps(tiles + q * FBW + 8 * v, m);
        }
    }
    // Pixels out_n..out_n+7 of the last block are stale tile values, stored to `rows` but never out.
    for (int xb = 0; xb < out_n; xb += 8)
      for (int v = 0; v < FV && 8 * v < t.filters; ++v) {
        __m256 r[8];
#pragma GCC unroll 8
        for (int q = 0; q < 8; ++q) r[q] = _mm256_load_ps(tiles + (xb + q) * FBW + 8 * v);
        transpose8x8_avx2(r);
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) _mm256_store_ps(rows + (8 * v + j) * kChunk + xb, r[j]);
      }
    const int ox0 = t.pool ? x0 / 2 : x0;
    for (int f = 0; f < t.filters; ++f) {
      const float* src = rows + f * kChunk;
      float* c = t.out + (size_t)f * t.ldc + ox0;
      for (int x = 0; x < out_n; x += 8) {
        __m256 y = _mm256_load_ps(src + x);
        if (out_n - x >= 8) {
          if (t.accumulate) y = _mm256_add_ps(_mm256_loadu_ps(c + x), y);
          _mm256_storeu_ps(c + x, y);
        } else {
          const __m256i mask = tail_mask_avx2(out_n - x);
          if (t.accumulate) y = _mm256_add_ps(_mm256_maskload_ps(c + x, mask), y);
          _mm256_maskstore_ps(c + x, mask, y);
        }
      }
    }
  }
}

}  // namespace

bool conv3x3_direct_applicable(CpuIsa isa, const ConvShape& s) {
  return isa != CpuIsa::Plain && s.size == 3 && s.stride == 1 && s.pad == 1 && s.groups == 1 && s.out_h == s.h &&
         s.out_w == s.w &&
         (s.c <= kDirectMaxChannels ||
          (isa == CpuIsa::Avx2 && s.c <= kDirectFewFiltersMaxChannels && s.filters <= kDirectFewFiltersMax));
}

void conv3x3_direct(CpuIsa isa, const ConvShape& s, const float* input, const float* weights, const ConvEpilogue& ep,
                    float* output, DirectVariant variant) {
  check(conv3x3_direct_applicable(isa, s), "conv3x3_direct: not a 3x3 stride-1 pad-1 ungrouped convolution with at most ",
        kDirectMaxChannels, " channels on AVX2");
  require_cpu_isa(isa);
  check(variant != DirectVariant::FilterVectors || s.filters <= kDirectFilterVectorMaxFilters,
        "conv3x3_direct: the filter-vector kernel takes at most ", kDirectFilterVectorMaxFilters, " filters");
  check_fused_pool("conv3x3_direct", s, ep);
  const bool pool = ep.maxpool2x2;
  const bool filter_vectors = variant == DirectVariant::Auto
                                  ? s.filters > 16 && s.filters <= kDirectFilterVectorMaxFilters && s.c >= 8
                                  : variant == DirectVariant::FilterVectors;
  const int wp = s.w + 2, K = s.c * 9;
  const size_t out_plane = (size_t)s.out_h * s.out_w;
  const int threads = std::max(1, omp_get_max_threads());
  // Each thread takes an equal share of the output rows (row pairs when pooling) and walks it
  // in chunks of R rows, padding only the chunk's input rows (R + 2) into its own buffer of
  // about 192 KB, which stays in L2 while the chunk's rows read it: one pass over the input
  // instead of a whole padded copy that the kernel then streams back from L3 (208x208 16->32,
  // 1 thread: 0.85x the time). R is even when the pool is fused, so pairs never straddle chunks.
  int rows = (int)std::clamp<long>(kDirectChunkFloats / ((long)s.c * wp) - 2, 2, 16);
  if (pool) rows &= ~1;
  const int unit = pool ? 2 : 1, units = s.out_h / unit;
  const size_t plane = (size_t)(rows + 2) * wp;
  // Bands: the offset of each row of the virtual im2col matrix in a chunk's padded rows.
  std::vector<int> koff;
  const int strips = (s.filters + 7) / 8;
  // Filter vectors: blocks of 32 filters, the weights repacked [block][K][32], zero past the
  // last filter (this thread's buffer: inside the region wt_buf is each thread's own).
  constexpr int fbw = 32;
  const int blocks = (s.filters + fbw - 1) / fbw;
  static thread_local std::vector<float> wt_buf;
  if (filter_vectors) {
    wt_buf.assign((size_t)blocks * K * fbw, 0.f);
    for (int f = 0; f < s.filters; ++f)
      for (int k = 0; k < K; ++k) wt_buf[((size_t)(f / fbw) * K + k) * fbw + f % fbw] = weights[(size_t)f * K + k];
  } else {
    koff.resize(K);
    for (int c = 0; c < s.c; ++c)
      for (int ky = 0; ky < 3; ++ky)
        for (int kx = 0; kx < 3; ++kx) koff[c * 9 + ky * 3 + kx] = (int)(c * plane + ky * wp + kx);
  }
  const float* wt = wt_buf.data();
  // One output row from the padded rows at `in` (the row above it first) into `out` (filter
  // stride ldc), every filter; filter vectors can pool two rows into one as they go.
  auto conv_row = [&](const float* in, float* out, size_t ldc, bool pool_pair) {
    if (filter_vectors) {
      for (int blk = 0; blk < blocks; ++blk) {
        FvRow t;
        t.in = in;
        t.plane = plane;
        t.wp = wp;
        t.channels = s.c;
        t.width = s.out_w;
        t.wt = wt + (size_t)blk * K * fbw;
        t.out = out + (size_t)blk * fbw * ldc;
        t.ldc = ldc;
        t.filters = std::min(fbw, s.filters - blk * fbw);
        t.scale = ep.scale ? ep.scale + blk * fbw : nullptr;
        t.bias = ep.bias ? ep.bias + blk * fbw : nullptr;
        t.act = ep.act;
        t.accumulate = ep.accumulate;
        t.pool = pool_pair;
        fv_row<fbw / 8>(t);
      }
      return;
    }
    for (int st = 0; st < strips; ++st) {
      DirectBand t;
      t.a = weights + (size_t)st * 8 * K;
      t.lda = K;
      t.K = K;
      t.koff = koff.data();
      t.b = in;
      t.c = out + (size_t)st * 8 * ldc;
      t.ldc = ldc;
      t.mv = std::min(8, s.filters - st * 8);
      t.width = s.out_w;
      t.scale = ep.scale ? ep.scale + st * 8 : nullptr;
      t.bias = ep.bias ? ep.bias + st * 8 : nullptr;
      t.act = ep.act;
      t.accumulate = ep.accumulate;
      direct_row_strip(t);
    }
  };
  const int pooled_w = s.out_w / 2;
  const size_t pooled_plane = out_plane / 4;
  for (int b = 0; b < s.batch; ++b) {
    const float* img = input + (size_t)b * s.c * s.h * s.w;
    float* out = output + (size_t)b * s.filters * (pool ? pooled_plane : out_plane);
#pragma omp parallel num_threads(threads)
    {
      const int team = omp_get_num_threads(), me = omp_get_thread_num();
      const int first = (int)((long)units * me / team) * unit, last = (int)((long)units * (me + 1) / team) * unit;
      // 24 floats of slack: a row's last band reads past its end.
      static thread_local std::vector<float> padded_buf, pair_buf;
      const size_t need = (size_t)s.c * plane + 24;
      if (padded_buf.size() < need) padded_buf.assign(need, 0.f);
      float* padded = padded_buf.data();
      for (int y0 = first; y0 < last; y0 += rows) {
        const int y1 = std::min(last, y0 + rows);
        pad_rows(img, s.c, s.h, s.w, y0 - 1, y1 - y0 + 2, rows + 2, padded);
        if (!pool) {
          for (int y = y0; y < y1; ++y)
            conv_row(padded + (size_t)(y - y0) * wp, out + (size_t)y * s.out_w, out_plane, false);
          continue;
        }
        // The conv's own output never goes to memory: filter vectors pool each row pair in
        // their tiles; bands write the pair into this thread's [filters][2][out_w] buffer.
        if (filter_vectors) {
          for (int y = y0; y < y1; y += 2)
            conv_row(padded + (size_t)(y - y0) * wp, out + (size_t)(y / 2) * pooled_w, pooled_plane, true);
          continue;
        }
        if (pair_buf.size() < (size_t)s.filters * 2 * s.out_w) pair_buf.resize((size_t)s.filters * 2 * s.out_w);
        float* pair = pair_buf.data();
        for (int y = y0; y < y1; y += 2) {
          conv_row(padded + (size_t)(y - y0) * wp, pair, 2 * (size_t)s.out_w, false);
          conv_row(padded + (size_t)(y + 1 - y0) * wp, pair + s.out_w, 2 * (size_t)s.out_w, false);
          for (int f = 0; f < s.filters; ++f) {
            const float* r0 = pair + (size_t)f * 2 * s.out_w;
            maxpool2x2_row(isa, r0, r0 + s.out_w, out + f * pooled_plane + (size_t)(y / 2) * pooled_w, pooled_w);
          }
        }
      }
    }
  }
}

namespace {
// Maps below this many pixels fold the batch into N. Measured (alternated processes, 2 threads,
// inference forward): 5x5 0.85x the time, 7x7 0.75x, 9x9 and 10x10 even, 13x13 1.1-1.27x (slower).
constexpr int kFoldForwardMaxSpatial = 100;
constexpr size_t kFoldForwardMaxOutput = 4u << 20;    // floats of the folded output per GEMM (16 MB)

// Small maps: the images side by side as one GEMM (N = images x pixels), so the weights (A)
// are streamed once per B block instead of once per image, and B panels are not mostly
// padding (a 5x5 map fills 25 of a 32-float panel); the result is scattered to NCHW.
void conv_forward_folded(CpuIsa isa, const ConvShape& s, const float* input, const float* weights,
                         const ConvEpilogue& ep, float* output) {
  const int spatial = s.out_w * s.out_h, m = s.filters, k = s.size * s.size * s.c;
  const bool direct = s.size == 1 && s.stride == 1 && s.pad == 0;
  const size_t in_image = (size_t)s.c * s.h * s.w, out_image = (size_t)m * spatial;
  const int per = (int)std::max<size_t>(1, std::min<size_t>(s.batch, kFoldForwardMaxOutput / out_image));
  static thread_local std::vector<float> folded_buf;  // [m][per * spatial]
  if (folded_buf.size() < per * out_image) folded_buf.resize(per * out_image);
  float* folded = folded_buf.data();
  GemmEpilogue e;
  e.scale = ep.scale;
  e.bias = ep.bias;
  e.act = ep.act;
  for (int b0 = 0; b0 < s.batch; b0 += per) {
    const int n = std::min(per, s.batch - b0), N = n * spatial;
    const float* images = input + b0 * in_image;
    PackB pack = [=, &s](int k0, int kc, int j0, int nr, int width, float* dst) {
      int j = j0;
      while (j < j0 + nr) {  // one segment per image the panel spans
        const int img = j / spatial, p = j % spatial, seg = std::min(j0 + nr - j, spatial - p);
        const float* im = images + img * in_image;
        if (direct) {
          for (int kk = 0; kk < kc; ++kk)
            std::memcpy(dst + (size_t)kk * width + (j - j0), im + (size_t)(k0 + kk) * spatial + p, sizeof(float) * seg);
        } else {
          pack_im2col_columns(s, im, k0, kc, p, seg, width, dst + (j - j0));
        }
        j += seg;
      }
      for (int kk = 0; kk < kc; ++kk)
        for (int t = nr; t < width; ++t) dst[(size_t)kk * width + t] = 0.f;
    };
    gemm_packed(isa, m, N, k, weights, k, 1, pack, folded, N, false, &e);
    float* out = output + b0 * out_image;
#pragma omp parallel for collapse(2) schedule(static)
    for (int img = 0; img < n; ++img)
      for (int i = 0; i < m; ++i) {
        const float* src = folded + (size_t)i * N + (size_t)img * spatial;
        float* dst = out + img * out_image + (size_t)i * spatial;
        if (ep.accumulate)
          for (int t = 0; t < spatial; ++t) dst[t] += src[t];
        else
          std::memcpy(dst, src, sizeof(float) * spatial);
      }
  }
}
}  // namespace

void conv_forward_fast(CpuIsa isa, const ConvShape& s, const float* input, const float* weights,
                       const ConvEpilogue& ep, float* output) {
  if (conv3x3_direct_applicable(isa, s)) return conv3x3_direct(isa, s, input, weights, ep, output);
  if (s.groups == 1 && s.batch > 1 && s.out_w * s.out_h < kFoldForwardMaxSpatial)
    return conv_forward_folded(isa, s, input, weights, ep, output);
  const int spatial = s.out_w * s.out_h;
  const int cg = s.c / s.groups;
  const int m = s.filters / s.groups;
  const int k = s.size * s.size * cg;
  const bool direct = s.size == 1 && s.stride == 1 && s.pad == 0;
  for (int b = 0; b < s.batch; ++b)
    for (int g = 0; g < s.groups; ++g) {
      const float* a = weights + (size_t)g * m * k;
      const float* im = input + ((size_t)b * s.groups + g) * cg * s.h * s.w;
      float* out = output + ((size_t)b * s.groups + g) * m * spatial;
      GemmEpilogue e;
      e.scale = ep.scale ? ep.scale + (size_t)g * m : nullptr;
      e.bias = ep.bias ? ep.bias + (size_t)g * m : nullptr;
      e.act = ep.act;
      PackB pack;
      if (direct) {
        pack = [=](int k0, int kc, int j0, int nr, int width, float* dst) {
          for (int kk = 0; kk < kc; ++kk) {
            float* d = dst + (size_t)kk * width;
            std::memcpy(d, im + (size_t)(k0 + kk) * spatial + j0, sizeof(float) * nr);
            for (int t = nr; t < width; ++t) d[t] = 0.f;
          }
        };
      } else {
        pack = [=, &s](int k0, int kc, int j0, int nr, int width, float* dst) {
          pack_im2col_panel(s, im, k0, kc, j0, nr, width, dst);
        };
      }
      gemm_packed(isa, m, spatial, k, a, k, 1, pack, out, spatial, ep.accumulate, &e);
    }
}

// ---------------------------------------------------------------- training backward
namespace {
constexpr int kDirectWeightGradientMinSpatial = 256;
constexpr int kFoldTargetK = 1024;                    // images per GEMM: K = images x pixels reaches this
constexpr size_t kFoldMaxColumns = 8u * 1024 * 1024;  // floats of im2col columns per chunk (32 MB)
}  // namespace

bool conv_backward_weights_fast(CpuIsa isa, const ConvShape& s, const float* input, const float* delta,
                                float* weight_updates) {
  const int spatial = s.out_h * s.out_w;
  // The direct kernel from 16x16 maps up (20x20 32->64: 0.85x the folded GEMM's time; 10x10
  // and smaller lose to it); the folded GEMM below that.
  if (spatial >= kDirectWeightGradientMinSpatial && conv3x3_weight_gradient_direct_applicable(isa, s)) {
    conv3x3_weight_gradient_direct(isa, s, input, delta, weight_updates);
    return true;
  }
  if (s.groups != 1 || spatial >= kFoldMaxSpatial || s.batch < 2) return false;
  const int m = s.filters, k = s.size * s.size * s.c;
  const bool one_by_one = s.size == 1 && s.stride == 1 && s.pad == 0;  // the image is its own column matrix
  const size_t image_columns = (size_t)k * spatial;
  int per = std::min(s.batch, (kFoldTargetK + spatial - 1) / spatial);
  if (!one_by_one) per = (int)std::min<size_t>(per, std::max<size_t>(1, kFoldMaxColumns / image_columns));
  const int chunks = (s.batch + per - 1) / per;
  per = (s.batch + chunks - 1) / chunks;  // the same count in every chunk (the last may be short)
  if (per < 2) return false;              // one image per GEMM: the per-image loop is this path
  require_cpu_isa(isa);
  static thread_local std::vector<float> columns_buf, delta_buf;
  if (!one_by_one && columns_buf.size() < per * image_columns) columns_buf.resize(per * image_columns);
  if (delta_buf.size() < (size_t)per * m * spatial) delta_buf.resize((size_t)per * m * spatial);
  const size_t in_image = (size_t)s.c * s.h * s.w, out_image = (size_t)m * spatial;
  for (int b0 = 0; b0 < s.batch; b0 += per) {
    const int n = std::min(per, s.batch - b0);
    const int K = n * spatial;
    // (thread_local buffers: only this thread's pointers may enter the parallel region)
    float* dcat = delta_buf.data();  // [m][n * spatial]: the images' deltas side by side
    float* columns = columns_buf.data();
    const float* cols = one_by_one ? input + b0 * in_image : columns;
    const size_t cols_stride = one_by_one ? in_image : image_columns;
#pragma omp parallel
    {
      if (!one_by_one) {
#pragma omp for schedule(static)
        for (int j = 0; j < n; ++j)
          im2col(input + (b0 + j) * in_image, s.c, s.h, s.w, s.size, s.stride, s.pad,
                 columns + j * image_columns);
      }
#pragma omp for schedule(static)
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j)
          std::memcpy(dcat + (size_t)i * K + (size_t)j * spatial, delta + (b0 + j) * out_image + (size_t)i * spatial,
                      sizeof(float) * spatial);
    }
    // B(r, kk) = the column matrix of image r / spatial at (kk, r % spatial): C += dcat * B.
    PackB pack = [=](int k0, int kc, int j0, int nr, int width, float* dst) {
      for (int j = 0; j < nr; ++j) {
        int r = k0;
        while (r < k0 + kc) {
          const int img = r / spatial, sp = r % spatial, seg = std::min(k0 + kc - r, spatial - sp);
          const float* src = cols + img * cols_stride + (size_t)(j0 + j) * spatial + sp;
          float* d = dst + (size_t)(r - k0) * width + j;
          for (int t = 0; t < seg; ++t) d[(size_t)t * width] = src[t];
          r += seg;
        }
      }
      for (int kk = 0; kk < kc; ++kk)
        for (int j = nr; j < width; ++j) dst[(size_t)kk * width + j] = 0.f;
    };
    gemm_packed(isa, m, k, K, dcat, K, 1, pack, weight_updates, k, /*accumulate=*/true, nullptr);
  }
  return true;
}

// ---------------------------------------------------------------- direct 3x3 weight gradient
namespace {

// RF filters' delta rows (d[i] at the block's first row, row stride w) times the padded input
// rows of one channel and tap row (x at the block's first row, row stride wp) at tap columns
// 0..2; out[i * 3 + kx] += the block's sums.
template <int RF>
__attribute__((target("avx2,fma"))) void weight_gradient_rows(const float* const* d, const float* x, int rows, int w,
                                                               size_t wp, float* out) {
  __m256 acc[RF][3];
#pragma GCC unroll 4
  for (int i = 0; i < RF; ++i)
#pragma GCC unroll 3
    for (int k = 0; k < 3; ++k) acc[i][k] = _mm256_setzero_ps();
  const int full = w / 8 * 8;
  const __m256i tail = tail_mask_avx2(w - full);
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + (size_t)r * wp;
    const size_t dr = (size_t)r * w;
    for (int x0 = 0; x0 < full; x0 += 8) {
      const __m256 x0v = _mm256_loadu_ps(xr + x0), x1v = _mm256_loadu_ps(xr + x0 + 1),
                   x2v = _mm256_loadu_ps(xr + x0 + 2);
#pragma GCC unroll 4
      for (int i = 0; i < RF; ++i) {
        const __m256 dv = _mm256_loadu_ps(d[i] + dr + x0);
        acc[i][0] = _mm256_fmadd_ps(dv, x0v, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(dv, x1v, acc[i][1]);
        acc[i][2] = _mm256_fmadd_ps(dv, x2v, acc[i][2]);
      }
    }
    if (full < w) {  // masked lanes load as zeros on both sides
      const __m256 x0v = _mm256_maskload_ps(xr + full, tail), x1v = _mm256_maskload_ps(xr + full + 1, tail),
                   x2v = _mm256_maskload_ps(xr + full + 2, tail);
#pragma GCC unroll 4
      for (int i = 0; i < RF; ++i) {
        const __m256 dv = _mm256_maskload_ps(d[i] + dr + full, tail);
        acc[i][0] = _mm256_fmadd_ps(dv, x0v, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(dv, x1v, acc[i][1]);
        acc[i][2] = _mm256_fmadd_ps(dv, x2v, acc[i][2]);
      }
    }
  }
  alignas(32) float lanes[8];
#pragma GCC unroll 4
  for (int i = 0; i < RF; ++i)
#pragma GCC unroll 3
    for (int k = 0; k < 3; ++k) {
      _mm256_store_ps(lanes, acc[i][k]);
      out[i * 3 + k] += ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    }
}

using WeightGradientRows = void (*)(const float* const*, const float*, int, int, size_t, float*);
const WeightGradientRows kWeightGradientRows[4] = {weight_gradient_rows<1>, weight_gradient_rows<2>,
                                                   weight_gradient_rows<3>, weight_gradient_rows<4>};
constexpr int kWeightGradientFilters = 4;         // filters per register block
constexpr int kWeightGradientBlockFloats = 4096;  // pixels per row block (~90 KB of rows per block)
constexpr size_t kWeightGradientPaddedFloats = 8u << 20;  // padded images per chunk (32 MB)

}  // namespace


bool conv3x3_weight_gradient_direct_applicable(CpuIsa isa, const ConvShape& s) {
  return isa != CpuIsa::Plain && s.size == 3 && s.stride == 1 && s.pad == 1 && s.groups == 1 && s.out_h == s.h &&
         s.out_w == s.w && s.c <= kDirectFewFiltersMaxChannels && s.filters <= kDirectFewFiltersMax;
}

void conv3x3_weight_gradient_direct(CpuIsa isa, const ConvShape& s, const float* input, const float* delta,
                                    float* weight_updates) {
  check(conv3x3_weight_gradient_direct_applicable(isa, s),
        "conv3x3_weight_gradient_direct: not a 3x3 stride-1 'same' convolution with few channels and filters");
  require_cpu_isa(isa);
  const int w = s.w, h = s.h, wp = w + 2, hp = h + 2, spatial = w * h;
  const size_t plane = (size_t)hp * wp, image = (size_t)s.c * plane;
  const int groups = (s.filters + kWeightGradientFilters - 1) / kWeightGradientFilters;
  const int combos = groups * s.c, rows_per_block = std::max(1, kWeightGradientBlockFloats / w);
  // Images are padded a chunk at a time (at most kWeightGradientPaddedFloats, at least one image).
  const int per = (int)std::clamp<size_t>(kWeightGradientPaddedFloats / image, 1, s.batch);
  static thread_local std::vector<float> padded_buf, sums_buf;
  // 16 floats of slack: the tail's masked loads never touch them, but their addresses stay in bounds.
  if (padded_buf.size() < per * image + 16) padded_buf.assign(per * image + 16, 0.f);
  const size_t weights = (size_t)s.filters * s.c * 9;
  sums_buf.assign(weights, 0.f);
  float* padded = padded_buf.data();
  float* sums = sums_buf.data();  // [filters][c][3][3]
#pragma omp parallel
  {
    // Each thread owns a fixed range of (filter group, channel) pairs: no reduction across threads.
    const int threads = omp_get_num_threads(), me = omp_get_thread_num();
    const int lo = (int)((long)combos * me / threads), hi = (int)((long)combos * (me + 1) / threads);
    float block[kWeightGradientFilters * 3];
    for (int b0 = 0; b0 < s.batch; b0 += per) {
      const int n = std::min(per, s.batch - b0);
#pragma omp for collapse(2) schedule(static)
      for (int j = 0; j < n; ++j)
        for (int c = 0; c < s.c; ++c)
          pad_rows(input + ((size_t)(b0 + j) * s.c + c) * spatial, 1, h, w, -1, h + 2, h + 2,
                   padded + j * image + c * plane);
      for (int j = 0; j < n; ++j)
        for (int y0 = 0; y0 < h; y0 += rows_per_block) {
          const int rows = std::min(rows_per_block, h - y0);
          for (int combo = lo; combo < hi; ++combo) {
            const int g = combo / s.c, c = combo % s.c, f0 = g * kWeightGradientFilters;
            const int rf = std::min(kWeightGradientFilters, s.filters - f0);
            const float* d[kWeightGradientFilters];
            for (int i = 0; i < rf; ++i)
              d[i] = delta + ((size_t)(b0 + j) * s.filters + f0 + i) * spatial + (size_t)y0 * w;
            for (int ky = 0; ky < 3; ++ky) {
              std::fill(block, block + rf * 3, 0.f);
              kWeightGradientRows[rf - 1](d, padded + j * image + c * plane + (size_t)(y0 + ky) * wp, rows, w, wp,
                                          block);
              for (int i = 0; i < rf; ++i)
                for (int kx = 0; kx < 3; ++kx)
                  sums[(((size_t)(f0 + i) * s.c + c) * 3 + ky) * 3 + kx] += block[i * 3 + kx];
            }
          }
        }
#pragma omp barrier
    }
#pragma omp for schedule(static)
    for (size_t i = 0; i < weights; ++i) weight_updates[i] += sums[i];
  }
}

bool conv_backward_input_applicable(const ConvShape& s) {
  return s.groups == 1 && s.stride == 1 && s.size % 2 == 1 && s.size > 1 && s.pad == s.size / 2 &&
         s.out_h == s.h && s.out_w == s.w;
}

void conv_backward_input_fast(CpuIsa isa, const ConvShape& s, const float* delta, const float* weights,
                              float* prev_delta) {
  check(conv_backward_input_applicable(s), "conv_backward_input_fast: not a stride-1 'same' ungrouped convolution");
  const int taps = s.size * s.size;
  static thread_local std::vector<float> flipped_buf;  // [c][filters][size][size]
  const size_t n = (size_t)s.filters * s.c * taps;
  if (flipped_buf.size() < n) flipped_buf.resize(n);
  float* flipped = flipped_buf.data();
#pragma omp parallel for schedule(static)
  for (int c = 0; c < s.c; ++c)
    for (int f = 0; f < s.filters; ++f) {
      const float* src = weights + ((size_t)f * s.c + c) * taps;
      float* dst = flipped + ((size_t)c * s.filters + f) * taps;
      for (int t = 0; t < taps; ++t) dst[t] = src[taps - 1 - t];
    }
  ConvShape t = s;
  t.c = s.filters;
  t.filters = s.c;
  ConvEpilogue ep;
  ep.accumulate = true;
  conv_forward_fast(isa, t, delta, flipped, ep, prev_delta);
}

}  // namespace dn
