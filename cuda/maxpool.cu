// The maxpool ops, mirroring the CPU's reference loop: the window starts at
// -padding/2, out-of-image taps count as -FLT_MAX, the first maximum wins and
// its input index is kept for the backward.
#include <cfloat>

#include "common.cuh"
#include "cuda_backend.cuh"

namespace dn {
namespace cuda {

namespace {

// One thread per output element (b, k, i, j), in the CPU's index order.
__global__ void maxpool_forward_kernel(MaxpoolShape s, const float* __restrict__ input, float* __restrict__ output,
                                       int* __restrict__ argmax) {
  const int offset = -s.padding / 2;
  const size_t total = (size_t)s.batch * s.c * s.out_h * s.out_w;
  DN_GRID_STRIDE(out_index, total) {
    const int j = (int)(out_index % s.out_w);
    const int i = (int)((out_index / s.out_w) % s.out_h);
    const size_t bk = out_index / ((size_t)s.out_w * s.out_h);  // b * c + k
    const float* in = input + bk * s.h * s.w;
    float best = -FLT_MAX;
    int best_index = -1;
    for (int n = 0; n < s.size; ++n)
      for (int m = 0; m < s.size; ++m) {
        const int y = offset + i * s.stride + n, x = offset + j * s.stride + m;
        const bool valid = y >= 0 && y < s.h && x >= 0 && x < s.w;
        const float v = valid ? in[y * s.w + x] : -FLT_MAX;
        if (v > best) {  // first maximum wins
          best = v;
          best_index = valid ? (int)(bk * s.h * s.w + (size_t)y * s.w + x) : best_index;
        }
      }
    output[out_index] = best;
    if (argmax) argmax[out_index] = best_index;
  }
}

// Gather backward: one thread per input element adds the deltas of the
// outputs whose maximum it was. Outputs are visited in increasing index order,
// the order in which the CPU loop adds them, so the sums round identically
// (and no atomics are needed even when stride-1 windows overlap).
__global__ void maxpool_backward_kernel(MaxpoolShape s, const float* __restrict__ delta,
                                        const int* __restrict__ argmax, float* __restrict__ prev_delta) {
  const int offset = -s.padding / 2;
  const size_t total = (size_t)s.batch * s.c * s.h * s.w;
  DN_GRID_STRIDE(in_index, total) {
    const int x = (int)(in_index % s.w);
    const int y = (int)((in_index / s.w) % s.h);
    const size_t bk = in_index / ((size_t)s.w * s.h);
    // Output row i covers input rows offset + i*stride .. + size-1.
    const int ry = y - offset, rx = x - offset;  // >= 0 since offset <= 0
    const int i_lo = ry - s.size + 1 <= 0 ? 0 : (ry - s.size + 1 + s.stride - 1) / s.stride;
    const int j_lo = rx - s.size + 1 <= 0 ? 0 : (rx - s.size + 1 + s.stride - 1) / s.stride;
    const int i_hi = min(ry / s.stride, s.out_h - 1);
    const int j_hi = min(rx / s.stride, s.out_w - 1);
    float d = prev_delta[in_index];
    bool hit = false;
    for (int i = i_lo; i <= i_hi; ++i)
      for (int j = j_lo; j <= j_hi; ++j) {
        const size_t out_index = (bk * s.out_h + i) * s.out_w + j;
        if (argmax[out_index] == (int)in_index) {
          d += delta[out_index];
          hit = true;
        }
      }
    if (hit) prev_delta[in_index] = d;
  }
}

}  // namespace

void CudaBackend::maxpool_forward(const MaxpoolShape& s, const float* input, float* output, int* argmax) {
  if (s.batch <= 0 || s.c <= 0 || s.out_h <= 0 || s.out_w <= 0) return;
  const size_t total = (size_t)s.batch * s.c * s.out_h * s.out_w;
  check((size_t)s.batch * s.c * s.h * s.w <= (size_t)0x7fffffff, "maxpool (CUDA): input too large for int argmax");
  maxpool_forward_kernel<<<grid_for(total), kThreads, 0, stream_>>>(s, input, output, argmax);
  DN_CUDA_LAUNCH_CHECK();
}

void CudaBackend::maxpool_backward(const MaxpoolShape& s, const float* delta, const int* argmax,
                                   float* prev_delta) {
  if (!prev_delta || s.batch <= 0 || s.c <= 0 || s.h <= 0 || s.w <= 0) return;
  check(argmax != nullptr, "maxpool (CUDA): backward needs the argmax of a training forward");
  const size_t total = (size_t)s.batch * s.c * s.h * s.w;
  maxpool_backward_kernel<<<grid_for(total), kThreads, 0, stream_>>>(s, delta, argmax, prev_delta);
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace dn
