// Single-precision GEMM on row-major matrices:
//   C[M,N] = alpha * op(A) * op(B) + beta * C,  op(X) = X or X^T.
// lda/ldb/ldc are row strides as stored. Multi-threaded with OpenMP.
//
// The fast path (gemm, gemm_packed) packs B into column panels of 16/32/48
// floats and runs a register-blocked 8 x 48 micro-kernel (AVX-512: 24 zmm
// accumulators, A broadcast straight from memory, so A is never packed). The
// instruction set is the caller's (ExecOptions::isa: AVX-512 / AVX2+FMA / plain
// C++), so one build runs anywhere and tests reach every family. Passing an ISA
// this CPU lacks (above cpu_isa_best()) throws DarknetError.
#pragma once
#include <cstddef>
#include <functional>

#include "core/options.hpp"
#include "kernels/activations.hpp"

namespace dn {

void gemm(CpuIsa isa, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);

// The plain triple loop, kept as the reference the fast path is tested against.
void gemm_reference(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc);

// Throws DarknetError unless this CPU runs the isa kernels (callers that run
// kernels inside their own parallel region check once, outside it).
void require_cpu_isa(CpuIsa isa);

// ---- the packed driver used by conv and gemm
constexpr int kGemmMR = 8;       // rows of C per micro-tile
constexpr int kGemmNR = 48;      // widest B panel (3 x 16 floats)
constexpr int kGemmKC = 256;     // depth of one packed block

// What the last K block applies to each C value: y = act(scale[i] * sum + bias[i]).
struct GemmEpilogue {
  const float* scale = nullptr;  // per row of C, nullptr = 1
  const float* bias = nullptr;   // per row of C, nullptr = 0
  Activation act = Activation::Linear;
};

// Fills a kc x width panel (row stride `width`, width in {16, 32, 48}) with
// rows [k0, k0+kc) and columns [j0, j0+nr) of the (virtual) B matrix; columns
// nr..width-1 must be zero.
using PackB = std::function<void(int k0, int kc, int j0, int nr, int width, float* dst)>;

// C[M,N] (+)= A[M,K] * B[K,N], then the epilogue. A's element (i, k) is at
// A[i * rs_a + k * cs_a] (so a transposed A is rs_a = 1, cs_a = lda).
// accumulate=false overwrites C. Runs its own OpenMP parallel region.
void gemm_packed(CpuIsa isa, int M, int N, int K, const float* A, ptrdiff_t rs_a, ptrdiff_t cs_a,
                 const PackB& pack_b, float* C, ptrdiff_t ldc, bool accumulate, const GemmEpilogue* ep);

// Single-threaded, for callers that split work themselves (Winograd): C[M, nv] (+)=
// A[M, K] * P where P is one packed panel (K rows, row stride `width` in
// {16, 32, 48}, columns nv..width-1 ignored); A(i, k) = A[i * rs_a + k * cs_a].
// accumulate=false overwrites C (row stride ldc); no epilogue. Does not check isa
// (it runs inside the caller's parallel region, where an exception cannot leave).
void gemm_panel(CpuIsa isa, int M, int K, const float* A, ptrdiff_t rs_a, ptrdiff_t cs_a, const float* panel,
                int width, int nv, float* C, ptrdiff_t ldc, bool accumulate);

}  // namespace dn
