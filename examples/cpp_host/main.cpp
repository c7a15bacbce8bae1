// A C++ program embedding darknet_py through its installed C++ wrapper (no Python):
//   cpp_host CFG WEIGHTS IMAGE [--names FILE] [--out ANNOTATED.ppm] [--thresh T]
//            [--hier-thresh T] [--nms T] [--threads N] [--device cpu|cuda] [--precise]
// Detects objects in IMAGE (binary PPM; JPEG too when built with libjpeg) as
// `darknet detector test` does and prints one line per object, Darknet style:
//   dog: 82%	(left=131 top=216 right=313 bottom=543)
// --precise adds the unrounded numbers: class id, probability, objectness, x y w h.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "darknet_py/darknet_py.hpp"
#include "image_io.hpp"

namespace {

// Darknet's get_color: a class's box colour from a fixed 6-colour ramp.
uint8_t class_colour(int channel, int class_id, int classes) {
  static const float ramp[6][3] = {{1, 0, 1}, {0, 0, 1}, {0, 1, 1}, {0, 1, 0}, {1, 1, 0}, {1, 0, 0}};
  const int offset = class_id * 123457 % classes;
  const float ratio = ((float)offset / classes) * 5;
  const int i = (int)ratio, j = i + 1 < 6 ? i + 1 : 5;
  const float r = ratio - i;
  const float value = (1 - r) * ramp[i][channel] + r * ramp[j][channel];
  return (uint8_t)(value * 255);
}

int usage(const char* program) {
  std::fprintf(stderr,
               "usage: %s CFG WEIGHTS IMAGE [--names FILE] [--out ANNOTATED.ppm] [--thresh T] "
               "[--hier-thresh T] [--nms T] [--threads N] [--device cpu|cuda] [--precise]\n",
               program);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return usage(argv[0]);
  const std::string cfg = argv[1], weights = argv[2], image_path = argv[3];
  std::string names, out_path, device;
  dn::DetectOptions options;
  int threads = 0;
  bool precise = false;
  for (int i = 4; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--precise") {
      precise = true;
      continue;
    }
    if (i + 1 >= argc) return usage(argv[0]);
    const char* value = argv[++i];
    if (flag == "--names") names = value;
    else if (flag == "--out") out_path = value;
    else if (flag == "--thresh") options.thresh = std::strtof(value, nullptr);
    else if (flag == "--hier-thresh") options.hier_thresh = std::strtof(value, nullptr);
    else if (flag == "--nms") options.nms = std::strtof(value, nullptr);
    else if (flag == "--threads") threads = std::atoi(value);
    else if (flag == "--device") device = value;
    else return usage(argv[0]);
  }

  try {
    dn::Network net(cfg, weights);  // batch 1
    for (const std::string& w : net.warnings()) std::fprintf(stderr, "warning: %s\n", w.c_str());
    net.set_keep_outputs(false);  // only the output layer is read: a few activation maps instead of all
    if (!names.empty()) net.load_names(names);
    if (threads > 0) net.set_threads(threads);
    if (!device.empty()) net.set_device(device);

    RgbImage image = read_image(image_path);
    const std::vector<dn::Detection> found = net.detect_rgb8(image.pixels, image.width, image.height, options);
    const int classes = net.class_count() > 0 ? net.class_count() : 1;  // sizes the colour ramp
    for (const dn::Detection& d : found) {
      std::printf("%s: %.0f%%\t(left=%.0f top=%.0f right=%.0f bottom=%.0f)\n", d.name.c_str(), d.prob * 100,
                  d.left(), d.top(), d.right(), d.bottom());
      if (precise)
        std::printf("  precise %d %.9g %.9g %.9g %.9g %.9g %.9g\n", d.class_id, d.prob, d.objectness, d.x, d.y, d.w,
                    d.h);
    }
    if (!out_path.empty()) {
      const int thickness = image.height * 6 / 1000 > 1 ? image.height * 6 / 1000 : 1;  // as Darknet's draw_detections
      for (const dn::Detection& d : found) {
        const uint8_t rgb[3] = {class_colour(2, d.class_id, classes), class_colour(1, d.class_id, classes),
                                class_colour(0, d.class_id, classes)};
        draw_box(image, (int)d.left(), (int)d.top(), (int)d.right(), (int)d.bottom(), rgb, thickness);
      }
      write_ppm(image, out_path);
      std::printf("wrote %s\n", out_path.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
