// The layer interface every Darknet layer type implements.
//
// A layer owns its output (and, when training, its delta) for the whole batch in
// Darknet's memory order (batch, channels, height, width). Parameters are exposed
// in the order of the .weights file so weights I/O needs no per-type code.
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace dn {

class Network;
class Layer;

// A layer's output: owned (allocated and zeroed on first access, so a buffer
// that is lent before it is ever touched costs no memory) or lent by the
// network's inference pool (Network::keep_outputs = false). The first access
// is not thread-safe: Network::forward touches every output before running layers.
class OutputBuffer {
 public:
  OutputBuffer() = default;
  OutputBuffer(const OutputBuffer&) = delete;
  OutputBuffer& operator=(const OutputBuffer&) = delete;
  float* data() { return materialize(); }
  const float* data() const { return const_cast<OutputBuffer*>(this)->materialize(); }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  float* begin() { return data(); }
  float* end() { return data() + n_; }
  float& operator[](size_t i) { return data()[i]; }
  const float& operator[](size_t i) const { return data()[i]; }
  // Owned, n floats, zero (allocated lazily).
  void assign(size_t n, float) {
    std::vector<float>().swap(own_);
    n_ = n;
    p_ = nullptr;
    lent_ = false;
  }
  void lend(float* p, size_t n) {
    std::vector<float>().swap(own_);
    p_ = p;
    n_ = n;
    lent_ = true;
  }
  bool lent() const { return lent_; }

 private:
  float* materialize() {
    if (!p_ && n_) {
      own_.assign(n_, 0.f);
      p_ = own_.data();
    }
    return p_;
  }
  std::vector<float> own_;
  float* p_ = nullptr;
  size_t n_ = 0;
  bool lent_ = false;
};

// What a layer sees during one pass; filled in by Network for each layer.
struct NetState {
  Network* net = nullptr;
  const float* input = nullptr;  // previous layer's output (or the network input)
  float* delta = nullptr;        // previous layer's delta, nullptr for the first layer
  const float* truth = nullptr;  // network truth (batch * truths floats) or nullptr
  bool train = false;
  int64_t seen = 0;       // images seen so far, as Darknet's *net.seen
  float* workspace = nullptr;  // shared scratch, at least max workspace_floats()
};

struct UpdateArgs {
  int batch = 1;  // batch * subdivisions (images per update)
  float learning_rate = 0.f;
  float momentum = 0.f;
  float decay = 0.f;
};

// A named float array owned by a layer (parameter, gradient or state).
struct Blob {
  std::string name;
  float* data = nullptr;
  size_t count = 0;
  std::vector<int64_t> shape;
};

class Layer {
 public:
  virtual ~Layer() = default;

  std::string type;  // the cfg section name, e.g. "convolutional"
  int index = 0;
  int batch = 1;
  int w = 0, h = 0, c = 0;              // input
  int out_w = 0, out_h = 0, out_c = 0;  // output
  size_t inputs = 0, outputs = 0;       // per image
  int truths = 0;                       // truth floats per image a loss layer reads
  bool has_cost = false;
  float cost = 0.f;
  bool training = false;  // deltas and training buffers allocated

  OutputBuffer output;        // batch * outputs (see Network::keep_outputs)
  std::vector<float> delta;   // batch * outputs, empty unless training

  virtual void forward(NetState& s) = 0;
  virtual void backward(NetState& s) { (void)s; }
  virtual void update(const UpdateArgs& a) { (void)a; }
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
  virtual void randomize(std::mt19937_64& rng) { (void)rng; }
  // Earlier layers (besides the previous one) whose outputs forward() reads.
  virtual std::vector<int> reads() const { return {}; }
  // Scratch floats this layer needs from the shared workspace.
  virtual size_t workspace_floats() const { return 0; }
  // Floating point operations per image (Darknet's BFLOPs figure * 1e9).
  virtual double flops() const { return 0.0; }
  // Parameters in .weights order; empty for layers without weights.
  virtual std::vector<Blob> params() { return {}; }
  // Other inspectable arrays (gradients, BN statistics, ...).
  virtual std::vector<Blob> buffers() { return {}; }
  // One line for the network summary, after the index column.
  virtual std::string describe() const;

  // (Re)sizes output/delta to batch*outputs; layers extend for their own buffers.
  virtual void allocate();
};

}  // namespace dn
