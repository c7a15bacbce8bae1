// Darknet's classifier data path (load_data_augment / validate_classifier_*),
// on the image layout and generator of image.hpp:
//   training:   random_augment_image (random scale in [min_crop, max_crop],
//               aspect, rotation, offset; bilinear sampling with 0 outside),
//               a random flip, random_distort_image (hue/saturation/exposure);
//   validation: resize_min to the net size, then a centred crop.
// Truth helpers: one-hot and Darknet's fill_hierarchy for a WordTree softmax.
#pragma once
#include <vector>

#include "image.hpp"
#include "parse/tree.hpp"

namespace dn {

struct ClassifierAugmentParams {
  int w = 224, h = 224;          // network input
  int min_crop = 224, max_crop = 448;  // shorter side after scaling, drawn in [min, max]
  float angle = 0.f;             // degrees, rotation drawn in [-angle, angle]
  float aspect = 1.f;            // rand_scale(aspect)
  float hue = 0.f, saturation = 1.f, exposure = 1.f;
  bool flip = true;
  bool center = false;           // Darknet's center=1: center_crop_image instead of the random crop
};

// The random values one augmentation drew, in Darknet's draw order.
struct ClassifierAugmentDraws {
  float aspect = 1.f;
  int r = 0;            // drawn shorter side
  float scale = 1.f;
  float rad = 0.f;
  float dx = 0.f, dy = 0.f;
  bool flipped = false;
  float dhue = 0.f, dsat = 1.f, dexp = 1.f;
};

// Darknet's rand_int: uniform integer in [lo, hi] (bounds swapped when hi < lo).
int rand_int(AugmentRng& rng, int lo, int hi);

// Darknet's rotate_crop_image: a w x h window of `im` rotated by rad, scaled
// by s, offset by (dx, dy), horizontally stretched by aspect; bilinear
// sampling reads 0 outside the source.
Image rotate_crop_image(const ImageView& im, float rad, float s, int w, int h, float dx, float dy, float aspect);

// Darknet's center_crop_image: the centred square of the shorter side, resized to w x h.
Image center_crop_image(const ImageView& im, int w, int h);

// Darknet's resize_min: shorter side -> min, aspect kept (integer division).
Image resize_min(const ImageView& im, int min);

// validate_classifier_single's input: resize_min(im, w) then a centred w x h crop.
Image classifier_valid_image(const ImageView& im, int w, int h);

// Darknet's random_augment_image; fills *draws when given.
Image random_augment_image(const ImageView& im, float angle, float aspect, int low, int high, int w, int h,
                           AugmentRng& rng, ClassifierAugmentDraws* draws = nullptr);

// One image of load_image_augment_paths: crop (random or centred), random
// flip, random HSV distortion.
Image augment_classifier(const ImageView& im, const ClassifierAugmentParams& p, AugmentRng& rng,
                         ClassifierAugmentDraws* draws = nullptr);

// Darknet's fill_hierarchy on one truth row of tree.n() values: every ancestor
// of a labelled node is set to 1; a softmax group with no label at all is
// filled with kMaskedTruth (-1234) so its loss is masked.
void fill_hierarchy(float* truth, const WordTree& tree);

}  // namespace dn
