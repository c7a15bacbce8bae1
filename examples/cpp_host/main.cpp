// A C++ program embedding the darknet_py core through its C API (no Python):
//   cpp_host CFG [WEIGHTS] [INPUT.f32]
// Builds the network, runs one forward on INPUT (raw float32 NCHW; zeros if
// omitted) and prints the output shape and checksum.
#include <cstdio>
#include <vector>

#include "darknet_py/darknet_py.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CFG [WEIGHTS] [INPUT.f32]\n", argv[0]);
    return 2;
  }
  dn_network* net = nullptr;
  if (dn_network_load(argv[1], argc > 2 ? argv[2] : nullptr, 1, &net) != 0) {
    std::fprintf(stderr, "error: %s\n", dn_last_error());
    return 1;
  }
  int b, c, h, w;
  dn_network_input_shape(net, &b, &c, &h, &w);
  std::vector<float> input((size_t)b * c * h * w, 0.f);
  if (argc > 3) {
    FILE* f = std::fopen(argv[3], "rb");
    if (!f || std::fread(input.data(), sizeof(float), input.size(), f) != input.size()) {
      std::fprintf(stderr, "error: cannot read %zu floats from %s\n", input.size(), argv[3]);
      if (f) std::fclose(f);
      dn_network_free(net);
      return 1;
    }
    std::fclose(f);
  }
  const float* out = nullptr;
  if (dn_network_forward(net, input.data(), &out) != 0) {
    std::fprintf(stderr, "error: %s\n", dn_last_error());
    dn_network_free(net);
    return 1;
  }
  int oc, oh, ow;
  dn_network_output_shape(net, &oc, &oh, &ow);
  double sum = 0;
  for (size_t i = 0; i < (size_t)b * oc * oh * ow; ++i) sum += out[i];
  std::printf("layers %d input %dx%dx%dx%d output %dx%dx%d sum %.9g first %.9g\n", dn_network_layer_count(net), b, c,
              h, w, oc, oh, ow, sum, out[0]);
  dn_network_free(net);
  return 0;
}
