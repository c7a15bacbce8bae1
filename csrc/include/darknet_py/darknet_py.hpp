// darknet_py C++ API: a header-only RAII wrapper over the C API (darknet_py.h).
// Only the C API crosses the library boundary, so this header exposes no internal type
// and works with the shared or the static library alike. Failures throw dn::Error with
// the library's message and status.
//
//   dn::Network net("yolov2-tiny-voc.cfg", "yolov2-tiny-voc.weights");
//   net.load_names("voc.names");
//   for (const dn::Detection& d : net.detect_rgb8(pixels, width, height))
//     std::printf("%s: %.0f%%\n", d.name.c_str(), d.prob * 100);
//
// Threads: one dn::Network must not be used from two threads at once (such a call
// throws dn::Error with status DN_BUSY); separate networks are independent.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "darknet_py/darknet_py.h"

namespace dn {
// The versioned inline namespace keeps these inline classes' symbols apart from the
// library's internal ones (which share the name dn::Network) when linking statically.
inline namespace api_v0 {

class Error : public std::runtime_error {
 public:
  Error(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
  int status() const noexcept { return status_; }  // a dn_status value

 private:
  int status_;
};

// Throws dn::Error for a failed status, with dn_last_error()'s text.
inline void check_status(int status) {
  if (status != DN_OK) {
    const char* message = dn_last_error();
    throw Error(status, message && *message ? message : dn_status_name(status));
  }
}

struct Shape {
  int batch = 0, channels = 0, height = 0, width = 0;
  size_t size() const { return (size_t)batch * channels * height * width; }
};

// A read-only view of floats the network owns (valid until the next call on it).
struct TensorView {
  const float* data = nullptr;
  Shape shape;
  size_t size() const { return shape.size(); }
  const float* begin() const { return data; }
  const float* end() const { return data + size(); }
  std::vector<float> to_vector() const { return std::vector<float>(begin(), end()); }
};

struct Detection {
  int class_id = 0;
  std::string name;
  float prob = 0.f;        // objectness * P(class | object)
  float objectness = 0.f;
  float x = 0.f, y = 0.f, w = 0.f, h = 0.f;  // box centre and size in image pixels
  float left() const { return x - w / 2; }
  float top() const { return y - h / 2; }
  float right() const { return x + w / 2; }
  float bottom() const { return y + h / 2; }
};

// Darknet's defaults for `detector test`.
struct DetectOptions {
  float thresh = .24f;
  float hier_thresh = .5f;
  float nms = .45f;
};

inline std::string version() { return dn_version(); }
inline bool cuda_available() { return dn_cuda_available() != 0; }

class Network {
 public:
  // Builds from a .cfg (batch 1 by default: inference), then loads weights when given.
  explicit Network(const std::string& cfg_path, const std::string& weights_path = std::string(), int batch = 1) {
    check_status(dn_network_load(cfg_path.c_str(), weights_path.empty() ? nullptr : weights_path.c_str(), batch,
                                 &handle_));
  }
  ~Network() { dn_network_free(handle_); }
  Network(Network&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Network& operator=(Network&& other) noexcept {
    if (this != &other) {
      dn_network_free(handle_);
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  // Loads the first `cutoff` layers' weights (cutoff < 0: all).
  void load_weights(const std::string& path, int cutoff = -1) {
    check_status(dn_network_load_weights(handle_, path.c_str(), cutoff));
  }
  void load_names(const std::string& path) { check_status(dn_network_load_names(handle_, path.c_str())); }
  void set_names(const std::vector<std::string>& names) {
    std::vector<const char*> pointers;
    pointers.reserve(names.size());
    for (const auto& n : names) pointers.push_back(n.c_str());
    check_status(dn_network_set_names(handle_, pointers.data(), (int)pointers.size()));
  }
  std::string class_name(int class_id) const {
    const char* name = nullptr;
    check_status(dn_network_class_name(handle_, class_id, &name));
    return name;
  }
  std::vector<std::string> warnings() const {
    int count = 0;
    check_status(dn_network_warning_count(handle_, &count));
    std::vector<std::string> out;
    for (int i = 0; i < count; ++i) {
      const char* text = nullptr;
      check_status(dn_network_warning(handle_, i, &text));
      out.emplace_back(text);
    }
    return out;
  }

  void set_threads(int threads) { check_status(dn_network_set_threads(handle_, threads)); }
  void set_cuda_math(const std::string& math) { check_status(dn_network_set_cuda_math(handle_, math.c_str())); }
  void set_cuda_graphs(bool enable) { check_status(dn_network_set_cuda_graphs(handle_, enable ? 1 : 0)); }
  void set_device(const std::string& device) { check_status(dn_network_set_device(handle_, device.c_str())); }
  void set_keep_outputs(bool keep) { check_status(dn_network_set_keep_outputs(handle_, keep ? 1 : 0)); }
  void set_fuse_layers(bool enable) { check_status(dn_network_set_fuse_layers(handle_, enable ? 1 : 0)); }
  void resize(int width, int height) { check_status(dn_network_resize(handle_, width, height)); }

  Shape input_shape() const {
    Shape s;
    check_status(dn_network_input_shape(handle_, &s.batch, &s.channels, &s.height, &s.width));
    return s;
  }
  Shape output_shape() const {
    Shape s;
    check_status(dn_network_input_shape(handle_, &s.batch, nullptr, nullptr, nullptr));
    check_status(dn_network_output_shape(handle_, &s.channels, &s.height, &s.width));
    return s;
  }
  int layer_count() const {
    int n = 0;
    check_status(dn_network_layer_count(handle_, &n));
    return n;
  }
  std::string layer_type(int index) const {
    const char* type = nullptr;
    check_status(dn_network_layer_type(handle_, index, &type));
    return type;
  }

  // Input: batch*C*H*W floats (NCHW). The view is valid until the next call on this network.
  TensorView forward(const float* input, size_t count) {
    TensorView out;
    check_status(dn_network_forward(handle_, input, count, &out.data, nullptr));
    out.shape = output_shape();
    return out;
  }
  std::vector<float> forward(const std::vector<float>& input) {
    return forward(input.data(), input.size()).to_vector();
  }
  TensorView layer_output(int index) {
    TensorView out;
    Shape& s = out.shape;
    check_status(dn_network_layer_output(handle_, index, &out.data, &s.batch, &s.channels, &s.height, &s.width));
    return out;
  }

  // RGB8: width*height*3 interleaved bytes, rows top to bottom.
  std::vector<Detection> detect_rgb8(const uint8_t* pixels, int width, int height,
                                     const DetectOptions& o = DetectOptions()) {
    const dn_detection* found = nullptr;
    int count = 0;
    check_status(dn_network_detect_rgb8(handle_, pixels, (size_t)width * height * 3, width, height, o.thresh,
                                        o.hier_thresh, o.nms, &found, &count));
    return copy(found, count);
  }
  std::vector<Detection> detect_rgb8(const std::vector<uint8_t>& pixels, int width, int height,
                                     const DetectOptions& o = DetectOptions()) {
    const dn_detection* found = nullptr;
    int count = 0;
    check_status(dn_network_detect_rgb8(handle_, pixels.data(), pixels.size(), width, height, o.thresh,
                                        o.hier_thresh, o.nms, &found, &count));
    return copy(found, count);
  }
  // Darknet's image layout: 3 planes (R, G, B) of height*width floats in [0, 1].
  std::vector<Detection> detect_float(const std::vector<float>& planes, int width, int height,
                                      const DetectOptions& o = DetectOptions()) {
    const dn_detection* found = nullptr;
    int count = 0;
    check_status(dn_network_detect_float(handle_, planes.data(), planes.size(), width, height, o.thresh,
                                         o.hier_thresh, o.nms, &found, &count));
    return copy(found, count);
  }

  int class_count() const {
    int n = 0;
    check_status(dn_network_class_count(handle_, &n));
    return n;
  }
  int truth_size() const {
    int n = 0;
    check_status(dn_network_truth_size(handle_, &n));
    return n;
  }
  // One Darknet training step; returns the step's loss.
  float train_step(const std::vector<float>& input, const std::vector<float>& truth) {
    float loss = 0.f;
    check_status(dn_network_train_step(handle_, input.data(), input.size(), truth.data(), truth.size(), &loss));
    return loss;
  }
  long long seen() const {
    long long s = 0;
    check_status(dn_network_seen(handle_, &s));
    return s;
  }
  void save_weights(const std::string& path) const { check_status(dn_network_save_weights(handle_, path.c_str())); }

  // The C handle, for calls this wrapper does not cover (still owned by this object).
  dn_network* handle() const noexcept { return handle_; }

 private:
  dn_network* handle_ = nullptr;

  static std::vector<Detection> copy(const dn_detection* found, int count) {
    std::vector<Detection> out;
    out.reserve((size_t)count);
    for (int i = 0; i < count; ++i) {
      const dn_detection& d = found[i];
      Detection c;
      c.class_id = d.class_id;
      c.name = d.name ? d.name : std::to_string(d.class_id);
      c.prob = d.prob;
      c.objectness = d.objectness;
      c.x = d.x;
      c.y = d.y;
      c.w = d.w;
      c.h = d.h;
      out.push_back(std::move(c));
    }
    return out;
  }
};

}  // namespace api_v0
}  // namespace dn
