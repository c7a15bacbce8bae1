// Darknet's reorg index map, for dims (w, h, c) as Darknet passes them.
// For the element at `linear` = i + w*(j + h*(k + c*b)) it returns the index
// w2 + w*s*(h2 + h*s*(c2 + (c/s^2)*b)) of the same element in the other layout.
#pragma once
#include "core/hd.hpp"

namespace dn {

DN_HD long reorg_index(long linear, int w, int h, int c, int stride) {
  const int i = (int)(linear % w);
  long rest = linear / w;
  const int j = (int)(rest % h);
  rest /= h;
  const int k = (int)(rest % c);
  const long b = rest / c;
  const int out_c = c / (stride * stride);
  const int c2 = k % out_c;
  const int offset = k / out_c;
  const int w2 = i * stride + offset % stride;
  const int h2 = j * stride + offset / stride;
  return w2 + (long)w * stride * (h2 + (long)h * stride * (c2 + (long)out_c * b));
}

}  // namespace dn
