// [softmax] on device, as csrc/layers/softmax.cpp: the shared softmax formula
// (csrc/kernels/softmax.hpp) per group (or WordTree sibling group) of each
// image; with truth, the
// cross-entropy delta t - p and cost sum(-t log p) (per-block partial sums in
// double, added on the host in block order: deterministic).
#include <vector>

#include "common.cuh"
#include "cuda_layers.hpp"
#include "kernels/cost.hpp"
#include "kernels/softmax.hpp"

namespace dn {
namespace cuda {

namespace {

// One thread per (image, group); consecutive threads take consecutive groups.
__global__ void softmax_kernel(int batch, size_t inputs, int groups, int group_size, float temperature,
                               const float* __restrict__ input, float* __restrict__ output) {
  DN_GRID_STRIDE(t, (size_t)batch * groups) {
    const size_t b = t / groups, g = t % groups;
    const size_t off = b * inputs + g * (size_t)group_size;
    softmax(input + off, group_size, temperature, 1, output + off);
  }
}

// Tree mode: one thread per (image, sibling group).
__global__ void softmax_tree_kernel(int batch, size_t inputs, int groups, const int* __restrict__ group_offset,
                                    const int* __restrict__ group_size, float temperature,
                                    const float* __restrict__ input, float* __restrict__ output) {
  DN_GRID_STRIDE(t, (size_t)batch * groups) {
    const size_t b = t / groups, g = t % groups;
    const size_t off = b * inputs + (size_t)group_offset[g];
    softmax(input + off, group_size[g], temperature, 1, output + off);
  }
}

__global__ void xent_kernel(size_t n, const float* __restrict__ output, const float* __restrict__ truth,
                            float* __restrict__ delta, double* __restrict__ partial) {
  double cost = 0;
  DN_GRID_STRIDE(i, n) {
    const float t = truth[i], p = output[i];
    const bool masked = t == kMaskedTruth;  // fill_hierarchy's unlabelled WordTree group
    if (delta) delta[i] = masked ? 0.f : t - p;
    if (t && !masked) cost += -t * logf(p);
  }
  cost = block_sum(cost);
  if (threadIdx.x == 0) partial[blockIdx.x] = cost;
}

// Cross-entropy delta and cost of the softmax output (0 without truth).
float cross_entropy(size_t n, const float* d_output, const float* d_truth, float* d_delta) {
  if (!d_truth || !n) return 0.f;
  const unsigned blocks = grid_for(n);
  DeviceBuffer<double> partial(blocks);
  xent_kernel<<<blocks, kThreads>>>(n, d_output, d_truth, d_delta, partial.data());
  DN_CUDA_LAUNCH_CHECK();
  std::vector<double> h = partial.to_host();
  double total = 0;
  for (double v : h) total += v;
  return (float)total;
}

}  // namespace

float cuda_softmax_forward(int batch, size_t inputs, int groups, float temperature, const float* d_input,
                           float* d_output, const float* d_truth, float* d_delta) {
  check(groups > 0 && inputs % groups == 0, "softmax (CUDA): ", inputs, " inputs not divisible into ", groups,
        " groups");
  const size_t threads = (size_t)batch * groups;
  if (!threads) return 0.f;
  softmax_kernel<<<grid_for(threads), kThreads>>>(batch, inputs, groups, (int)(inputs / groups), temperature,
                                                   d_input, d_output);
  DN_CUDA_LAUNCH_CHECK();
  return cross_entropy((size_t)batch * inputs, d_output, d_truth, d_delta);
}

float cuda_softmax_tree_forward(int batch, size_t inputs, const WordTree& tree, float temperature,
                                const float* d_input, float* d_output, const float* d_truth, float* d_delta) {
  check((size_t)tree.n() == inputs, "softmax (CUDA): tree has ", tree.n(), " nodes, the layer ", inputs, " inputs");
  const size_t threads = (size_t)batch * tree.groups();
  if (!threads) return 0.f;
  DeviceBuffer<int> offsets, sizes;
  offsets.upload(tree.group_offset);
  sizes.upload(tree.group_size);
  softmax_tree_kernel<<<grid_for(threads), kThreads>>>(batch, inputs, tree.groups(), offsets.data(), sizes.data(),
                                                        temperature, d_input, d_output);
  DN_CUDA_LAUNCH_CHECK();
  return cross_entropy((size_t)batch * inputs, d_output, d_truth, d_delta);
}

void cuda_softmax_backward(int batch, size_t inputs, const float* d_delta, float* d_prev_delta) {
  if (d_prev_delta) cuda_axpy((size_t)batch * inputs, 1.f, d_delta, d_prev_delta);
}

}  // namespace cuda
}  // namespace dn
