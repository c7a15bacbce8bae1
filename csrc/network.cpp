#include "network.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cerrno>
#include <unistd.h>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include "core/limits.hpp"
#include "layers/convolutional.hpp"
#include "layers/layers.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace dn {

namespace {

// Every [net] value is range-checked here, before any layer is built: a NaN or negative
// learning rate, a 1e9-pixel input or an impossible schedule is a file:line error, not a
// network that trains to NaN or overflows a size.
void parse_net_options(const CfgSection& s, NetOptions& o) {
  const int cfg_batch = s.get_int("batch", 1, 1, kMaxBatch);
  o.subdivisions = s.get_int("subdivisions", 1, 1, kMaxBatch);
  if (cfg_batch % o.subdivisions)
    s.fail_key("subdivisions", "batch " + std::to_string(cfg_batch) + " is not divisible by subdivisions");
  o.batch = cfg_batch / o.subdivisions;
  // No upper bound: a huge rate is a legitimate way to provoke divergence in a test.
  o.learning_rate = s.get_float("learning_rate", .001f);
  if (o.learning_rate < 0) s.fail_key("learning_rate", "must be >= 0");
  o.momentum = s.get_float("momentum", .9f, 0.f, 1.f);
  o.decay = s.get_float("decay", .0001f, 0.f, 1.f);
  o.time_steps = s.get_int("time_steps", 1, 1, kMaxBatch);
  o.notruth = s.get_int("notruth", 0);
  o.random = s.get_int("random", 0);
  o.adam = s.get_int("adam", 0);
  // Darknet's Adam update is not implemented: training such a cfg with SGD would silently
  // be a different optimiser.
  if (o.adam) s.fail_key("adam", "the Adam optimiser is not supported by darknet_py (remove adam= to train with SGD)");
  o.B1 = s.get_float("B1", .9f);
  o.B2 = s.get_float("B2", .999f);
  o.eps = s.get_float("eps", 1e-7f);
  if (!s.has("width")) s.fail_section("missing required key 'width'");
  if (!s.has("height")) s.fail_section("missing required key 'height'");
  if (!s.has("channels")) s.fail_section("missing required key 'channels'");
  o.h = s.get_int("height", 0, 1, kMaxSpatial);
  o.w = s.get_int("width", 0, 1, kMaxSpatial);
  o.c = s.get_int("channels", 0, 1, kMaxChannels);
  const int64_t inputs = (int64_t)o.h * o.w * o.c;
  if (inputs > INT32_MAX)
    s.fail_section("input " + std::to_string(o.w) + "x" + std::to_string(o.h) + "x" + std::to_string(o.c) +
                   " has more than 2^31 values per image");
  o.inputs = s.get_int("inputs", (int)inputs);
  o.max_crop = s.get_int("max_crop", o.w * 2, 1, 4 * kMaxSpatial);
  o.min_crop = s.get_int("min_crop", o.w, 1, 4 * kMaxSpatial);
  o.max_ratio = s.get_float("max_ratio", (float)o.max_crop / o.w, 0.f, 1e3f);
  o.min_ratio = s.get_float("min_ratio", (float)o.min_crop / o.w, 0.f, 1e3f);
  o.center = s.get_int("center", 0);
  o.clip = s.get_float("clip", 0.f);
  o.flip = s.get_int("flip", 1);
  o.angle = s.get_float("angle", 0.f, -360.f, 360.f);
  o.aspect = s.get_float("aspect", 1.f, 1e-3f, 1e3f);
  o.saturation = s.get_float("saturation", 1.f, 1e-3f, 1e3f);
  o.exposure = s.get_float("exposure", 1.f, 1e-3f, 1e3f);
  // Darknet shifts hue by up to +-hue of the full circle: beyond 1 it wraps to nonsense.
  o.hue = s.get_float("hue", 0.f, 0.f, 1.f);
  o.policy_name = s.get_str("policy", "constant");
  o.burn_in = s.get_int("burn_in", 0, 0, INT32_MAX);
  o.power = s.get_float("power", 4.f, -1e3f, 1e3f);
  o.burn_in_power = o.power;
  o.max_batches = s.get_int("max_batches", 0, 0, INT32_MAX);
  const std::string& p = o.policy_name;
  if (p == "constant") {
    o.policy = LearningRatePolicy::Constant;
  } else if (p == "step") {
    o.policy = LearningRatePolicy::Step;
    o.step = s.get_int("step", 1, 1, INT32_MAX);
    o.scale = s.get_float("scale", 1.f, 0.f, 1e3f);
  } else if (p == "steps") {
    o.policy = LearningRatePolicy::Steps;
    o.steps = s.get_ints("steps");
    o.scales = s.get_floats("scales");
    if (o.steps.empty()) s.fail_section("policy=steps needs 'steps'");
    if (o.steps.size() != o.scales.size())
      s.fail_key("scales", "has " + std::to_string(o.scales.size()) + " values but steps has " +
                               std::to_string(o.steps.size()));
    // Darknet stops at the first step above the batch number, so a decreasing list would
    // skip every later scale; -1 (yolov2-tiny-voc) applies its scale from the start.
    for (size_t i = 0; i < o.steps.size(); ++i) {
      if (o.steps[i] < -1) s.fail_key("steps", "steps must be >= -1, got " + std::to_string(o.steps[i]));
      if (i && o.steps[i] < o.steps[i - 1]) s.fail_key("steps", "steps must not decrease");
    }
    for (float v : o.scales)
      if (!(v >= 0.f && v <= 1e3f)) s.fail_key("scales", "scales must be in [0, 1000]");
  } else if (p == "exp") {
    o.policy = LearningRatePolicy::Exp;
    o.gamma = s.get_float("gamma", 1.f, 0.f, 1e3f);
  } else if (p == "sig") {
    o.policy = LearningRatePolicy::Sig;
    o.gamma = s.get_float("gamma", 1.f, -1e3f, 1e3f);
    o.step = s.get_int("step", 1, 0, INT32_MAX);
  } else if (p == "poly") {
    o.policy = LearningRatePolicy::Poly;
    if (o.max_batches <= 0) s.fail_section("policy=poly needs max_batches > 0");
  } else if (p == "random") {
    o.policy = LearningRatePolicy::Random;
  } else {
    s.fail_key("policy", "unknown policy '" + p + "' (constant, step, steps, exp, poly, sig, random)");
  }
  // Read but without effect here (Darknet reads them for other data loaders / RNNs).
  for (const char* k : {"step", "scale", "gamma", "steps", "scales", "max_batches"}) s.touch(k);
}

// Applies ExecOptions::threads to OpenMP for the calling thread while a network call runs
// (the nthreads ICV is per thread, so another thread's network is not affected).
class ThreadScope {
 public:
  explicit ThreadScope(int threads) {
#ifdef _OPENMP
    if (threads > 0) {
      saved_ = omp_get_max_threads();
      omp_set_num_threads(threads);
    }
#else
    (void)threads;
#endif
  }
  ~ThreadScope() {
#ifdef _OPENMP
    if (saved_ > 0) omp_set_num_threads(saved_);
#endif
  }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int saved_ = 0;
};

}  // namespace

std::unique_ptr<Network> Network::from_cfg_file(const std::string& path, int batch_override) {
  auto net = from_sections(parse_cfg_file(path), batch_override);
  net->cfg_path = path;
  return net;
}

std::unique_ptr<Network> Network::from_sections(std::vector<CfgSection> sections, int batch_override) {
  auto net = std::make_unique<Network>();
  net->sections = std::move(sections);
  const auto& secs = net->sections;
  if (secs.empty()) fail("cfg has no sections");
  if (secs[0].type != "net" && secs[0].type != "network")
    secs[0].fail_section("the first section must be [net] or [network]");
  if (!secs.empty()) net->cfg_path = secs[0].file;
  parse_net_options(secs[0], net->opt);
  check(batch_override <= kMaxBatch, "batch ", batch_override, " is larger than the limit ", kMaxBatch);
  if (batch_override > 0) {
    net->opt.batch = batch_override;
    net->opt.subdivisions = 1;
  }
  if (secs.size() < 2) secs[0].fail_section("the cfg defines no layers after [net]");

  LayerInput in;
  in.batch = net->opt.batch;
  in.w = net->opt.w;
  in.h = net->opt.h;
  in.c = net->opt.c;
  for (size_t i = 1; i < secs.size(); ++i) {
    const CfgSection& s = secs[i];
    if (s.type == "net" || s.type == "network") s.fail_section("[net] may appear only once, as the first section");
    const LayerKind* kind = find_layer_kind(s.type);
    if (!kind) {
      if (is_unsupported_darknet_type(s.type)) s.fail_section("layer type [" + s.type + "] is not supported by darknet_py");
      s.fail_section("unknown section type [" + s.type + "]");
    }
    in.index = (int)net->layers.size();
    std::unique_ptr<Layer> layer;
    try {
      layer = kind->make(s, in);
    } catch (const DarknetError& e) {
      const std::string msg = e.what();
      // Errors from shape checks deep inside a layer get the section's location.
      if (msg.rfind(s.file + ":", 0) == 0) throw;
      s.fail_section(msg);
    }
    layer->index = in.index;
    if (layer->outputs == 0) s.fail_section("layer produces an empty output");
    // Every later size (int in the kernels, as in Darknet) is derived from these.
    if (layer->out_w > kMaxSpatial || layer->out_h > kMaxSpatial || layer->out_c > kMaxChannels ||
        layer->outputs > (size_t)INT32_MAX)
      s.fail_section("output " + std::to_string(layer->out_w) + "x" + std::to_string(layer->out_h) + "x" +
                     std::to_string(layer->out_c) + " is larger than the limits (" + std::to_string(kMaxSpatial) +
                     " wide/high, " + std::to_string(kMaxChannels) + " channels, 2^31 values)");
    in.w = layer->out_w;
    in.h = layer->out_h;
    in.c = layer->out_c;
    in.earlier.push_back(layer.get());
    net->layers.push_back(std::move(layer));
    // Buffers are allocated on first touch, so this refuses the network before its memory exists.
    try {
      net->check_memory("building the network");
    } catch (const DarknetError& e) {
      s.fail_section(e.what());  // with the section's file:line
    }
  }
  for (const auto& s : secs)
    for (auto& w : s.unused_warnings()) net->warnings.push_back(w);
  // The options (and the device) come from the process defaults, seeded by the environment.
  net->set_options(default_options());
  return net;
}

int Network::output_index() const {
  int i = (int)layers.size() - 1;
  while (i > 0 && layers[i]->kind == LayerType::Cost) --i;
  return i;
}

int Network::truths() const {
  const Layer& last = *layers.back();
  if (last.truths) return last.truths;
  // Classifiers: the truth matches the output layer (the last non-cost layer).
  return (int)layers[output_index()]->outputs;
}

Layer& Network::layer(int i) {
  if (i < 0) i += (int)layers.size();
  check(i >= 0 && i < (int)layers.size(), "layer index ", i, " out of range (", layers.size(), " layers)");
  return *layers[i];
}

void Network::ensure_workspace() {
  // The backends' inference convolutions (the CPU's packed GEMM / Winograd, CUDA's implicit
  // GEMM) need no im2col buffer; the generic algorithm (training, reference kernels) does.
  const bool generic = train || options_.reference_kernels;
  size_t need = 0;
  for (const auto& l : layers) need = std::max(need, l->workspace_floats(generic));
  if (workspace_.size() < need) workspace_.reset(need);
}

void Network::set_options(const ExecOptions& o) {
  auto guard = lock();
  if (!backend_ || o.device != options_.device) {
    auto next = make_backend(o);  // throws (naming why) before anything changes
    if (o.device == Device::Cpu) {
      // Pull every buffer to the host and free the device copies.
      for (auto& l : layers)
        for (FloatBuffer* b : l->all_buffers()) b->to_host_only();
    }
    workspace_.clear();
    input_.clear();
    truth_.clear();
    backend_ = std::move(next);
  } else {
    backend_->set_options(o);
  }
  if (o.cuda_graphs != options_.cuda_graphs || o.device != options_.device) {
    backend_->graph_reset();
    graph_key_.clear();
    graph_recorded_ = graph_failed_ = false;
  }
  options_ = o;
  plan_outputs();
}

void Network::to(Device d) {
  auto guard = lock();
  ExecOptions o = options_;
  o.device = d;
  set_options(o);
}

void Network::check_consistent() const {
  check(consistent_, "the network is unusable after an earlier failure (a resize/batch change that could not be "
                     "undone, or a weights file that changed while it was loaded)");
}

uint64_t Network::planned_bytes() const {
  uint64_t total = 0;
  const bool generic = train || options_.reference_kernels;  // as ensure_workspace
  size_t workspace = 0;
  for (const auto& l : layers) {
    for (FloatBuffer* b : l->all_buffers()) total += 4 * (uint64_t)b->size();
    workspace = std::max(workspace, l->workspace_floats(generic));
  }
  return total + 4 * (uint64_t)workspace;
}

void Network::check_memory(const char* what) const {
  const uint64_t limit = memory_limit();
  const bool generic = train || options_.reference_kernels || options_.device != Device::Cpu;
  uint64_t total = 0;
  size_t workspace = 0;
  for (const auto& l : layers) {
    uint64_t mine = 0;
    for (FloatBuffer* b : l->all_buffers()) mine += 4 * (uint64_t)b->size();
    total += mine;
    workspace = std::max(workspace, l->workspace_floats(generic));
    if (total + 4 * (uint64_t)workspace > limit)
      fail(what, ": layer ", l->index, " (", l->type, ") needs ", mine, " bytes of buffers (",
           4 * (uint64_t)l->workspace_floats(generic), " of workspace), bringing the network to ",
           total + 4 * (uint64_t)workspace, " bytes at batch ", l->batch,
           (train ? " in training mode" : ""), ", over the memory limit of ", limit,
           " bytes (raise it with DARKNET_PY_MEMORY_LIMIT or darknet_py.set_memory_limit)");
  }
}

template <typename Change, typename Undo>
void Network::transaction(Change&& change, Undo&& undo) {
  check_consistent();
  try {
    change();
  } catch (...) {
    try {
      undo();
    } catch (...) {
      consistent_ = false;  // cannot happen short of running out of memory while undoing
    }
    throw;
  }
}

void Network::set_batch(int b) {
  auto guard = lock();
  check(b > 0 && b <= kMaxBatch, "batch must be in [1, ", kMaxBatch, "], got ", b);
  if (b == opt.batch) return;
  const int old = opt.batch;
  transaction(
      [&] {
        opt.batch = b;
        for (auto& l : layers) l->set_batch(b);
        check_memory("set_batch");
      },
      [&] {
        opt.batch = old;
        for (auto& l : layers) l->set_batch(old);
      });
}

void Network::resize(int w, int h) {
  auto guard = lock();
  check(w > 0 && h > 0, "resize: size must be positive, got ", w, "x", h);
  check(w <= kMaxSpatial && h <= kMaxSpatial, "resize: ", w, "x", h, " is larger than the limit ", kMaxSpatial);
  check((int64_t)w * h * opt.c <= INT32_MAX, "resize: ", w, "x", h, "x", opt.c, " has more than 2^31 values");
  const int old_w = opt.w, old_h = opt.h;
  auto apply = [&](int nw, int nh) {
    opt.w = nw;
    opt.h = nh;
    opt.inputs = nw * nh * opt.c;
    int cw = nw, ch = nh;
    for (auto& l : layers) {
      l->resize(cw, ch);
      check(l->outputs > 0 && l->outputs <= (size_t)INT32_MAX && l->out_w <= kMaxSpatial && l->out_h <= kMaxSpatial,
            "resize to ", nw, "x", nh, ": layer ", l->index, " (", l->type, ") output ", l->out_w, "x", l->out_h, "x",
            l->out_c, " is empty or over the limits");
      cw = l->out_w;
      ch = l->out_h;
    }
  };
  transaction(
      [&] {
        apply(w, h);
        check_memory("resize");
        if (!workspace_.empty()) ensure_workspace();
      },
      [&] {
        apply(old_w, old_h);
        if (!workspace_.empty()) ensure_workspace();
      });
}

void Network::set_training(bool on) {
  auto guard = lock();
  const bool old = train;
  auto apply = [&](bool v) {
    train = v;
    for (auto& l : layers)
      if (l->training != v) l->set_training(v);
  };
  transaction(
      [&] {
        apply(on);
        check_memory("set_training");
      },
      [&] { apply(old); });
}

bool Network::output_kept(int i) const {
  if (!pooled_) return true;
  return i >= 0 && i < (int)kept_.size() && kept_[i] && !fused_with_next(i);
}

bool Network::fused_with_next(int i) const { return i >= 0 && i < (int)fused_.size() && fused_[i]; }

size_t Network::pool_floats() const {
  size_t n = 0;
  for (const auto& p : pool_) n += p.size();
  return n;
}

void Network::plan_outputs() {
  // The pool lends host memory: CPU inference only.
  const bool want = !train && !keep_outputs && options_.device == Device::Cpu;
  const int n = (int)layers.size();
  // Fused pairs: a convolution whose only reader is the 2x2 max pool right after it (no route
  // reads it, and it is not the network's output).
  fused_.assign(n, 0);
  if (want && options_.fuse_layers) {
    std::vector<int> readers(n, 0);
    for (int i = 1; i < n; ++i) ++readers[i - 1];
    for (int i = 0; i < n; ++i)
      for (int src : layers[i]->reads())
        if (src != i - 1) ++readers[src];
    for (int i = 0; i + 1 < n && i + 1 <= output_index(); ++i)
      fused_[i] = layers[i]->kind == LayerType::Convolutional && readers[i] == 1 &&
                  layers[i + 1]->is_maxpool_2x2_stride_2() &&
                  backend_->can_fuse_conv_maxpool(static_cast<const ConvolutionalLayer&>(*layers[i]));
  }
  if (!want) {
    if (pooled_) {  // back to owned outputs
      for (auto& l : layers) l->output.reset((size_t)l->batch * l->outputs);
      std::vector<std::vector<float>>().swap(pool_);
      kept_.clear();
      pooled_ = false;
    }
    return;
  }
  // (The fused pairs change the liveness: a plan made for other pairs is planned again.)
  bool same = pooled_ && pooled_batch_ == opt.batch && pooled_w_ == opt.w && pooled_h_ == opt.h &&
              pooled_fused_ == fused_;
  if (same)  // a layer reallocated its own output (set_batch/resize/set_training): plan again
    for (auto& l : layers) same = same && l->output.lent();
  if (same) return;
  // last_use[i]: the last layer that reads layer i's output; the output layers live to the end.
  std::vector<int> last_use(n);
  for (int i = 0; i < n; ++i) last_use[i] = i + 1;
  for (int i = 0; i < n; ++i)
    for (int src : layers[i]->reads()) last_use[src] = std::max(last_use[src], i);
  // A fused pair reads the conv's inputs while it writes the pool's output: they stay alive
  // through the pool, so its output never takes their memory.
  for (int i = 0; i < n; ++i)
    if (fused_[i]) {
      if (i > 0) last_use[i - 1] = std::max(last_use[i - 1], i + 1);
      for (int src : layers[i]->reads()) last_use[src] = std::max(last_use[src], i + 1);
    }
  // The network's output (last non-cost layer) and everything after it stay alive.
  for (int i = output_index(); i < n; ++i) last_use[i] = n;
  // Greedy slot assignment in layer order: a layer takes the smallest free slot
  // that fits, else grows the largest free slot, else opens a new one.
  std::vector<size_t> cap;
  std::vector<int> busy_until;  // slot is busy while layer index <= busy_until
  std::vector<int> slot(n);
  for (int i = 0; i < n; ++i) {
    const size_t need = (size_t)layers[i]->batch * layers[i]->outputs;
    int best = -1;
    for (int k = 0; k < (int)cap.size(); ++k) {
      if (busy_until[k] >= i) continue;
      if (best < 0) {
        best = k;
        continue;
      }
      const bool fits_k = cap[k] >= need, fits_b = cap[best] >= need;
      if (fits_k && (!fits_b || cap[k] < cap[best])) best = k;
      else if (!fits_k && !fits_b && cap[k] > cap[best]) best = k;
    }
    if (best < 0) {
      best = (int)cap.size();
      cap.push_back(0);
      busy_until.push_back(0);
    }
    cap[best] = std::max(cap[best], need);
    busy_until[best] = last_use[i];
    slot[i] = best;
  }
  pool_.assign(cap.size(), {});
  for (size_t k = 0; k < cap.size(); ++k) pool_[k].assign(cap[k], 0.f);
  kept_.assign(n, 1);
  for (int i = 0; i < n; ++i) {
    layers[i]->output.lend(pool_[slot[i]].data(), (size_t)layers[i]->batch * layers[i]->outputs);
    for (int j = i + 1; j < n; ++j)
      if (slot[j] == slot[i]) kept_[i] = 0;
  }
  pooled_ = true;
  pooled_fused_ = fused_;
  pooled_batch_ = opt.batch;
  pooled_w_ = opt.w;
  pooled_h_ = opt.h;
}

const float* Network::stage_input(const float* host_input) {
  if (options_.device == Device::Cpu) return host_input;
  const size_t n = (size_t)opt.batch * input_size();
  if (input_.size() != n) input_.reset(n);
  float* d = input_.write(options_.device);
  backend_->upload(d, host_input, n);
  return d;
}

const float* Network::stage_truth(const float* host_truth) {
  if (!host_truth || options_.device == Device::Cpu) return host_truth;
  const size_t n = (size_t)opt.batch * truths();
  if (truth_.size() != n) truth_.reset(n);
  float* d = truth_.write(options_.device);
  backend_->upload(d, host_truth, n);
  return d;
}

LayerContext Network::context(bool train_pass) {
  ensure_workspace();
  LayerContext ctx;
  ctx.backend = backend_.get();
  ctx.device = options_.device;
  ctx.train = train_pass;
  ctx.seen = seen;
  ctx.workspace = workspace_.empty() ? nullptr : workspace_.write(options_.device);
  ctx.rng = &rng;
  return ctx;
}

const float* Network::forward(const float* input, const float* truth) {
  auto guard = lock();
  forward_only(input, truth);
  return std::as_const(layers[output_index()]->output).host();
}

void Network::forward_only(const float* input, const float* truth) {
  auto guard = lock();
  check_consistent();
  ThreadScope threads(options_.threads);
  const float* staged = stage_input(input);
  if (!truth && !train && !layer_times && options_.device == Device::Cuda && options_.cuda_graphs &&
      forward_recorded(staged))
    return;
  run_forward(staged, truth);
}

std::vector<const void*> Network::graph_key(const float* device_input) {
  const Device dev = options_.device;
  ensure_workspace();
  std::vector<const void*> key = {device_input, workspace_.empty() ? nullptr : workspace_.write(dev)};
  const int64_t shape[] = {opt.batch, opt.w, opt.h, (int64_t)options_.cuda_math, options_.reference_kernels,
                           (int64_t)layers.size()};
  for (int64_t v : shape) key.push_back(reinterpret_cast<const void*>(static_cast<intptr_t>(v)));
  for (auto& l : layers) {
    key.push_back(l->output.write(dev));
    for (FloatBuffer* b : l->all_buffers())
      if (b != &l->output && !b->empty()) key.push_back(b->read(dev));
  }
  return key;
}

bool Network::forward_recorded(const float* device_input) {
  if (graph_failed_) return false;
  std::vector<const void*> key = graph_key(device_input);
  if (graph_recorded_ && key == graph_key_ && backend_->graph_launch()) {
    ++graph_replays;
    return true;
  }
  const bool seen_before = key == graph_key_;
  graph_key_ = std::move(key);
  graph_recorded_ = false;
  if (!seen_before) return false;  // first forward with these buffers: eager (allocations settle)
  bool began = false;
  try {
    began = backend_->graph_capture_begin();
  } catch (const DarknetError&) {  // this device or driver cannot record: run eagerly
  }
  if (!began) {
    graph_failed_ = true;
    return false;
  }
  bool recorded = true;
  try {
    run_forward(device_input, nullptr);
  } catch (...) {
    recorded = false;  // e.g. an operation that cannot be captured: the eager forward reports real errors
  }
  recorded = backend_->graph_capture_end() && recorded;
  if (!recorded || !backend_->graph_launch()) {
    backend_->graph_reset();
    graph_failed_ = true;  // this network runs eagerly from now on
    graph_key_.clear();
    return false;
  }
  graph_recorded_ = true;
  ++graph_replays;
  return true;
}

void Network::run_forward(const float* input, const float* truth_host) {
  plan_outputs();
  const Device dev = options_.device;
  // Host memory is allocated on first touch: touch outputs here, single-threaded, never
  // first inside a layer's OpenMP loop (two threads would race on the allocation).
  if (dev == Device::Cpu)
    for (auto& l : layers) l->output.host();
  LayerContext ctx = context(train);
  ctx.input = input;
  ctx.truth_host = truth_host;
  // Only [softmax] and [cost] read the truth on the device; the region loss reads the host copy.
  bool device_truth = false;
  for (const auto& l : layers) device_truth |= l->kind == LayerType::Softmax || l->kind == LayerType::Cost;
  ctx.truth = device_truth ? stage_truth(truth_host) : nullptr;
  using Clock = std::chrono::steady_clock;
  std::vector<double>* times = layer_times;
  if (times) {
    times->assign(layers.size(), 0.0);
    backend_->timing_start();
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    Layer* l = layers[i].get();
    Clock::time_point t0;
    if (times) t0 = Clock::now();
    if (!l->delta.empty()) backend_->fill(l->delta.write(dev), l->delta.size(), 0.f);
    if (fused_with_next((int)i)) {  // the pair as one kernel, straight into the next layer's output
      Layer* next = layers[i + 1].get();
      backend_->conv_inference_maxpool(static_cast<ConvolutionalLayer&>(*l), ctx.input, next->output.write(dev));
      if (times) {
        backend_->timing_mark((int)i);
        (*times)[i] = std::chrono::duration<double>(Clock::now() - t0).count();
        backend_->timing_mark((int)i + 1);
      }
      ctx.input = next->output.read(dev);
      ++i;
      continue;
    }
    l->forward(ctx);
    ctx.input = l->output.read(dev);
    if (times) {
      backend_->timing_mark((int)i);
      (*times)[i] = std::chrono::duration<double>(Clock::now() - t0).count();
    }
  }
  // A GPU layer's time is its kernels' time, from events between the layers (the host times
  // above are then only the launches).
  if (times) backend_->timing_collect(times);
  // Network cost: mean over the layers that compute one (Darknet's calc_network_cost).
  double sum = 0;
  int count = 0;
  if (truth_host)
    for (auto& l : layers)
      if (l->has_cost) {
        sum += l->cost;
        ++count;
      }
  cost = count ? (float)(sum / count) : 0.f;
}

void Network::backward(const float* input) {
  auto guard = lock();
  check_consistent();
  check(train, "backward needs the network in training mode (set_training(true))");
  ThreadScope threads(options_.threads);
  const float* in = stage_input(input);
  using Clock = std::chrono::steady_clock;
  std::vector<double>* times = layer_times;
  std::vector<double> pass;  // this pass's times, added to *times
  if (times) {
    times->resize(layers.size(), 0.0);
    pass.assign(layers.size(), 0.0);
    backend_->timing_start();
  }
  for (int i = (int)layers.size() - 1; i >= 0; --i) {
    Clock::time_point t0;
    if (times) t0 = Clock::now();
    run_backward_layer(i, in);
    if (times) {
      backend_->timing_mark(i);
      pass[(size_t)i] = std::chrono::duration<double>(Clock::now() - t0).count();
    }
  }
  if (times) {
    backend_->timing_collect(&pass);  // the device's clock where it has one (see run_forward)
    for (size_t i = 0; i < pass.size(); ++i) (*times)[i] += pass[i];
  }
}

void Network::backward_layer(int i, const float* input) {
  auto guard = lock();
  check_consistent();
  check(train, "backward needs the network in training mode (set_training(true))");
  check(i >= 0 && i < (int)layers.size(), "layer index ", i, " out of range");
  ThreadScope threads(options_.threads);
  run_backward_layer(i, i == 0 ? stage_input(input) : nullptr);
}

void Network::run_backward_layer(int i, const float* input) {
  const Device dev = options_.device;
  LayerContext ctx = context(true);
  if (i == 0) {
    ctx.input = input;
    ctx.prev_delta = nullptr;
  } else {
    ctx.input = layers[i - 1]->output.read(dev);
    ctx.prev_delta = layers[i - 1]->delta.empty() ? nullptr : layers[i - 1]->delta.write(dev);
  }
  layers[i]->backward(ctx);
}

std::string Network::rng_state() const {
  auto guard = lock();
  std::ostringstream os;
  os << rng;
  return os.str();
}

void Network::set_rng_state(const std::string& state) {
  auto guard = lock();
  std::istringstream is(state);
  std::mt19937_64 restored;
  is >> restored;
  check(!is.fail(), "set_rng_state: not a generator state (", state.size(), " characters)");
  is >> std::ws;
  check(is.eof(), "set_rng_state: trailing characters after the generator state");
  rng = restored;
}

void Network::randomize(uint64_t seed, WeightInit init) {
  auto guard = lock();
  std::mt19937_64 init_rng(seed);
  for (auto& l : layers) l->randomize(init_rng, init);
}

int64_t Network::current_batch() const { return seen / images_per_iteration(); }

float Network::current_learning_rate() const {
  const int64_t batch_num = current_batch();
  if (batch_num < opt.burn_in) return opt.learning_rate * std::pow((float)batch_num / opt.burn_in, opt.power);
  switch (opt.policy) {
    case LearningRatePolicy::Constant: return opt.learning_rate;
    case LearningRatePolicy::Step: return opt.learning_rate * std::pow(opt.scale, (float)(batch_num / opt.step));
    case LearningRatePolicy::Steps: {
      float rate = opt.learning_rate;
      for (size_t i = 0; i < opt.steps.size(); ++i) {
        if (opt.steps[i] > batch_num) return rate;
        rate *= opt.scales[i];
      }
      return rate;
    }
    case LearningRatePolicy::Exp: return opt.learning_rate * std::pow(opt.gamma, (float)batch_num);
    case LearningRatePolicy::Poly:
      return opt.learning_rate * std::pow(1.f - (float)batch_num / opt.max_batches, opt.power);
    case LearningRatePolicy::Random: {
      // Deterministic per batch number so resumed runs reproduce the schedule.
      std::mt19937_64 g((uint64_t)batch_num * 0x9E3779B97F4A7C15ull + 1);
      return opt.learning_rate * std::pow(std::uniform_real_distribution<float>(0.f, 1.f)(g), opt.power);
    }
    case LearningRatePolicy::Sig:
      return opt.learning_rate * (1.f / (1.f + std::exp(opt.gamma * (batch_num - opt.step))));
  }
  return opt.learning_rate;
}

void Network::update() {
  auto guard = lock();
  check_consistent();
  // Without training mode there are no update (momentum) buffers to apply.
  check(train, "update needs the network in training mode (set_training(true))");
  UpdateArgs a;
  a.batch = (int)images_per_iteration();
  a.learning_rate = current_learning_rate();
  a.momentum = opt.momentum;
  a.decay = opt.decay;
  ThreadScope threads(options_.threads);
  for (auto& l : layers) l->update(a, *backend_);
}

float Network::train_step(const float* input, const float* truth) {
  auto guard = lock();
  check_consistent();
  if (!train) set_training(true);
  ThreadScope threads(options_.threads);
  seen += opt.batch;
  const float* in = stage_input(input);  // uploaded once for the forward and the backward
  run_forward(in, truth);
  for (int i = (int)layers.size() - 1; i >= 0; --i) run_backward_layer(i, in);
  if ((seen / opt.batch) % opt.subdivisions == 0) update();
  return cost;
}

double Network::total_flops() const {
  double f = 0;
  for (const auto& l : layers) f += l->flops();
  return f;
}

std::string Network::summary() const {
  auto guard = lock();
  std::ostringstream os;
  os << "layer     filters    size              input                output\n";
  char idx[16];
  for (const auto& l : layers) {
    std::snprintf(idx, sizeof idx, "%5d ", l->index);
    os << idx << l->describe() << "\n";
  }
  char total[64];
  std::snprintf(total, sizeof total, "Total BFLOPS %.3f\n", total_flops() / 1e9);
  os << total;
  return os.str();
}

// ---------------------------------------------------------------- weights I/O

std::string Network::load_weights(const std::string& path, int cutoff) {
  auto guard = lock();
  if (path.find('\0') != std::string::npos) fail("load_weights: the path contains a NUL byte");
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, ": cannot open weights file");
  f.seekg(0, std::ios::end);
  const int64_t file_size = f.tellg();
  f.seekg(0);
  int32_t header[3];
  if (file_size < 12 || !f.read(reinterpret_cast<char*>(header), sizeof header))
    fail(path, ": not a Darknet weights file (", file_size, " bytes, need at least a 12-byte header)");
  const int32_t mj = header[0], mn = header[1], rev = header[2];
  // Darknet writes 0.1 and 0.2 (and 1000+ for transposed files); a negative version would
  // pick the 4-byte 'seen' field and shift every weight by 4 bytes.
  if (mj < 0 || mn < 0) fail(path, ": header version ", mj, ".", mn, ".", rev, " is not a Darknet weights version");
  if (mj > 1000 || mn > 1000) fail(path, ": transposed (connected-layer) weights are not supported");
  int64_t pos = 12;
  int64_t file_seen = 0;
  if ((mj * 10 + mn) >= 2 && mj < 1000 && mn < 1000) {
    uint64_t s64 = 0;
    if (file_size < 20 || !f.read(reinterpret_cast<char*>(&s64), 8))
      fail(path, ": truncated header (version ", mj, ".", mn, " needs an 8-byte 'seen' field)");
    if (s64 > (uint64_t)INT64_MAX)
      fail(path, ": header 'seen' = ", s64, " images is not a valid count (>= 2^63)");
    file_seen = (int64_t)s64;
    pos += 8;
  } else {
    int32_t s32 = 0;
    if (file_size < 16 || !f.read(reinterpret_cast<char*>(&s32), 4)) fail(path, ": truncated header");
    file_seen = (uint32_t)s32;
    pos += 4;
  }
  const int n = cutoff < 0 ? (int)layers.size() : std::min(cutoff, (int)layers.size());
  // Check the whole file size first so a short file never leaves a half-loaded network.
  int64_t need = pos;
  for (int i = 0; i < n; ++i)
    for (const Blob& b : layers[i]->params()) {
      const int64_t avail = (file_size - need) / 4;
      if (avail < (int64_t)b.count())
        fail(path, ": truncated weights: layer ", i, " (", layers[i]->type, ") ", b.name, " expects ", b.count(),
             " floats but only ", std::max<int64_t>(avail, 0), " remain (file is ", file_size,
             " bytes; the cfg needs ", [&] {
               int64_t total = pos;
               for (int j = 0; j < n; ++j)
                 for (const Blob& bb : layers[j]->params()) total += 4 * (int64_t)bb.count();
               return total;
             }(),
             " bytes)");
      need += 4 * (int64_t)b.count();
    }
  // Pass 1 reads the values in chunks and checks them before the first weight changes (a
  // NaN in the last layer leaves the network as it was) without holding a second copy of
  // the weights; pass 2 reads them into the layers.
  {
    std::vector<float> chunk(1 << 18);
    for (int i = 0; i < n; ++i)
      for (const Blob& b : layers[i]->params())
        for (size_t done = 0; done < b.count();) {
          const size_t take = std::min(chunk.size(), b.count() - done);
          if (!f.read(reinterpret_cast<char*>(chunk.data()), 4 * (std::streamsize)take))
            fail(path, ": read error in layer ", i, " ", b.name);
          for (size_t k = 0; k < take; ++k)
            if (!std::isfinite(chunk[k]))
              fail(path, ": layer ", i, " (", layers[i]->type, ") ", b.name, "[", done + k, "] is ", chunk[k],
                   ": the file holds non-finite weights (a diverged training run?); nothing was loaded");
          done += take;
        }
  }
  f.clear();
  f.seekg(pos);
  for (int i = 0; i < n; ++i)
    for (const Blob& b : layers[i]->params()) {
      float* dst = b.buffer->host();
      bool ok = (bool)f.read(reinterpret_cast<char*>(dst), 4 * (std::streamsize)b.count());
      for (size_t k = 0; ok && k < b.count(); ++k) ok = std::isfinite(dst[k]);
      if (!ok) {
        // Only if the file changed between the passes: refuse to run half-loaded weights.
        consistent_ = false;
        fail(path, ": the file changed while it was being loaded (layer ", i, " ", b.name,
             "); the network is unusable, load the weights again into a new network");
      }
    }
  major = mj;
  minor = mn;
  revision = rev;
  seen = file_seen;
  if (cutoff < 0 && need < file_size) {
    std::ostringstream os;
    os << path << ": " << (file_size - need) << " bytes after the last layer's weights were not used (the cfg has "
       << (need - pos) / 4 << " parameters, the file " << (file_size - pos) / 4
       << "; weights of a bigger cfg? load with a cutoff to take only the first layers)";
    warnings.push_back(os.str());
    return os.str();
  }
  return "";
}

void Network::save_weights(const std::string& path, int cutoff) const {
  auto guard = lock();
  // A path with a NUL byte would be cut short by the C library and name another file.
  if (path.find('\0') != std::string::npos) fail("save_weights: the path contains a NUL byte");
  if (path.empty()) fail("save_weights: empty path");
  // Write to a temporary file in the same directory, flush it to disk, then
  // rename: a crash or a full disk never leaves a half-written file at `path`.
  const std::string tmp = path + ".tmp." + std::to_string((long)::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(path, ": cannot open '", tmp, "' for writing: ", std::strerror(errno));
  bool ok = true;
  const int32_t header[3] = {0, 2, 0};
  const uint64_t s64 = (uint64_t)seen;
  ok = ok && std::fwrite(header, sizeof header, 1, f) == 1;
  ok = ok && std::fwrite(&s64, 8, 1, f) == 1;
  const int n = cutoff < 0 ? (int)layers.size() : std::min(cutoff, (int)layers.size());
  for (int i = 0; i < n && ok; ++i)
    for (const Blob& b : layers[i]->params())
      if (b.count() && std::fwrite(std::as_const(*b.buffer).host(), 4, b.count(), f) != b.count()) ok = false;
  ok = ok && std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  const int saved_errno = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail(path, ": write failed: ", std::strerror(saved_errno), " (the previous file, if any, is untouched)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    fail(path, ": cannot rename the finished file into place: ", std::strerror(e));
  }
}

}  // namespace dn
