// Darknet-exact image arithmetic (see image.hpp). Written from the known
// behaviour of Darknet's image.c / data.c, not from its source.
//
// Exactness notes: every expression keeps Darknet's float/double types and
// evaluation order. Fused multiply-add would change the last bit of blended
// pixels, so contraction is switched off for this file.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "image.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.hpp"

namespace dn {

namespace {

constexpr int kMaxSide = 1 << 16;  // sanity bound on any image side

void check_size(int w, int h, const char* what) {
  check(w > 0 && h > 0, what, ": size must be positive, got ", w, "x", h);
  check(w <= kMaxSide && h <= kMaxSide, what, ": size ", w, "x", h, " exceeds ", kMaxSide);
}

float constrain(float lo, float hi, float a) {
  if (a < lo) return lo;
  if (a > hi) return hi;
  return a;
}

float three_way_max(float a, float b, float c) { return (a > b) ? ((a > c) ? a : c) : ((b > c) ? b : c); }
float three_way_min(float a, float b, float c) { return (a < b) ? ((a < c) ? a : c) : ((b < c) ? b : c); }

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

// ---------------------------------------------------------------- basics

Image::Image(int w_, int h_, int c_, float fill) : w(w_), h(h_), c(c_) {
  check_size(w_, h_, "image");
  check(c_ > 0 && c_ <= 4096, "image: channel count must be in [1, 4096], got ", c_);
  data.assign(static_cast<size_t>(w_) * h_ * c_, fill);
}

void check_image(const ImageView& im, const char* what) {
  check(im.data != nullptr, what, ": no pixel data");
  check_size(im.w, im.h, what);
  check(im.c > 0, what, ": channel count must be positive, got ", im.c);
}

AugmentRng::AugmentRng(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : state_) s = splitmix64(x);
}

uint64_t AugmentRng::next_u64() {
  const uint64_t result = rotl(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

float AugmentRng::uniform01() { return static_cast<float>(next_u64() >> 40) * (1.0f / 16777216.0f); }

float AugmentRng::uniform(float lo, float hi) {
  if (hi < lo) std::swap(lo, hi);
  return uniform01() * (hi - lo) + lo;
}

bool AugmentRng::coin() { return (next_u64() >> 63) != 0; }

int AugmentRng::below(int n) {
  check(n > 0, "AugmentRng::below: n must be positive, got ", n);
  return static_cast<int>(next_u64() % static_cast<uint64_t>(n));
}

float AugmentRng::rand_scale(float s) {
  const float scale = uniform(1, s);
  if (coin()) return scale;
  return static_cast<float>(1. / scale);
}

Image image_from_hwc_uint8(const uint8_t* pixels, int w, int h, int c) {
  check(pixels != nullptr, "image_from_hwc_uint8: no pixel data");
  Image out(w, h, c);
  // Darknet divides in double ((float)v / 255.) and stores a float; a table of
  // the 256 results reproduces that and avoids a division per pixel.
  float table[256];
  for (int v = 0; v < 256; ++v) table[v] = static_cast<float>(static_cast<double>(static_cast<float>(v)) / 255.);
  const size_t plane = static_cast<size_t>(w) * h;
  if (c == 3) {  // the common case in one pass over the source
    float* R = out.plane(0);
    float* G = out.plane(1);
    float* B = out.plane(2);
    for (size_t i = 0; i < plane; ++i) {
      R[i] = table[pixels[3 * i]];
      G[i] = table[pixels[3 * i + 1]];
      B[i] = table[pixels[3 * i + 2]];
    }
    return out;
  }
  for (int k = 0; k < c; ++k) {
    float* dst = out.plane(k);
    for (size_t i = 0; i < plane; ++i) dst[i] = table[pixels[i * c + k]];
  }
  return out;
}

// ---------------------------------------------------------------- resize / letterbox

Image resize_image(const ImageView& im, int w, int h) {
  check_image(im, "resize_image: source");
  check_size(w, h, "resize_image: target");
  Image part(w, im.h, im.c);
  Image resized(w, h, im.c);
  // Darknet divides by (w-1); a 1-pixel target side has no scale (the last
  // column is copied for w == 1; for h == 1 we sample row 0).
  const float w_scale = (w > 1) ? static_cast<float>(im.w - 1) / (w - 1) : 0.f;
  const float h_scale = (h > 1) ? static_cast<float>(im.h - 1) / (h - 1) : 0.f;

  // Horizontal pass.
  std::vector<int> col_index(w);
  std::vector<float> col_frac(w);
  for (int c = 0; c < w; ++c) {
    const float sx = c * w_scale;
    int ix = static_cast<int>(sx);
    // Float rounding can only push ix to im.w-1 on absurd upsampling ratios;
    // clamping keeps the read in bounds without changing ordinary results.
    if (ix > im.w - 2) ix = std::max(im.w - 2, 0);
    col_index[c] = ix;
    col_frac[c] = sx - ix;
  }
  for (int k = 0; k < im.c; ++k) {
    for (int r = 0; r < im.h; ++r) {
      const float* src = im.data + (static_cast<size_t>(k) * im.h + r) * im.w;
      float* dst = part.data.data() + (static_cast<size_t>(k) * im.h + r) * w;
      for (int c = 0; c < w; ++c) {
        if (c == w - 1 || im.w == 1) {
          dst[c] = src[im.w - 1];
        } else {
          const float dx = col_frac[c];
          const int ix = col_index[c];
          dst[c] = (1 - dx) * src[ix] + dx * src[ix + 1];
        }
      }
    }
  }

  // Vertical pass: Darknet stores (1-dy)*upper, then adds dy*lower except on
  // the last row (and for single-row sources).
  for (int k = 0; k < im.c; ++k) {
    for (int r = 0; r < h; ++r) {
      const float sy = r * h_scale;
      int iy = static_cast<int>(sy);
      if (iy > im.h - 1) iy = im.h - 1;
      const float dy = sy - iy;
      const float* upper = part.data.data() + (static_cast<size_t>(k) * im.h + iy) * w;
      float* dst = resized.data.data() + (static_cast<size_t>(k) * h + r) * w;
      for (int c = 0; c < w; ++c) dst[c] = (1 - dy) * upper[c];
      if (r == h - 1 || im.h == 1) continue;
      const float* lower = upper + ((iy + 1 < im.h) ? w : 0);
      for (int c = 0; c < w; ++c) dst[c] += dy * lower[c];
    }
  }
  return resized;
}

void letterbox_size(int im_w, int im_h, int w, int h, int* new_w, int* new_h) {
  check_size(im_w, im_h, "letterbox: source");
  check_size(w, h, "letterbox: target");
  // Same comparison and integer (floor) divisions as Darknet, in 64 bits.
  if ((static_cast<float>(w) / im_w) < (static_cast<float>(h) / im_h)) {
    *new_w = w;
    *new_h = static_cast<int>((static_cast<int64_t>(im_h) * w) / im_w);
  } else {
    *new_h = h;
    *new_w = static_cast<int>((static_cast<int64_t>(im_w) * h) / im_h);
  }
  // An extreme aspect ratio can floor a side to 0; keep one pixel.
  *new_w = std::max(*new_w, 1);
  *new_h = std::max(*new_h, 1);
}

Image letterbox_image(const ImageView& im, int w, int h) {
  check_image(im, "letterbox_image: source");
  int new_w = 0, new_h = 0;
  letterbox_size(im.w, im.h, w, h, &new_w, &new_h);
  const Image resized = resize_image(im, new_w, new_h);
  Image boxed(w, h, im.c, 0.5f);
  embed_image(resized.view(), boxed, (w - new_w) / 2, (h - new_h) / 2);
  return boxed;
}

void embed_image(const ImageView& src, Image& dst, int dx, int dy) {
  check_image(src, "embed_image: source");
  check(src.c == dst.c, "embed_image: channel mismatch, source ", src.c, " vs destination ", dst.c);
  const int x0 = std::max(0, -dx), x1 = std::min(src.w, dst.w - dx);
  const int y0 = std::max(0, -dy), y1 = std::min(src.h, dst.h - dy);
  if (x0 >= x1 || y0 >= y1) return;
  for (int k = 0; k < src.c; ++k)
    for (int y = y0; y < y1; ++y)
      std::copy(&src.data[(static_cast<size_t>(k) * src.h + y) * src.w + x0],
                &src.data[(static_cast<size_t>(k) * src.h + y) * src.w + x1], &dst.at(dx + x0, dy + y, k));
}

Image crop_image(const ImageView& im, int dx, int dy, int w, int h) {
  check_image(im, "crop_image: source");
  check_size(w, h, "crop_image: window");
  Image cropped(w, h, im.c);
  for (int k = 0; k < im.c; ++k)
    for (int j = 0; j < h; ++j) {
      const int r = std::clamp(j + dy, 0, im.h - 1);
      for (int i = 0; i < w; ++i) cropped.at(i, j, k) = im.at(std::clamp(i + dx, 0, im.w - 1), r, k);
    }
  return cropped;
}

void place_image(const ImageView& im, int w, int h, int dx, int dy, Image& canvas) {
  check_image(im, "place_image: source");
  check(im.c == canvas.c, "place_image: channel mismatch, source ", im.c, " vs canvas ", canvas.c);
  if (w <= 0 || h <= 0) return;  // nothing to draw
  // Only canvas pixels inside the canvas are written (Darknet's set_pixel
  // ignores the rest), so loop over that range alone.
  const int x0 = std::max(0, -dx), x1 = std::min(w, canvas.w - dx);
  const int y0 = std::max(0, -dy), y1 = std::min(h, canvas.h - dy);
  if (x0 >= x1 || y0 >= y1) return;
  auto extend = [&](const float* plane, int x, int y) -> float {
    if (x < 0 || x >= im.w || y < 0 || y >= im.h) return 0.f;
    return plane[static_cast<size_t>(y) * im.w + x];
  };
  std::vector<int> col_index(x1 - x0);
  std::vector<float> col_frac(x1 - x0);
  for (int x = x0; x < x1; ++x) {
    const float rx = (static_cast<float>(x) / w) * im.w;
    const int ix = static_cast<int>(std::floor(rx));
    col_index[x - x0] = ix;
    col_frac[x - x0] = rx - ix;
  }
  for (int k = 0; k < im.c; ++k) {
    const float* plane = im.data + static_cast<size_t>(k) * im.h * im.w;
    for (int y = y0; y < y1; ++y) {
      const float ry = (static_cast<float>(y) / h) * im.h;
      const int iy = static_cast<int>(std::floor(ry));
      const float fy = ry - iy;
      float* out = &canvas.at(dx + x0, dy + y, k);
      for (int x = x0; x < x1; ++x) {
        const int ix = col_index[x - x0];
        const float fx = col_frac[x - x0];
        // Darknet's bilinear_interpolate, term order kept.
        out[x - x0] = (1 - fy) * (1 - fx) * extend(plane, ix, iy) + fy * (1 - fx) * extend(plane, ix, iy + 1) +
                      (1 - fy) * fx * extend(plane, ix + 1, iy) + fy * fx * extend(plane, ix + 1, iy + 1);
      }
    }
  }
}

// ---------------------------------------------------------------- colour

void flip_image(Image& im) {
  for (int k = 0; k < im.c; ++k)
    for (int y = 0; y < im.h; ++y) {
      float* row = &im.at(0, y, k);
      std::reverse(row, row + im.w);
    }
}

namespace {

// Darknet's rgb_to_hsv for one pixel.
inline void pixel_rgb_to_hsv(float r, float g, float b, float* h_out, float* s_out, float* v_out) {
  const float max = three_way_max(r, g, b);
  const float min = three_way_min(r, g, b);
  const float delta = max - min;
  float h = 0, s = 0;
  // Darknet computes 0/0 = NaN hue for grey pixels; saturation is 0 there
  // so the hue is never used. 0 keeps the buffer NaN-free, same RGB result.
  if (max != 0 && delta != 0) {
    s = delta / max;
    if (r == max) {
      h = (g - b) / delta;
    } else if (g == max) {
      h = 2 + (b - r) / delta;
    } else {
      h = 4 + (r - g) / delta;
    }
    if (h < 0) h += 6;
    h = static_cast<float>(h / 6.);
  }
  *h_out = h;
  *s_out = s;
  *v_out = max;
}

// Darknet's hsv_to_rgb for one pixel.
inline void pixel_hsv_to_rgb(float hue, float s, float v, float* r_out, float* g_out, float* b_out) {
  const float h = 6 * hue;
  float r, g, b;
  if (s == 0) {
    r = g = b = v;
  } else {
    const int index = static_cast<int>(std::floor(h));
    const float f = h - index;
    const float p = v * (1 - s);
    const float q = v * (1 - s * f);
    const float t = v * (1 - s * (1 - f));
    switch (index) {
      case 0: r = v; g = t; b = p; break;
      case 1: r = q; g = v; b = p; break;
      case 2: r = p; g = v; b = t; break;
      case 3: r = p; g = q; b = v; break;
      case 4: r = t; g = p; b = v; break;
      default: r = v; g = p; b = q; break;
    }
  }
  *r_out = r;
  *g_out = g;
  *b_out = b;
}

}  // namespace

void rgb_to_hsv(Image& im) {
  check(im.c == 3, "rgb_to_hsv: needs 3 channels, got ", im.c);
  const size_t n = static_cast<size_t>(im.w) * im.h;
  float* R = im.plane(0);
  float* G = im.plane(1);
  float* B = im.plane(2);
  for (size_t i = 0; i < n; ++i) pixel_rgb_to_hsv(R[i], G[i], B[i], &R[i], &G[i], &B[i]);
}

void hsv_to_rgb(Image& im) {
  check(im.c == 3, "hsv_to_rgb: needs 3 channels, got ", im.c);
  const size_t n = static_cast<size_t>(im.w) * im.h;
  float* H = im.plane(0);
  float* S = im.plane(1);
  float* V = im.plane(2);
  for (size_t i = 0; i < n; ++i) pixel_hsv_to_rgb(H[i], S[i], V[i], &H[i], &S[i], &V[i]);
}

void distort_image(Image& im, float hue, float saturation, float exposure) {
  check(im.c == 3, "distort_image: needs 3 channels, got ", im.c);
  check(std::isfinite(hue) && std::isfinite(saturation) && std::isfinite(exposure),
        "distort_image: hue/saturation/exposure must be finite");
  // Darknet runs rgb_to_hsv, two channel scales, the hue shift, hsv_to_rgb and
  // a clamp as separate passes; each pixel's arithmetic is independent, so one
  // fused pass gives the same floats with a sixth of the memory traffic.
  const size_t n = static_cast<size_t>(im.w) * im.h;
  float* R = im.plane(0);
  float* G = im.plane(1);
  float* B = im.plane(2);
  for (size_t i = 0; i < n; ++i) {
    float h, s, v;
    pixel_rgb_to_hsv(R[i], G[i], B[i], &h, &s, &v);
    s *= saturation;
    v *= exposure;
    h = h + hue;
    if (h > 1) h -= 1;
    if (h < 0) h += 1;
    float r, g, b;
    pixel_hsv_to_rgb(h, s, v, &r, &g, &b);
    R[i] = constrain(0, 1, r);
    G[i] = constrain(0, 1, g);
    B[i] = constrain(0, 1, b);
  }
}

// ---------------------------------------------------------------- boxes

BoxLabel make_box_label(int id, float x, float y, float w, float h) {
  BoxLabel b;
  b.id = id;
  b.x = x;
  b.y = y;
  b.w = w;
  b.h = h;
  b.left = x - w / 2;
  b.right = x + w / 2;
  b.top = y - h / 2;
  b.bottom = y + h / 2;
  return b;
}

void correct_boxes(std::vector<BoxLabel>& boxes, float dx, float dy, float sx, float sy, bool flip) {
  for (auto& b : boxes) {
    if (b.x == 0 && b.y == 0) {
      b.x = b.y = b.w = b.h = 999999;
      continue;
    }
    b.left = b.left * sx - dx;
    b.right = b.right * sx - dx;
    b.top = b.top * sy - dy;
    b.bottom = b.bottom * sy - dy;
    if (flip) {
      const float swap = b.left;
      b.left = static_cast<float>(1. - b.right);
      b.right = static_cast<float>(1. - swap);
    }
    b.left = constrain(0, 1, b.left);
    b.right = constrain(0, 1, b.right);
    b.top = constrain(0, 1, b.top);
    b.bottom = constrain(0, 1, b.bottom);
    b.x = (b.left + b.right) / 2;
    b.y = (b.top + b.bottom) / 2;
    b.w = b.right - b.left;
    b.h = b.bottom - b.top;
    b.w = constrain(0, 1, b.w);
    b.h = constrain(0, 1, b.h);
  }
}

void fill_truth(const std::vector<BoxLabel>& corrected, int max_boxes, float* truth) {
  check(max_boxes > 0, "fill_truth: max_boxes must be positive, got ", max_boxes);
  std::fill(truth, truth + static_cast<size_t>(max_boxes) * 5, 0.f);
  const int count = std::min(static_cast<int>(corrected.size()), max_boxes);
  int kept = 0;
  for (int i = 0; i < count; ++i) {
    const BoxLabel& b = corrected[i];
    if (b.w < .001 || b.h < .001) continue;
    float* t = truth + static_cast<size_t>(kept) * 5;
    t[0] = b.x;
    t[1] = b.y;
    t[2] = b.w;
    t[3] = b.h;
    t[4] = static_cast<float>(b.id);
    ++kept;
  }
}

// ---------------------------------------------------------------- detection augmentation

JitterStyle parse_jitter_style(const std::string& name) {
  if (name == "crop") return JitterStyle::Crop;
  if (name == "place") return JitterStyle::Place;
  fail("jitter style must be 'crop' (YOLOv2-era Darknet) or 'place' (pjreddie master), got '", name, "'");
}

const char* jitter_style_name(JitterStyle style) { return style == JitterStyle::Crop ? "crop" : "place"; }

namespace {

// YOLOv2-era Darknet: cut (or, when negative, add by replicating the border) up to
// jitter x side on each side, then resize the window to the net. Returns the box
// correction (dx, dy, sx, sy) for correct_boxes.
void jitter_by_crop(const ImageView& orig, const DetectionAugmentParams& p, AugmentRng& rng,
                    DetectionAugmentDraws& d, Image& out, float correction[4]) {
  const int dw = static_cast<int>(orig.w * p.jitter), dh = static_cast<int>(orig.h * p.jitter);
  // Darknet assigns rand_uniform(-d, d) to an int: truncation toward zero.
  d.crop_left = static_cast<int>(rng.uniform(-dw, dw));
  d.crop_right = static_cast<int>(rng.uniform(-dw, dw));
  d.crop_top = static_cast<int>(rng.uniform(-dh, dh));
  d.crop_bottom = static_cast<int>(rng.uniform(-dh, dh));
  const int crop_w = orig.w - d.crop_left - d.crop_right;
  const int crop_h = orig.h - d.crop_top - d.crop_bottom;
  // jitter < 1/2 (checked above) keeps at least one pixel: dw < w/2 on each side
  const float sx = static_cast<float>(crop_w) / orig.w, sy = static_cast<float>(crop_h) / orig.h;
  const Image cropped = crop_image(orig, d.crop_left, d.crop_top, crop_w, crop_h);
  out = resize_image(cropped.view(), p.net_w, p.net_h);
  correction[0] = (static_cast<float>(d.crop_left) / orig.w) / sx;  // new = old / s - left / s
  correction[1] = (static_cast<float>(d.crop_top) / orig.h) / sy;
  correction[2] = 1.f / sx;
  correction[3] = 1.f / sy;
}

// pjreddie master: random aspect from +-jitter, fitted into the net size (scale 1),
// placed at a random offset on a 0.5 canvas.
void jitter_by_placing(const ImageView& orig, const DetectionAugmentParams& p, AugmentRng& rng,
                       DetectionAugmentDraws& d, Image& out, float correction[4]) {
  const int w = p.net_w, h = p.net_h;
  out = Image(w, h, orig.c, 0.5f);
  const float dw = p.jitter * orig.w;
  const float dh = p.jitter * orig.h;
  d.aspect_w_jitter = rng.uniform(-dw, dw);
  d.aspect_h_jitter = rng.uniform(-dh, dh);
  d.new_ar = (orig.w + d.aspect_w_jitter) / (orig.h + d.aspect_h_jitter);
  const float scale = 1;  // pjreddie master keeps the scale fixed
  if (d.new_ar < 1) {
    d.nh = scale * h;
    d.nw = d.nh * d.new_ar;
  } else {
    d.nw = scale * w;
    d.nh = d.nw / d.new_ar;
  }
  d.dx = rng.uniform(0, w - d.nw);
  d.dy = rng.uniform(0, h - d.nh);
  place_image(orig, static_cast<int>(d.nw), static_cast<int>(d.nh), static_cast<int>(d.dx),
              static_cast<int>(d.dy), out);
  correction[0] = -d.dx / w;
  correction[1] = -d.dy / h;
  correction[2] = d.nw / w;
  correction[3] = d.nh / h;
}

}  // namespace

DetectionSample augment_detection(const ImageView& orig, const std::vector<BoxLabel>& labels,
                                  const DetectionAugmentParams& p, AugmentRng& rng) {
  check_image(orig, "augment_detection: image");
  check(orig.c == 3, "augment_detection: image must have 3 channels (RGB), got ", orig.c);
  check_size(p.net_w, p.net_h, "augment_detection: network input");
  check(std::isfinite(p.jitter) && p.jitter >= 0 && p.jitter < 1,
        "augment_detection: jitter must be in [0, 1), got ", p.jitter);
  check(std::isfinite(p.hue) && p.hue >= 0 && p.hue <= 1, "augment_detection: hue must be in [0, 1], got ", p.hue);
  check(std::isfinite(p.saturation) && p.saturation > 0,
        "augment_detection: saturation must be positive, got ", p.saturation);
  check(std::isfinite(p.exposure) && p.exposure > 0, "augment_detection: exposure must be positive, got ",
        p.exposure);
  check(p.max_boxes > 0, "augment_detection: max_boxes must be positive, got ", p.max_boxes);
  check(p.style != JitterStyle::Crop || p.jitter < 0.5f,
        "augment_detection: jitter must be below 0.5 with the crop style (each side moves by up to jitter), got ",
        p.jitter);

  DetectionSample out;
  DetectionAugmentDraws& d = out.draws;
  float correction[4];  // dx, dy, sx, sy for correct_boxes
  auto distort = [&] {
    d.dhue = rng.uniform(-p.hue, p.hue);
    d.dsat = rng.rand_scale(p.saturation);
    d.dexp = rng.rand_scale(p.exposure);
    distort_image(out.image, d.dhue, d.dsat, d.dexp);
  };
  auto maybe_flip = [&] {
    d.flipped = p.flip && rng.coin();
    if (d.flipped) flip_image(out.image);
  };
  // Each era's Darknet draws flip and distortion in its own order (same seed, same draws).
  if (p.style == JitterStyle::Crop) {
    jitter_by_crop(orig, p, rng, d, out.image, correction);
    maybe_flip();
    distort();
  } else {
    jitter_by_placing(orig, p, rng, d, out.image, correction);
    distort();
    maybe_flip();
  }

  // Darknet's randomize_boxes: swap each position with a random one.
  const int n = static_cast<int>(labels.size());
  d.box_order.resize(n);
  for (int i = 0; i < n; ++i) d.box_order[i] = i;
  for (int i = 0; i < n; ++i) std::swap(d.box_order[i], d.box_order[rng.below(n)]);
  std::vector<BoxLabel> boxes(n);
  for (int i = 0; i < n; ++i) boxes[i] = labels[d.box_order[i]];

  correct_boxes(boxes, correction[0], correction[1], correction[2], correction[3], d.flipped);
  out.truth.assign(static_cast<size_t>(p.max_boxes) * 5, 0.f);
  fill_truth(boxes, p.max_boxes, out.truth.data());
  return out;
}

}  // namespace dn
