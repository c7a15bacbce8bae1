#include "kernels/pool.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cfloat>
#include <vector>

namespace dn {

namespace {

// One output row of a 2x2 / 2 pool from input rows r0, r1 (both whole), in the reference
// scan's order (r0 even, r0 odd, r1 even, r1 odd), so ties and NaNs give its bits.
// Returns the outputs written (a multiple of 8); the caller finishes the row.
__attribute__((target("avx2"))) int pool2x2_row_avx2(const float* r0, const float* r1, float* o, int out_w,
                                                     ptrdiff_t next) {
  const __m256 lowest = _mm256_set1_ps(-FLT_MAX);
  int j = 0;
  for (; j + 8 <= out_w; j += 8) {
    // The next output row's two input rows (next floats on), a line each per step: two read
    // streams per row pair are too few for the hardware prefetchers to run ahead of.
    _mm_prefetch((const char*)(r0 + next + 2 * j), _MM_HINT_T0);
    _mm_prefetch((const char*)(r1 + next + 2 * j), _MM_HINT_T0);
    const __m256 a0 = _mm256_loadu_ps(r0 + 2 * j), a1 = _mm256_loadu_ps(r0 + 2 * j + 8);
    const __m256 b0 = _mm256_loadu_ps(r1 + 2 * j), b1 = _mm256_loadu_ps(r1 + 2 * j + 8);
    // Even / odd columns; within 128-bit lanes, so the 64-bit lanes hold outputs
    // (0,1) (4,5) (2,3) (6,7) until the final permute.
    __m256 m = _mm256_max_ps(_mm256_shuffle_ps(a0, a1, 0x88), lowest);
    m = _mm256_max_ps(_mm256_shuffle_ps(a0, a1, 0xDD), m);
    m = _mm256_max_ps(_mm256_shuffle_ps(b0, b1, 0x88), m);
    m = _mm256_max_ps(_mm256_shuffle_ps(b0, b1, 0xDD), m);
    _mm256_storeu_ps(o + j, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(m), 0xD8)));
  }
  return j;
}

}  // namespace

void maxpool2x2_row(CpuIsa isa, const float* r0, const float* r1, float* o, int out_w, ptrdiff_t prefetch_next) {
  int j = isa != CpuIsa::Plain ? pool2x2_row_avx2(r0, r1, o, out_w, prefetch_next) : 0;
  for (; j < out_w; ++j) o[j] = darknet_max_2x2(r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]);
}

// Per output row: 2x2 / 2 windows straight from the two input rows (AVX2: 8 outputs
// per step); other windows a vertical max over the window's valid input rows into a
// row buffer (contiguous, vectorised), then a horizontal max over each window's valid
// columns. Planes (batch x channel) are split across threads.
void maxpool_forward_fast(CpuIsa isa, const float* in, float* out, int batch, int c, int h, int w, int size,
                          int stride, int padding, int out_h, int out_w) {
  const int offset = -padding / 2;
  const long planes = (long)batch * c;
  // Column windows (clipped to the input) are the same for every row.
  std::vector<int> x_lo(out_w), x_hi(out_w);
  for (int j = 0; j < out_w; ++j) {
    x_lo[j] = std::max(0, offset + j * stride);
    x_hi[j] = std::min(w, offset + j * stride + size);
  }
#pragma omp parallel
  {
    std::vector<float> vmax(w);
#pragma omp for schedule(static)
    for (long p = 0; p < planes; ++p) {
      const float* src = in + p * h * w;
      float* dst = out + p * out_h * out_w;
      for (int i = 0; i < out_h; ++i) {
        const int y0 = std::max(0, offset + i * stride), y1 = std::min(h, offset + i * stride + size);
        float* o = dst + (long)i * out_w;
        if (y0 >= y1) {
          for (int j = 0; j < out_w; ++j) o[j] = -FLT_MAX;
          continue;
        }
        const float* r0 = src + (long)y0 * w;
        if (size == 2 && stride == 2 && offset == 0 && 2 * out_w <= w && y1 - y0 == 2) {
          maxpool2x2_row(isa, r0, r0 + w, o, out_w, 2 * (ptrdiff_t)w);
          continue;
        }
        // Other windows: the same maximum, columns first (only the sign of a zero tie can
        // differ from the reference's row-major scan).
        float* v = vmax.data();
#pragma omp simd
        for (int x = 0; x < w; ++x) v[x] = darknet_max(r0[x], -FLT_MAX);
        for (int y = y0 + 1; y < y1; ++y) {
          const float* r = src + (long)y * w;
#pragma omp simd
          for (int x = 0; x < w; ++x) v[x] = darknet_max(r[x], v[x]);
        }
        if (size == 2 && stride == 1 && offset == 0) {
#pragma omp simd
          for (int j = 0; j < std::min(out_w, w - 1); ++j) o[j] = darknet_max(v[j + 1], v[j]);
          for (int j = std::max(0, w - 1); j < out_w; ++j) {
            float best = -FLT_MAX;
            for (int x = x_lo[j]; x < x_hi[j]; ++x) best = darknet_max(v[x], best);
            o[j] = best;
          }
        } else {
          for (int j = 0; j < out_w; ++j) {
            float best = -FLT_MAX;
            for (int x = x_lo[j]; x < x_hi[j]; ++x) best = darknet_max(v[x], best);
            o[j] = best;
          }
        }
      }
    }
  }
}

}  // namespace dn
