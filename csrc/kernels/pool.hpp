// Fast max pooling (values only, no argmax): Darknet's window placement
// (start at -padding/2, cells outside the input never win). Used by
// CpuBackend::maxpool_forward at inference; its loop with argmax stays the
// reference and the training path.
// isa: AVX2 and up run the 2x2 / 2 rows with 256-bit loads and an in-register pair max
// (the compiler-vectorised loop gathers the even and odd columns at SSE width).
#pragma once

#include <cfloat>
#include <cstddef>

#include "core/options.hpp"

namespace dn {

// Darknet's update, max = val > max ? val : max from -FLT_MAX: a NaN never wins, and a
// window of -inf gives -FLT_MAX. vmaxps(val, max) is the same comparison.
inline float darknet_max(float val, float max) { return val > max ? val : max; }

// One 2x2 window in Darknet's scan order (top left, top right, bottom left, bottom right):
// the maxpool layer's bits, for the kernels that pool in their epilogues too.
inline float darknet_max_2x2(float top_left, float top_right, float bottom_left, float bottom_right) {
  return darknet_max(bottom_right, darknet_max(bottom_left, darknet_max(top_right, darknet_max(top_left, -FLT_MAX))));
}

// One output row of a 2x2 stride-2 pool (Darknet's scan order and ties) from the whole input
// rows r0 and r1 (2 * out_w floats each): the fused pool of conv3x3_direct uses it too.
// prefetch_next: the distance to the next row pair, prefetched as the row is read (0: none
// needed, the rows are in cache).
void maxpool2x2_row(CpuIsa isa, const float* r0, const float* r1, float* out, int out_w, ptrdiff_t prefetch_next = 0);

void maxpool_forward_fast(CpuIsa isa, const float* in, float* out, int batch, int c, int h, int w, int size,
                          int stride, int padding, int out_h, int out_w);

}  // namespace dn
