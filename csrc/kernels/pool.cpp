#include "kernels/pool.hpp"

#include <algorithm>
#include <cfloat>
#include <vector>

namespace dn {

// Per output row: a vertical max over the window's valid input rows into a
// row buffer (contiguous, vectorised), then a horizontal max over each
// window's valid columns. Planes (batch x channel) are split across threads.
void maxpool_forward_fast(const float* in, float* out, int batch, int c, int h, int w, int size, int stride,
                          int padding, int out_h, int out_w) {
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
        float* v = vmax.data();
        const float* r0 = src + (long)y0 * w;
        for (int x = 0; x < w; ++x) v[x] = r0[x];
        for (int y = y0 + 1; y < y1; ++y) {
          const float* r = src + (long)y * w;
#pragma omp simd
          for (int x = 0; x < w; ++x) v[x] = v[x] > r[x] ? v[x] : r[x];
        }
        if (size == 2 && stride == 2 && offset == 0 && 2 * out_w <= w) {
#pragma omp simd
          for (int j = 0; j < out_w; ++j) o[j] = std::max(v[2 * j], v[2 * j + 1]);
        } else {
          for (int j = 0; j < out_w; ++j) {
            float best = -FLT_MAX;
            for (int x = x_lo[j]; x < x_hi[j]; ++x) best = std::max(best, v[x]);
            o[j] = best;
          }
        }
      }
    }
  }
}

}  // namespace dn
