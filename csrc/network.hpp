// A Darknet network: [net] options, the layer list, forward/backward/update,
// resize, and weights I/O. Built from cfg sections by the one C++ parser.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "core/options.hpp"
#include "layers/layer.hpp"
#include "parse/cfg.hpp"

namespace dn {

enum class LearningRatePolicy { Constant, Step, Exp, Poly, Steps, Sig, Random };

// Everything Darknet reads from [net]/[network].
struct NetOptions {
  int batch = 1;         // images per sub-batch (cfg batch / subdivisions), as Darknet's net->batch
  int subdivisions = 1;
  int w = 0, h = 0, c = 0;
  int inputs = 0;
  float learning_rate = 0.001f;
  float momentum = 0.9f;
  float decay = 0.0001f;
  LearningRatePolicy policy = LearningRatePolicy::Constant;
  std::string policy_name = "constant";
  int burn_in = 0;
  float burn_in_power = 4.f;  // Darknet's "power" is shared with the poly policy
  float power = 4.f;
  float gamma = 1.f;
  float scale = 1.f;
  int step = 1;
  std::vector<int> steps;
  std::vector<float> scales;
  int max_batches = 0;
  int time_steps = 1;
  int notruth = 0;
  int random = 0;
  // Augmentation ([net] options, used by the detection data loader).
  float angle = 0.f, aspect = 1.f, saturation = 1.f, exposure = 1.f, hue = 0.f;
  int max_crop = 0, min_crop = 0;
  float max_ratio = 0.f, min_ratio = 0.f;
  int center = 0, flip = 1;
  float clip = 0.f;
  int adam = 0;
  float B1 = 0.9f, B2 = 0.999f, eps = 1e-7f;
};

// Concurrency contract. One Network is one mutable object: every public method takes the
// network's lock (a recursive mutex), so calls from several threads are serialised, never
// interleaved -- each forward sees the batch size, input size and weights it was called
// with, and a resize waits for a running forward. A caller that needs several calls to act
// as one (forward then reading an output, forward then decoding detections) or that reads
// the public fields (layers, opt, seen) while other threads use the network holds lock()
// around them. For parallel inference use one Network per thread. (The Python binding takes
// the lock with the GIL released, so Python threads cannot deadlock on it.)
class Network {
 public:
  // Builds from cfg text already split into sections. batch_override > 0
  // replaces the cfg's batch (and sets subdivisions to 1), as Darknet's
  // set_batch_network does for inference.
  static std::unique_ptr<Network> from_sections(std::vector<CfgSection> sections, int batch_override = 0);
  static std::unique_ptr<Network> from_cfg_file(const std::string& path, int batch_override = 0);

  std::string cfg_path;
  std::vector<CfgSection> sections;
  NetOptions opt;
  std::vector<std::unique_ptr<Layer>> layers;
  std::vector<std::string> warnings;  // unknown keys etc., file:line

  int major = 0, minor = 2, revision = 0;  // weights header of the last load
  int64_t seen = 0;
  float cost = 0.f;
  bool train = false;
  std::mt19937_64 rng{0};  // dropout etc.; seed with set_seed
  // When non-null, forward()/backward() store each layer's time (seconds) here: wall
  // time on the CPU, the device's own clock where the backend has one (CUDA events
  // between the layers, Backend::timing_*); one pointer test per layer when off.
  std::vector<double>* layer_times = nullptr;
  // Inference forwards on CUDA that ran as a replay of the recorded graph (ExecOptions::cuda_graphs).
  int64_t graph_replays = 0;
  // Inference memory: when false (and not training, on the CPU), forward() lends layer
  // outputs from a shared pool planned by liveness (a buffer is reused once
  // every layer that reads it -- the next layer, routes -- has run), so only
  // a few activation maps are alive at once. Afterwards only the outputs no
  // later layer overwrote stay readable (output_kept(i); always the last
  // layers); reading another one is an error. true (default) keeps every
  // layer's own output, as tests and layer inspection need.
  bool keep_outputs = true;
  bool output_kept(int i) const;
  // Layer i runs with layer i + 1 fused into it (inference without kept outputs on a backend
  // that fuses the pair, ExecOptions::fuse_layers): layer i's output is never written, and
  // layer_times gives the pair's time to layer i and 0 to layer i + 1.
  bool fused_with_next(int i) const;
  size_t pool_floats() const;  // floats in the inference pool (0 when not pooled)

  int batch() const { return opt.batch; }
  int width() const { return opt.w; }
  int height() const { return opt.h; }
  int channels() const { return opt.c; }
  size_t input_size() const { return (size_t)opt.w * opt.h * opt.c; }  // per image
  size_t output_size() const { return layers[output_index()]->outputs; }  // per image
  // The network's output layer: the last layer that is not a [cost] layer.
  int output_index() const;
  int truths() const;  // truth floats per image

  // The lock of the concurrency contract above (recursive: a thread may hold it across calls).
  std::unique_lock<std::recursive_mutex> lock() const { return std::unique_lock<std::recursive_mutex>(mutex_); }

  // Batch size, input size and training mode change transactionally: either every layer
  // takes the new shape (and the buffers fit the memory limit) or, on an error, the network
  // is left as it was.
  void set_batch(int b);
  void resize(int w, int h);      // new input size; weights kept
  void set_training(bool on);     // allocate deltas and training buffers
  void set_seed(uint64_t seed) {
    auto guard = lock();
    rng.seed(seed);
  }
  // The generator's full state as text (the standard's operator<< format), so a training
  // checkpoint can resume the dropout draws where they stopped; set_rng_state refuses text
  // that is not such a state and leaves the generator unchanged.
  std::string rng_state() const;
  void set_rng_state(const std::string& state);

  // Bytes of every buffer the layers hold (planned size, allocated or not) plus the shared
  // workspace: what the memory limit (core/limits.hpp) is checked against.
  uint64_t planned_bytes() const;

  // Execution options (device, ISA, Winograd, reference kernels, threads). Changing
  // the device moves the network: to(Device::Cuda) uploads parameters on first use and
  // keeps everything on the GPU; to(Device::Cpu) pulls it all back to the host.
  const ExecOptions& options() const { return options_; }
  void set_options(const ExecOptions& o);
  void to(Device d);
  Device device() const { return options_.device; }
  Backend& backend() { return *backend_; }
  // Random initial parameters for training from scratch (seeded; see WeightInit).
  void randomize(uint64_t seed, WeightInit init = WeightInit::Uniform);

  // Runs every layer on batch() images (host input/truth, uploaded to the device
  // when the network is on one); returns the output layer's output on the host.
  const float* forward(const float* input, const float* truth = nullptr);
  // Same, output left on the device (no download).
  void forward_only(const float* input, const float* truth = nullptr);
  // Backward from the deltas written by the loss layers in forward().
  void backward(const float* input);
  // Backward of layer i alone (layers after i must have run theirs): lets tests
  // read each layer's incoming delta as Darknet's backward_network sees it.
  void backward_layer(int i, const float* input);
  // Applies SGD with the learning rate of the current iteration.
  void update();
  // One step as Darknet's train_network_datum: seen += batch, forward with
  // truth in training mode, backward, update when a full batch is accumulated.
  float train_step(const float* input, const float* truth);

  // Images one update sums its gradients over: batch * subdivisions in one process. A data-parallel
  // job sets iteration_images to its global batch (each process runs only a share of it), so the
  // update's divisor, current_batch() and the learning-rate schedule follow the whole job. 0: unset.
  int64_t iteration_images = 0;
  int64_t images_per_iteration() const {
    return iteration_images > 0 ? iteration_images : (int64_t)opt.batch * opt.subdivisions;
  }
  int64_t current_batch() const;         // seen / images_per_iteration()
  float current_learning_rate() const;   // policy + burn_in at current_batch()
  double total_flops() const;

  // Weights I/O in Darknet's .weights format. cutoff: number of layers to
  // load/save (<0 = all). Loading is all or nothing: the whole file is read and checked
  // (size, header version, seen < 2^63, every value finite) before any weight changes.
  // Returns a warning text when trailing data is left unread (a bigger cfg's file), else "";
  // the text is also appended to `warnings` (the C API's dn_network_warnings).
  std::string load_weights(const std::string& path, int cutoff = -1);
  void save_weights(const std::string& path, int cutoff = -1) const;

  std::string summary() const;
  Layer& layer(int i);

 private:
  // CUDA graph of the inference forward: recorded on the second forward that finds the same
  // buffers (the first runs eagerly, settling every allocation), replayed while the key --
  // input, every layer's device buffers, shape and options -- stays the same. Computing the key
  // also brings every parameter's device copy up to date and marks the outputs as written on
  // the device, as the layers' own forwards would.
  std::vector<const void*> graph_key(const float* device_input);
  bool forward_recorded(const float* device_input);  // true: the forward ran as a replay
  std::vector<const void*> graph_key_;
  bool graph_recorded_ = false, graph_failed_ = false;
  mutable std::recursive_mutex mutex_;
  // False after a shape change failed and could not be undone: every later call refuses
  // instead of running layers with mismatched shapes.
  bool consistent_ = true;
  void check_consistent() const;
  // Throws naming the layer that crosses the memory limit and the bytes.
  void check_memory(const char* what) const;
  // Runs change(); on an error runs undo() (which restores the previous shapes) and rethrows.
  template <typename Change, typename Undo>
  void transaction(Change&& change, Undo&& undo);
  ExecOptions options_ = default_options();
  std::unique_ptr<Backend> backend_ = make_cpu_backend(options_);
  FloatBuffer workspace_;
  FloatBuffer input_, truth_;  // device copies of the host input and truth (not used on the CPU)
  const float* input_ptr_ = nullptr;       // the input of the last forward, on the device
  const float* truth_host_ptr_ = nullptr;  // the truth of the last forward, on the host
  const float* stage_input(const float* host_input);
  const float* stage_truth(const float* host_truth);
  void run_forward(const float* input, const float* truth_host);
  void run_backward_layer(int i, const float* input);
  LayerContext context(bool train_pass);
  void ensure_workspace();
  // Inference pool (keep_outputs = false).
  std::vector<std::vector<float>> pool_;
  std::vector<char> kept_;  // per layer: output still readable after forward
  std::vector<char> fused_;  // per layer: fused_with_next
  std::vector<char> pooled_fused_;  // the fused_ the pool was planned for
  bool pooled_ = false;
  int pooled_batch_ = 0, pooled_w_ = 0, pooled_h_ = 0;
  void plan_outputs();
};

}  // namespace dn
