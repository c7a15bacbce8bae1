// Detection decoding for region layers (Darknet's get_network_boxes /
// get_region_detections), letterbox correction, WordTree descent and
// do_nms_sort. Pre-NMS order: index = anchor*W*H + row*W + col.
#pragma once
#include <cstddef>
#include <vector>

#include "parse/tree.hpp"

namespace dn {

class Network;
class RegionLayer;

// One image's region-layer output (already activated) and what decoding needs.
struct RegionOutput {
  const float* data = nullptr;  // num*(coords+1+classes) planes of w*h
  int w = 0, h = 0, num = 0, classes = 0, coords = 4;
  bool background = false;
  const float* anchors = nullptr;  // 2*num
  const WordTree* tree = nullptr;  // softmax tree, or null
};

// How network-input boxes map back to the image.
struct BoxCorrection {
  int image_w = 0, image_h = 0;  // original image
  int net_w = 0, net_h = 0;      // network input
  bool letterbox = true;         // input was letterboxed (else plainly resized)
  bool relative = true;          // keep 0..1 coordinates (else pixels)
};

struct Detections {
  int classes = 0;
  std::vector<float> boxes;       // count*4: x, y, w, h (centre, size)
  std::vector<float> objectness;  // count
  std::vector<float> probs;       // count*classes
  std::vector<int> index;         // position in the pre-NMS list (identity before NMS)

  size_t size() const { return objectness.size(); }
  void reserve(size_t n);
};

// Appends the w*h*num detections of one region output (boxes relative to the
// network input; call correct_region_boxes afterwards). `map` (may be null)
// only matters for tree outputs: prob[j] = objectness * P(node map[j]).
void region_detections(const RegionOutput& r, float thresh, float hier_thresh, const std::vector<int>* map,
                       Detections& out);

// Undoes the letterbox (integer new_w/new_h as Darknet) for boxes[first..first+count).
void correct_region_boxes(float* boxes, size_t count, const BoxCorrection& c);

// All region layers of the network, image `batch_index` of the last forward.
Detections get_network_boxes(Network& net, int image_w, int image_h, float thresh, float hier_thresh,
                             const std::vector<int>* map, bool letterbox, bool relative, int batch_index = 0);

// Darknet's do_nms_sort: entries with objectness 0 go to the end (swapped as
// Darknet swaps), then per class sort by that class's prob (descending, stable)
// and zero the prob of every later box with IoU > nms. Reorders `d`; d.index
// keeps each entry's pre-NMS position.
void do_nms_sort(Detections& d, float nms);

// Multiplies each node's conditional probability by its parent's (parents come
// first), giving absolute probabilities; only_leaves zeroes inner nodes.
void hierarchy_predictions(float* predictions, int n, const WordTree& tree, bool only_leaves, int stride);
// Descends from the roots while the (re-multiplied, as Darknet) probability of
// the best child stays above thresh; returns the node reached.
int hierarchy_top_prediction(const float* predictions, const WordTree& tree, float thresh, int stride);

}  // namespace dn
