// [region] on device, mirroring csrc/layers/region.cpp with the shared
// formulas of csrc/kernels/region_formulas.hpp:
//  * forward activations on device: logistic on x, y, extra coords and
//    objectness (and on the classes when there is no softmax), softmax over
//    the classes or per WordTree group (temperature 1);
//  * the training loss on the host, as Darknet's GPU path does: the layer's
//    CPU forward on a host copy of the input writes l.delta / l.cost /
//    l.stats, and the delta is pushed to the device;
//  * backward on device (declared semantics): the logistic gradient on x, y,
//    extra coords and objectness, then the delta is added into the previous
//    layer's delta.
#include <vector>

#include "common.cuh"
#include "cuda_layers.hpp"
#include "kernels/region_formulas.hpp"

namespace dn {
namespace cuda {

namespace {

struct RegionGeometry {
  int plane;    // w * h
  int entries;  // coords + classes + 1
  int coords;
  bool background;
  bool logistic_classes;  // neither softmax nor tree
  size_t outputs;         // per image
};

RegionGeometry geometry_of(const RegionLayer& l) {
  RegionGeometry g;
  g.plane = l.w * l.h;
  g.entries = l.coords + l.classes + 1;
  g.coords = l.coords;
  g.background = l.background;
  g.logistic_classes = !l.softmax && !l.tree;
  g.outputs = l.outputs;
  return g;
}

// Entry (0 .. entries-1) of the element at linear index i of the batch.
__device__ inline int entry_of(size_t i, const RegionGeometry& g) {
  return (int)(((i % g.outputs) / (size_t)g.plane) % (size_t)g.entries);
}

// x, y, extra coords (4 .. coords-1) and, without background, objectness:
// the entries that pass through the logistic and take its gradient.
__device__ inline bool logistic_box_entry(int e, const RegionGeometry& g) {
  return e < 2 || (e >= 4 && e < g.coords) || (e == g.coords && !g.background);
}

// output = input with the logistic applied where the CPU applies it (the
// CPU's memcpy + in-place logistic planes, fused).
__global__ void region_logistic_kernel(size_t total, RegionGeometry g, const float* __restrict__ input,
                                       float* __restrict__ output) {
  DN_GRID_STRIDE(i, total) {
    const int e = entry_of(i, g);
    const bool logistic = logistic_box_entry(e, g) || (g.logistic_classes && e > g.coords);
    output[i] = logistic ? region_logistic(input[i]) : input[i];
  }
}

// Flat softmax: one thread per (image, anchor, cell) over classes + background
// entries starting at entry coords + !background, w*h apart (consecutive
// threads = consecutive cells = coalesced).
__global__ void region_softmax_kernel(int batch, int num, RegionGeometry g, int n, const float* __restrict__ input,
                                      float* __restrict__ output) {
  const int first_entry = g.coords + (g.background ? 0 : 1);
  DN_GRID_STRIDE(t, (size_t)batch * num * g.plane) {
    const size_t cell = t % g.plane;
    const size_t anchor = (t / g.plane) % num;
    const size_t b = t / ((size_t)g.plane * num);
    const size_t base = b * g.outputs + anchor * g.plane * g.entries + (size_t)first_entry * g.plane + cell;
    region_softmax(input + base, n, g.plane, output + base);
  }
}

// Tree softmax: one thread per (image, anchor, group, cell).
__global__ void region_tree_softmax_kernel(int batch, int num, RegionGeometry g, int groups,
                                           const int* __restrict__ group_offset,
                                           const int* __restrict__ group_size, const float* __restrict__ input,
                                           float* __restrict__ output) {
  DN_GRID_STRIDE(t, (size_t)batch * num * groups * g.plane) {
    const size_t cell = t % g.plane;
    size_t rest = t / g.plane;
    const int group = (int)(rest % groups);
    rest /= groups;
    const size_t anchor = rest % num;
    const size_t b = rest / num;
    const size_t base = b * g.outputs + anchor * g.plane * g.entries + (size_t)(g.coords + 1) * g.plane +
                        (size_t)group_offset[group] * g.plane + cell;
    region_softmax(input + base, group_size[group], g.plane, output + base);
  }
}

// delta *= logistic gradient on the logistic box entries; prev += delta.
__global__ void region_backward_kernel(size_t total, RegionGeometry g, const float* __restrict__ output,
                                       float* __restrict__ delta, float* __restrict__ prev_delta) {
  DN_GRID_STRIDE(i, total) {
    float d = delta[i];
    if (logistic_box_entry(entry_of(i, g), g)) {
      d *= region_logistic_gradient(output[i]);
      delta[i] = d;
    }
    if (prev_delta) prev_delta[i] += d;
  }
}

}  // namespace

void cuda_region_forward(RegionLayer& l, const float* d_input, float* d_output, float* d_delta,
                         const float* h_truth, bool train, int64_t seen) {
  const RegionGeometry g = geometry_of(l);
  const size_t total = (size_t)l.batch * l.outputs;
  check(l.outputs == (size_t)l.num * g.entries * g.plane, "region layer ", l.index,
        " (CUDA): outputs do not match num * (coords + classes + 1) * w * h");
  if (!total) return;
  region_logistic_kernel<<<grid_for(total), kThreads>>>(total, g, d_input, d_output);
  DN_CUDA_LAUNCH_CHECK();
  if (l.tree) {
    const WordTree& tree = *l.tree;
    DeviceBuffer<int> offsets, sizes;
    offsets.upload(tree.group_offset);
    sizes.upload(tree.group_size);
    const size_t threads = (size_t)l.batch * l.num * tree.groups() * g.plane;
    if (threads) {
      region_tree_softmax_kernel<<<grid_for(threads), kThreads>>>(l.batch, l.num, g, tree.groups(),
                                                                  offsets.data(), sizes.data(), d_input, d_output);
      DN_CUDA_LAUNCH_CHECK();
    }
    // The buffers are freed at scope exit; cudaFree waits for the kernel.
  } else if (l.softmax) {
    const size_t threads = (size_t)l.batch * l.num * g.plane;
    region_softmax_kernel<<<grid_for(threads), kThreads>>>(l.batch, l.num, g, l.classes + (l.background ? 1 : 0),
                                                           d_input, d_output);
    DN_CUDA_LAUNCH_CHECK();
  }

  if (!train) {
    l.cost = 0;
    if (d_delta) DN_CUDA_CHECK(cudaMemset(d_delta, 0, total * sizeof(float)));
    return;
  }
  check(d_delta != nullptr && l.training && l.delta.size() == total, "region layer ", l.index,
        " (CUDA): training forward without training buffers");
  // Loss on the host (Darknet's GPU path): the CPU forward on a host copy of
  // the input applies the same activation formulas, then the loss.
  std::vector<float> host_input(total);
  DN_CUDA_CHECK(cudaMemcpy(host_input.data(), d_input, total * sizeof(float), cudaMemcpyDeviceToHost));
  NetState s;
  s.input = host_input.data();
  s.truth = h_truth;
  s.train = true;
  s.seen = seen;
  l.forward(s);
  DN_CUDA_CHECK(cudaMemcpy(d_delta, l.delta.data(), total * sizeof(float), cudaMemcpyHostToDevice));
}

void cuda_region_backward(const RegionLayer& l, const float* d_output, float* d_delta, float* d_prev_delta) {
  const size_t total = (size_t)l.batch * l.outputs;
  if (!total || !d_delta) return;
  region_backward_kernel<<<grid_for(total), kThreads>>>(total, geometry_of(l), d_output, d_delta, d_prev_delta);
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace dn
