// AVX2 pieces the vector kernels share (gemm.cpp, conv_fast.cpp, batchnorm.cpp). Call them
// only from functions compiled for avx2,fma.
#pragma once
#include <immintrin.h>

#include "kernels/activations.hpp"

namespace dn {

// Lanes 0..n-1 set (n in 0..8): the mask of a row's last, partial vector.
__attribute__((target("avx2,fma"), always_inline)) inline __m256i tail_mask_avx2(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The convolution/GEMM epilogue's activation on 8 values: leaky as max(v, .1v) (Darknet's
// x > 0 ? x : .1x), relu as max(v, 0), linear as is, the rare ones by the scalar formula.
__attribute__((target("avx2,fma"), always_inline)) inline __m256 activate_avx2(__m256 v, Activation act) {
  if (act == Activation::Leaky) return _mm256_max_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(.1f)));
  if (act == Activation::Relu) return _mm256_max_ps(v, _mm256_setzero_ps());
  if (act == Activation::Linear) return v;
  alignas(32) float tmp[8];
  _mm256_store_ps(tmp, v);
  for (int q = 0; q < 8; ++q) tmp[q] = activate(tmp[q], act);
  return _mm256_load_ps(tmp);
}

// r[0..7] as the rows of an 8 x 8 matrix, transposed in registers.
__attribute__((target("avx2"), always_inline)) inline void transpose8x8_avx2(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

}  // namespace dn
