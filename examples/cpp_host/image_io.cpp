#include "image_io.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <memory>
#include <stdexcept>

#ifdef CPP_HOST_WITH_JPEG
#include <csetjmp>
#include <jpeglib.h>
#endif

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw std::runtime_error("cannot read image '" + path + "': " + why);
}

// The next header token of a PPM, skipping whitespace and # comments.
std::string ppm_token(std::istream& in) {
  std::string token;
  int ch;
  while ((ch = in.get()) != EOF) {
    if (ch == '#') {
      while ((ch = in.get()) != EOF && ch != '\n') {
      }
    } else if (!std::isspace(ch)) {
      token.push_back((char)ch);
      break;
    }
  }
  while ((ch = in.peek()) != EOF && !std::isspace(ch) && ch != '#') token.push_back((char)in.get());
  return token;
}

RgbImage read_ppm(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open");
  if (ppm_token(in) != "P6") fail(path, "not a binary PPM (P6)");
  RgbImage im;
  try {
    im.width = std::stoi(ppm_token(in));
    im.height = std::stoi(ppm_token(in));
    if (std::stoi(ppm_token(in)) != 255) fail(path, "only 8-bit PPM (maxval 255) is supported");
  } catch (const std::logic_error&) {
    fail(path, "bad PPM header");
  }
  if (im.width <= 0 || im.height <= 0 || im.width > 65535 || im.height > 65535) fail(path, "bad PPM size");
  in.get();  // the single whitespace byte before the pixels
  im.pixels.resize((size_t)im.width * im.height * 3);
  if (!in.read(reinterpret_cast<char*>(im.pixels.data()), (std::streamsize)im.pixels.size()))
    fail(path, "truncated PPM");
  return im;
}

#ifdef CPP_HOST_WITH_JPEG
struct JpegErrorManager {
  jpeg_error_mgr base;
  std::jmp_buf jump;
};

RgbImage read_jpeg(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) fail(path, "cannot open");
  jpeg_decompress_struct info;
  JpegErrorManager errors;
  info.err = jpeg_std_error(&errors.base);
  errors.base.error_exit = [](j_common_ptr c) { std::longjmp(reinterpret_cast<JpegErrorManager*>(c->err)->jump, 1); };
  RgbImage im;
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&info);
    fail(path, "corrupt JPEG");
  }
  jpeg_create_decompress(&info);
  jpeg_stdio_src(&info, file.get());
  jpeg_read_header(&info, TRUE);
  info.out_color_space = JCS_RGB;
  jpeg_start_decompress(&info);
  im.width = (int)info.output_width;
  im.height = (int)info.output_height;
  im.pixels.resize((size_t)im.width * im.height * 3);
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = im.pixels.data() + (size_t)info.output_scanline * im.width * 3;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return im;
}
#endif

bool ends_with(std::string s, const std::string& suffix) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return (char)std::tolower(c); });
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

RgbImage read_image(const std::string& path) {
  if (ends_with(path, ".jpg") || ends_with(path, ".jpeg")) {
#ifdef CPP_HOST_WITH_JPEG
    return read_jpeg(path);
#else
    fail(path, "built without libjpeg: convert it to PPM (P6)");
#endif
  }
  return read_ppm(path);
}

void write_ppm(const RgbImage& image, const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  out << "P6\n" << image.width << " " << image.height << "\n255\n";
  out.write(reinterpret_cast<const char*>(image.pixels.data()), (std::streamsize)image.pixels.size());
  if (!out) throw std::runtime_error("cannot write '" + path + "'");
}

void draw_box(RgbImage& image, int left, int top, int right, int bottom, const uint8_t rgb[3], int thickness) {
  auto put = [&](int x, int y) {
    if (x < 0 || y < 0 || x >= image.width || y >= image.height) return;
    uint8_t* p = image.pixels.data() + ((size_t)y * image.width + x) * 3;
    p[0] = rgb[0], p[1] = rgb[1], p[2] = rgb[2];
  };
  for (int t = 0; t < thickness; ++t) {
    for (int x = left - t; x <= right + t; ++x) put(x, top - t), put(x, bottom + t);
    for (int y = top - t; y <= bottom + t; ++y) put(left - t, y), put(right + t, y);
  }
}
