// Single-precision GEMM on row-major matrices:
//   C[M,N] = alpha * op(A) * op(B) + beta * C,  op(X) = X or X^T.
// lda/ldb/ldc are row strides as stored. Multi-threaded with OpenMP.
#pragma once
#include <cstddef>

namespace dn {

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc);

// The plain triple loop, kept as the reference the fast path is tested against.
void gemm_reference(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc);

}  // namespace dn
