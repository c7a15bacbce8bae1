// Region decoding, NMS, WordTree and region-layer bindings.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>
#include <optional>
#include <utility>

#include "backend/backend.hpp"
#include "core/error.hpp"
#include "core/options.hpp"
#include "detect.hpp"
#include "layers/layers.hpp"
#include "layers/region.hpp"
#include "network.hpp"
#include "parse/cfg.hpp"
#include "parse/tree.hpp"
#include "python/bind.hpp"

namespace dn {

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

py::array_t<float> to_numpy(const float* data, size_t n, std::vector<py::ssize_t> shape) {
  py::array_t<float> a(shape);
  if (n) std::memcpy(a.mutable_data(), data, n * sizeof(float));
  return a;
}
py::array_t<float> to_numpy(const std::vector<float>& v, std::vector<py::ssize_t> shape) {
  return to_numpy(v.data(), v.size(), std::move(shape));
}
// Host copy of a layer buffer (read-only access: the buffer keeps its newest copy).
py::array_t<float> to_numpy(const FloatBuffer& v, std::vector<py::ssize_t> shape) {
  return to_numpy(v.host(), v.size(), std::move(shape));
}

py::tuple detections_to_numpy(const Detections& d, bool with_index) {
  const py::ssize_t n = (py::ssize_t)d.size();
  auto boxes = to_numpy(d.boxes, {n, 4});
  auto obj = to_numpy(d.objectness, {n});
  auto probs = to_numpy(d.probs, {n, (py::ssize_t)d.classes});
  if (!with_index) return py::make_tuple(boxes, obj, probs);
  py::array_t<int32_t> index(n);
  if (n) std::memcpy(index.mutable_data(), d.index.data(), n * sizeof(int32_t));
  return py::make_tuple(boxes, obj, probs, index);
}

py::dict stats_dict(const RegionStats& s) {
  py::dict d;
  d["avg_iou"] = s.avg_iou;
  d["avg_class"] = s.avg_class;
  d["avg_obj"] = s.avg_obj;
  d["avg_noobj"] = s.avg_noobj;
  d["recall"] = s.recall;
  d["count"] = s.count;
  d["class_count"] = s.class_count;
  d["line"] = s.line();
  return d;
}

py::dict region_info(const RegionLayer& l) {
  py::dict d;
  d["index"] = l.index;
  d["w"] = l.w;
  d["h"] = l.h;
  d["num"] = l.num;
  d["classes"] = l.classes;
  d["coords"] = l.coords;
  d["anchors"] = l.anchors;
  d["max_boxes"] = l.max_boxes;
  d["truths"] = l.truths;
  d["softmax"] = l.softmax;
  d["background"] = l.background;
  d["bias_match"] = l.bias_match;
  d["rescore"] = l.rescore;
  d["jitter"] = l.jitter;
  d["random"] = l.random;
  d["absolute"] = l.absolute;
  d["thresh"] = l.thresh;
  d["object_scale"] = l.object_scale;
  d["noobject_scale"] = l.noobject_scale;
  d["class_scale"] = l.class_scale;
  d["coord_scale"] = l.coord_scale;
  d["tree"] = l.tree ? py::cast(*l.tree) : py::none();
  d["tree_path"] = l.tree_path;
  d["map"] = l.map;
  d["map_path"] = l.map_path;
  d["cost"] = l.cost;
  d["stats"] = stats_dict(l.stats);
  return d;
}

// Runs one [region] section alone on a recorded input, on a CPU backend:
// forward (with truth when training) and, optionally, backward into a
// previous-layer delta.
py::dict run_region_layer(const std::string& cfg_file, std::optional<std::string> cfg_text, int batch, int w, int h,
                          int c, FloatArray input, std::optional<FloatArray> truth, int64_t seen, bool train,
                          bool backward, std::optional<FloatArray> prev_delta) {
  std::vector<CfgSection> sections = cfg_text ? parse_cfg_text(*cfg_text, cfg_file) : parse_cfg_file(cfg_file);
  const CfgSection* section = nullptr;
  for (const auto& s : sections)
    if (s.type == "region") section = &s;
  check(section != nullptr, cfg_file, ": no [region] section");
  LayerInput in;
  in.batch = batch;
  in.w = w;
  in.h = h;
  in.c = c;
  auto layer = make_region(*section, in);
  auto& region = static_cast<RegionLayer&>(*layer);
  region.set_training(train);

  const size_t total = (size_t)batch * region.inputs;
  check((size_t)input.size() == total, "input has ", input.size(), " floats, the region layer needs ", total);
  std::vector<float> prev(total, 0.f);
  if (prev_delta) {
    check((size_t)prev_delta->size() == total, "prev_delta has ", prev_delta->size(), " floats, expected ", total);
    std::memcpy(prev.data(), prev_delta->data(), total * sizeof(float));
  }
  if (truth)
    check((size_t)truth->size() == (size_t)batch * region.truths, "truth has ", truth->size(), " floats, expected ",
          (size_t)batch * region.truths, " (batch * max * (coords + 1))");

  std::vector<float> delta_after_forward;
  {
    py::gil_scoped_release release;
    // The process defaults (ISA, threads), always on the CPU: the aid reads host arrays.
    ExecOptions options = default_options();
    options.device = Device::Cpu;
    std::unique_ptr<Backend> backend = make_cpu_backend(options);
    LayerContext ctx;
    ctx.backend = backend.get();
    ctx.device = Device::Cpu;
    ctx.input = input.data();
    ctx.truth = truth ? truth->data() : nullptr;
    ctx.truth_host = ctx.truth;
    ctx.train = train;
    ctx.seen = seen;
    ctx.prev_delta = prev.data();
    region.forward(ctx);
    const float* d = std::as_const(region.delta).host();
    delta_after_forward.assign(d, d + region.delta.size());
    if (backward) region.backward(ctx);
  }
  const std::vector<py::ssize_t> shape{batch, c, h, w};
  py::dict d;
  d["output"] = to_numpy(region.output, shape);
  d["cost"] = region.cost;
  d["stats"] = stats_dict(region.stats);
  d["info"] = region_info(region);
  d["warnings"] = section->unused_warnings();
  if (train) {
    d["delta_after_forward"] = to_numpy(delta_after_forward, shape);
    d["delta"] = to_numpy(region.delta, shape);
  }
  if (backward) d["prev_delta"] = to_numpy(prev, shape);
  return d;
}

// The region output of one image as (C, H, W) or (1, C, H, W).
const float* region_output_pointer(const FloatArray& output, int expected_c, int* w, int* h) {
  if (output.ndim() == 4) check(output.shape(0) == 1, "region output: batch of ", output.shape(0),
                                    ", pass one image (C, H, W)");
  check(output.ndim() == 3 || output.ndim() == 4, "region output must be (C, H, W) or (1, C, H, W), got ",
        output.ndim(), " dimensions");
  const int off = (int)output.ndim() - 3;
  check(output.shape(off) == expected_c, "region output has ", output.shape(off),
        " channels, num*(coords+1+classes) = ", expected_c);
  *h = (int)output.shape(off + 1);
  *w = (int)output.shape(off + 2);
  return output.data();
}

}  // namespace

void bind_detect(py::module_& m) {
  py::class_<WordTree>(m, "WordTree", "A Darknet .tree file: nodes, parents and softmax groups.")
      .def_static("read", &read_tree, py::arg("path"))
      .def_static("parse", &parse_tree_text, py::arg("text"), py::arg("file") = "<string>")
      .def_readonly("file", &WordTree::file)
      .def_readonly("names", &WordTree::name)
      .def_readonly("parent", &WordTree::parent)
      .def_readonly("child", &WordTree::child)
      .def_readonly("group", &WordTree::group)
      .def_readonly("leaf", &WordTree::leaf)
      .def_readonly("group_size", &WordTree::group_size)
      .def_readonly("group_offset", &WordTree::group_offset)
      .def_property_readonly("n", &WordTree::n)
      .def_property_readonly("groups", &WordTree::groups)
      .def("__len__", &WordTree::n)
      .def("__repr__", [](const WordTree& t) {
        return "<WordTree " + t.file + ": " + std::to_string(t.n()) + " nodes, " + std::to_string(t.groups()) +
               " groups>";
      });
  m.def("read_map", &read_map, py::arg("path"), "A Darknet .map file: one class index per line.");
  m.def("parse_map", &parse_map_text, py::arg("text"), py::arg("file") = "<string>");

  m.def(
      "region_detections",
      [](FloatArray output, int num, int classes, int coords, std::vector<float> anchors, int image_w, int image_h,
         int net_w, int net_h, float thresh, float hier_thresh, bool letterbox, bool relative, bool background,
         const WordTree* tree, std::optional<std::vector<int>> map) {
        RegionOutput r;
        r.num = num;
        r.classes = classes;
        r.coords = coords;
        r.background = background;
        check((int)anchors.size() == 2 * num, "anchors: expected ", 2 * num, " values, found ", anchors.size());
        r.anchors = anchors.data();
        r.tree = tree;
        r.data = region_output_pointer(output, num * (coords + 1 + classes), &r.w, &r.h);
        Detections d;
        {
          py::gil_scoped_release release;
          region_detections(r, thresh, hier_thresh, map ? &*map : nullptr, d);
          BoxCorrection c;
          c.image_w = image_w;
          c.image_h = image_h;
          c.net_w = net_w;
          c.net_h = net_h;
          c.letterbox = letterbox;
          c.relative = relative;
          correct_region_boxes(d.boxes.data(), d.size(), c);
        }
        return detections_to_numpy(d, false);
      },
      py::arg("output"), py::arg("num"), py::arg("classes"), py::arg("coords"), py::arg("anchors"),
      py::arg("image_w"), py::arg("image_h"), py::arg("net_w"), py::arg("net_h"), py::arg("thresh") = .5f,
      py::arg("hier_thresh") = .5f, py::arg("letterbox") = true, py::arg("relative") = true,
      py::arg("background") = false, py::arg("tree") = nullptr, py::arg("map") = py::none(),
      "Decodes one image's region output (C, H, W) into (boxes (N,4) x,y,w,h, objectness (N,), probs (N, classes))\n"
      "in Darknet's get_network_boxes order (index = anchor*H*W + row*W + col).");

  m.def(
      "get_network_boxes",
      [](Network& net, int image_w, int image_h, float thresh, float hier_thresh, bool letterbox, bool relative,
         std::optional<std::vector<int>> map, int batch_index) {
        Detections d;
        {
          py::gil_scoped_release release;
          d = get_network_boxes(net, image_w, image_h, thresh, hier_thresh, map ? &*map : nullptr, letterbox,
                                relative, batch_index);
        }
        return detections_to_numpy(d, false);
      },
      py::arg("net"), py::arg("image_w"), py::arg("image_h"), py::arg("thresh") = .5f, py::arg("hier_thresh") = .5f,
      py::arg("letterbox") = true, py::arg("relative") = true, py::arg("map") = py::none(),
      py::arg("batch_index") = 0,
      "Detections of every region layer after a forward: (boxes (N,4), objectness (N,), probs (N, classes)).");

  m.def(
      "do_nms_sort",
      [](FloatArray boxes, FloatArray objectness, FloatArray probs, float nms) {
        check(boxes.ndim() == 2 && boxes.shape(1) == 4, "boxes must be (N, 4)");
        const py::ssize_t n = boxes.shape(0);
        check(objectness.ndim() == 1 && objectness.shape(0) == n, "objectness must be (N,) with N = ", n);
        check(probs.ndim() == 2 && probs.shape(0) == n, "probs must be (N, classes) with N = ", n);
        Detections d;
        d.classes = (int)probs.shape(1);
        d.boxes.assign(boxes.data(), boxes.data() + 4 * n);
        d.objectness.assign(objectness.data(), objectness.data() + n);
        d.probs.assign(probs.data(), probs.data() + n * d.classes);
        d.index.resize(n);
        for (py::ssize_t i = 0; i < n; ++i) d.index[i] = (int)i;
        {
          py::gil_scoped_release release;
          do_nms_sort(d, nms);
        }
        return detections_to_numpy(d, true);
      },
      py::arg("boxes"), py::arg("objectness"), py::arg("probs"), py::arg("nms"),
      "Darknet's do_nms_sort on copies: returns (boxes, objectness, probs, index) in the reordered order;\n"
      "index[i] is the input position of entry i.");

  m.def(
      "region_layers",
      [](Network& net) {
        py::list out;
        for (auto& layer : net.layers)
          if (auto* r = dynamic_cast<RegionLayer*>(layer.get())) out.append(region_info(*r));
        return out;
      },
      py::arg("net"), "Parameters and last training statistics of every region layer.");

  m.def("run_region_layer", &run_region_layer, py::arg("cfg_file"), py::arg("cfg_text") = py::none(),
        py::arg("batch"), py::arg("w"), py::arg("h"), py::arg("c"), py::arg("input"), py::arg("truth") = py::none(),
        py::arg("seen") = 0, py::arg("train") = false, py::arg("backward") = false,
        py::arg("prev_delta") = py::none(),
        "Builds the last [region] section of a cfg for a (batch, c, h, w) input and runs it alone\n"
        "(testing aid): returns output, cost, stats, info, warnings and, when training,\n"
        "delta_after_forward, delta (after backward if run) and prev_delta.");
}

}  // namespace dn
