// extern "C" over the C++ core: exceptions become status codes + dn_last_error().
#include "darknet_py/darknet_py.h"

#include <memory>
#include <string>

#include "network.hpp"

struct dn_network {
  std::unique_ptr<dn::Network> net;
  std::string warnings_text;  // storage behind dn_network_warnings()
};

namespace {
thread_local std::string last_error;

template <typename F>
int guarded(F&& f) {
  try {
    last_error.clear();
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown error";
  }
  return 1;
}

int null_arg(const char* what) {
  last_error = std::string(what) + " is NULL";
  return 1;
}
}  // namespace

extern "C" {

const char* dn_last_error(void) { return last_error.c_str(); }

int dn_network_load(const char* cfg_path, const char* weights_path, int batch, dn_network** out) {
  if (!cfg_path) return null_arg("cfg_path");
  if (!out) return null_arg("out");
  *out = nullptr;
  return guarded([&] {
    auto h = std::make_unique<dn_network>();
    h->net = dn::Network::from_cfg_file(cfg_path, batch);
    h->net->randomize(0);  // Darknet's initialisation; a weights file overwrites it
    if (weights_path) h->net->load_weights(weights_path);
    *out = h.release();
  });
}

void dn_network_free(dn_network* net) { delete net; }

int dn_network_input_shape(const dn_network* net, int* batch, int* channels, int* height, int* width) {
  if (!net) return null_arg("net");
  auto guard = net->net->lock();  // a consistent shape while another thread resizes
  if (batch) *batch = net->net->batch();
  if (channels) *channels = net->net->channels();
  if (height) *height = net->net->height();
  if (width) *width = net->net->width();
  return 0;
}

int dn_network_output_shape(const dn_network* net, int* channels, int* height, int* width) {
  if (!net) return null_arg("net");
  auto guard = net->net->lock();
  const auto& layers = net->net->layers;
  const int i = net->net->output_index();
  if (channels) *channels = layers[i]->out_c;
  if (height) *height = layers[i]->out_h;
  if (width) *width = layers[i]->out_w;
  return 0;
}

const char* dn_network_warnings(const dn_network* net) {
  if (!net) {
    null_arg("net");
    return "";
  }
  auto guard = net->net->lock();
  std::string joined;
  for (const auto& w : net->net->warnings) joined += (joined.empty() ? "" : "\n") + w;
  const_cast<dn_network*>(net)->warnings_text = joined;
  return net->warnings_text.c_str();
}

int dn_network_layer_count(const dn_network* net) { return net ? (int)net->net->layers.size() : -1; }

int dn_network_resize(dn_network* net, int width, int height) {
  if (!net) return null_arg("net");
  return guarded([&] { net->net->resize(width, height); });
}

int dn_network_forward(dn_network* net, const float* input, const float** output) {
  if (!net) return null_arg("net");
  if (!input) return null_arg("input");
  if (!output) return null_arg("output");
  return guarded([&] { *output = net->net->forward(input); });
}

int dn_network_set_device(dn_network* net, const char* device) {
  if (!net) return null_arg("net");
  if (!device) return null_arg("device");
  return guarded([&] { net->net->to(dn::parse_device(device)); });
}

int dn_cuda_available(void) { return dn::cuda_available() ? 1 : 0; }

int dn_network_save_weights(const dn_network* net, const char* path) {
  if (!net) return null_arg("net");
  if (!path) return null_arg("path");
  return guarded([&] { net->net->save_weights(path); });
}

}  // extern "C"
