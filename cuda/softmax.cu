// The softmax ops: the shared softmax formula (csrc/kernels/softmax.hpp) per
// group, or per WordTree sibling group, of each image; and the cross-entropy
// delta t - p with the cost sum(-t log p), reduced on the device in double
// (fixed order: deterministic).
#include "common.cuh"
#include "cuda_backend.cuh"
#include "kernels/cost.hpp"
#include "kernels/softmax.hpp"
#include "parse/tree.hpp"

namespace dn {
namespace cuda {

namespace {

// One thread per (image, group); consecutive threads take consecutive groups.
__global__ void softmax_kernel(int batch, size_t inputs, int groups, int group_size, float temperature,
                               const float* input, float* output) {
  DN_GRID_STRIDE(t, (size_t)batch * groups) {
    const size_t b = t / groups, g = t % groups;
    const size_t off = b * inputs + g * (size_t)group_size;
    dn::softmax(input + off, group_size, temperature, 1, output + off);
  }
}

// Tree mode: one thread per (image, sibling group); `groups_dev` holds the
// group offsets, then the group sizes.
__global__ void softmax_tree_kernel(int batch, size_t inputs, int groups, const int* __restrict__ groups_dev,
                                    float temperature, const float* input, float* output) {
  DN_GRID_STRIDE(t, (size_t)batch * groups) {
    const size_t b = t / groups, g = t % groups;
    const size_t off = b * inputs + (size_t)groups_dev[g];
    dn::softmax(input + off, groups_dev[groups + g], temperature, 1, output + off);
  }
}

__global__ void cross_entropy_kernel(size_t n, const float* __restrict__ truth, const float* output,
                                     float* __restrict__ delta, double* __restrict__ partial) {
  double cost = 0;
  DN_GRID_STRIDE(i, n) {
    const float t = truth[i], p = output[i];
    const bool masked = t == kMaskedTruth;  // fill_hierarchy's unlabelled WordTree group: no delta, no loss
    if (delta) delta[i] = masked ? 0.f : t - p;
    if (t != 0.f && !masked) cost += -t * logf(p);
  }
  cost = block_sum(cost);
  if (threadIdx.x == 0) partial[blockIdx.x] = cost;
}

}  // namespace

void CudaBackend::softmax(int batch, size_t inputs, int groups, float temperature, const float* input,
                          float* output) {
  check(groups > 0 && inputs % (size_t)groups == 0, "softmax (CUDA): ", inputs, " inputs not divisible into ",
        groups, " groups");
  if (batch <= 0 || inputs == 0) return;
  const size_t threads = (size_t)batch * groups;
  softmax_kernel<<<grid_for(threads), kThreads, 0, stream_>>>(batch, inputs, groups, (int)(inputs / groups),
                                                              temperature, input, output);
  DN_CUDA_LAUNCH_CHECK();
}

void CudaBackend::softmax_tree(int batch, size_t inputs, const WordTree& tree, float temperature,
                               const float* input, float* output) {
  check((size_t)tree.n() == inputs, "softmax (CUDA): tree has ", tree.n(), " nodes, the layer ", inputs, " inputs");
  const size_t threads = (size_t)batch * tree.groups();
  if (batch <= 0 || !threads) return;
  softmax_tree_kernel<<<grid_for(threads), kThreads, 0, stream_>>>(batch, inputs, tree.groups(), tree_groups(tree),
                                                                   temperature, input, output);
  DN_CUDA_LAUNCH_CHECK();
}

float CudaBackend::softmax_cross_entropy(size_t n, const float* truth, const float* output, float* delta) {
  if (!n) return 0.f;
  const unsigned blocks = reduce_grid(n);
  cross_entropy_kernel<<<blocks, kThreads, 0, stream_>>>(n, truth, output, delta, reduction_partials());
  DN_CUDA_LAUNCH_CHECK();
  return (float)finish_sum(blocks);
}

}  // namespace cuda
}  // namespace dn
