// The header-only C++ wrapper: RAII, exceptions with the library's text, vectors, and a
// consumer's own network.hpp (consumer_include/) living beside darknet_py's headers.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "darknet_py/darknet_py.hpp"
#include "network.hpp"  // the consumer's, from consumer_include/

static int failures = 0;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

template <typename F>
static std::string error_text(F&& f, int* status = nullptr) {
  try {
    f();
  } catch (const dn::Error& e) {
    if (status) *status = e.status();
    return e.what();
  }
  return "";
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  const std::string cfg = dir + "/wrapper.cfg";
  std::ofstream(cfg) << "[net]\nwidth=16\nheight=16\nchannels=3\n"
                        "[convolutional]\nfilters=14\nsize=1\nstride=1\nactivation=linear\n"
                        "[region]\nanchors=1,1, 2,2\nclasses=2\ncoords=4\nnum=2\nsoftmax=1\n";
  CHECK(consumer::Network().layers == 42);
  CHECK(dn::version() == DARKNET_PY_VERSION_STRING);

  int status = 0;
  CHECK(error_text([&] { dn::Network bad(dir + "/missing.cfg"); }, &status).find("missing.cfg") != std::string::npos);
  CHECK(status == DN_ERROR);
  CHECK(error_text([&] { dn::Network bad(cfg, "", -3); }, &status).find("batch must be >= 0") != std::string::npos);
  CHECK(status == DN_INVALID_ARGUMENT);

  dn::Network net(cfg);
  CHECK(net.layer_count() == 2 && net.layer_type(1) == "region" && net.class_count() == 2);
  const dn::Shape in = net.input_shape();
  CHECK(in.batch == 1 && in.channels == 3 && in.height == 16 && in.width == 16);
  std::vector<float> input(in.size(), 0.25f);
  const std::vector<float> out = net.forward(input);
  CHECK(out.size() == 14 * 16 * 16);
  const dn::TensorView conv = net.layer_output(0);
  CHECK(conv.shape.channels == 14 && conv.size() == out.size());
  CHECK(error_text([&] { net.forward(std::vector<float>(5)); }).find("input has 5 floats") != std::string::npos);

  net.set_names({"cat", "dog"});
  std::vector<uint8_t> pixels(20 * 10 * 3, 128);
  const std::vector<dn::Detection> found = net.detect_rgb8(pixels, 20, 10, dn::DetectOptions{0.01f, .5f, .45f});
  CHECK(!found.empty());
  for (const dn::Detection& d : found) CHECK(d.name == "cat" || d.name == "dog");
  CHECK(error_text([&] { net.detect_rgb8(std::vector<uint8_t>(7), 20, 10); }).find("RGB8 image has 600") !=
        std::string::npos);

  // Move-only ownership: the moved-from object holds nothing and frees nothing.
  dn::Network moved = std::move(net);
  CHECK(net.handle() == nullptr && moved.handle() != nullptr);
  CHECK(error_text([&] { net.layer_count(); }).find("net is NULL") != std::string::npos);
  moved.save_weights(dir + "/wrapper.weights");
  dn::Network reloaded(cfg, dir + "/wrapper.weights");
  CHECK(reloaded.forward(input) == out);
  CHECK(reloaded.warnings().empty());

  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("wrapper_test: all checks passed\n");
  return 0;
}
