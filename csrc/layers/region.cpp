// [region] layer: parsing, forward (activations on the backend + Darknet's
// region loss on the host), backward (CUDA-path semantics), resize. Formulas
// shared with detection and the backends live in kernels/region_formulas.hpp.
#include "layers/region.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

#include "core/error.hpp"
#include "core/limits.hpp"
#include "kernels/region_formulas.hpp"

namespace dn {

namespace {

// Darknet trains with this many images seen before the anchor-prior term stops.
constexpr int64_t kPriorSeenLimit = 12800;
constexpr float kPriorScale = .01f;
// Truth boxes with both centre coordinates above this are classification-only labels.
constexpr float kClassOnlyMarker = 100000.f;

template <typename T>
std::string fmt_num(T v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", (double)v);
  return buf;
}

}  // namespace

std::string RegionStats::line() const {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "Region Avg IOU: %f, Class: %f, Obj: %f, No Obj: %f, Avg Recall: %f,  count: %d", avg_iou, avg_class,
                avg_obj, avg_noobj, recall, count);
  return buf;
}

int RegionLayer::entry_index(int b, int location, int entry) const {
  return region_entry_index(b, location, entry, w, h, coords, classes, (int)outputs);
}

void RegionLayer::set_shape(int new_w, int new_h) {
  w = out_w = new_w;
  h = out_h = new_h;
  out_c = c;
  inputs = outputs = (size_t)w * h * c;
  allocate();
}

void RegionLayer::resize(int new_w, int new_h) {
  check(new_w > 0 && new_h > 0, "region layer ", index, ": resize to ", new_w, "x", new_h, " is not a valid grid");
  set_shape(new_w, new_h);
}

std::string RegionLayer::describe() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%-10s %4d x%4d x%4d -> %4d x%4d x%4d  anchors %d, classes %d%s", "detection", w,
                h, c, out_w, out_h, out_c, num, classes, tree ? ", tree" : "");
  return buf;
}

RegionShape RegionLayer::shape() const {
  RegionShape r;
  r.batch = batch;
  r.w = w;
  r.h = h;
  r.num = num;
  r.classes = classes;
  r.coords = coords;
  r.softmax = softmax;
  r.background = background;
  r.tree = tree.get();
  r.outputs = outputs;
  return r;
}

bool RegionLayer::truth_box(const float* truth, int b, int t, float* box, int* cls) const {
  const float* tb = truth + (size_t)b * truths + (size_t)t * (coords + 1);
  if (!tb[0]) return false;  // the first box with x == 0 ends the list
  for (int k = 0; k < 4; ++k) box[k] = tb[k];
  *cls = (int)tb[coords];
  return true;
}

// Class delta at one prediction: hierarchical (every node on the path to the
// root and its siblings) for tree nets, else one-hot over the classes.
void RegionLayer::class_delta(const float* out, float* d, int index, int cls, ImageStats& st) const {
  const int stride = w * h;
  if (tree) {
    float pred = 1;
    for (int node = cls; node >= 0; node = tree->parent[node]) {
      pred *= out[index + stride * node];
      const int g = tree->group[node];
      const int off = tree->group_offset[g];
      for (int i = 0; i < tree->group_size[g]; ++i)
        d[index + stride * (off + i)] = class_scale * (0 - out[index + stride * (off + i)]);
      d[index + stride * node] = class_scale * (1 - out[index + stride * node]);
    }
    st.cls += pred;
    return;
  }
  // Independent logistic classes: a second truth in the same prediction adds its label.
  if (d[index] && !softmax) {
    d[index + stride * cls] = class_scale * (1 - out[index + stride * cls]);
    return;
  }
  for (int k = 0; k < classes; ++k) {
    d[index + stride * k] = class_scale * ((k == cls ? 1.f : 0.f) - out[index + stride * k]);
    if (k == cls) st.cls += out[index + stride * k];
  }
}

RegionLayer::ImageStats RegionLayer::image_loss(int b, const float* out, float* d, const float* truth,
                                                int64_t seen) const {
  ImageStats st;
  const int plane = w * h;
  const float* anchor = anchors.data();

  // Box delta toward `target` for the prediction at box_index; returns the IoU
  // of the prediction with the target before the update.
  auto box_delta = [&](const RegionBox& target, int n, int box_index, int col, int row, float scale) {
    RegionBox pred = region_box(out, anchor, n, box_index, col, row, w, h, plane);
    float iou = region_box_iou(pred, target);
    float tx = target.x * w - col;
    float ty = target.y * h - row;
    float tw = std::log(target.w * w / anchor[2 * n]);
    float th = std::log(target.h * h / anchor[2 * n + 1]);
    d[box_index + 0 * plane] = scale * (tx - out[box_index + 0 * plane]);
    d[box_index + 1 * plane] = scale * (ty - out[box_index + 1 * plane]);
    d[box_index + 2 * plane] = scale * (tw - out[box_index + 2 * plane]);
    d[box_index + 3 * plane] = scale * (th - out[box_index + 3 * plane]);
    return iou;
  };

  // Tree nets: a classification-only label trains the class of the prediction
  // that is most confident about it and nothing else in this image.
  if (tree) {
    for (int t = 0; t < max_boxes; ++t) {
      float tb[4];
      int cls;
      if (!truth_box(truth, b, t, tb, &cls)) break;
      if (!(tb[0] > kClassOnlyMarker && tb[1] > kClassOnlyMarker)) continue;
      check(cls >= 0 && cls < classes, "region layer ", index, ": image ", b, " truth ", t, ": class ", cls,
            " outside 0..", classes - 1);
      float maxp = 0;
      int maxi = 0;
      for (int loc = 0; loc < num * plane; ++loc) {
        const int obj_index = entry_index(b, loc, coords);
        d[obj_index] = noobject_scale * (0 - out[obj_index]);
        float p = out[obj_index] *
                  hierarchy_probability(out + entry_index(b, loc, coords + 1), tree->parent.data(), cls, plane);
        if (p > maxp) {
          maxp = p;
          maxi = loc;
        }
      }
      class_delta(out, d, entry_index(b, maxi, coords + 1), cls, st);
      d[entry_index(b, maxi, coords)] = 0;
      ++st.class_count;
      return st;
    }
  }

  // Every prediction: no-object delta unless it already overlaps a truth well,
  // and while training is young, a pull toward its anchor prior.
  for (int row = 0; row < h; ++row) {
    for (int col = 0; col < w; ++col) {
      for (int n = 0; n < num; ++n) {
        const int loc = n * plane + row * w + col;
        const int box_index = entry_index(b, loc, 0);
        const RegionBox pred = region_box(out, anchor, n, box_index, col, row, w, h, plane);
        float best_iou = 0;
        for (int t = 0; t < max_boxes; ++t) {
          float tb[4];
          int cls;
          if (!truth_box(truth, b, t, tb, &cls)) break;
          float iou = region_box_iou(pred, RegionBox{tb[0], tb[1], tb[2], tb[3]});
          if (iou > best_iou) best_iou = iou;
        }
        const int obj_index = entry_index(b, loc, coords);
        st.anyobj += out[obj_index];
        d[obj_index] = noobject_scale * ((background ? 1.f : 0.f) - out[obj_index]);
        if (best_iou > thresh) d[obj_index] = 0;

        if (seen < kPriorSeenLimit) {
          RegionBox prior;
          prior.x = (float)((col + .5) / w);
          prior.y = (float)((row + .5) / h);
          prior.w = anchor[2 * n] / w;
          prior.h = anchor[2 * n + 1] / h;
          box_delta(prior, n, box_index, col, row, kPriorScale);
        }
      }
    }
  }

  // Every box truth: the anchor of its cell whose shape fits best takes the box,
  // objectness and class deltas (a later truth on the same anchor overwrites).
  for (int t = 0; t < max_boxes; ++t) {
    float tb[4];
    int cls;
    if (!truth_box(truth, b, t, tb, &cls)) break;
    const RegionBox truth_rb{tb[0], tb[1], tb[2], tb[3]};
    check(tb[0] >= 0 && tb[0] <= 1 && tb[1] >= 0 && tb[1] <= 1, "region layer ", index, ": image ", b, " truth ", t,
          ": centre (", tb[0], ", ", tb[1], ") outside 0..1",
          tree ? "" : " (classification-only labels need a tree= region layer)");
    check(tb[2] > 0 && tb[3] > 0, "region layer ", index, ": image ", b, " truth ", t, ": size ", tb[2], "x", tb[3],
          " must be positive");
    const int col = std::min((int)(tb[0] * w), w - 1);
    const int row = std::min((int)(tb[1] * h), h - 1);

    float best_iou = 0;
    int best_n = 0;
    const RegionBox truth_shape{0, 0, tb[2], tb[3]};
    for (int n = 0; n < num; ++n) {
      RegionBox pred = region_box(out, anchor, n, entry_index(b, n * plane + row * w + col, 0), col, row, w, h, plane);
      if (bias_match) {
        pred.w = anchor[2 * n] / w;
        pred.h = anchor[2 * n + 1] / h;
      }
      pred.x = 0;
      pred.y = 0;
      float iou = region_box_iou(pred, truth_shape);
      if (iou > best_iou) {
        best_iou = iou;
        best_n = n;
      }
    }

    const int loc = best_n * plane + row * w + col;
    const int box_index = entry_index(b, loc, 0);
    const float iou = box_delta(truth_rb, best_n, box_index, col, row, coord_scale * (2 - tb[2] * tb[3]));
    if (coords > 4) {
      // Extra coordinates (masks) follow the class in Darknet's truth layout.
      const float* extra = truth + (size_t)b * truths + (size_t)t * (coords + 1) + 5;
      const int mask_index = entry_index(b, loc, 4);
      for (int k = 0; k < coords - 4; ++k)
        d[mask_index + k * plane] = mask_scale * (extra[k] - out[mask_index + k * plane]);
    }
    if (iou > .5f) st.recall += 1;
    st.iou += iou;

    const int obj_index = entry_index(b, loc, coords);
    st.obj += out[obj_index];
    d[obj_index] = object_scale * (1 - out[obj_index]);
    if (rescore) d[obj_index] = object_scale * (iou - out[obj_index]);
    if (background) d[obj_index] = object_scale * (0 - out[obj_index]);

    if (!map.empty()) {
      check(cls >= 0 && cls < (int)map.size(), "region layer ", index, ": image ", b, " truth ", t, ": class ", cls,
            " outside the map (", map.size(), " entries, ", map_path, ")");
      cls = map[cls];
    }
    check(cls >= 0 && cls < classes, "region layer ", index, ": image ", b, " truth ", t, ": class ", cls,
          " outside 0..", classes - 1);
    class_delta(out, d, entry_index(b, loc, coords + 1), cls, st);
    ++st.count;
    ++st.class_count;
  }
  return st;
}

void RegionLayer::forward(LayerContext& ctx) {
  check(ctx.input != nullptr, "region layer ", index, ": no input");
  Backend& be = *ctx.backend;
  const RegionShape rs = shape();
  be.region_activate(rs, ctx.input, output.write(ctx.device));
  if (!ctx.train) {
    if (!delta.empty()) be.fill(delta.write(ctx.device), delta.size(), 0.f);
    cost = 0;
    return;
  }
  check(training && !delta.empty(), "region layer ", index, ": training forward without training buffers");
  check(ctx.truth_host != nullptr, "region layer ", index, ": training forward needs truth boxes");

  // The loss runs on the host, as Darknet's GPU path: the activated output is
  // read there (the device copy stays valid) and the delta is written there from
  // zero (no download of the device copy it replaces).
  const float* out = std::as_const(output).host();
  float* d = delta.overwrite(Device::Cpu);
  std::fill(d, d + delta.size(), 0.f);
  const float* truth = ctx.truth_host;
  const int64_t seen = ctx.seen;

  std::vector<ImageStats> per_image(batch);
  std::vector<std::string> errors(batch);
  // Images are independent (each writes only its own delta slice).
#pragma omp parallel for schedule(dynamic) if (batch > 1)
  for (int b = 0; b < batch; ++b) {
    try {
      per_image[b] = image_loss(b, out, d, truth, seen);
    } catch (const DarknetError& e) {
      errors[b] = e.what();
    }
  }
  for (const auto& e : errors)
    if (!e.empty()) throw DarknetError(e);

  ImageStats sum;
  for (const auto& st : per_image) {
    sum.iou += st.iou;
    sum.cls += st.cls;
    sum.obj += st.obj;
    sum.anyobj += st.anyobj;
    sum.recall += st.recall;
    sum.count += st.count;
    sum.class_count += st.class_count;
  }
  // Same ratios as Darknet's printout (0/0 gives NaN there too).
  stats.count = sum.count;
  stats.class_count = sum.class_count;
  stats.avg_iou = (float)(sum.iou / sum.count);
  stats.avg_class = (float)(sum.cls / sum.class_count);
  stats.avg_obj = (float)(sum.obj / sum.count);
  stats.avg_noobj = (float)(sum.anyobj / ((double)w * h * num * batch));
  stats.recall = (float)(sum.recall / sum.count);

  // Sequential double sum on the host copy: the cost does not depend on the backend.
  double sq = 0;
  const size_t n = delta.size();
  for (size_t i = 0; i < n; ++i) sq += (double)d[i] * d[i];
  cost = (float)sq;
}

void RegionLayer::backward(LayerContext& ctx) {
  if (delta.empty()) return;
  Backend& be = *ctx.backend;
  float* d = delta.write(ctx.device);
  be.region_gradient(shape(), output.read(ctx.device), d);
  if (!ctx.prev_delta) return;
  be.axpy((size_t)batch * inputs, 1.f, d, ctx.prev_delta);
}

std::unique_ptr<Layer> make_region(const CfgSection& s, const LayerInput& in) {
  auto l = std::make_unique<RegionLayer>();
  l->kind = LayerType::Region;
  l->type = "region";
  l->index = in.index;
  l->batch = in.batch;
  l->coords = s.get_int("coords", 4);
  l->classes = s.get_int("classes", 20);
  l->num = s.get_int("num", 1);
  if (l->coords < 4) s.fail_key("coords", "must be at least 4 (x, y, w, h)");
  if (l->classes < 1) s.fail_key("classes", "must be at least 1");
  if (l->num < 1) s.fail_key("num", "must be at least 1");
  if (l->coords > kMaxCoords) s.fail_key("coords", "must be <= " + std::to_string(kMaxCoords));
  if (l->classes > kMaxChannels) s.fail_key("classes", "must be <= " + std::to_string(kMaxChannels));
  if (l->num > kMaxAnchors) s.fail_key("num", "must be <= " + std::to_string(kMaxAnchors));
  if (in.w <= 0 || in.h <= 0) s.fail_section("region input has no spatial size");
  const long expected = (long)l->num * (l->classes + l->coords + 1);
  if (in.c != expected)
    s.fail_section("region expects " + std::to_string(expected) + " filters in the previous layer (num=" +
                   std::to_string(l->num) + " * (classes=" + std::to_string(l->classes) + " + coords=" +
                   std::to_string(l->coords) + " + 1)), found " + std::to_string(in.c));

  l->log = s.get_int("log", 0);
  l->sqrt = s.get_int("sqrt", 0);
  l->softmax = s.get_int("softmax", 0) != 0;
  l->background = s.get_int("background", 0) != 0;
  l->max_boxes = s.get_int("max", 30);
  if (l->max_boxes < 1) s.fail_key("max", "must be at least 1 truth box per image");
  // max=1e9 would overflow the truth count (max * (coords + 1)) and allocate it per image.
  if (l->max_boxes > kMaxTruthBoxes) s.fail_key("max", "must be <= " + std::to_string(kMaxTruthBoxes));
  // jitter moves up to this fraction of each side: 1 or more leaves no image.
  l->jitter = s.get_float("jitter", .2f, 0.f, .99f);
  if (s.has("jitter_style")) {
    try {
      l->jitter_style = parse_jitter_style(s.get_str("jitter_style", ""));
    } catch (const DarknetError& e) {
      s.fail_key("jitter_style", e.what());  // the same message, with file:line and key
    }
  }
  if (l->jitter_style == JitterStyle::Crop && !(l->jitter < .5f))
    s.fail_key("jitter", "must be below 0.5 with jitter_style=crop (each side moves by up to jitter)");
  l->rescore = s.get_int("rescore", 0) != 0;
  l->thresh = s.get_float("thresh", .5f, 0.f, 1.f);
  // Darknet's region loss reads classfix; darknet_py does not implement it, so a cfg that
  // sets it is refused rather than trained differently. absolute/log/sqrt are read by
  // Darknet and never used, so they stay quiet.
  l->classfix = s.get_int("classfix", 0);
  if (l->classfix) s.fail_key("classfix", "a non-zero classfix is not supported by darknet_py");
  l->absolute = s.get_int("absolute", 0);
  l->random = s.get_int("random", 0);
  l->coord_scale = s.get_float("coord_scale", 1, 0.f, 1e6f);
  l->object_scale = s.get_float("object_scale", 1, 0.f, 1e6f);
  l->noobject_scale = s.get_float("noobject_scale", 1, 0.f, 1e6f);
  l->mask_scale = s.get_float("mask_scale", 1, 0.f, 1e6f);
  l->class_scale = s.get_float("class_scale", 1, 0.f, 1e6f);
  l->bias_match = s.get_int("bias_match", 0) != 0;

  // Without anchors Darknet uses .5 x .5 cells for every anchor.
  l->anchors.assign(2 * (size_t)l->num, .5f);
  if (s.has("anchors")) {
    std::vector<float> a = s.get_floats("anchors");
    if ((int)a.size() != 2 * l->num)
      s.fail_key("anchors", "expected " + std::to_string(2 * l->num) + " values (w,h for each of num=" +
                                std::to_string(l->num) + " anchors), found " + std::to_string(a.size()));
    for (size_t i = 0; i < a.size(); ++i)
      if (!(a[i] > 0)) s.fail_key("anchors", "anchor sizes must be positive, found " + fmt_num(a[i]));
    l->anchors = a;
  }

  const std::string tree_value = s.get_str("tree", "");
  if (!tree_value.empty()) {
    l->tree_path = resolve_data_path(s, "tree", tree_value);
    l->tree = std::make_shared<WordTree>(read_tree(l->tree_path));
    if (l->tree->n() != l->classes)
      s.fail_key("tree", "tree " + l->tree_path + " has " + std::to_string(l->tree->n()) +
                             " nodes but the region has classes=" + std::to_string(l->classes));
  }
  const std::string map_value = s.get_str("map", "");
  if (!map_value.empty()) {
    l->map_path = resolve_data_path(s, "map", map_value);
    l->map = read_map(l->map_path);
    for (size_t i = 0; i < l->map.size(); ++i)
      if (l->map[i] < 0 || l->map[i] >= l->classes)
        fail(l->map_path, ":", i + 1, ": class ", l->map[i], " outside 0..", l->classes - 1, " (map= of [region] at ",
             s.where(), ")");
  }

  l->c = in.c;
  l->truths = l->max_boxes * (l->coords + 1);
  l->has_cost = true;
  l->set_shape(in.w, in.h);
  return l;
}

}  // namespace dn
