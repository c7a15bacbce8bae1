// The layer interface every Darknet layer type implements.
//
// A layer owns its output (and, when training, its delta) for the whole batch in
// Darknet's memory order (batch, channels, height, width), in Buffers that live
// on the host or the network's device. Its forward/backward/update are written
// once over the Backend interface (csrc/backend/backend.hpp) and receive what
// they read in a LayerContext; a layer never sees the Network. Parameters are
// exposed in the order of the .weights file so weights I/O needs no per-type code.
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "core/buffer.hpp"
#include "core/error.hpp"

namespace dn {

enum class LayerType { Convolutional, Maxpool, Avgpool, Route, Reorg, Region, Softmax, Cost, Dropout };

// Distribution of fresh conv weights, both scaled by sqrt(2 / fan_in). Uniform(-1, 1) is
// YOLOv2-era Darknet's and the default: behind batch norm a weight's effective learning
// rate scales as 1/|w|^2, and Normal(0, 1) (later Darknet) has three times the variance,
// which measurably slows training from scratch (README, "Initialisation").
enum class WeightInit { Uniform, Normal };
WeightInit parse_weight_init(const std::string& name);

// What a layer reads during one pass; filled in by Network for each layer.
// Every pointer is on the backend's device unless named *_host.
struct LayerContext {
  Backend* backend = nullptr;
  Device device = Device::Cpu;
  const float* input = nullptr;       // previous layer's output (or the network input)
  float* prev_delta = nullptr;        // previous layer's delta, nullptr for the first layer / outside training
  const float* truth = nullptr;       // network truth (batch * truths floats) or nullptr
  const float* truth_host = nullptr;  // the same truth on the host (the region loss runs there, as Darknet's)
  bool train = false;
  int64_t seen = 0;               // images seen so far, as Darknet's *net.seen
  float* workspace = nullptr;     // shared scratch, at least the largest workspace_floats()
  std::mt19937_64* rng = nullptr;  // the network's seeded generator (dropout)
};

struct UpdateArgs {
  int batch = 1;  // batch * subdivisions (images per update)
  float learning_rate = 0.f;
  float momentum = 0.f;
  float decay = 0.f;
};

// A named array owned by a layer (parameter, gradient or state); the buffer
// syncs to the host when read through host().
struct Blob {
  std::string name;
  FloatBuffer* buffer = nullptr;
  std::vector<int64_t> shape;
  size_t count() const { return buffer ? buffer->size() : 0; }
};

class Layer {
 public:
  virtual ~Layer() = default;

  LayerType kind = LayerType::Convolutional;
  std::string type;  // the canonical cfg section name, e.g. "convolutional"
  int index = 0;
  int batch = 1;
  int w = 0, h = 0, c = 0;              // input
  int out_w = 0, out_h = 0, out_c = 0;  // output
  size_t inputs = 0, outputs = 0;       // per image
  int truths = 0;                       // truth floats per image a loss layer reads
  bool has_cost = false;
  float cost = 0.f;
  bool training = false;  // deltas and training buffers allocated

  FloatBuffer output;  // batch * outputs (see Network::keep_outputs)
  FloatBuffer delta;   // batch * outputs, empty unless training

  virtual void forward(LayerContext& ctx) = 0;
  virtual void backward(LayerContext& ctx) { (void)ctx; }
  virtual void update(const UpdateArgs& a, Backend& backend) { (void)a, (void)backend; }
  // Recompute shapes for a new input size (only meaningful after the network
  // changed its input size) and reallocate buffers.
  virtual void resize(int new_w, int new_h) = 0;
  // Allocates per-batch buffers for `b` images.
  virtual void set_batch(int b) {
    batch = b;
    allocate();
  }
  virtual void set_training(bool on) {
    training = on;
    allocate();
  }
  // Fresh parameters for training from scratch (Darknet's initialisation).
  virtual void randomize(std::mt19937_64& rng, WeightInit init) {
    (void)rng;
    (void)init;
  }
  // A [maxpool] of 2x2 windows at stride 2 from the origin over an even map (out = in / 2): what
  // Backend::conv_inference_maxpool fuses into the convolution before it.
  virtual bool is_maxpool_2x2_stride_2() const { return false; }
  // Earlier layers (besides the previous one) whose outputs forward() reads.
  virtual std::vector<int> reads() const { return {}; }
  // Scratch floats this layer needs from the shared workspace.
  virtual size_t workspace_floats(bool train_or_reference) const {
    (void)train_or_reference;
    return 0;
  }
  // Floating point operations per image (Darknet's BFLOPs figure * 1e9).
  virtual double flops() const { return 0.0; }
  // Parameters in .weights order; empty for layers without weights.
  virtual std::vector<Blob> params() { return {}; }
  // Other inspectable arrays (gradients, BN statistics, ...).
  virtual std::vector<Blob> buffers() { return {}; }
  // Every buffer the layer owns (output, delta, params, buffers, private state):
  // Network::to() moves them between devices.
  virtual std::vector<FloatBuffer*> all_buffers();
  // One line for the network summary, after the index column.
  virtual std::string describe() const;

  // (Re)sizes output/delta to batch*outputs; layers extend for their own buffers.
  virtual void allocate();
};

}  // namespace dn
