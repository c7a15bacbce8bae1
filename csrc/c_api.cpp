// extern "C" over the C++ core: arguments are validated here, core exceptions become
// status codes plus the thread-local dn_last_error() text.
#include "darknet_py/darknet_py.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <fstream>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "detect.hpp"
#include "image.hpp"
#include "layers/region.hpp"
#include "network.hpp"

struct dn_network {
  std::unique_ptr<dn::Network> net;
  std::vector<std::string> names;
  std::vector<std::string> warnings;  // cfg warnings, then one per weights load that left data
  // Results handed out by pointer, valid until the next call on this handle.
  std::vector<dn_detection> detections;
  std::deque<std::string> numbered_names;  // "7" for classes without a name (a deque: growing it
                                           // keeps the earlier strings where they are)
  // Set while a thread is inside a call on this handle: a second thread is refused
  // instead of racing on the network's buffers and on the results above.
  mutable std::atomic<bool> busy{false};
};

namespace {

thread_local std::string last_error;

struct ArgumentError {
  std::string message;
};
struct BusyError {};

[[noreturn]] void bad_argument(std::string message) { throw ArgumentError{std::move(message)}; }

void require(bool ok, const char* message) {
  if (!ok) bad_argument(message);
}

template <typename T>
void require_pointer(const T* p, const char* name) {
  if (!p) bad_argument(std::string(name) + " is NULL");
}

// Runs f and turns every exception into a status; nothing escapes into C.
template <typename F>
int guarded(const char* function, F&& f) {
  try {
    last_error.clear();
    f();
    return DN_OK;
  } catch (const ArgumentError& e) {
    last_error = std::string(function) + ": " + e.message;
    return DN_INVALID_ARGUMENT;
  } catch (const BusyError&) {
    last_error = std::string(function) +
                 ": the network handle is in use by another thread (one handle must not be used from two "
                 "threads at once; create one network per thread)";
    return DN_BUSY;
  } catch (const std::bad_alloc&) {
    last_error = std::string(function) + ": out of memory";
    return DN_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    last_error = e.what();
    return DN_ERROR;
  } catch (...) {
    last_error = std::string(function) + ": unknown error";
    return DN_ERROR;
  }
}

// Marks a handle busy for the duration of one call.
class HandleUse {
 public:
  explicit HandleUse(const dn_network* h) : h_(h) {
    if (h_->busy.exchange(true, std::memory_order_acquire)) throw BusyError{};
  }
  ~HandleUse() { h_->busy.store(false, std::memory_order_release); }
  HandleUse(const HandleUse&) = delete;
  HandleUse& operator=(const HandleUse&) = delete;

 private:
  const dn_network* h_;
};

template <typename T>
void clear_out(T** p) {
  if (p) *p = nullptr;
}

std::vector<std::string> read_names_file(const char* path) {
  std::ifstream f(path);
  if (!f) dn::fail(path, ": cannot open names file");
  std::vector<std::string> names;
  std::string line;
  while (std::getline(f, line)) {
    const auto first = line.find_first_not_of(" \t\r\n\v\f");
    const auto last = line.find_last_not_of(" \t\r\n\v\f");
    names.push_back(first == std::string::npos ? std::string() : line.substr(first, last - first + 1));
  }
  if (f.bad()) dn::fail(path, ": read error");
  while (!names.empty() && names.back().empty()) names.pop_back();
  return names;
}

const char* class_name(const dn_network* h, int class_id) {
  if (class_id >= 0 && class_id < (int)h->names.size()) return h->names[class_id].c_str();
  return h->numbered_names[class_id].c_str();
}

size_t input_floats(const dn::Network& n) { return (size_t)n.batch() * n.input_size(); }

// Forward and detect run in inference mode, as Darknet's network_predict (net->train = 0);
// the training state (momentum) is kept, and the next train step switches it back on.
void leave_training(dn::Network& n) {
  if (n.train) n.set_training(false);
}

// Network input for one image: letterboxed to the network size, as `darknet detector test`.
void detect_image(dn_network* h, const dn::Image& image, float thresh, float hier_thresh, float nms) {
  dn::Network& n = *h->net;
  if (n.channels() != 3) dn::fail("detect: the network takes ", n.channels(), " channels, an RGB image has 3");
  if (n.batch() != 1)
    dn::fail("detect: the network has batch ", n.batch(), "; detection runs one image (create it with batch 1)");
  const dn::Image sized = dn::letterbox_image(image.view(), n.width(), n.height());
  leave_training(n);
  n.forward(sized.data.data());
  dn::Detections d = dn::get_network_boxes(n, image.w, image.h, thresh, hier_thresh, nullptr, true, true);
  if (nms > 0 && d.size()) dn::do_nms_sort(d, nms);

  if ((int)h->numbered_names.size() < d.classes) {
    for (int i = (int)h->numbered_names.size(); i < d.classes; ++i) h->numbered_names.push_back(std::to_string(i));
  }
  // As darknet_py.Network.detections: each box with objectness, its best class above thresh.
  std::vector<dn_detection> out;
  for (size_t i = 0; i < d.size(); ++i) {
    if (d.objectness[i] <= 0) continue;
    const float* probs = d.probs.data() + i * d.classes;
    int best = 0;
    for (int k = 1; k < d.classes; ++k)
      if (probs[k] > probs[best]) best = k;
    if (d.classes == 0 || probs[best] <= thresh) continue;
    dn_detection det;
    det.class_id = best;
    det.prob = probs[best];
    det.objectness = d.objectness[i];
    det.x = d.boxes[4 * i] * image.w;
    det.y = d.boxes[4 * i + 1] * image.h;
    det.w = d.boxes[4 * i + 2] * image.w;
    det.h = d.boxes[4 * i + 3] * image.h;
    det.name = class_name(h, best);
    out.push_back(det);
  }
  std::stable_sort(out.begin(), out.end(), [](const dn_detection& a, const dn_detection& b) { return a.prob > b.prob; });
  h->detections = std::move(out);
}

void check_image_args(int width, int height, float thresh, float hier_thresh, float nms) {
  require(width > 0 && height > 0, "width and height must be positive");
  require(thresh >= 0 && thresh <= 1, "thresh must be in [0, 1]");
  require(hier_thresh >= 0 && hier_thresh <= 1, "hier_thresh must be in [0, 1]");
  require(nms >= 0 && nms <= 1, "nms must be in [0, 1] (0 = no NMS)");
}

void publish_detections(const dn_network* h, const dn_detection** detections, int* count) {
  *detections = h->detections.empty() ? nullptr : h->detections.data();
  *count = (int)h->detections.size();
}

// The shared body of the two detect entry points: arguments checked, then `to_image`
// turns the caller's buffer (`size` `unit`s of a `kind` image) into the image detected.
template <typename Element, typename ToImage>
int detect_buffer(const char* function, dn_network* net, const Element* data, const char* data_name,
                  const char* unit, const char* kind, size_t size, int width, int height, float thresh,
                  float hier_thresh, float nms, const dn_detection** detections, int* count, ToImage to_image) {
  clear_out(detections);
  if (count) *count = 0;
  return guarded(function, [&] {
    require_pointer(net, "net");
    require_pointer(data, data_name);
    require_pointer(detections, "detections");
    require_pointer(count, "count");
    check_image_args(width, height, thresh, hier_thresh, nms);
    const size_t expected = (size_t)width * (size_t)height * 3;
    if (size != expected)
      bad_argument(std::string(data_name) + " has " + std::to_string(size) + " " + unit + ", a " +
                   std::to_string(width) + "x" + std::to_string(height) + " " + kind + " image has " +
                   std::to_string(expected));
    HandleUse use(net);
    net->detections.clear();
    detect_image(net, to_image(expected), thresh, hier_thresh, nms);
    publish_detections(net, detections, count);
  });
}

}  // namespace

extern "C" {

const char* dn_version(void) { return DARKNET_PY_VERSION_STRING; }

int dn_version_number(void) {
  return DARKNET_PY_VERSION_MAJOR * 10000 + DARKNET_PY_VERSION_MINOR * 100 + DARKNET_PY_VERSION_PATCH;
}

const char* dn_last_error(void) { return last_error.c_str(); }

const char* dn_status_name(int status) {
  switch (status) {
    case DN_OK: return "DN_OK";
    case DN_ERROR: return "DN_ERROR";
    case DN_INVALID_ARGUMENT: return "DN_INVALID_ARGUMENT";
    case DN_OUT_OF_MEMORY: return "DN_OUT_OF_MEMORY";
    case DN_BUSY: return "DN_BUSY";
    default: return "unknown status";
  }
}

int dn_network_create(const char* cfg_path, int batch, dn_network** out) {
  clear_out(out);
  return guarded(__func__, [&] {
    require_pointer(out, "out");
    require_pointer(cfg_path, "cfg_path");
    if (batch < 0) bad_argument("batch must be >= 0 (0 keeps the cfg's batch), got " + std::to_string(batch));
    auto h = std::make_unique<dn_network>();
    h->net = dn::Network::from_cfg_file(cfg_path, batch);
    h->net->randomize(0);  // Darknet's initialisation; a weights file overwrites it
    h->warnings = h->net->warnings;
    *out = h.release();
  });
}

int dn_network_load(const char* cfg_path, const char* weights_path, int batch, dn_network** out) {
  const int status = dn_network_create(cfg_path, batch, out);
  if (status != DN_OK || !weights_path) return status;
  const int loaded = dn_network_load_weights(*out, weights_path, -1);
  if (loaded != DN_OK) {
    dn_network_free(*out);
    *out = nullptr;
  }
  return loaded;
}

int dn_network_load_weights(dn_network* net, const char* weights_path, int cutoff) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(weights_path, "weights_path");
    HandleUse use(net);
    const std::string warning = net->net->load_weights(weights_path, cutoff);
    if (!warning.empty()) net->warnings.push_back(warning);
  });
}

int dn_network_load_names(dn_network* net, const char* names_path) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(names_path, "names_path");
    HandleUse use(net);
    net->names = read_names_file(names_path);
    net->detections.clear();  // their name pointers pointed into the old list
  });
}

int dn_network_set_names(dn_network* net, const char* const* names, int count) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require(count >= 0, "count must be >= 0");
    if (count > 0) require_pointer(names, "names");
    std::vector<std::string> copy;
    for (int i = 0; i < count; ++i) {
      if (!names[i]) bad_argument("names[" + std::to_string(i) + "] is NULL");
      copy.emplace_back(names[i]);
    }
    HandleUse use(net);
    net->names = std::move(copy);
    net->detections.clear();
  });
}

int dn_network_class_name(const dn_network* net, int class_id, const char** name) {
  clear_out(name);
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(name, "name");
    require(class_id >= 0, "class_id must be >= 0");
    HandleUse use(net);
    if (class_id < (int)net->names.size()) {
      *name = net->names[class_id].c_str();
      return;
    }
    auto* h = const_cast<dn_network*>(net);  // the numbered names are a cache of text
    for (int i = (int)h->numbered_names.size(); i <= class_id; ++i) h->numbered_names.push_back(std::to_string(i));
    *name = h->numbered_names[class_id].c_str();
  });
}

void dn_network_free(dn_network* net) { delete net; }

int dn_network_warning_count(const dn_network* net, int* count) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(count, "count");
    HandleUse use(net);
    *count = (int)net->warnings.size();
  });
}

int dn_network_warning(const dn_network* net, int index, const char** text) {
  clear_out(text);
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(text, "text");
    HandleUse use(net);
    if (index < 0 || index >= (int)net->warnings.size())
      bad_argument("warning index " + std::to_string(index) + " out of range (" +
                   std::to_string(net->warnings.size()) + " warnings)");
    *text = net->warnings[index].c_str();
  });
}

int dn_network_set_threads(dn_network* net, int threads) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    if (threads < 0) bad_argument("threads must be >= 0 (0 = the OpenMP default), got " + std::to_string(threads));
    HandleUse use(net);
    dn::ExecOptions o = net->net->options();
    o.threads = threads;
    net->net->set_options(o);
  });
}

int dn_network_set_device(dn_network* net, const char* device) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(device, "device");
    HandleUse use(net);
    net->net->to(dn::parse_device(device));
  });
}

int dn_network_set_cuda_math(dn_network* net, const char* math) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(math, "math");
    HandleUse use(net);
    dn::ExecOptions o = net->net->options();
    o.cuda_math = dn::parse_cuda_math(math);
    net->net->set_options(o);
  });
}

int dn_network_set_cuda_graphs(dn_network* net, int enable) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    HandleUse use(net);
    dn::ExecOptions o = net->net->options();
    o.cuda_graphs = enable != 0;
    net->net->set_options(o);
  });
}

int dn_cuda_available(void) {
  try {
    return dn::cuda_available() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

int dn_network_set_fuse_layers(dn_network* net, int enable) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require(enable == 0 || enable == 1, "enable must be 0 or 1");
    HandleUse use(net);
    dn::ExecOptions o = net->net->options();
    o.fuse_layers = enable != 0;
    net->net->set_options(o);
  });
}

int dn_network_set_keep_outputs(dn_network* net, int keep) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require(keep == 0 || keep == 1, "keep must be 0 or 1");
    HandleUse use(net);
    net->net->keep_outputs = keep != 0;
  });
}

int dn_network_resize(dn_network* net, int width, int height) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    if (width <= 0 || height <= 0)
      bad_argument("size must be positive, got " + std::to_string(width) + "x" + std::to_string(height));
    HandleUse use(net);
    net->net->resize(width, height);
  });
}

int dn_network_input_shape(const dn_network* net, int* batch, int* channels, int* height, int* width) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    HandleUse use(net);
    const dn::Network& n = *net->net;
    if (batch) *batch = n.batch();
    if (channels) *channels = n.channels();
    if (height) *height = n.height();
    if (width) *width = n.width();
  });
}

int dn_network_output_shape(const dn_network* net, int* channels, int* height, int* width) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    HandleUse use(net);
    const dn::Layer& l = *net->net->layers[net->net->output_index()];
    if (channels) *channels = l.out_c;
    if (height) *height = l.out_h;
    if (width) *width = l.out_w;
  });
}

int dn_network_layer_count(const dn_network* net, int* count) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(count, "count");
    *count = (int)net->net->layers.size();  // fixed when the network is built
  });
}

int dn_network_layer_type(const dn_network* net, int index, const char** type) {
  clear_out(type);
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(type, "type");
    const int n = (int)net->net->layers.size();
    if (index < 0 || index >= n)
      bad_argument("layer index " + std::to_string(index) + " out of range (" + std::to_string(n) + " layers)");
    *type = net->net->layers[index]->type.c_str();
  });
}

int dn_network_class_count(const dn_network* net, int* classes) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(classes, "classes");
    *classes = 0;
    for (const auto& layer : net->net->layers)  // fixed when the network is built
      if (const auto* region = dynamic_cast<const dn::RegionLayer*>(layer.get())) *classes = region->classes;
  });
}

int dn_network_truth_size(const dn_network* net, int* floats_per_image) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(floats_per_image, "floats_per_image");
    HandleUse use(net);
    *floats_per_image = net->net->truths();
  });
}

int dn_network_forward(dn_network* net, const float* input, size_t input_count, const float** output,
                       size_t* output_count) {
  clear_out(output);
  if (output_count) *output_count = 0;
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(input, "input");
    require_pointer(output, "output");
    HandleUse use(net);
    dn::Network& n = *net->net;
    const size_t expected = input_floats(n);
    if (input_count != expected)
      bad_argument("input has " + std::to_string(input_count) + " floats, the network takes batch*C*H*W = " +
                   std::to_string(n.batch()) + "*" + std::to_string(n.channels()) + "*" +
                   std::to_string(n.height()) + "*" + std::to_string(n.width()) + " = " + std::to_string(expected));
    leave_training(n);
    *output = n.forward(input);
    if (output_count) *output_count = (size_t)n.batch() * n.output_size();
  });
}

int dn_network_layer_output(dn_network* net, int index, const float** data, int* batch, int* channels, int* height,
                            int* width) {
  clear_out(data);
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(data, "data");
    HandleUse use(net);
    dn::Network& n = *net->net;
    const int layers = (int)n.layers.size();
    if (index < 0 || index >= layers)
      bad_argument("layer index " + std::to_string(index) + " out of range (" + std::to_string(layers) + " layers)");
    if (!n.output_kept(index))
      dn::fail("layer ", index, "'s output was overwritten by a later layer or, fused with the next layer, never ",
               "written (keep_outputs is 0: inference lends outputs from a shared pool); call ",
               "dn_network_set_keep_outputs(net, 1) to read every layer");
    dn::Layer& l = n.layer(index);
    if (l.output.size() < (size_t)l.batch * l.outputs) dn::fail("layer ", index, " has no output yet (run a forward)");
    *data = l.output.host();
    if (batch) *batch = l.batch;
    if (channels) *channels = l.out_c;
    if (height) *height = l.out_h;
    if (width) *width = l.out_w;
  });
}

int dn_network_detect_rgb8(dn_network* net, const unsigned char* pixels, size_t size, int width, int height,
                           float thresh, float hier_thresh, float nms, const dn_detection** detections, int* count) {
  return detect_buffer(__func__, net, pixels, "pixels", "bytes", "RGB8", size, width, height, thresh, hier_thresh,
                       nms, detections, count,
                       [&](size_t) { return dn::image_from_hwc_uint8(pixels, width, height, 3); });
}

int dn_network_detect_float(dn_network* net, const float* planes, size_t size, int width, int height, float thresh,
                            float hier_thresh, float nms, const dn_detection** detections, int* count) {
  return detect_buffer(__func__, net, planes, "planes", "floats", "3-channel", size, width, height, thresh,
                       hier_thresh, nms, detections, count, [&](size_t n) {
                         dn::Image image(width, height, 3);
                         std::copy(planes, planes + n, image.data.begin());
                         return image;
                       });
}

int dn_network_train_step(dn_network* net, const float* input, size_t input_count, const float* truth,
                          size_t truth_count, float* loss) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(input, "input");
    require_pointer(truth, "truth");
    HandleUse use(net);
    dn::Network& n = *net->net;
    const size_t expected_input = input_floats(n);
    if (input_count != expected_input)
      bad_argument("input has " + std::to_string(input_count) + " floats, the network takes batch*C*H*W = " +
                   std::to_string(expected_input));
    const size_t expected_truth = (size_t)n.batch() * (size_t)n.truths();
    if (expected_truth == 0) dn::fail("train_step: the network has no loss layer ([region], [cost]) to train");
    if (truth_count != expected_truth)
      bad_argument("truth has " + std::to_string(truth_count) + " floats, the network takes batch*truths = " +
                   std::to_string(n.batch()) + "*" + std::to_string(n.truths()) + " = " +
                   std::to_string(expected_truth));
    const float cost = n.train_step(input, truth);
    if (loss) *loss = cost;
  });
}

int dn_network_seen(const dn_network* net, long long* seen) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(seen, "seen");
    HandleUse use(net);
    *seen = (long long)net->net->seen;
  });
}

int dn_network_set_seen(dn_network* net, long long seen) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require(seen >= 0, "seen must be >= 0");
    HandleUse use(net);
    net->net->seen = (int64_t)seen;
  });
}

int dn_network_save_weights(const dn_network* net, const char* path) {
  return guarded(__func__, [&] {
    require_pointer(net, "net");
    require_pointer(path, "path");
    HandleUse use(net);
    net->net->save_weights(path);
  });
}

}  // extern "C"
