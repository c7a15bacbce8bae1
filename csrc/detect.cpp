#include "detect.hpp"

#include <algorithm>
#include <numeric>
#include <utility>

#include "core/error.hpp"
#include "kernels/region_formulas.hpp"
#include "layers/region.hpp"
#include "network.hpp"

namespace dn {

void Detections::reserve(size_t n) {
  boxes.reserve(4 * n);
  objectness.reserve(n);
  probs.reserve(n * (size_t)classes);
  index.reserve(n);
}

void hierarchy_predictions(float* predictions, int n, const WordTree& tree, bool only_leaves, int stride) {
  for (int j = 0; j < n; ++j) {
    const int parent = tree.parent[j];
    if (parent >= 0) predictions[j * stride] *= predictions[parent * stride];
  }
  if (only_leaves)
    for (int j = 0; j < n; ++j)
      if (!tree.leaf[j]) predictions[j * stride] = 0;
}

int hierarchy_top_prediction(const float* predictions, const WordTree& tree, float thresh, int stride) {
  float p = 1;
  int group = 0;
  for (;;) {
    float best = 0;
    int best_node = 0;
    const int off = tree.group_offset[group];
    for (int i = 0; i < tree.group_size[group]; ++i) {
      const float val = predictions[(off + i) * stride];
      if (val > best) {
        best = val;
        best_node = off + i;
      }
    }
    if (p * best > thresh) {
      p = p * best;
      group = tree.child[best_node];
      if (group < 0) return best_node;
    } else if (group == 0) {
      return best_node;
    } else {
      return tree.parent[tree.group_offset[group]];
    }
  }
}

void region_detections(const RegionOutput& r, float thresh, float hier_thresh, const std::vector<int>* map,
                       Detections& out) {
  check(r.data && r.anchors, "region_detections: no output or anchors");
  check(r.w > 0 && r.h > 0 && r.num > 0 && r.classes > 0 && r.coords >= 4, "region_detections: bad shape w=", r.w,
        " h=", r.h, " num=", r.num, " classes=", r.classes, " coords=", r.coords);
  check(out.classes == 0 || out.classes == r.classes, "region_detections: ", r.classes,
        " classes do not match the ", out.classes, " already collected");
  if (r.tree) check(r.tree->n() == r.classes, "region_detections: tree has ", r.tree->n(), " nodes, output has ",
                    r.classes, " classes");
  if (map && r.tree)
    for (int m : *map) check(m >= 0 && m < r.classes, "region_detections: map entry ", m, " outside 0..", r.classes - 1);
  out.classes = r.classes;
  const int plane = r.w * r.h;
  const int per_image = plane * r.num * (r.coords + 1 + r.classes);
  const size_t first = out.size();
  const size_t count = (size_t)plane * r.num;
  out.boxes.resize(4 * (first + count));
  out.objectness.resize(first + count);
  out.probs.resize((first + count) * r.classes, 0.f);
  out.index.resize(first + count);

  auto entry = [&](int location, int e) {
    return region_entry_index(0, location, e, r.w, r.h, r.coords, r.classes, per_image);
  };
#pragma omp parallel if (count * r.classes > 100000)
  {
    std::vector<float> tree_probs(r.tree ? r.classes : 0);
#pragma omp for
    for (int cell = 0; cell < plane; ++cell) {
      const int row = cell / r.w, col = cell % r.w;
      for (int n = 0; n < r.num; ++n) {
        const int location = n * plane + cell;
        const size_t k = first + location;
        float* prob = &out.probs[k * r.classes];
        const float scale = r.background ? 1.f : r.data[entry(location, r.coords)];
        const RegionBox b = region_box(r.data, r.anchors, n, entry(location, 0), col, row, r.w, r.h, plane);
        out.boxes[4 * k + 0] = b.x;
        out.boxes[4 * k + 1] = b.y;
        out.boxes[4 * k + 2] = b.w;
        out.boxes[4 * k + 3] = b.h;
        out.objectness[k] = scale > thresh ? scale : 0;
        out.index[k] = (int)k;

        if (r.tree) {
          const float* cls = r.data + entry(location, r.coords + !r.background);
          // Absolute node probabilities on a copy (Darknet overwrites the layer output).
          for (int j = 0; j < r.classes; ++j) tree_probs[j] = cls[j * plane];
          hierarchy_predictions(tree_probs.data(), r.classes, *r.tree, false, 1);
          if (map) {
            for (size_t j = 0; j < map->size() && (int)j < r.classes; ++j) {
              const float p = scale * tree_probs[(*map)[j]];
              prob[j] = p > thresh ? p : 0;
            }
          } else {
            const int top = hierarchy_top_prediction(tree_probs.data(), *r.tree, hier_thresh, 1);
            prob[top] = scale > thresh ? scale : 0;
          }
        } else if (out.objectness[k]) {
          // Darknet reads class j at entry coords+1+j here even with background=1.
          const float* flat_cls = r.data + entry(location, r.coords + 1);
          for (int j = 0; j < r.classes; ++j) {
            const float p = scale * flat_cls[j * plane];
            prob[j] = p > thresh ? p : 0;
          }
        }
      }
    }
  }
}

void correct_region_boxes(float* boxes, size_t count, const BoxCorrection& c) {
  check(c.image_w > 0 && c.image_h > 0 && c.net_w > 0 && c.net_h > 0, "correct_region_boxes: bad sizes image ",
        c.image_w, "x", c.image_h, ", network ", c.net_w, "x", c.net_h);
  int new_w = c.net_w, new_h = c.net_h;
  if (c.letterbox) {
    // The letterboxed image's size inside the network input, integer as Darknet.
    if ((float)c.net_w / c.image_w < (float)c.net_h / c.image_h) {
      new_w = c.net_w;
      new_h = (c.image_h * c.net_w) / c.image_w;
    } else {
      new_h = c.net_h;
      new_w = (c.image_w * c.net_h) / c.image_h;
    }
  }
  const double pad_x = (c.net_w - new_w) / 2. / c.net_w, pad_y = (c.net_h - new_h) / 2. / c.net_h;
  const float fill_x = (float)new_w / c.net_w, fill_y = (float)new_h / c.net_h;
  for (size_t i = 0; i < count; ++i) {
    float* b = boxes + 4 * i;
    float x = (float)((b[0] - pad_x) / fill_x);
    float y = (float)((b[1] - pad_y) / fill_y);
    float w = b[2] * ((float)c.net_w / new_w);
    float h = b[3] * ((float)c.net_h / new_h);
    if (!c.relative) {
      x *= c.image_w;
      w *= c.image_w;
      y *= c.image_h;
      h *= c.image_h;
    }
    b[0] = x;
    b[1] = y;
    b[2] = w;
    b[3] = h;
  }
}

Detections get_network_boxes(Network& net, int image_w, int image_h, float thresh, float hier_thresh,
                             const std::vector<int>* map, bool letterbox, bool relative, int batch_index) {
  Detections dets;
  BoxCorrection corr;
  corr.image_w = image_w;
  corr.image_h = image_h;
  corr.net_w = net.width();
  corr.net_h = net.height();
  corr.letterbox = letterbox;
  corr.relative = relative;
  bool any = false;
  for (auto& layer : net.layers) {
    auto* region = dynamic_cast<RegionLayer*>(layer.get());
    if (!region) continue;
    any = true;
    check(batch_index >= 0 && batch_index < region->batch, "get_network_boxes: image ", batch_index,
          " outside the batch of ", region->batch);
    check(region->output.size() >= (size_t)region->batch * region->outputs, "get_network_boxes: region layer ",
          region->index, " has no output (run a forward first)");
    RegionOutput r;
    // Read-only host view: downloads a device output without marking the host copy newest.
    r.data = std::as_const(region->output).host() + (size_t)batch_index * region->outputs;
    r.w = region->w;
    r.h = region->h;
    r.num = region->num;
    r.classes = region->classes;
    r.coords = region->coords;
    r.background = region->background;
    r.anchors = region->anchors.data();
    r.tree = region->tree.get();
    const size_t first = dets.size();
    region_detections(r, thresh, hier_thresh, map, dets);
    correct_region_boxes(dets.boxes.data() + 4 * first, dets.size() - first, corr);
  }
  check(any, "get_network_boxes: the network has no region layer");
  return dets;
}

void do_nms_sort(Detections& d, float nms) {
  const int total_all = (int)d.size();
  const int classes = d.classes;
  std::vector<int> order(total_all);
  std::iota(order.begin(), order.end(), 0);
  // Entries with objectness 0 are swapped to the end exactly as Darknet does.
  int last = total_all - 1;
  for (int i = 0; i <= last; ++i) {
    if (d.objectness[order[i]] == 0) {
      std::swap(order[i], order[last]);
      --last;
      --i;
    }
  }
  const int total = last + 1;

  for (int k = 0; k < classes; ++k) {
    // A class no entry scores keeps the order under a stable sort; skip it.
    bool any = false;
    for (int i = 0; i < total && !any; ++i) any = d.probs[(size_t)order[i] * classes + k] != 0;
    if (!any) continue;
    auto prob = [&](int e) { return d.probs[(size_t)e * classes + k]; };
    std::stable_sort(order.begin(), order.begin() + total, [&](int a, int b) { return prob(a) > prob(b); });
    for (int i = 0; i < total; ++i) {
      if (prob(order[i]) == 0) continue;
      const float* ba = &d.boxes[4 * (size_t)order[i]];
      const RegionBox a{ba[0], ba[1], ba[2], ba[3]};
      for (int j = i + 1; j < total; ++j) {
        const float* bb = &d.boxes[4 * (size_t)order[j]];
        if (region_box_iou(a, RegionBox{bb[0], bb[1], bb[2], bb[3]}) > nms)
          d.probs[(size_t)order[j] * classes + k] = 0;
      }
    }
  }

  Detections sorted;
  sorted.classes = classes;
  sorted.reserve(total_all);
  for (int e : order) {
    sorted.boxes.insert(sorted.boxes.end(), d.boxes.begin() + 4 * (size_t)e, d.boxes.begin() + 4 * (size_t)e + 4);
    sorted.objectness.push_back(d.objectness[e]);
    sorted.probs.insert(sorted.probs.end(), d.probs.begin() + (size_t)e * classes,
                        d.probs.begin() + (size_t)(e + 1) * classes);
    sorted.index.push_back(d.index[e]);
  }
  d = std::move(sorted);
}

}  // namespace dn
