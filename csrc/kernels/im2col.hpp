// Darknet's im2col/col2im layout: column row r = (ch*size + ky)*size + kx,
// column col = oy*out_w + ox; out-of-image taps read 0.
#pragma once
#include "core/hd.hpp"

namespace dn {

// Row r of the column matrix as (input channel, tap row, tap column); the CPU's im2col and
// the CUDA implicit-GEMM convolutions (cuda/conv_fast.cu) decode rows with this one function.
struct Im2colRow {
  int channel, ky, kx;
};
DN_HD Im2colRow im2col_row(int r, int size) {
  const int taps = size * size;
  const int channel = r / taps, tap = r - channel * taps;
  const int ky = tap / size;
  return {channel, ky, tap - ky * size};
}

void im2col(const float* image, int channels, int height, int width, int size, int stride, int pad, float* columns);
// Adds the columns back into image (gradient of im2col).
void col2im_add(const float* columns, int channels, int height, int width, int size, int stride, int pad,
                float* image);

}  // namespace dn
