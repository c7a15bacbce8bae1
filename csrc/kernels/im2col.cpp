#include "kernels/im2col.hpp"

namespace dn {

void im2col(const float* image, int channels, int height, int width, int size, int stride, int pad, float* columns) {
  const int out_h = (height + 2 * pad - size) / stride + 1;
  const int out_w = (width + 2 * pad - size) / stride + 1;
  const int rows = channels * size * size;
#pragma omp parallel for schedule(static) if ((long)rows * out_h * out_w > 65536)
  for (int r = 0; r < rows; ++r) {
    const Im2colRow row_of = im2col_row(r, size);
    const int kx = row_of.kx, ky = row_of.ky;
    const float* plane = image + (long)row_of.channel * height * width;
    float* dst = columns + (long)r * out_h * out_w;
    for (int oy = 0; oy < out_h; ++oy) {
      const int iy = oy * stride + ky - pad;
      float* row = dst + (long)oy * out_w;
      if (iy < 0 || iy >= height) {
        for (int ox = 0; ox < out_w; ++ox) row[ox] = 0.f;
        continue;
      }
      const float* src = plane + (long)iy * width;
      for (int ox = 0; ox < out_w; ++ox) {
        const int ix = ox * stride + kx - pad;
        row[ox] = (ix >= 0 && ix < width) ? src[ix] : 0.f;
      }
    }
  }
}

void col2im_add(const float* columns, int channels, int height, int width, int size, int stride, int pad,
                float* image) {
  const int out_h = (height + 2 * pad - size) / stride + 1;
  const int out_w = (width + 2 * pad - size) / stride + 1;
  // One thread per input channel: the taps of different channels never overlap.
#pragma omp parallel for schedule(static) if ((long)channels * size * size * out_h * out_w > 65536)
  for (int ch = 0; ch < channels; ++ch) {
    float* plane = image + (long)ch * height * width;
    for (int ky = 0; ky < size; ++ky)
      for (int kx = 0; kx < size; ++kx) {
        const float* src = columns + (long)((ch * size + ky) * size + kx) * out_h * out_w;
        for (int oy = 0; oy < out_h; ++oy) {
          const int iy = oy * stride + ky - pad;
          if (iy < 0 || iy >= height) continue;
          for (int ox = 0; ox < out_w; ++ox) {
            const int ix = ox * stride + kx - pad;
            if (ix >= 0 && ix < width) plane[(long)iy * width + ix] += src[(long)oy * out_w + ox];
          }
        }
      }
  }
}

}  // namespace dn
