// Image arithmetic on Darknet's image layout: float32, planar CHW, RGB in [0,1],
// pixel (x, y) of channel c at data[c*h*w + y*w + x].
//
// Every function reproduces the arithmetic of the matching Darknet routine
// (resize_image, letterbox_image, embed_image, crop_image, place_image,
// flip_image, rgb_to_hsv, hsv_to_rgb, distort_image, load_data_detection's
// augmentation, correct_boxes) float for float, so images fed to a network
// match what Darknet would feed it. Bad input throws dn::DarknetError.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dn {

// A read-only view of someone else's pixels (a numpy buffer, an Image).
struct ImageView {
  const float* data = nullptr;
  int w = 0, h = 0, c = 0;
  float at(int x, int y, int ch) const { return data[(static_cast<size_t>(ch) * h + y) * w + x]; }
};

// An owned image.
struct Image {
  int w = 0, h = 0, c = 0;
  std::vector<float> data;

  Image() = default;
  Image(int w, int h, int c, float fill = 0.f);  // throws on non-positive sizes
  ImageView view() const { return ImageView{data.data(), w, h, c}; }
  float* plane(int ch) { return data.data() + static_cast<size_t>(ch) * h * w; }
  float& at(int x, int y, int ch) { return data[(static_cast<size_t>(ch) * h + y) * w + x]; }
  float at(int x, int y, int ch) const { return data[(static_cast<size_t>(ch) * h + y) * w + x]; }
};

// Seeded generator for augmentation (xoshiro256** seeded through splitmix64):
// the same seed gives the same draws on every platform and compiler.
class AugmentRng {
 public:
  explicit AugmentRng(uint64_t seed);
  uint64_t next_u64();
  float uniform01();                // [0, 1), 24 random bits
  float uniform(float lo, float hi);  // Darknet's rand_uniform: swaps lo/hi when hi < lo
  bool coin();                       // Darknet's rand()%2
  int below(int n);                  // [0, n), n > 0
  float rand_scale(float s);         // Darknet's rand_scale: u in [1,s], then u or 1/u

 private:
  uint64_t state_[4];
};

// Validates an image view: positive sizes, non-null data. `what` names it in errors.
void check_image(const ImageView& im, const char* what);

// Darknet's uint8 interleaved HWC -> float CHW (value/255, computed as Darknet does).
Image image_from_hwc_uint8(const uint8_t* pixels, int w, int h, int c);

// Darknet's resize_image: a horizontal pass into a (w x im.h) temporary, then a
// vertical pass. The last column is copied; the last row takes only the
// (1-dy) weighted term, exactly as Darknet computes it.
Image resize_image(const ImageView& im, int w, int h);

// The integer size letterbox_image resizes to (aspect kept, floor division).
void letterbox_size(int im_w, int im_h, int w, int h, int* new_w, int* new_h);

// Darknet's letterbox_image: resize to letterbox_size, fill 0.5, embed centred.
Image letterbox_image(const ImageView& im, int w, int h);

// Copies src into dst at (dx, dy); pixels falling outside dst are dropped.
void embed_image(const ImageView& src, Image& dst, int dx, int dy);

// Darknet's crop_image: a w x h window at (dx, dy); coordinates outside the
// source are clamped to the nearest edge pixel.
Image crop_image(const ImageView& im, int dx, int dy, int w, int h);

// Darknet's place_image: draws `im` scaled to w x h at (dx, dy) of the canvas
// with bilinear sampling that reads 0 outside the source (get_pixel_extend).
void place_image(const ImageView& im, int w, int h, int dx, int dy, Image& canvas);

void flip_image(Image& im);  // mirror left-right
void rgb_to_hsv(Image& im);  // in place, needs 3 channels; h in [0,1)
void hsv_to_rgb(Image& im);
// Darknet's distort_image: saturation and value scaled, hue shifted with
// wrap-around, back to RGB, clamped to [0,1].
void distort_image(Image& im, float hue, float saturation, float exposure);

// A ground-truth box as Darknet's box_label: centre/size plus edges, normalised.
struct BoxLabel {
  int id = 0;
  float x = 0, y = 0, w = 0, h = 0;
  float left = 0, right = 0, top = 0, bottom = 0;
};
// From a label file row (class, x, y, w, h): edges computed as Darknet's read_boxes.
BoxLabel make_box_label(int id, float x, float y, float w, float h);

// Darknet's correct_boxes: boxes of the original image -> boxes of the
// augmented one (scale by sx/sy, shift by -dx/-dy, optional flip, clip to
// [0,1]). A box with x == 0 and y == 0 becomes Darknet's 999999 marker.
void correct_boxes(std::vector<BoxLabel>& boxes, float dx, float dy, float sx, float sy, bool flip);

// Writes max_boxes*5 truth values (x, y, w, h, class; zero padded) as Darknet's
// fill_truth_detection after shuffling and correcting: the list is capped at
// max_boxes first, then boxes with w or h < .001 are dropped.
void fill_truth(const std::vector<BoxLabel>& corrected, int max_boxes, float* truth);

// How jitter moves the image. Place: pjreddie master (YOLOv3 era): a random aspect,
// shrunk to fit, placed at a random offset on grey, never enlarged. Crop: YOLOv2-era
// Darknet (what the paper trained with): each side moved by an integer in +-jitter x
// side (border pixels replicated), resized to the net: translation and zoom in or out.
enum class JitterStyle { Place, Crop };
JitterStyle parse_jitter_style(const std::string& name);
const char* jitter_style_name(JitterStyle style);

struct DetectionAugmentParams {
  int net_w = 416, net_h = 416;
  JitterStyle style = JitterStyle::Place;
  float jitter = 0.2f;
  float hue = 0.f, saturation = 1.f, exposure = 1.f;
  bool flip = true;  // Darknet flips detection images at random; false disables it
  int max_boxes = 30;
};

// The random values one augmentation drew, in Darknet's draw order.
struct DetectionAugmentDraws {
  float aspect_w_jitter = 0, aspect_h_jitter = 0;  // rand_uniform(-dw, dw), rand_uniform(-dh, dh)
  float new_ar = 1, nw = 0, nh = 0;
  float dx = 0, dy = 0;  // placement offsets (float; place_image truncates)
  int crop_left = 0, crop_right = 0, crop_top = 0, crop_bottom = 0;  // Crop: pixels cut (negative: added)
  float dhue = 0, dsat = 1, dexp = 1;
  bool flipped = false;
  std::vector<int> box_order;  // label row of each shuffled box
};

struct DetectionSample {
  Image image;               // 3 x net_h x net_w
  std::vector<float> truth;  // max_boxes * 5
  DetectionAugmentDraws draws;
};

// One image of Darknet's load_data_detection: jittered by params.style (see
// JitterStyle), distorted in HSV, maybe flipped; the labels (class, x, y, w, h
// rows) are shuffled, corrected and written as truth, in that Darknet's draw order.
DetectionSample augment_detection(const ImageView& im, const std::vector<BoxLabel>& labels,
                                  const DetectionAugmentParams& params, AugmentRng& rng);

}  // namespace dn
