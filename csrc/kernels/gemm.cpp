// Packed, register-blocked SGEMM with run-time ISA dispatch (the caller's ISA).
//
// Loop structure (BLIS-like, sized for 2 cores with 48 KB L1 / 2 MB L2):
//   for each block of up to kPanelsPerBlock B panels (jc)
//     for each K block of kGemmKC rows (pc)
//       pack the B block into panels  [panel][kc][width]     (threads split panels)
//       for each (8-row strip of A, panel) micro-tile         (threads split strips or panels)
//         8 x width tile of C += A[strip, pc] * Bpanel over kc, epilogue on the last pc
// A is read in place: the micro-kernel broadcasts A(i, k) from memory (AVX-512
// embedded broadcast), so a conv's weights are never copied or re-packed.
//
// Napkin math for the AVX-512 8 x 48 kernel: per k step, 3 B loads + 8
// broadcast-FMAs x 3 = 24 FMAs on 24 zmm accumulators; two FMA ports -> 12
// cycles per k step if the 11 loads (3 ports) keep up, i.e. the kernel is
// FMA-bound at 64 flop/cycle/core.
#include "kernels/gemm.hpp"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <immintrin.h>
#include <memory>
#include <vector>

#include "core/error.hpp"
#include "kernels/simd_avx2.hpp"

namespace dn {

void gemm_reference(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double sum = 0;
      for (int k = 0; k < K; ++k) {
        float a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
        float b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
        sum += (double)a * b;
      }
      float& c = C[(size_t)i * ldc + j];
      c = (float)(alpha * sum + (beta == 0.f ? 0.f : beta * c));
    }
}

namespace {

constexpr int MR = kGemmMR;
constexpr int NR = kGemmNR;
constexpr int KC = kGemmKC;
constexpr int KCmax = 384;  // buffers hold up to KCmax rows per panel
constexpr int kPanelsPerBlock = 32;  // 1536 columns: a 256 x 1536 B block is 1.5 MB (fits 2 x L2)
constexpr int kPanelsPerGroup = 8;   // wide GEMMs: 8 panels x 256 x 48 floats = 384 KB per thread (L2)
constexpr size_t kFullPackFloats = (size_t)8 << 20;  // pack all of B up front when <= 32 MB

enum : int { kAccumulate = 1, kEpilogue = 2 };

// Arguments of one micro-tile.
struct Tile {
  int kc;
  const float* a;  // A(strip row 0, k0)
  ptrdiff_t rs, cs;
  int mv;          // valid rows (<= MR)
  const float* b;  // packed panel, row stride = width
  float* c;
  ptrdiff_t ldc;
  int nv;          // valid columns (<= width)
  int flags;
  const float* scale;  // already offset to the strip's first row (or null)
  const float* bias;
  Activation act;
};

// Shared scalar epilogue: t holds the MR x width accumulator tile.
inline void store_tile(const Tile& t, const float* acc, int width) {
  for (int i = 0; i < t.mv; ++i) {
    float* c = t.c + i * t.ldc;
    const float* r = acc + i * width;
    const bool epi = t.flags & kEpilogue;
    const float s = (epi && t.scale) ? t.scale[i] : 1.f;
    const float bi = (epi && t.bias) ? t.bias[i] : 0.f;
    for (int j = 0; j < t.nv; ++j) {
      float v = r[j];
      if (t.flags & kAccumulate) v += c[j];
      if (epi) v = activate(v * s + bi, t.act);
      c[j] = v;
    }
  }
}

// ---------------------------------------------------------------- plain C++
template <int W>
void ukr_plain(const Tile& t) {
  alignas(64) float acc[MR * W] = {};
  const float* ap[MR];
  for (int i = 0; i < MR; ++i) ap[i] = t.a + (i < t.mv ? i : t.mv - 1) * t.rs;
  for (int k = 0; k < t.kc; ++k) {
    const float* b = t.b + (size_t)k * W;
    for (int i = 0; i < MR; ++i) {
      const float a = ap[i][k * t.cs];
      float* r = acc + i * W;
#pragma omp simd
      for (int j = 0; j < W; ++j) r[j] += a * b[j];
    }
  }
  store_tile(t, acc, W);
}

// ---------------------------------------------------------------- AVX2 + FMA
// The 4 x 24 band's k loop, four steps per iteration, as hand-scheduled code: per step the
// three B vectors are held and each A value is broadcast once for its three FMAs (12
// accumulators + 3 B vectors + 1 broadcast = the 16 ymm registers). GCC's allocation of the
// same intrinsics added register copies (vfmadd132ps forms) to every step. A(i, k) is read at
// ap[i] + k * cs (any stride: the streamed Winograd GEMMs read A transposed), B row k at
// b + k * W.
// The same products in the same k order as band_avx2's intrinsics: the results are theirs
// bit for bit.
// One k step: B's row as one memory operand (its three vectors at +0, +32, +64), A's four
// values as four (the compiler folds the step's offsets into the addressing).
#define DN_GEMM_STEP                                \
  "vmovups %[bk], %%ymm12\n\t"                      \
  "vmovups 32+%[bk], %%ymm13\n\t"                   \
  "vmovups 64+%[bk], %%ymm14\n\t"                   \
  "vbroadcastss %[x0], %%ymm15\n\t"                 \
  "vfmadd231ps %%ymm12, %%ymm15, %[c00]\n\t"        \
  "vfmadd231ps %%ymm13, %%ymm15, %[c01]\n\t"        \
  "vfmadd231ps %%ymm14, %%ymm15, %[c02]\n\t"        \
  "vbroadcastss %[x1], %%ymm15\n\t"                 \
  "vfmadd231ps %%ymm12, %%ymm15, %[c10]\n\t"        \
  "vfmadd231ps %%ymm13, %%ymm15, %[c11]\n\t"        \
  "vfmadd231ps %%ymm14, %%ymm15, %[c12]\n\t"        \
  "vbroadcastss %[x2], %%ymm15\n\t"                 \
  "vfmadd231ps %%ymm12, %%ymm15, %[c20]\n\t"        \
  "vfmadd231ps %%ymm13, %%ymm15, %[c21]\n\t"        \
  "vfmadd231ps %%ymm14, %%ymm15, %[c22]\n\t"        \
  "vbroadcastss %[x3], %%ymm15\n\t"                 \
  "vfmadd231ps %%ymm12, %%ymm15, %[c30]\n\t"        \
  "vfmadd231ps %%ymm13, %%ymm15, %[c31]\n\t"        \
  "vfmadd231ps %%ymm14, %%ymm15, %[c32]\n\t"

template <int W, int kCs>
__attribute__((target("avx2,fma"), always_inline)) inline void band4x24_steps(__m256 (&acc)[4][3], const float* (&ap)[4],
                                                                              const float* b, ptrdiff_t cs_rt, int steps) {
  __m256 c00 = acc[0][0], c01 = acc[0][1], c02 = acc[0][2], c10 = acc[1][0], c11 = acc[1][1], c12 = acc[1][2],
         c20 = acc[2][0], c21 = acc[2][1], c22 = acc[2][2], c30 = acc[3][0], c31 = acc[3][1], c32 = acc[3][2];
  const float *a0 = ap[0], *a1 = ap[1], *a2 = ap[2], *a3 = ap[3];
  const ptrdiff_t cs = kCs ? kCs : cs_rt;  // a constant stride folds into the addressing
  for (int k = 0; k < steps; k += 4) {
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u)
      // vfmadd231ps b, a, c in AT&T order: c += a * b (the intrinsics' broadcast A times B).
      asm(DN_GEMM_STEP
          : [c00] "+x"(c00), [c01] "+x"(c01), [c02] "+x"(c02), [c10] "+x"(c10), [c11] "+x"(c11), [c12] "+x"(c12),
            [c20] "+x"(c20), [c21] "+x"(c21), [c22] "+x"(c22), [c30] "+x"(c30), [c31] "+x"(c31), [c32] "+x"(c32)
          : [bk] "m"(b[u * W]), [x0] "m"(a0[u * cs]), [x1] "m"(a1[u * cs]), [x2] "m"(a2[u * cs]),
            [x3] "m"(a3[u * cs])
          : "ymm12", "ymm13", "ymm14", "ymm15", "memory");
    b += 4 * W;
    a0 += 4 * cs;
    a1 += 4 * cs;
    a2 += 4 * cs;
    a3 += 4 * cs;
  }
  acc[0][0] = c00, acc[0][1] = c01, acc[0][2] = c02, acc[1][0] = c10, acc[1][1] = c11, acc[1][2] = c12;
  acc[2][0] = c20, acc[2][1] = c21, acc[2][2] = c22, acc[3][0] = c30, acc[3][1] = c31, acc[3][2] = c32;
}
#undef DN_GEMM_STEP

// 16 ymm registers cannot hold an 8 x W tile, so the tile runs as row bands of
// RB rows x NJ*8 columns held in registers (12 accumulators + NJ B vectors + one
// broadcast), each finished by a vector epilogue straight into C. Two FMA pipes
// with 4-5 cycle latency need 8-10 independent chains; 12 keeps both busy.
template <int W, int RB, int NJ, int kCs>
__attribute__((target("avx2,fma"))) inline void band_avx2(const Tile& t, int i0, int j0) {
  __m256 acc[RB][NJ];
#pragma GCC unroll 8
  for (int i = 0; i < RB; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NJ; ++j) acc[i][j] = _mm256_setzero_ps();
  const float* ap[RB];
#pragma GCC unroll 8
  for (int i = 0; i < RB; ++i) ap[i] = t.a + std::min(i0 + i, t.mv - 1) * t.rs;
  const float* b = t.b + j0;
  const ptrdiff_t cs = kCs ? kCs : t.cs;  // constant strides let GCC fold the addressing
  // One k step; the main loop runs four at a time so the addresses are constant
  // displacements instead of per-step arithmetic (20.5 instructions per 12 FMAs, not 24):
  // the band is bound by issued instructions, not FMAs, when the VM's core behaves as
  // shared (L1-resident, its slow phases: 0.70-0.77x of the FMA peak with one step per
  // iteration, 0.78-0.85x with four).
  auto step = [&](int k) __attribute__((always_inline, target("avx2,fma"))) {
    __m256 bv[NJ];
#pragma GCC unroll 4
    for (int j = 0; j < NJ; ++j) bv[j] = _mm256_loadu_ps(b + (size_t)k * W + 8 * j);
#pragma GCC unroll 8
    for (int i = 0; i < RB; ++i) {
      const __m256 x = _mm256_broadcast_ss(ap[i] + k * cs);
#pragma GCC unroll 4
      for (int j = 0; j < NJ; ++j) acc[i][j] = _mm256_fmadd_ps(x, bv[j], acc[i][j]);
    }
  };
  // The 8 x 8 band stays rolled: unrolled, GCC spills its registers.
  constexpr int U = NJ == 1 ? 1 : 4;
  const int kc = t.kc, kcu = kc / U * U;
  int k_done = 0;  // steps already run
  if constexpr (RB == 4 && NJ == 3) {
    band4x24_steps<W, kCs>(acc, ap, b, cs, kcu);
    b += (size_t)kcu * W;
#pragma GCC unroll 8
    for (int i = 0; i < RB; ++i) ap[i] += (ptrdiff_t)kcu * cs;
    k_done = kcu;
  }
  for (int k0 = k_done; k0 < kcu; k0 += U) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) step(u);
    b += U * W;
#pragma GCC unroll 8
    for (int i = 0; i < RB; ++i) ap[i] += U * cs;
  }
  for (int k = kcu; k < kc; ++k) {
    step(0);
    b += W;
#pragma GCC unroll 8
    for (int i = 0; i < RB; ++i) ap[i] += cs;
  }
  const bool epi = t.flags & kEpilogue;
  const int rows = std::min(RB, t.mv - i0);
  // Fully unrolled (constant indices), or GCC keeps acc in memory through the k loop.
#pragma GCC unroll 8
  for (int i = 0; i < RB; ++i) {
    if (i >= rows) break;
    float* c = t.c + (i0 + i) * t.ldc + j0;
    const float s = epi && t.scale ? t.scale[i0 + i] : 1.f;
    const float bi = epi && t.bias ? t.bias[i0 + i] : 0.f;
#pragma GCC unroll 4
    for (int j = 0; j < NJ; ++j) {
      const int n = t.nv - j0 - 8 * j;  // valid columns of this vector
      if (n <= 0) break;
      __m256 v = acc[i][j];
      __m256i mask = _mm256_setzero_si256();
      if (n < 8) mask = tail_mask_avx2(n);
      if (t.flags & kAccumulate)
        v = _mm256_add_ps(v, n >= 8 ? _mm256_loadu_ps(c + 8 * j) : _mm256_maskload_ps(c + 8 * j, mask));
      if (epi) v = activate_avx2(_mm256_fmadd_ps(v, _mm256_set1_ps(s), _mm256_set1_ps(bi)), t.act);
      if (n >= 8)
        _mm256_storeu_ps(c + 8 * j, v);
      else
        _mm256_maskstore_ps(c + 8 * j, mask, v);
    }
  }
}

// Column blocks of 24 as 4 x 24 bands (12 chains, 7 loads per 12 FMAs); what is
// left (a tile's last 8 or 16 columns, 16-wide panels) as 8 x 8 bands (8 chains,
// 9 loads per 8 FMAs: within Zen 3's 3 loads and 2 FMAs per cycle). 6 x 16 + 2 x 16
// was slower: the 2-row band has 4 chains and stalls on the FMA latency.
template <int W, int kCs>
__attribute__((target("avx2,fma"))) void tile_avx2(const Tile& t) {
  int j0 = 0;
  while (j0 < t.nv) {
    if (W - j0 >= 24 && t.nv - j0 > 16) {
      band_avx2<W, 4, 3, kCs>(t, 0, j0);
      if (t.mv > 4) band_avx2<W, 4, 3, kCs>(t, 4, j0);
      j0 += 24;
    } else {
      band_avx2<W, 8, 1, kCs>(t, 0, j0);
      j0 += 8;
    }
  }
}

template <int W>
__attribute__((target("avx2,fma"))) void ukr_avx2(const Tile& t) {
  if (t.cs == 1)
    tile_avx2<W, 1>(t);
  else
    tile_avx2<W, 0>(t);
}

// ---------------------------------------------------------------- AVX-512
template <int NV>
__attribute__((target("avx512f"))) void ukr_avx512(const Tile& t) {
  constexpr int W = NV * 16;
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 3
    for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();
  const float* ap[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) ap[i] = t.a + (i < t.mv ? i : t.mv - 1) * t.rs;
  const float* b = t.b;
  const int kc = t.kc;
  if (t.cs == 1) {
    for (int k = 0; k < kc; ++k) {
      __m512 bv[NV];
#pragma GCC unroll 3
      for (int j = 0; j < NV; ++j) bv[j] = _mm512_loadu_ps(b + (size_t)k * W + 16 * j);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m512 x = _mm512_set1_ps(ap[i][k]);
#pragma GCC unroll 3
        for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(x, bv[j], acc[i][j]);
      }
    }
  } else {
    const ptrdiff_t cs = t.cs;
    for (int k = 0; k < kc; ++k) {
      __m512 bv[NV];
#pragma GCC unroll 3
      for (int j = 0; j < NV; ++j) bv[j] = _mm512_loadu_ps(b + (size_t)k * W + 16 * j);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m512 x = _mm512_set1_ps(ap[i][k * cs]);
#pragma GCC unroll 3
        for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(x, bv[j], acc[i][j]);
      }
    }
  }
  const bool epi = t.flags & kEpilogue;
  const bool vec_act = t.act == Activation::Linear || t.act == Activation::Leaky || t.act == Activation::Relu;
  if (epi && !vec_act) {  // rare activations: vector store, scalar finish
    alignas(64) float tile[MR * W];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 3
      for (int j = 0; j < NV; ++j) _mm512_store_ps(tile + i * W + 16 * j, acc[i][j]);
    store_tile(t, tile, W);
    return;
  }
  __mmask16 mask[NV];
#pragma GCC unroll 3
  for (int j = 0; j < NV; ++j) {
    const int n = std::min(16, std::max(0, t.nv - 16 * j));
    mask[j] = (__mmask16)((1u << n) - 1u);
  }
  const __m512 tenth = _mm512_set1_ps(.1f), zero = _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    if (i >= t.mv) break;
    float* c = t.c + i * t.ldc;
    const __m512 s = _mm512_set1_ps(epi && t.scale ? t.scale[i] : 1.f);
    const __m512 bi = _mm512_set1_ps(epi && t.bias ? t.bias[i] : 0.f);
#pragma GCC unroll 3
    for (int j = 0; j < NV; ++j) {
      __m512 v = acc[i][j];
      if (t.flags & kAccumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask[j], c + 16 * j));
      if (epi) {
        v = _mm512_fmadd_ps(v, s, bi);
        if (t.act == Activation::Leaky) {
          const __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_LE_OQ);  // Darknet: x > 0 ? x : .1x
          v = _mm512_mask_mul_ps(v, neg, v, tenth);
        } else if (t.act == Activation::Relu) {
          // The all-lanes mask form is the same vmaxps; _mm512_max_ps trips GCC 12's
          // -Wmaybe-uninitialized on its internal _mm512_undefined_ps.
          v = _mm512_mask_max_ps(v, (__mmask16)0xFFFF, v, zero);
        }
      }
      _mm512_mask_storeu_ps(c + 16 * j, mask[j], v);
    }
  }
}

using Ukr = void (*)(const Tile&);
// [isa][width/16 - 1]
const Ukr kKernels[3][3] = {
    {ukr_plain<16>, ukr_plain<32>, ukr_plain<48>},
    {ukr_avx2<16>, ukr_avx2<32>, ukr_avx2<48>},
    {ukr_avx512<1>, ukr_avx512<2>, ukr_avx512<3>},
};

// A reusable 64-byte-aligned scratch buffer (no zeroing, no page faults after the first call).
struct Scratch {
  float* p = nullptr;
  size_t n = 0;
  ~Scratch() { std::free(p); }
  float* get(size_t need) {
    if (need > n) {
      std::free(p);
      p = static_cast<float*>(std::aligned_alloc(64, ((need * sizeof(float) + 63) / 64) * 64));
      if (!p) fail("gemm: out of memory for a ", need, "-float packing buffer");
      n = need;
    }
    return p;
  }
};

inline int panel_width(int nr) { return (nr + 15) / 16 * 16; }

// Depth of one K block: even blocks of at most the target, and K up to 1.5x the target
// stays one block (no thin tail block that reloads and stores all of C for a few k
// steps). AVX2: the 4 x 24 band's 24-column half panel and the 8-row A strip share a
// 32 KB L1 (160 x 24 + 8 x 160 floats = 20 KB; 256 measured 5-10% slower on Zen 3);
// AVX-512 machines have 48 KB L1 and the 8 x 48 kernel reads whole panels: 256.
inline int k_block(CpuIsa isa, int K) {
  const int target = isa == CpuIsa::Avx512 ? KC : 160, most = target * 3 / 2;
  if (K <= most) return K;
  const int blocks = (K + target - 1) / target;
  return (K + blocks - 1) / blocks;
}

// How many K parts a GEMM with a small C and a long K is cut into (1 = no split): C must
// stay small (each part keeps its own) and each part gets at least 4 K blocks.
constexpr size_t kSplitKMaxC = 64 * 1024;  // floats of C (256 KB)
constexpr int kSplitKMaxParts = 8;
inline int split_k_parts(int M, int N, int kblocks) {
  if ((size_t)M * N > kSplitKMaxC || N > 16 * kGemmNR) return 1;  // and at most 16 B panels per block
  return std::max(1, std::min(kSplitKMaxParts, kblocks / 4));
}

}  // namespace

void require_cpu_isa(CpuIsa isa) {
  check(isa >= CpuIsa::Plain && isa <= cpu_isa_best(), "this CPU does not support the ", cpu_isa_name(isa),
        " kernels (best: ", cpu_isa_name(cpu_isa_best()), ")");
}

void gemm_packed(CpuIsa isa, int M, int N, int K, const float* A, ptrdiff_t rs_a, ptrdiff_t cs_a,
                 const PackB& pack_b, float* C, ptrdiff_t ldc, bool accumulate, const GemmEpilogue* ep) {
  if (M <= 0 || N <= 0) return;
  require_cpu_isa(isa);
  // C(i, j) = epilogue(v), scalar: the empty sum and the split-K reduction.
  auto finish = [&](int i, int j, float v) {
    if (ep) v = activate(v * (ep->scale ? ep->scale[i] : 1.f) + (ep->bias ? ep->bias[i] : 0.f), ep->act);
    C[i * ldc + j] = v;
  };
  if (K <= 0) {  // empty sum: C = epilogue(accumulate ? C : 0)
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) finish(i, j, accumulate ? C[i * ldc + j] : 0.f);
    return;
  }
  const Ukr* kernels = kKernels[(int)isa];
  const int strips = (M + MR - 1) / MR;
  const int panels = (N + NR - 1) / NR;
  const int threads = std::max(1, omp_get_max_threads());
  const Activation act = ep ? ep->act : Activation::Linear;
  const int KB = k_block(isa, K);
  const int kblocks = (K + KB - 1) / KB;

  // One micro-tile: rows [8s, 8s+8) x the columns of panel p (global index),
  // k rows [k0, k0+kc), B panel at b (row stride = panel width), into the matrix
  // at out (row stride ld_out) with the given flags (kEpilogue applies ep).
  auto run_tile_into = [&](int s, int p, int k0, int kc, const float* b, float* out, ptrdiff_t ld_out, int flags) {
    const int j0 = p * NR;
    const int nr = std::min(NR, N - j0);
    const int i0 = s * MR;
    Tile t;
    t.kc = kc;
    t.a = A + i0 * rs_a + (ptrdiff_t)k0 * cs_a;
    t.rs = rs_a;
    t.cs = cs_a;
    t.mv = std::min(MR, M - i0);
    t.b = b;
    t.c = out + i0 * ld_out + j0;
    t.ldc = ld_out;
    t.nv = nr;
    t.flags = flags;
    t.scale = ep && ep->scale ? ep->scale + i0 : nullptr;  // read only under kEpilogue
    t.bias = ep && ep->bias ? ep->bias + i0 : nullptr;
    t.act = act;
    kernels[panel_width(nr) / 16 - 1](t);
  };
  auto run_tile = [&](int s, int p, int k0, int kc, const float* b) {
    run_tile_into(s, p, k0, kc, b, C, ldc,
                  ((accumulate || k0 > 0) ? kAccumulate : 0) | ((ep && k0 + kc >= K) ? kEpilogue : 0));
  };
  auto pack_panel = [&](int p, int k0, int kc, float* dst) {
    const int j0 = p * NR;
    const int nr = std::min(NR, N - j0);
    pack_b(k0, kc, j0, nr, panel_width(nr), dst);
  };

  // Threads share out the work with as few barriers as possible: on a loaded
  // machine each barrier can cost a scheduler time slice.
  const size_t full_pack = (size_t)panels * K * NR;
  const int split = split_k_parts(M, N, kblocks);
  if (split > 1) {
    // Small C, long K (weight gradients of early layers: K = the pixels): K is cut into
    // `split` contiguous parts, a count that depends on the shape only, so the sums are the
    // same for any number of threads; each part accumulates its own C in L1/L2 with one
    // B block packed at a time, then the parts are added in order.
    static thread_local Scratch partial_scratch;
    float* partial = partial_scratch.get((size_t)split * M * N);
    const int blocks_per_part = (kblocks + split - 1) / split;
#pragma omp parallel num_threads(std::min(threads, split))
    {
      static thread_local Scratch scratch;
      float* bbuf = scratch.get((size_t)panels * KCmax * NR);
#pragma omp for schedule(static)
      for (int part = 0; part < split; ++part) {
        float* cp = partial + (size_t)part * M * N;
        const int kb0 = part * blocks_per_part, kb1 = std::min(kblocks, kb0 + blocks_per_part);
        if (kb0 >= kb1) std::fill(cp, cp + (size_t)M * N, 0.f);
        for (int kb = kb0; kb < kb1; ++kb) {
          const int k0 = kb * KB, kc = std::min(KB, K - k0);
          for (int p = 0; p < panels; ++p) pack_panel(p, k0, kc, bbuf + (size_t)p * KCmax * NR);
          for (int s = 0; s < strips; ++s)
            for (int p = 0; p < panels; ++p)
              run_tile_into(s, p, k0, kc, bbuf + (size_t)p * KCmax * NR, cp, N, kb > kb0 ? kAccumulate : 0);
        }
      }
#pragma omp for schedule(static)
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
          float v = 0.f;
          for (int part = 0; part < split; ++part) v += partial[((size_t)part * M + i) * N + j];
          if (accumulate) v += C[i * ldc + j];
          finish(i, j, v);
        }
    }
  } else if (strips >= panels && full_pack <= kFullPackFloats) {
    // Deep layers (many filters, few pixels): pack all of B once (one barrier),
    // then threads take groups of strips; per K block the B slice stays in L2.
    static thread_local Scratch scratch;
    float* bbuf = scratch.get(full_pack);
    const int chunk = std::max(1, strips / (threads * 4));
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static) collapse(2)
      for (int p = 0; p < panels; ++p)
        for (int kb = 0; kb < kblocks; ++kb) {
          const int k0 = kb * KB, kc = std::min(KB, K - k0);
          const int width = panel_width(std::min(NR, N - p * NR));
          pack_panel(p, k0, kc, bbuf + (size_t)p * K * NR + (size_t)k0 * width);
        }
#pragma omp for schedule(dynamic, 1)
      for (int s0 = 0; s0 < strips; s0 += chunk)
        for (int k0 = 0; k0 < K; k0 += KB) {
          const int kc = std::min(KB, K - k0);
          for (int s = s0; s < std::min(strips, s0 + chunk); ++s)
            for (int p = 0; p < panels; ++p) {
              const int width = panel_width(std::min(NR, N - p * NR));
              run_tile(s, p, k0, kc, bbuf + (size_t)p * K * NR + (size_t)k0 * width);
            }
        }
    }
  } else if (strips < panels) {
    // Wide layers (many pixels): threads take groups of panels and pack their
    // own B; no barrier until the end.
    const int group = std::max(1, std::min(kPanelsPerGroup, panels / (threads * 4)));
#pragma omp parallel num_threads(threads)
    {
      static thread_local Scratch scratch;
      float* bbuf = scratch.get((size_t)group * KCmax * NR);
#pragma omp for schedule(dynamic, 1)
      for (int p0 = 0; p0 < panels; p0 += group) {
        const int np = std::min(group, panels - p0);
        for (int k0 = 0; k0 < K; k0 += KB) {
          const int kc = std::min(KB, K - k0);
          for (int q = 0; q < np; ++q) pack_panel(p0 + q, k0, kc, bbuf + (size_t)q * KCmax * NR);
          for (int s = 0; s < strips; ++s)
            for (int q = 0; q < np; ++q) run_tile(s, p0 + q, k0, kc, bbuf + (size_t)q * KCmax * NR);
        }
      }
    }
  } else {
    // Many strips and a B too large to pack whole (training GEMMs with a long
    // K): shared B blocks, two barriers per block.
    static thread_local Scratch scratch;
    const int block_panels = std::min(panels, kPanelsPerBlock);
    float* bbuf = scratch.get((size_t)block_panels * KCmax * NR);
#pragma omp parallel num_threads(threads)
    {
      for (int jb = 0; jb < panels; jb += block_panels) {
        const int nb = std::min(block_panels, panels - jb);
        for (int k0 = 0; k0 < K; k0 += KB) {
          const int kc = std::min(KB, K - k0);
#pragma omp for schedule(static)
          for (int q = 0; q < nb; ++q) pack_panel(jb + q, k0, kc, bbuf + (size_t)q * KCmax * NR);
#pragma omp for schedule(static)
          for (int s = 0; s < strips; ++s)
            for (int q = 0; q < nb; ++q) run_tile(s, jb + q, k0, kc, bbuf + (size_t)q * KCmax * NR);
        }
      }
    }
  }
}

void gemm_panel(CpuIsa isa, int M, int K, const float* A, ptrdiff_t rs_a, ptrdiff_t cs_a, const float* panel,
                int width, int nv, float* C, ptrdiff_t ldc, bool accumulate) {
  if (M <= 0 || nv <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + nv, 0.f);
    return;
  }
  const Ukr ukr = kKernels[(int)isa][width / 16 - 1];
  const int KB = k_block(isa, K);
  for (int i0 = 0; i0 < M; i0 += MR)
    for (int k0 = 0; k0 < K; k0 += KB) {
      Tile t;
      t.kc = std::min(KB, K - k0);
      t.a = A + i0 * rs_a + (ptrdiff_t)k0 * cs_a;
      t.rs = rs_a;
      t.cs = cs_a;
      t.mv = std::min(MR, M - i0);
      t.b = panel + (size_t)k0 * width;
      t.c = C + i0 * ldc;
      t.ldc = ldc;
      t.nv = nv;
      t.flags = (accumulate || k0 > 0) ? kAccumulate : 0;
      t.scale = t.bias = nullptr;
      t.act = Activation::Linear;
      ukr(t);
    }
}

void gemm(CpuIsa isa, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  require_cpu_isa(isa);
  const bool skip_product = K <= 0 || alpha == 0.f;
  if (beta != 1.f || skip_product) {
#pragma omp parallel for schedule(static) if ((size_t)M * N > 65536)
    for (int i = 0; i < M; ++i) {
      float* c = C + (size_t)i * ldc;
      if (beta == 0.f)
        std::fill(c, c + N, 0.f);
      else if (beta != 1.f)
        for (int j = 0; j < N; ++j) c[j] *= beta;
    }
  }
  if (skip_product) return;
  PackB pack = [=](int k0, int kc, int j0, int nr, int width, float* dst) {
    if (!trans_b) {
      for (int k = 0; k < kc; ++k) {
        const float* src = B + (size_t)(k0 + k) * ldb + j0;
        float* d = dst + (size_t)k * width;
        if (alpha == 1.f)
          std::memcpy(d, src, sizeof(float) * nr);
        else
          for (int j = 0; j < nr; ++j) d[j] = alpha * src[j];
        for (int j = nr; j < width; ++j) d[j] = 0.f;
      }
    } else {
      for (int j = 0; j < nr; ++j) {
        const float* src = B + (size_t)(j0 + j) * ldb + k0;
        for (int k = 0; k < kc; ++k) dst[(size_t)k * width + j] = alpha * src[k];
      }
      for (int k = 0; k < kc; ++k)
        for (int j = nr; j < width; ++j) dst[(size_t)k * width + j] = 0.f;
    }
  };
  const ptrdiff_t rs = trans_a ? 1 : lda, cs = trans_a ? lda : 1;
  gemm_packed(isa, M, N, K, A, rs, cs, pack, C, ldc, /*accumulate=*/true, nullptr);
}

}  // namespace dn
