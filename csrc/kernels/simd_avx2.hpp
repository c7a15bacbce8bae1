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

}  // namespace dn
