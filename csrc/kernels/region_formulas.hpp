// Region-layer formulas shared by the CPU loops (region.cpp, detect.cpp) and a
// future CUDA kernel: the logistic, the box transform from raw predictions to a
// relative box, the IoU Darknet uses, and the hierarchical (WordTree)
// probability. Everything is float, as in Darknet, so both paths round alike.
#pragma once
#include <math.h>

#include "core/hd.hpp"

namespace dn {

// Box centre and size, relative to the image (0..1).
struct RegionBox {
  float x, y, w, h;
};

DN_HD float region_logistic(float x) { return 1.f / (1.f + expf(-x)); }
// d logistic / dx through the output y.
DN_HD float region_logistic_gradient(float y) { return (1.f - y) * y; }

// Offset of entry `entry` of the prediction at `location` (anchor*w*h + cell)
// of image `b`: Darknet's memory layout (per anchor, per entry, a w*h plane).
DN_HD int region_entry_index(int b, int location, int entry, int w, int h, int coords, int classes, int outputs) {
  int anchor = location / (w * h);
  int cell = location % (w * h);
  return b * outputs + anchor * w * h * (coords + classes + 1) + entry * w * h + cell;
}

// Prediction at `index` (its x entry) with stride = w*h between entries,
// in cell (col, row), with anchor `n`: x, y already passed through the logistic.
DN_HD RegionBox region_box(const float* x, const float* anchors, int n, int index, int col, int row, int w, int h,
                           int stride) {
  RegionBox b;
  b.x = (col + x[index + 0 * stride]) / w;
  b.y = (row + x[index + 1 * stride]) / h;
  b.w = expf(x[index + 2 * stride]) * anchors[2 * n] / w;
  b.h = expf(x[index + 3 * stride]) * anchors[2 * n + 1] / h;
  return b;
}

// Length of the overlap of two 1-D segments given by centre and size (may be negative).
DN_HD float region_overlap(float c1, float s1, float c2, float s2) {
  float left1 = c1 - s1 / 2, left2 = c2 - s2 / 2;
  float left = left1 > left2 ? left1 : left2;
  float right1 = c1 + s1 / 2, right2 = c2 + s2 / 2;
  float right = right1 < right2 ? right1 : right2;
  return right - left;
}

DN_HD float region_box_intersection(RegionBox a, RegionBox b) {
  float ow = region_overlap(a.x, a.w, b.x, b.w);
  float oh = region_overlap(a.y, a.h, b.y, b.h);
  if (ow < 0 || oh < 0) return 0;
  return ow * oh;
}

DN_HD float region_box_iou(RegionBox a, RegionBox b) {
  float inter = region_box_intersection(a, b);
  float uni = a.w * a.h + b.w * b.h - inter;
  return inter / uni;
}

// Product of the conditional probabilities from node `c` up to its root;
// x points at the class-0 entry of one prediction, entries `stride` apart.
DN_HD float hierarchy_probability(const float* x, const int* parent, int c, int stride) {
  float p = 1;
  while (c >= 0) {
    p = p * x[c * stride];
    c = parent[c];
  }
  return p;
}

// Softmax of n values `stride` apart (temperature 1), max-shifted for range.
DN_HD void region_softmax(const float* in, int n, int stride, float* out) {
  float largest = -INFINITY;
  for (int i = 0; i < n; ++i) largest = in[i * stride] > largest ? in[i * stride] : largest;
  float sum = 0;
  for (int i = 0; i < n; ++i) {
    float e = expf(in[i * stride] - largest);
    sum += e;
    out[i * stride] = e;
  }
  for (int i = 0; i < n; ++i) out[i * stride] /= sum;
}

}  // namespace dn
