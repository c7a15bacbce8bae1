// Darknet's classifier augmentation (see augment_classifier.hpp). Written from
// the known behaviour of Darknet's image.c / data.c; the pixel arithmetic
// keeps Darknet's float/double types and term order, so no FMA contraction.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "augment_classifier.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "kernels/cost.hpp"

namespace dn {

namespace {

constexpr double kTwoPi = 6.2831853071795864769252866;

// Darknet's bilinear_interpolate over get_pixel_extend (0 outside the image).
inline float bilinear(const ImageView& im, float x, float y, int c) {
  const int ix = static_cast<int>(std::floor(x));
  const int iy = static_cast<int>(std::floor(y));
  const float dx = x - ix;
  const float dy = y - iy;
  auto px = [&](int xx, int yy) -> float {
    if (xx < 0 || xx >= im.w || yy < 0 || yy >= im.h) return 0.f;
    return im.at(xx, yy, c);
  };
  return (1 - dy) * (1 - dx) * px(ix, iy) + dy * (1 - dx) * px(ix, iy + 1) + (1 - dy) * dx * px(ix + 1, iy) +
         dy * dx * px(ix + 1, iy + 1);
}

void check_net_size(int w, int h, const char* what) {
  check(w > 0 && h > 0 && w <= (1 << 16) && h <= (1 << 16), what, ": size must be positive, got ", w, "x", h);
}

}  // namespace

int rand_int(AugmentRng& rng, int lo, int hi) {
  if (hi < lo) std::swap(lo, hi);
  return rng.below(hi - lo + 1) + lo;
}

Image rotate_crop_image(const ImageView& im, float rad, float s, int w, int h, float dx, float dy, float aspect) {
  check_image(im, "rotate_crop_image: source");
  check_net_size(w, h, "rotate_crop_image: window");
  check(std::isfinite(s) && s > 0, "rotate_crop_image: scale must be positive, got ", s);
  check(std::isfinite(aspect) && aspect > 0, "rotate_crop_image: aspect must be positive, got ", aspect);
  Image rot(w, h, im.c);
  const float cx = static_cast<float>(im.w / 2.);
  const float cy = static_cast<float>(im.h / 2.);
  const double cr = std::cos(rad), sr = std::sin(rad);
  for (int c = 0; c < im.c; ++c)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        // Darknet: cos(rad)*((x - w/2.)/s*aspect + dx/s*aspect) - sin(rad)*((y - h/2.)/s + dy/s) + cx
        const double u = (x - w / 2.) / s * aspect + dx / s * aspect;
        const double v = (y - h / 2.) / s + dy / s;
        const float rx = static_cast<float>(cr * u - sr * v + cx);
        const float ry = static_cast<float>(sr * u + cr * v + cy);
        rot.at(x, y, c) = bilinear(im, rx, ry, c);
      }
  return rot;
}

Image center_crop_image(const ImageView& im, int w, int h) {
  check_image(im, "center_crop_image: source");
  check_net_size(w, h, "center_crop_image: target");
  const int m = std::min(im.w, im.h);
  const Image c = crop_image(im, (im.w - m) / 2, (im.h - m) / 2, m, m);
  return resize_image(c.view(), w, h);
}

Image resize_min(const ImageView& im, int min) {
  check_image(im, "resize_min: source");
  check(min > 0, "resize_min: size must be positive, got ", min);
  int w = im.w, h = im.h;
  if (w < h) {
    h = static_cast<int>((static_cast<int64_t>(h) * min) / w);
    w = min;
  } else {
    w = static_cast<int>((static_cast<int64_t>(w) * min) / h);
    h = min;
  }
  if (w == im.w && h == im.h) {
    Image copy(im.w, im.h, im.c);
    std::copy(im.data, im.data + copy.data.size(), copy.data.begin());
    return copy;
  }
  return resize_image(im, std::max(w, 1), std::max(h, 1));
}

Image classifier_valid_image(const ImageView& im, int w, int h) {
  check_net_size(w, h, "classifier_valid_image: network input");
  const Image resized = resize_min(im, w);
  return crop_image(resized.view(), (resized.w - w) / 2, (resized.h - h) / 2, w, h);
}

Image random_augment_image(const ImageView& im, float angle, float aspect, int low, int high, int w, int h,
                           AugmentRng& rng, ClassifierAugmentDraws* draws) {
  check_image(im, "random_augment_image: source");
  check_net_size(w, h, "random_augment_image: network input");
  check(low > 0 && high > 0, "random_augment_image: min_crop/max_crop must be positive, got ", low, "/", high);
  check(std::isfinite(aspect) && aspect > 0, "random_augment_image: aspect must be positive, got ", aspect);
  check(std::isfinite(angle), "random_augment_image: angle must be finite");
  ClassifierAugmentDraws local;
  ClassifierAugmentDraws& d = draws ? *draws : local;
  d.aspect = rng.rand_scale(aspect);
  d.r = rand_int(rng, low, high);
  // Darknet: int min = (im.h < im.w*aspect) ? im.h : im.w*aspect;
  const int min = (im.h < im.w * d.aspect) ? im.h : static_cast<int>(im.w * d.aspect);
  check(min > 0, "random_augment_image: image ", im.w, "x", im.h, " is too small for aspect ", d.aspect);
  d.scale = static_cast<float>(d.r) / min;
  d.rad = static_cast<float>(rng.uniform(-angle, angle) * kTwoPi / 360.);
  float dx = static_cast<float>((im.w * d.scale / d.aspect - w) / 2.);
  float dy = static_cast<float>((im.h * d.scale - w) / 2.);  // Darknet subtracts w here too
  d.dx = rng.uniform(-dx, dx);
  d.dy = rng.uniform(-dy, dy);
  return rotate_crop_image(im, d.rad, d.scale, w, h, d.dx, d.dy, d.aspect);
}

Image augment_classifier(const ImageView& im, const ClassifierAugmentParams& p, AugmentRng& rng,
                         ClassifierAugmentDraws* draws) {
  check_image(im, "augment_classifier: image");
  check(im.c == 3, "augment_classifier: image must have 3 channels (RGB), got ", im.c);
  check(std::isfinite(p.hue) && p.hue >= 0 && p.hue <= 1, "augment_classifier: hue must be in [0, 1], got ", p.hue);
  check(std::isfinite(p.saturation) && p.saturation > 0, "augment_classifier: saturation must be positive, got ",
        p.saturation);
  check(std::isfinite(p.exposure) && p.exposure > 0, "augment_classifier: exposure must be positive, got ",
        p.exposure);
  ClassifierAugmentDraws local;
  ClassifierAugmentDraws& d = draws ? *draws : local;
  Image crop = p.center ? center_crop_image(im, p.w, p.h)
                        : random_augment_image(im, p.angle, p.aspect, p.min_crop, p.max_crop, p.w, p.h, rng, &d);
  d.flipped = p.flip && rng.coin();
  if (d.flipped) flip_image(crop);
  d.dhue = rng.uniform(-p.hue, p.hue);
  d.dsat = rng.rand_scale(p.saturation);
  d.dexp = rng.rand_scale(p.exposure);
  distort_image(crop, d.dhue, d.dsat, d.dexp);
  return crop;
}

void fill_hierarchy(float* truth, const WordTree& tree) {
  const int n = tree.n();
  for (int j = 0; j < n; ++j) {
    if (!truth[j]) continue;
    int parent = tree.parent[j];
    int guard = 0;
    while (parent >= 0) {
      check(++guard <= n, "fill_hierarchy: ", tree.file, " has a parent cycle");
      truth[parent] = 1;
      parent = tree.parent[parent];
    }
  }
  int count = 0;
  for (int g = 0; g < tree.groups(); ++g) {
    bool mask = true;
    for (int i = 0; i < tree.group_size[g]; ++i)
      if (truth[count + i]) {
        mask = false;
        break;
      }
    if (mask)
      for (int i = 0; i < tree.group_size[g]; ++i) truth[count + i] = kMaskedTruth;
    count += tree.group_size[g];
  }
}

}  // namespace dn
