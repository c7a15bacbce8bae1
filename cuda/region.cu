// The region ops, mirroring RegionLayer's activation and backward with the
// shared formulas of csrc/kernels/region_formulas.hpp:
//  * region_activate: logistic on x, y, extra coords and objectness (and on
//    the classes when there is no softmax), softmax over the classes or per
//    WordTree group (temperature 1);
//  * region_gradient: delta *= the logistic gradient on x, y, extra coords
//    and objectness (declared semantics).
// The loss stays on the host, in the layer (as Darknet's GPU path).
#include "common.cuh"
#include "cuda_backend.cuh"
#include "kernels/region_formulas.hpp"
#include "parse/tree.hpp"

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

RegionGeometry geometry_of(const RegionShape& s) {
  RegionGeometry g;
  g.plane = s.w * s.h;
  g.entries = s.coords + s.classes + 1;
  g.coords = s.coords;
  g.background = s.background;
  g.logistic_classes = !s.softmax && !s.tree;
  g.outputs = s.outputs;
  check(s.outputs == (size_t)s.num * g.entries * g.plane, "region (CUDA): outputs ", s.outputs,
        " do not match num * (coords + classes + 1) * w * h = ", (size_t)s.num * g.entries * g.plane);
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
// CPU's copy + in-place logistic planes, fused).
__global__ void region_logistic_kernel(size_t total, RegionGeometry g, const float* input,
                                       float* output) {
  DN_GRID_STRIDE(i, total) {
    const int e = entry_of(i, g);
    const bool logistic = logistic_box_entry(e, g) || (g.logistic_classes && e > g.coords);
    output[i] = logistic ? region_logistic(input[i]) : input[i];
  }
}

// Flat softmax: one thread per (image, anchor, cell) over classes + background
// entries starting at entry coords + !background, w*h apart (consecutive
// threads = consecutive cells = coalesced).
__global__ void region_softmax_kernel(int batch, int num, RegionGeometry g, int n, const float* input,
                                      float* output) {
  const int first_entry = g.coords + (g.background ? 0 : 1);
  DN_GRID_STRIDE(t, (size_t)batch * num * g.plane) {
    const size_t cell = t % g.plane;
    const size_t anchor = (t / g.plane) % num;
    const size_t b = t / ((size_t)g.plane * num);
    const size_t base = b * g.outputs + anchor * g.plane * g.entries + (size_t)first_entry * g.plane + cell;
    region_softmax(input + base, n, g.plane, output + base);
  }
}

// Tree softmax: one thread per (image, anchor, group, cell); `groups_dev`
// holds the group offsets, then the group sizes.
__global__ void region_tree_softmax_kernel(int batch, int num, RegionGeometry g, int groups,
                                           const int* __restrict__ groups_dev, const float* input,
                                           float* output) {
  DN_GRID_STRIDE(t, (size_t)batch * num * groups * g.plane) {
    const size_t cell = t % g.plane;
    size_t rest = t / g.plane;
    const int group = (int)(rest % groups);
    rest /= groups;
    const size_t anchor = rest % num;
    const size_t b = rest / num;
    const size_t base = b * g.outputs + anchor * g.plane * g.entries + (size_t)(g.coords + 1) * g.plane +
                        (size_t)groups_dev[group] * g.plane + cell;
    region_softmax(input + base, groups_dev[groups + group], g.plane, output + base);
  }
}

__global__ void region_gradient_kernel(size_t total, RegionGeometry g, const float* output,
                                       float* __restrict__ delta) {
  DN_GRID_STRIDE(i, total) {
    if (logistic_box_entry(entry_of(i, g), g)) delta[i] *= region_logistic_gradient(output[i]);
  }
}

}  // namespace

void CudaBackend::region_activate(const RegionShape& s, const float* input, float* output) {
  const RegionGeometry g = geometry_of(s);
  if (s.batch <= 0 || !s.outputs) return;
  const size_t total = (size_t)s.batch * s.outputs;
  region_logistic_kernel<<<grid_for(total), kThreads, 0, stream_>>>(total, g, input, output);
  DN_CUDA_LAUNCH_CHECK();
  if (s.tree) {
    const WordTree& tree = *s.tree;
    check(tree.n() == s.classes, "region (CUDA): tree has ", tree.n(), " nodes, the layer ", s.classes, " classes");
    const size_t threads = (size_t)s.batch * s.num * tree.groups() * g.plane;
    if (!threads) return;
    region_tree_softmax_kernel<<<grid_for(threads), kThreads, 0, stream_>>>(s.batch, s.num, g, tree.groups(),
                                                                           tree_groups(tree), input, output);
    DN_CUDA_LAUNCH_CHECK();
  } else if (s.softmax) {
    const size_t threads = (size_t)s.batch * s.num * g.plane;
    region_softmax_kernel<<<grid_for(threads), kThreads, 0, stream_>>>(
        s.batch, s.num, g, s.classes + (s.background ? 1 : 0), input, output);
    DN_CUDA_LAUNCH_CHECK();
  }
}

void CudaBackend::region_gradient(const RegionShape& s, const float* output, float* delta) {
  const RegionGeometry g = geometry_of(s);
  if (s.batch <= 0 || !s.outputs) return;
  const size_t total = (size_t)s.batch * s.outputs;
  region_gradient_kernel<<<grid_for(total), kThreads, 0, stream_>>>(total, g, output, delta);
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace dn
