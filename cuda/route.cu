// [route] on device, as csrc/layers/route.cpp: concatenation of the sources'
// per-image outputs along channels; backward adds each slice of the delta into
// its source's delta.
#include "common.cuh"
#include "cuda_layers.hpp"

namespace dn {
namespace cuda {

namespace {

// i runs over batch * src_outputs; image b = i / src_outputs.
__global__ void route_copy_kernel(size_t total, size_t src_outputs, size_t outputs, size_t offset,
                                  const float* __restrict__ src, float* __restrict__ dst) {
  DN_GRID_STRIDE(i, total) {
    const size_t b = i / src_outputs, j = i % src_outputs;
    dst[b * outputs + offset + j] = src[i];
  }
}

__global__ void route_add_kernel(size_t total, size_t src_outputs, size_t outputs, size_t offset,
                                 const float* __restrict__ delta, float* __restrict__ src_delta) {
  DN_GRID_STRIDE(i, total) {
    const size_t b = i / src_outputs, j = i % src_outputs;
    src_delta[i] += delta[b * outputs + offset + j];
  }
}

}  // namespace

void cuda_route_forward(int batch, size_t outputs, const std::vector<RouteSource>& sources, float* d_output) {
  size_t offset = 0;
  for (const RouteSource& s : sources) {
    const size_t total = (size_t)batch * s.outputs;
    if (total) {
      route_copy_kernel<<<grid_for(total), kThreads>>>(total, s.outputs, outputs, offset, s.d_output, d_output);
      DN_CUDA_LAUNCH_CHECK();
    }
    offset += s.outputs;
  }
  check(offset == outputs, "route (CUDA): sources hold ", offset, " floats per image, the layer ", outputs);
}

void cuda_route_backward(int batch, size_t outputs, const std::vector<RouteSource>& sources, const float* d_delta) {
  size_t offset = 0;
  for (const RouteSource& s : sources) {
    const size_t total = (size_t)batch * s.outputs;
    if (total && s.d_delta) {
      route_add_kernel<<<grid_for(total), kThreads>>>(total, s.outputs, outputs, offset, d_delta, s.d_delta);
      DN_CUDA_LAUNCH_CHECK();
    }
    offset += s.outputs;
  }
  check(offset == outputs, "route (CUDA): sources hold ", offset, " floats per image, the layer ", outputs);
}

}  // namespace cuda
}  // namespace dn
