// Reading and writing 8-bit RGB images for the example host: binary PPM (P6) always,
// JPEG when built with libjpeg (CPP_HOST_WITH_JPEG).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // width*height*3, rows top to bottom, R,G,B interleaved
};

// Throws std::runtime_error naming the file on any problem.
RgbImage read_image(const std::string& path);
void write_ppm(const RgbImage& image, const std::string& path);

// A rectangle `thickness` pixels wide, clipped to the image.
void draw_box(RgbImage& image, int left, int top, int right, int bottom, const uint8_t rgb[3], int thickness);
