// Region decoding, NMS, WordTree and region-layer bindings.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>
#include <optional>
#include <utility>

#include "core/error.hpp"
#include "detect.hpp"
#include "layers/region.hpp"
#include "network.hpp"
#include "parse/tree.hpp"
#include "python/bind.hpp"

namespace dn {

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;


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

// The dictionaries of a region layer's statistics and parameters (region_layers); outside the
// anonymous namespace because darknet_py._testing (csrc/testing) links this object for them.
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
  d["jitter_style"] = jitter_style_name(l.jitter_style);
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
          auto guard = net.lock();
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
        std::unique_lock<std::recursive_mutex> guard;
        {
          py::gil_scoped_release release;  // never wait for a network's lock holding the GIL
          guard = net.lock();
        }
        py::list out;
        for (auto& layer : net.layers)
          if (auto* r = dynamic_cast<RegionLayer*>(layer.get())) out.append(region_info(*r));
        return out;
      },
      py::arg("net"), "Parameters and last training statistics of every region layer.");
}

}  // namespace dn
