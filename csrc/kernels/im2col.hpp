// Darknet's im2col/col2im layout: column row r = (ch*size + ky)*size + kx,
// column col = oy*out_w + ox; out-of-image taps read 0.
#pragma once

namespace dn {

void im2col(const float* image, int channels, int height, int width, int size, int stride, int pad, float* columns);
// Adds the columns back into image (gradient of im2col).
void col2im_add(const float* columns, int channels, int height, int width, int size, int stride, int pad,
                float* image);

}  // namespace dn
