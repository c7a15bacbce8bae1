// Image resize / letterbox / augmentation bindings. Images cross as numpy
// float32 (C, H, W) arrays; the arithmetic runs with the GIL released so data
// loader threads overlap.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>

#include "core/error.hpp"
#include "image.hpp"
#include "python/bind.hpp"

namespace dn {
namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

// A (C, H, W) float32 view of a numpy array (kept alive by the caller's handle).
ImageView chw_view(const FloatArray& a, const char* what) {
  if (a.ndim() != 3)
    fail(what, ": expected a float32 array of shape (C, H, W), got ", a.ndim(), " dimension(s)");
  ImageView v;
  v.c = static_cast<int>(a.shape(0));
  v.h = static_cast<int>(a.shape(1));
  v.w = static_cast<int>(a.shape(2));
  v.data = a.data();
  check(v.c > 0 && v.h > 0 && v.w > 0, what, ": empty image of shape (", a.shape(0), ", ", a.shape(1), ", ",
        a.shape(2), ")");
  return v;
}

// Hands an Image's buffer to numpy without a copy.
py::array_t<float> to_array(Image&& im) {
  auto* owner = new std::vector<float>(std::move(im.data));
  py::capsule release(owner, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  return py::array_t<float>({static_cast<py::ssize_t>(im.c), static_cast<py::ssize_t>(im.h),
                             static_cast<py::ssize_t>(im.w)},
                            owner->data(), release);
}

py::array_t<float> to_array(std::vector<float>&& values, std::vector<py::ssize_t> shape) {
  auto* owner = new std::vector<float>(std::move(values));
  py::capsule release(owner, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  return py::array_t<float>(shape, owner->data(), release);
}

Image copy_image(const ImageView& v) {
  Image im(v.w, v.h, v.c);
  std::copy(v.data, v.data + im.data.size(), im.data.begin());
  return im;
}

// Label rows (class, x, y, w, h[, difficult]) as Darknet box_labels.
std::vector<BoxLabel> labels_from_array(const FloatArray& boxes) {
  std::vector<BoxLabel> labels;
  if (boxes.size() == 0) return labels;
  if (boxes.ndim() != 2 || (boxes.shape(1) != 5 && boxes.shape(1) != 6))
    fail("boxes: expected shape (N, 5) or (N, 6) with rows class, x, y, w, h[, difficult]; got ndim ",
         boxes.ndim(), boxes.ndim() == 2 ? ", columns " + std::to_string(boxes.shape(1)) : std::string());
  const auto rows = boxes.unchecked<2>();
  labels.reserve(rows.shape(0));
  for (py::ssize_t i = 0; i < rows.shape(0); ++i) {
    const float cls = rows(i, 0);
    for (int j = 0; j < 5; ++j)
      check(std::isfinite(rows(i, j)), "boxes: row ", i, " has a non-finite value");
    check(cls >= 0 && cls == std::floor(cls) && cls < 1e9f, "boxes: row ", i,
          ": class must be a non-negative integer, got ", cls);
    labels.push_back(make_box_label(static_cast<int>(cls), rows(i, 1), rows(i, 2), rows(i, 3), rows(i, 4)));
  }
  return labels;
}

}  // namespace

void bind_image(py::module_& m) {
  m.def(
      "image_from_hwc_uint8",
      [](py::array_t<uint8_t, py::array::c_style | py::array::forcecast> pixels) {
        if (pixels.ndim() != 3 && pixels.ndim() != 2)
          fail("image_from_hwc_uint8: expected a uint8 array (H, W, C) or (H, W), got ", pixels.ndim(),
               " dimension(s)");
        const int h = static_cast<int>(pixels.shape(0));
        const int w = static_cast<int>(pixels.shape(1));
        const int c = pixels.ndim() == 3 ? static_cast<int>(pixels.shape(2)) : 1;
        const uint8_t* data = pixels.data();
        Image im;
        {
          py::gil_scoped_release nogil;
          im = image_from_hwc_uint8(data, w, h, c);
        }
        return to_array(std::move(im));
      },
      py::arg("pixels"),
      "uint8 (H, W, C) interleaved pixels -> float32 (C, H, W) in [0, 1] (value/255 as Darknet).");

  m.def(
      "resize_image",
      [](FloatArray image, int w, int h) {
        const ImageView v = chw_view(image, "resize_image");
        Image out;
        {
          py::gil_scoped_release nogil;
          out = resize_image(v, w, h);
        }
        return to_array(std::move(out));
      },
      py::arg("image"), py::arg("w"), py::arg("h"), "Darknet's resize_image (two-pass bilinear).");

  m.def(
      "letterbox_image",
      [](FloatArray image, int w, int h) {
        const ImageView v = chw_view(image, "letterbox_image");
        Image out;
        {
          py::gil_scoped_release nogil;
          out = letterbox_image(v, w, h);
        }
        return to_array(std::move(out));
      },
      py::arg("image"), py::arg("w"), py::arg("h"),
      "Darknet's letterbox_image: aspect kept, 0.5 fill, centred.");

  m.def(
      "letterbox_size",
      [](int im_w, int im_h, int w, int h) {
        int new_w = 0, new_h = 0;
        letterbox_size(im_w, im_h, w, h, &new_w, &new_h);
        return py::make_tuple(new_w, new_h);
      },
      py::arg("im_w"), py::arg("im_h"), py::arg("w"), py::arg("h"),
      "(new_w, new_h) that letterbox_image resizes an im_w x im_h image to.");

  m.def(
      "crop_image",
      [](FloatArray image, int dx, int dy, int w, int h) {
        const ImageView v = chw_view(image, "crop_image");
        Image out;
        {
          py::gil_scoped_release nogil;
          out = crop_image(v, dx, dy, w, h);
        }
        return to_array(std::move(out));
      },
      py::arg("image"), py::arg("dx"), py::arg("dy"), py::arg("w"), py::arg("h"),
      "Darknet's crop_image: w x h window at (dx, dy), edge pixels repeated outside.");

  m.def(
      "embed_image",
      [](FloatArray source, FloatArray dest, int dx, int dy) {
        const ImageView s = chw_view(source, "embed_image: source");
        Image out = copy_image(chw_view(dest, "embed_image: destination"));
        {
          py::gil_scoped_release nogil;
          embed_image(s, out, dx, dy);
        }
        return to_array(std::move(out));
      },
      py::arg("source"), py::arg("dest"), py::arg("dx"), py::arg("dy"),
      "A copy of dest with source pasted at (dx, dy) (clipped).");

  m.def(
      "place_image",
      [](FloatArray image, int w, int h, int dx, int dy, FloatArray canvas) {
        const ImageView s = chw_view(image, "place_image: image");
        Image out = copy_image(chw_view(canvas, "place_image: canvas"));
        {
          py::gil_scoped_release nogil;
          place_image(s, w, h, dx, dy, out);
        }
        return to_array(std::move(out));
      },
      py::arg("image"), py::arg("w"), py::arg("h"), py::arg("dx"), py::arg("dy"), py::arg("canvas"),
      "A copy of canvas with image drawn scaled to w x h at (dx, dy) (Darknet's place_image).");

  m.def(
      "flip_image",
      [](FloatArray image) {
        Image out = copy_image(chw_view(image, "flip_image"));
        flip_image(out);
        return to_array(std::move(out));
      },
      py::arg("image"), "Left-right mirror.");

  m.def(
      "rgb_to_hsv",
      [](FloatArray image) {
        Image out = copy_image(chw_view(image, "rgb_to_hsv"));
        {
          py::gil_scoped_release nogil;
          rgb_to_hsv(out);
        }
        return to_array(std::move(out));
      },
      py::arg("image"), "Darknet's rgb_to_hsv (hue in [0,1)).");

  m.def(
      "hsv_to_rgb",
      [](FloatArray image) {
        Image out = copy_image(chw_view(image, "hsv_to_rgb"));
        {
          py::gil_scoped_release nogil;
          hsv_to_rgb(out);
        }
        return to_array(std::move(out));
      },
      py::arg("image"), "Darknet's hsv_to_rgb.");

  m.def(
      "distort_image",
      [](FloatArray image, float hue, float saturation, float exposure) {
        Image out = copy_image(chw_view(image, "distort_image"));
        {
          py::gil_scoped_release nogil;
          distort_image(out, hue, saturation, exposure);
        }
        return to_array(std::move(out));
      },
      py::arg("image"), py::arg("hue"), py::arg("saturation"), py::arg("exposure"),
      "Darknet's distort_image: hue shift (wrapping), saturation/exposure scale, clamp.");

  m.def(
      "correct_boxes",
      [](FloatArray boxes, float dx, float dy, float sx, float sy, bool flip) {
        std::vector<BoxLabel> labels = labels_from_array(boxes);
        correct_boxes(labels, dx, dy, sx, sy, flip);
        std::vector<float> rows;
        rows.reserve(labels.size() * 5);
        for (const auto& b : labels) rows.insert(rows.end(), {b.x, b.y, b.w, b.h, static_cast<float>(b.id)});
        return to_array(std::move(rows), {static_cast<py::ssize_t>(labels.size()), 5});
      },
      py::arg("boxes"), py::arg("dx"), py::arg("dy"), py::arg("sx"), py::arg("sy"), py::arg("flip"),
      "Darknet's correct_boxes on label rows (class, x, y, w, h); returns rows (x, y, w, h, class).");

  m.def(
      "augment_detection",
      [](FloatArray image, FloatArray boxes, int net_w, int net_h, float jitter, float hue, float saturation,
         float exposure, bool flip, int max_boxes, uint64_t seed, bool return_draws,
         const std::string& style) -> py::object {
        const ImageView v = chw_view(image, "augment_detection: image");
        const std::vector<BoxLabel> labels = labels_from_array(boxes);
        DetectionAugmentParams params;
        params.net_w = net_w;
        params.net_h = net_h;
        params.jitter = jitter;
        params.hue = hue;
        params.saturation = saturation;
        params.exposure = exposure;
        params.flip = flip;
        params.max_boxes = max_boxes;
        params.style = parse_jitter_style(style);
        DetectionSample sample;
        {
          py::gil_scoped_release nogil;
          AugmentRng rng(seed);
          sample = augment_detection(v, labels, params, rng);
        }
        const DetectionAugmentDraws draws = sample.draws;
        py::array_t<float> truth = to_array(std::move(sample.truth), {static_cast<py::ssize_t>(max_boxes) * 5});
        py::array_t<float> out = to_array(std::move(sample.image));
        if (!return_draws) return py::make_tuple(out, truth);
        py::dict d;
        d["aspect_w_jitter"] = draws.aspect_w_jitter;
        d["aspect_h_jitter"] = draws.aspect_h_jitter;
        d["new_ar"] = draws.new_ar;
        d["nw"] = draws.nw;
        d["nh"] = draws.nh;
        d["dx"] = draws.dx;
        d["dy"] = draws.dy;
        d["crop_left"] = draws.crop_left;
        d["crop_right"] = draws.crop_right;
        d["crop_top"] = draws.crop_top;
        d["crop_bottom"] = draws.crop_bottom;
        d["dhue"] = draws.dhue;
        d["dsat"] = draws.dsat;
        d["dexp"] = draws.dexp;
        d["flipped"] = draws.flipped;
        d["box_order"] = draws.box_order;
        return py::make_tuple(out, truth, d);
      },
      py::arg("image"), py::arg("boxes"), py::arg("net_w"), py::arg("net_h"), py::arg("jitter"), py::arg("hue"),
      py::arg("saturation"), py::arg("exposure"), py::arg("flip"), py::arg("max_boxes"), py::arg("seed"),
      py::arg("return_draws") = false, py::arg("style") = "place",
      "One image of Darknet's load_data_detection. boxes: (N, 5|6) label rows class, x, y, w, h[, difficult].\n"
      "style: 'crop' (YOLOv2-era jitter: sides cut/extended, resized) or 'place' (pjreddie master).\n"
      "Returns (image (3, net_h, net_w), truth (max_boxes*5,) rows x, y, w, h, class), plus a dict of the\n"
      "random draws when return_draws is true. Same seed, same result.");
}

}  // namespace dn
