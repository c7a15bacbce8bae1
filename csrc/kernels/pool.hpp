// Fast max pooling (values only, no argmax): Darknet's window placement
// (start at -padding/2, cells outside the input never win). Used by
// CpuBackend::maxpool_forward at inference; its loop with argmax stays the
// reference and the training path.
// isa: AVX2 and up run the 2x2 / 2 rows with 256-bit loads and an in-register pair max
// (the compiler-vectorised loop gathers the even and odd columns at SSE width).
#pragma once

#include "core/options.hpp"

namespace dn {

void maxpool_forward_fast(CpuIsa isa, const float* in, float* out, int batch, int c, int h, int w, int size,
                          int stride, int padding, int out_h, int out_w);

}  // namespace dn
