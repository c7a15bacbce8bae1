// [region]: YOLOv2's detection head and loss (Darknet's region layer).
//
// Output layout (per image): for each anchor, coords+1+classes planes of w*h:
// x, y (logistic), w, h (raw), objectness (logistic), class probabilities
// (softmax over the classes, or per WordTree group), computed by the backend.
// In training the forward also writes the loss delta (assigned, not
// accumulated, as Darknet) and the cost; the loss runs on the host, as
// Darknet's GPU path does. The backward follows Darknet's CUDA path: logistic
// gradient on x, y, objectness, then the delta is added into the previous
// layer's delta.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "image.hpp"
#include "layers/layer.hpp"
#include "layers/layers.hpp"
#include "parse/tree.hpp"

namespace dn {

// Statistics of the last training forward, as Darknet prints them.
struct RegionStats {
  float avg_iou = 0;    // mean IoU of the matched predictions over box truths
  float avg_class = 0;  // mean probability of the true class (class_count truths)
  float avg_obj = 0;    // mean objectness at the matched predictions
  float avg_noobj = 0;  // mean objectness over all predictions of all images
  float recall = 0;     // share of box truths matched with IoU > .5
  int count = 0;        // box truths
  int class_count = 0;  // truths with a class delta (box truths + classification-only)
  std::string line() const;  // "Region Avg IOU: ..., count: N", Darknet's format
};

class RegionLayer : public Layer {
 public:
  int num = 1;
  int classes = 20;
  int coords = 4;
  int max_boxes = 30;  // truth boxes per image ("max")
  bool softmax = false;
  bool background = false;
  bool bias_match = false;
  bool rescore = false;
  float jitter = .2f;
  // darknet_py's own key (Darknet ignores it): how the training loader applies jitter.
  JitterStyle jitter_style = JitterStyle::Place;
  float thresh = .5f;
  float object_scale = 1, noobject_scale = 1, class_scale = 1, coord_scale = 1, mask_scale = 1;
  int absolute = 0, random = 0, log = 0, sqrt = 0, classfix = 0;
  std::vector<float> anchors;       // 2*num: w, h in grid cells (Darknet's biases)
  std::shared_ptr<WordTree> tree;   // tree= (softmax per group), or null
  std::vector<int> map;             // map= (box-truth class -> node), or empty
  std::string tree_path, map_path;  // resolved paths

  RegionStats stats;

  void forward(LayerContext& ctx) override;
  void backward(LayerContext& ctx) override;
  void resize(int new_w, int new_h) override;
  std::string describe() const override;

  // Offset of `entry` of prediction `location` (anchor*w*h + cell) in image b.
  int entry_index(int b, int location, int entry) const;
  // Sets the grid size and reallocates (no checks; resize() and make_region use it).
  void set_shape(int new_w, int new_h);
  // The geometry the backend's region ops need.
  RegionShape shape() const;

 private:
  // Loss of image b on host copies of the activated output and the delta;
  // returns its share of the statistics (sums, not means).
  struct ImageStats {
    double iou = 0, cls = 0, obj = 0, anyobj = 0, recall = 0;
    int count = 0, class_count = 0;
  };
  ImageStats image_loss(int b, const float* out, float* d, const float* truth, int64_t seen) const;
  void class_delta(const float* out, float* d, int class_index, int cls, ImageStats& st) const;
  // Reads the truth box t of image b; returns false at the end of the list.
  bool truth_box(const float* truth, int b, int t, float* box, int* cls) const;
};

}  // namespace dn
