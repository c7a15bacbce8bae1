#include "kernels/gemm.hpp"

#include <algorithm>
#include <vector>

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

constexpr int kBlockN = 512;  // columns of C/B kept hot in L1/L2 per pass
constexpr int kBlockK = 256;  // rows of B per pass (kBlockK * kBlockN * 4 = 512 KB in L2)
constexpr int kRows = 4;      // rows of C updated together so each B load feeds 4 FMAs

// C[rows, n] += A_packed[rows, k] * B[k, n] for a block; A_packed is row-major (rows x kc).
__attribute__((target_clones("avx512f", "avx2,fma", "default"))) void kernel_block(
    int rows, int n, int kc, const float* a_packed, const float* B, int ldb, float* C, int ldc) {
  int i = 0;
  for (; i + kRows <= rows; i += kRows) {
    float* c0 = C + (size_t)(i + 0) * ldc;
    float* c1 = C + (size_t)(i + 1) * ldc;
    float* c2 = C + (size_t)(i + 2) * ldc;
    float* c3 = C + (size_t)(i + 3) * ldc;
    const float* a0 = a_packed + (size_t)(i + 0) * kc;
    const float* a1 = a_packed + (size_t)(i + 1) * kc;
    const float* a2 = a_packed + (size_t)(i + 2) * kc;
    const float* a3 = a_packed + (size_t)(i + 3) * kc;
    for (int k = 0; k < kc; ++k) {
      const float* b = B + (size_t)k * ldb;
      const float x0 = a0[k], x1 = a1[k], x2 = a2[k], x3 = a3[k];
#pragma omp simd
      for (int j = 0; j < n; ++j) {
        const float bj = b[j];
        c0[j] += x0 * bj;
        c1[j] += x1 * bj;
        c2[j] += x2 * bj;
        c3[j] += x3 * bj;
      }
    }
  }
  for (; i < rows; ++i) {
    float* c = C + (size_t)i * ldc;
    const float* a = a_packed + (size_t)i * kc;
    for (int k = 0; k < kc; ++k) {
      const float* b = B + (size_t)k * ldb;
      const float x = a[k];
#pragma omp simd
      for (int j = 0; j < n; ++j) c[j] += x * b[j];
    }
  }
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  // Scale C by beta first so the blocked kernel only accumulates.
#pragma omp parallel for schedule(static) if ((size_t)M * N > 65536)
  for (int i = 0; i < M; ++i) {
    float* c = C + (size_t)i * ldc;
    if (beta == 0.f)
      std::fill(c, c + N, 0.f);
    else if (beta != 1.f)
      for (int j = 0; j < N; ++j) c[j] *= beta;
  }
  if (K <= 0 || alpha == 0.f) return;

  // B^T: materialise B as row-major K x N once (small matrices in practice:
  // the weight-gradient GEMM's B is the im2col buffer, transposed here).
  std::vector<float> b_copy;
  const float* Bn = B;
  int ldbn = ldb;
  if (trans_b) {
    b_copy.resize((size_t)K * N);
#pragma omp parallel for schedule(static) if ((size_t)K * N > 65536)
    for (int k = 0; k < K; ++k)
      for (int j = 0; j < N; ++j) b_copy[(size_t)k * N + j] = B[(size_t)j * ldb + k];
    Bn = b_copy.data();
    ldbn = N;
  }

  const int n_blocks = (N + kBlockN - 1) / kBlockN;
  // Parallelise over (row groups x column blocks) so thin layers (few output
  // channels, many pixels) and wide ones (many channels, few pixels) both split.
  const int row_group = std::max(kRows, ((M + 7) / 8 + kRows - 1) / kRows * kRows);
  const int m_groups = (M + row_group - 1) / row_group;
  const int tasks = m_groups * n_blocks;
#pragma omp parallel
  {
    std::vector<float> a_packed((size_t)row_group * kBlockK);
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < tasks; ++t) {
      const int mg = t / n_blocks, nb = t % n_blocks;
      const int i0 = mg * row_group, rows = std::min(row_group, M - i0);
      const int j0 = nb * kBlockN, n = std::min(kBlockN, N - j0);
      for (int k0 = 0; k0 < K; k0 += kBlockK) {
        const int kc = std::min(kBlockK, K - k0);
        for (int i = 0; i < rows; ++i)
          for (int k = 0; k < kc; ++k) {
            float a = trans_a ? A[(size_t)(k0 + k) * lda + (i0 + i)] : A[(size_t)(i0 + i) * lda + (k0 + k)];
            a_packed[(size_t)i * kc + k] = alpha * a;
          }
        kernel_block(rows, n, kc, a_packed.data(), Bn + (size_t)k0 * ldbn + j0, ldbn, C + (size_t)i0 * ldc + j0,
                     ldc);
      }
    }
  }
}

}  // namespace dn
