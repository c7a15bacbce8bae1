// Classifier data bindings: Darknet's classifier augmentation, validation crop
// and hierarchical (WordTree) truth. Images cross as float32 (C, H, W) numpy
// arrays; pixel work runs with the GIL released so loader threads overlap.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>

#include "augment_classifier.hpp"
#include "core/error.hpp"
#include "detect.hpp"
#include "network.hpp"
#include "parse/cfg.hpp"
#include "python/bind.hpp"

namespace dn {
namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

ImageView chw(const FloatArray& a, const char* what) {
  if (a.ndim() != 3)
    fail(what, ": expected a float32 array of shape (C, H, W), got ", a.ndim(), " dimension(s)");
  ImageView v;
  v.c = static_cast<int>(a.shape(0));
  v.h = static_cast<int>(a.shape(1));
  v.w = static_cast<int>(a.shape(2));
  v.data = a.data();
  check(v.c > 0 && v.h > 0 && v.w > 0, what, ": empty image");
  return v;
}

py::array_t<float> to_numpy(Image&& im) {
  auto* owner = new std::vector<float>(std::move(im.data));
  py::capsule release(owner, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  return py::array_t<float>({static_cast<py::ssize_t>(im.c), static_cast<py::ssize_t>(im.h),
                             static_cast<py::ssize_t>(im.w)},
                            owner->data(), release);
}

template <typename F>
py::array_t<float> run_image(const FloatArray& image, const char* what, F&& f) {
  const ImageView v = chw(image, what);
  Image out;
  {
    py::gil_scoped_release nogil;
    out = f(v);
  }
  return to_numpy(std::move(out));
}

}  // namespace

void bind_classifier(py::module_& m) {
  m.def(
      "softmax_tree",
      [](const Network& net) -> py::object {
        // The WordTree of the network's last [softmax] layer with tree=, else None.
        for (auto it = net.sections.rbegin(); it != net.sections.rend(); ++it) {
          if (it->type != "softmax") continue;
          const std::string value = it->get_str("tree", "");
          if (value.empty()) return py::none();
          return py::cast(read_tree(resolve_data_path(*it, "tree", value)));
        }
        return py::none();
      },
      py::arg("net"), "The WordTree of the last [softmax] layer (tree=), or None (plain softmax or none).");

  m.def(
      "augment_classifier",
      [](FloatArray image, int w, int h, int min_crop, int max_crop, float angle, float aspect, float hue,
         float saturation, float exposure, bool flip, bool center, uint64_t seed, bool return_draws) -> py::object {
        ClassifierAugmentParams p;
        p.w = w;
        p.h = h;
        p.min_crop = min_crop;
        p.max_crop = max_crop;
        p.angle = angle;
        p.aspect = aspect;
        p.hue = hue;
        p.saturation = saturation;
        p.exposure = exposure;
        p.flip = flip;
        p.center = center;
        ClassifierAugmentDraws d;
        py::array_t<float> out = run_image(image, "augment_classifier", [&](const ImageView& v) {
          AugmentRng rng(seed);
          return augment_classifier(v, p, rng, &d);
        });
        if (!return_draws) return out;
        py::dict dd;
        dd["aspect"] = d.aspect;
        dd["r"] = d.r;
        dd["scale"] = d.scale;
        dd["rad"] = d.rad;
        dd["dx"] = d.dx;
        dd["dy"] = d.dy;
        dd["flipped"] = d.flipped;
        dd["dhue"] = d.dhue;
        dd["dsat"] = d.dsat;
        dd["dexp"] = d.dexp;
        return py::make_tuple(out, dd);
      },
      py::arg("image"), py::arg("w"), py::arg("h"), py::arg("min_crop"), py::arg("max_crop"), py::arg("angle") = 0.f,
      py::arg("aspect") = 1.f, py::arg("hue") = 0.f, py::arg("saturation") = 1.f, py::arg("exposure") = 1.f,
      py::arg("flip") = true, py::arg("center") = false, py::arg("seed") = 0, py::arg("return_draws") = false,
      "One image of Darknet's load_data_augment (classifier training): random scale/aspect/rotation crop\n"
      "(or the centred crop with center=True), random flip, random HSV distortion. Same seed, same image.\n"
      "Returns (3, h, w) float32, plus a dict of the random draws when return_draws is true.");

  m.def(
      "classifier_valid_image",
      [](FloatArray image, int w, int h) {
        return run_image(image, "classifier_valid_image",
                         [&](const ImageView& v) { return classifier_valid_image(v, w, h); });
      },
      py::arg("image"), py::arg("w"), py::arg("h"),
      "Darknet's validate_classifier_single input: resize_min to w, then a centred w x h crop.");

  m.def(
      "center_crop_image",
      [](FloatArray image, int w, int h) {
        return run_image(image, "center_crop_image", [&](const ImageView& v) { return center_crop_image(v, w, h); });
      },
      py::arg("image"), py::arg("w"), py::arg("h"), "Darknet's center_crop_image.");

  m.def(
      "resize_min",
      [](FloatArray image, int min) {
        return run_image(image, "resize_min", [&](const ImageView& v) { return resize_min(v, min); });
      },
      py::arg("image"), py::arg("min"), "Darknet's resize_min: shorter side -> min, aspect kept.");

  m.def(
      "rotate_crop_image",
      [](FloatArray image, float rad, float s, int w, int h, float dx, float dy, float aspect) {
        return run_image(image, "rotate_crop_image",
                         [&](const ImageView& v) { return rotate_crop_image(v, rad, s, w, h, dx, dy, aspect); });
      },
      py::arg("image"), py::arg("rad"), py::arg("s"), py::arg("w"), py::arg("h"), py::arg("dx"), py::arg("dy"),
      py::arg("aspect"), "Darknet's rotate_crop_image (bilinear, 0 outside the source).");

  m.def(
      "fill_hierarchy",
      [](FloatArray truth, const WordTree& tree) {
        if (truth.ndim() != 1 && truth.ndim() != 2)
          fail("fill_hierarchy: expected truth of shape (n,) or (batch, n), got ", truth.ndim(), " dimension(s)");
        const py::ssize_t n = truth.shape(truth.ndim() - 1);
        if (n != tree.n())
          fail("fill_hierarchy: truth rows have ", n, " values but ", tree.file, " has ", tree.n(), " nodes");
        py::array_t<float> out(truth.request().shape);
        std::memcpy(out.mutable_data(), truth.data(), sizeof(float) * truth.size());
        const py::ssize_t rows = truth.ndim() == 2 ? truth.shape(0) : 1;
        for (py::ssize_t r = 0; r < rows; ++r) fill_hierarchy(out.mutable_data() + r * n, tree);
        return out;
      },
      py::arg("truth"), py::arg("tree"),
      "Darknet's fill_hierarchy on truth rows: ancestors of a labelled node set to 1, groups with no\n"
      "label filled with -1234 (masked in the softmax loss). Returns a new array.");

  m.def(
      "hierarchy_predictions",
      [](FloatArray probs, const WordTree& tree, bool only_leaves) {
        if (probs.ndim() < 1) fail("hierarchy_predictions: expected probabilities of shape (..., n), got a scalar");
        const py::ssize_t n = probs.shape(probs.ndim() - 1);
        if (n != tree.n())
          fail("hierarchy_predictions: rows have ", n, " values but ", tree.file, " has ", tree.n(), " nodes");
        py::array_t<float> out(probs.request().shape);
        std::memcpy(out.mutable_data(), probs.data(), sizeof(float) * probs.size());
        const py::ssize_t rows = n ? probs.size() / n : 0;
        for (py::ssize_t r = 0; r < rows; ++r)
          hierarchy_predictions(out.mutable_data() + r * n, (int)n, tree, only_leaves, 1);
        return out;
      },
      py::arg("probs"), py::arg("tree"), py::arg("only_leaves") = true,
      "Darknet's hierarchy_predictions on rows of conditional WordTree probabilities: each node times its\n"
      "parent's absolute probability (non-leaves zeroed with only_leaves). Returns a new array.");
}

}  // namespace dn
