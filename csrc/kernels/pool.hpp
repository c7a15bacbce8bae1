// Fast max pooling (values only, no argmax): Darknet's window placement
// (start at -padding/2, cells outside the input never win). Used by
// CpuBackend::maxpool_forward at inference; its loop with argmax stays the
// reference and the training path.
#pragma once

namespace dn {

void maxpool_forward_fast(const float* in, float* out, int batch, int c, int h, int w, int size, int stride,
                          int padding, int out_h, int out_w);

}  // namespace dn
