// pybind11 bindings for dn::Network and its layers.
#include <pybind11/numpy.h>

#include <cmath>
#include <pybind11/stl.h>

#include <cstring>

#include "layers/convolutional.hpp"
#include "core/limits.hpp"
#include "kernels/batchnorm.hpp"
#include "network.hpp"
#include "python/bind.hpp"

namespace dn {

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

// A numpy view over a blob's host copy. The array owns a reference to the storage itself
// (Buffer::host_keepalive), not just to the network: if a later resize, batch change or
// set_training reallocates the buffer, the view keeps valid, detached memory instead of
// dangling (take a new view to see the new buffer). On a GPU network the view pulls the
// newest data and marks the host copy newest, so what is written through it is uploaded
// before the next device use; a view kept across a later GPU step sees stale data.
py::array view(const Blob& b) {
  std::vector<py::ssize_t> shape(b.shape.begin(), b.shape.end());
  float* data = b.buffer->host();
  std::shared_ptr<void> keep = b.buffer->host_keepalive();
  if (!keep) {  // lent (pooled) memory has no owner to share: hand out a copy
    py::array_t<float> a(shape);
    if (b.count()) std::memcpy(a.mutable_data(), data, 4 * b.count());
    return a;
  }
  py::capsule owner(new std::shared_ptr<void>(std::move(keep)),
                    [](void* p) { delete static_cast<std::shared_ptr<void>*>(p); });
  return py::array_t<float>(shape, data, owner);
}

// Takes the network's lock (Network's concurrency contract) with the GIL released while
// waiting: the thread holding the lock may need the GIL to finish, so waiting for the lock
// while holding the GIL could deadlock. Every binding that calls into a Network with the
// GIL held goes through this first.
std::unique_lock<std::recursive_mutex> lock_net(const Network& n) {
  py::gil_scoped_release release;
  return n.lock();
}

py::array copy_map(const FloatBuffer& v, int batch, int c, int h, int w) {
  py::array_t<float> a({(py::ssize_t)batch, (py::ssize_t)c, (py::ssize_t)h, (py::ssize_t)w});
  if ((size_t)a.size() != v.size()) throw DarknetError("internal: buffer size does not match its shape");
  std::memcpy(a.mutable_data(), v.host(), sizeof(float) * v.size());
  return a;
}

py::dict options_dict(const ExecOptions& o) {
  py::dict d;
  d["device"] = device_name(o.device);
  d["isa"] = cpu_isa_name(o.isa);
  d["winograd"] = winograd_mode_name(o.winograd);
  d["reference_kernels"] = o.reference_kernels;
  d["threads"] = o.threads;
  d["cuda_math"] = cuda_math_name(o.cuda_math);
  d["cuda_graphs"] = o.cuda_graphs;
  d["fuse_layers"] = o.fuse_layers;
  return d;
}

// Options with the given fields replaced (None keeps the current value).
ExecOptions with_changes(ExecOptions o, const py::object& device, const py::object& isa, const py::object& winograd,
                         const py::object& reference_kernels, const py::object& threads,
                         const py::object& cuda_math, const py::object& cuda_graphs,
                         const py::object& fuse_layers) {
  if (!device.is_none()) o.device = parse_device(device.cast<std::string>());
  if (!isa.is_none()) o.isa = parse_cpu_isa(isa.cast<std::string>());
  if (!winograd.is_none()) o.winograd = parse_winograd_mode(winograd.cast<std::string>());
  if (!reference_kernels.is_none()) o.reference_kernels = reference_kernels.cast<bool>();
  if (!threads.is_none()) {
    const int t = threads.cast<int>();
    if (t < 0) fail("threads must be >= 0 (0 = the OpenMP default), got ", t);
    o.threads = t;
  }
  if (!cuda_math.is_none()) o.cuda_math = parse_cuda_math(cuda_math.cast<std::string>());
  if (!cuda_graphs.is_none()) o.cuda_graphs = cuda_graphs.cast<bool>();
  if (!fuse_layers.is_none()) o.fuse_layers = fuse_layers.cast<bool>();
  return o;
}

// "" keeps the default device (ExecOptions: DARKNET_PY_DEVICE, else cpu).
std::unique_ptr<Network> on_device(std::unique_ptr<Network> net, const std::string& device) {
  if (!device.empty()) net->to(parse_device(device));
  return net;
}

// Checks an (N, C, H, W) (or (C, H, W)) input against the network and sets the batch.
const float* prepare_input(Network& net, const FloatArray& x) {
  const auto nd = x.ndim();
  if (nd != 4 && nd != 3) fail("input must be (N, C, H, W) or (C, H, W) float32, got ", nd, " dimensions");
  const py::ssize_t n = nd == 4 ? x.shape(0) : 1;
  const py::ssize_t c = x.shape(nd - 3), h = x.shape(nd - 2), w = x.shape(nd - 1);
  if (c != net.channels() || h != net.height() || w != net.width())
    fail("input is ", c, "x", h, "x", w, " (CxHxW) but the network expects ", net.channels(), "x", net.height(), "x",
         net.width(), " (resize the network first)");
  if (n <= 0) fail("input batch is empty");
  net.set_batch((int)n);
  return x.data();
}

const float* prepare_truth(Network& net, const py::object& truth, FloatArray& holder) {
  if (truth.is_none()) return nullptr;
  holder = FloatArray::ensure(truth);
  if (!holder) fail("truth must be a float32 array");
  const size_t need = (size_t)net.batch() * net.truths();
  if ((size_t)holder.size() != need)
    fail("truth has ", holder.size(), " floats but the network needs batch*truths = ", net.batch(), "*",
         net.truths(), " = ", need);
  return holder.data();
}

}  // namespace

void bind_network(py::module_& m) {
  m.attr("bn_rolling_keep") = kBatchNormRollingKeep;  // rolling = keep * rolling + (1 - keep) * batch value
  m.def("memory_limit", &memory_limit,
        "Bytes a network's buffers may add up to (default 32 GiB; DARKNET_PY_MEMORY_LIMIT seeds it).");
  m.def(
      "set_memory_limit",
      [](const py::object& limit) {
        if (limit.is_none()) return set_memory_limit(0);
        if (py::isinstance<py::str>(limit)) return set_memory_limit(parse_byte_size(limit.cast<std::string>()));
        const long long v = limit.cast<long long>();
        if (v <= 0) fail("memory limit must be > 0 bytes, got ", v);
        set_memory_limit((uint64_t)v);
      },
      py::arg("limit"),
      "Set the memory limit for networks built or reshaped afterwards: bytes, a string such as '8G', or None "
      "for the default.");
  py::class_<Layer>(m, "Layer")
      .def_readonly("type", &Layer::type)
      .def_readonly("index", &Layer::index)
      .def_readonly("batch", &Layer::batch)
      .def_readonly("w", &Layer::w)
      .def_readonly("h", &Layer::h)
      .def_readonly("c", &Layer::c)
      .def_readonly("out_w", &Layer::out_w)
      .def_readonly("out_h", &Layer::out_h)
      .def_readonly("out_c", &Layer::out_c)
      .def_readonly("inputs", &Layer::inputs)
      .def_readonly("outputs", &Layer::outputs)
      .def_readonly("truths", &Layer::truths)
      .def_readonly("has_cost", &Layer::has_cost)
      .def_readonly("cost", &Layer::cost)
      .def_property_readonly("flops", &Layer::flops)
      .def_property_readonly(
          "parameter_count",
          [](Layer& l) {
            size_t n = 0;
            for (const Blob& b : l.params()) n += b.count();
            return n;
          },
          "Floats in the layer's parameters (weights-file order), without reading them.")
      .def("describe", &Layer::describe);

  py::class_<Network>(m, "Network")
      .def(py::init([](const std::string& cfg, int batch, const std::string& device) {
             return on_device(Network::from_cfg_file(cfg, batch), device);
           }),
           py::arg("cfg"), py::arg("batch") = 0, py::arg("device") = "")
      .def_static(
          "from_text",
          [](const std::string& text, const std::string& name, int batch, const std::string& device) {
            return on_device(Network::from_sections(parse_cfg_text(text, name), batch), device);
          },
          py::arg("text"), py::arg("name") = "<string>", py::arg("batch") = 0, py::arg("device") = "")
      .def_property_readonly("device", [](const Network& n) { return std::string(device_name(n.device())); })
      .def(
          "to", [](Network& n, const std::string& device) { n.to(parse_device(device)); }, py::arg("device"),
          py::call_guard<py::gil_scoped_release>(),
          "Move the network to 'cpu' or 'cuda' (parameters upload on first use and stay there).")
      .def_property_readonly("exec_options", [](const Network& n) { return options_dict(n.options()); })
      .def_readonly("cuda_graph_replays", &Network::graph_replays,
                    "Inference forwards that ran as a replay of the recorded CUDA graph.")
      .def(
          "set_exec_options",
          [](Network& n, const py::object& device, const py::object& isa, const py::object& winograd,
             const py::object& reference_kernels, const py::object& threads, const py::object& cuda_math,
             const py::object& cuda_graphs, const py::object& fuse_layers) {
            const ExecOptions o = with_changes(n.options(), device, isa, winograd, reference_kernels, threads,
                                               cuda_math, cuda_graphs, fuse_layers);
            py::gil_scoped_release release;
            n.set_options(o);
          },
          py::arg("device") = py::none(), py::arg("isa") = py::none(), py::arg("winograd") = py::none(),
          py::arg("reference_kernels") = py::none(), py::arg("threads") = py::none(),
          py::arg("cuda_math") = py::none(), py::arg("cuda_graphs") = py::none(),
          py::arg("fuse_layers") = py::none(),
          "Change this network's execution options (None keeps a value): device 'cpu'|'cuda', isa "
          "'auto'|'avx512'|'avx2'|'plain', winograd 'auto'|'on'|'stream'|'off', reference_kernels, threads (0 = "
          "default), cuda_math 'tf32'|'fp32', cuda_graphs (CUDA inference forwards replayed as a graph), "
          "fuse_layers (inference without kept outputs: conv + 2x2 max pool as one kernel).")
      .def("fused_with_next", &Network::fused_with_next, py::arg("i"),
           "True where layer i runs with layer i + 1 fused into it (exec option fuse_layers, inference with "
           "keep_outputs off): layer i's output is not written, and its profile time includes layer i + 1's.")
      .def_property_readonly("output_index", &Network::output_index,
                             "The output layer: the last layer that is not a [cost] layer.")
      .def(
          "layer_uses_winograd",
          [](const Network& n, int i) {
            const Layer& l = const_cast<Network&>(n).layer(i);
            auto* c = dynamic_cast<const ConvolutionalLayer*>(&l);
            return n.device() != Device::Cuda && !n.options().reference_kernels && c &&
                   c->uses_winograd(n.options().winograd);
          },
          py::arg("i"),
          "Whether inference runs layer i through Winograd F(4x4,3x3) (this network's options and shape).")
      .def_property_readonly("width", &Network::width)
      .def_property_readonly("height", &Network::height)
      .def_property_readonly("channels", &Network::channels)
      .def_property_readonly("batch", &Network::batch)
      .def_property_readonly("subdivisions", [](const Network& n) { return n.opt.subdivisions; })
      .def_property_readonly("truths", &Network::truths)
      .def_property_readonly("n_layers", [](const Network& n) { return (int)n.layers.size(); })
      .def_property_readonly("warnings", [](const Network& n) { return n.warnings; })
      .def_property_readonly("cfg_path", [](const Network& n) { return n.cfg_path; })
      .def_property_readonly("cost", [](const Network& n) { return n.cost; })
      .def_property_readonly("training", [](const Network& n) { return n.train; })
      .def_property_readonly("version",
                             [](const Network& n) { return py::make_tuple(n.major, n.minor, n.revision); })
      .def_property(
          "seen", [](const Network& n) { return n.seen; },
          [](Network& n, int64_t v) {
            if (v < 0) fail("seen must be >= 0, got ", v);
            n.seen = v;
          })
      .def_readwrite("keep_outputs", &Network::keep_outputs,
                     "False: inference lends layer outputs from a liveness-planned pool (less memory); only "
                     "outputs no later layer overwrote stay readable")
      .def("output_kept", &Network::output_kept, py::arg("i"))
      .def_property_readonly("pool_floats", &Network::pool_floats)
      .def_property(
          "reference_kernels", [](const Network& n) { return n.options().reference_kernels; },
          [](Network& n, bool on) {
            py::gil_scoped_release release;
            ExecOptions o = n.options();
            o.reference_kernels = on;
            n.set_options(o);
          },
          "Run inference on the plain reference kernels instead of the fast path (exec_options).")
      .def_property_readonly("total_flops", &Network::total_flops)
      .def_property_readonly("options",
                             [](const Network& n) {
                               const NetOptions& o = n.opt;
                               py::dict d;
                               d["batch"] = o.batch * o.subdivisions;
                               d["subdivisions"] = o.subdivisions;
                               d["width"] = o.w;
                               d["height"] = o.h;
                               d["channels"] = o.c;
                               d["learning_rate"] = o.learning_rate;
                               d["momentum"] = o.momentum;
                               d["decay"] = o.decay;
                               d["policy"] = o.policy_name;
                               d["burn_in"] = o.burn_in;
                               d["power"] = o.power;
                               d["gamma"] = o.gamma;
                               d["step"] = o.step;
                               d["scale"] = o.scale;
                               d["steps"] = o.steps;
                               d["scales"] = o.scales;
                               d["max_batches"] = o.max_batches;
                               d["random"] = o.random;
                               d["angle"] = o.angle;
                               d["aspect"] = o.aspect;
                               d["saturation"] = o.saturation;
                               d["exposure"] = o.exposure;
                               d["hue"] = o.hue;
                               d["flip"] = o.flip;
                               d["min_crop"] = o.min_crop;
                               d["max_crop"] = o.max_crop;
                               d["center"] = o.center;
                               return d;
                             })
      .def("layer", [](Network& n, int i) -> Layer& { return n.layer(i); }, py::return_value_policy::reference_internal)
      .def("summary", &Network::summary, py::call_guard<py::gil_scoped_release>())
      .def("set_batch", &Network::set_batch, py::call_guard<py::gil_scoped_release>())
      .def("resize", &Network::resize, py::arg("width"), py::arg("height"), py::call_guard<py::gil_scoped_release>())
      .def("set_training", &Network::set_training, py::call_guard<py::gil_scoped_release>())
      .def("set_seed", &Network::set_seed, py::call_guard<py::gil_scoped_release>())
      .def_property("rng_state", &Network::rng_state, &Network::set_rng_state,
                    "The training generator's state (dropout draws) as text; a checkpoint saves it so a "
                    "resumed run draws what a straight run would.")
      .def(
          "lock_functions",
          [](const Network& n) {
            // The network's lock as (acquire, release) for darknet_py.Network.lock(), a context
            // manager that makes several calls one (forward, then decode its detections).
            // Recursive: the calls inside take it again on the same thread.
            auto holder = std::make_shared<std::unique_lock<std::recursive_mutex>>();
            {
              py::gil_scoped_release release;  // taking the lock here too: never with the GIL held
              *holder = n.lock();
            }
            holder->unlock();  // bound to the network's mutex, released until acquire()
            py::cpp_function acquire([holder]() {
              py::gil_scoped_release release;
              holder->lock();
            });
            py::cpp_function release([holder]() {
              if (holder->owns_lock()) holder->unlock();
            });
            return py::make_tuple(acquire, release);
          })
      .def_property_readonly("planned_bytes", &Network::planned_bytes,
                             "Bytes of every layer buffer plus the workspace, as checked against the memory limit.")
      .def(
          "randomize",
          [](Network& n, uint64_t seed, const std::string& init) {
            const WeightInit how = parse_weight_init(init);
            py::gil_scoped_release release;
            n.randomize(seed, how);
          },
          py::arg("seed") = 0, py::arg("init") = "uniform",
          "Random initialisation: conv weights sqrt(2/fan_in) * U(-1,1) ('uniform', YOLOv2-era Darknet, "
          "default) or * N(0,1) ('normal', later Darknet); biases 0, BN scales 1.")
      .def(
          "forward",
          [](Network& net, const FloatArray& x, const py::object& truth) {
            // One lock across batch change, forward and the copy of the output: another
            // thread's forward cannot slip in between.
            auto guard = lock_net(net);
            const float* in = prepare_input(net, x);
            FloatArray truth_holder;
            const float* t = prepare_truth(net, truth, truth_holder);
            {
              py::gil_scoped_release release;
              net.forward_only(in, t);
            }
            const Layer& l = *net.layers[net.output_index()];
            return copy_map(l.output, l.batch, l.out_c, l.out_h, l.out_w);
          },
          py::arg("x"), py::arg("truth") = py::none())
      .def(
          "backward",
          [](Network& net, const FloatArray& x) {
            auto guard = lock_net(net);
            const float* in = prepare_input(net, x);
            py::gil_scoped_release release;
            net.backward(in);
          },
          py::arg("x"))
      .def(
          "backward_layer",
          [](Network& net, int i, const FloatArray& x) {
            auto guard = lock_net(net);
            const float* in = prepare_input(net, x);
            py::gil_scoped_release release;
            net.backward_layer(i, in);
          },
          py::arg("i"), py::arg("x"))
      .def("update", &Network::update, py::call_guard<py::gil_scoped_release>())
      .def(
          "train_step",
          [](Network& net, const FloatArray& x, const py::object& truth, bool update) {
            auto guard = lock_net(net);
            const float* in = prepare_input(net, x);
            FloatArray truth_holder;
            const float* t = prepare_truth(net, truth, truth_holder);
            if (!t) fail("train_step needs truth");
            py::gil_scoped_release release;
            if (update) return net.train_step(in, t);
            // The step without its update: this sub-batch's gradients add up in the layers' update
            // buffers, so a caller can combine them (across processes) before update(). On a device
            // the input is staged twice (forward, backward): one small upload per sub-batch.
            if (!net.train) net.set_training(true);
            net.seen += net.batch();
            net.forward_only(in, t);
            net.backward(in);
            return net.cost;
          },
          py::arg("x"), py::arg("truth"), py::arg("update") = true,
          "Darknet's train_network_datum: seen += batch, forward with truth, backward, and with update\n"
          "(default) the SGD update when a full batch is accumulated. Returns the loss.")
      .def_property_readonly("current_batch", &Network::current_batch)
      .def_property(
          "images_per_iteration", [](const Network& n) { return n.images_per_iteration(); },
          [](Network& n, int64_t v) {
            if (v < 0 || v > (int64_t)kMaxBatch * kMaxBatch)
              fail("images_per_iteration must be in [0, ", (int64_t)kMaxBatch * kMaxBatch, "], got ", v);
            auto guard = lock_net(n);
            n.iteration_images = v;
          },
          "Images one update sums over (its divisor; current_batch = seen / this): batch * subdivisions\n"
          "unless set (a data-parallel job sets its global batch); 0 restores the default.")
      .def_property_readonly("learning_rate", &Network::current_learning_rate)
      .def_property(
          "base_learning_rate", [](const Network& n) { return n.opt.learning_rate; },
          [](Network& n, float v) {
            if (!(v >= 0) || !std::isfinite(v)) fail("learning_rate must be a finite value >= 0, got ", v);
            n.opt.learning_rate = v;
          },
          "[net] learning_rate, the base of the LR policy (fine-tuning lowers it).")
      .def_property(
          "max_batches", [](const Network& n) { return n.opt.max_batches; },
          [](Network& n, int v) {
            if (v <= 0) fail("max_batches must be > 0, got ", v);
            n.opt.max_batches = v;
          },
          "[net] max_batches (the poly policy's horizon).")
      .def("load_weights", &Network::load_weights, py::arg("path"), py::arg("cutoff") = -1,
           py::call_guard<py::gil_scoped_release>())
      .def("save_weights", &Network::save_weights, py::arg("path"), py::arg("cutoff") = -1,
           py::call_guard<py::gil_scoped_release>())
      .def("layer_output",
           [](Network& n, int i) {
             auto guard = lock_net(n);
             Layer& l = n.layer(i);
             if (!n.output_kept(i < 0 ? i + (int)n.layers.size() : i))
               fail("layer ", i, "'s output was overwritten by a later layer or, fused with the next layer, never "
                    "written (keep_outputs is False: inference lends outputs from a shared pool); set "
                    "net.keep_outputs = True to inspect every layer");
             return copy_map(l.output, l.batch, l.out_c, l.out_h, l.out_w);
           })
      .def("layer_delta",
           [](Network& n, int i) -> py::object {
             auto guard = lock_net(n);
             Layer& l = n.layer(i);
             if (l.delta.empty()) return py::none();
             return copy_map(l.delta, l.batch, l.out_c, l.out_h, l.out_w);
           })
      .def("set_layer_delta",
           [](Network& n, int i, const FloatArray& d) {
             auto guard = lock_net(n);
             Layer& l = n.layer(i);
             if (l.delta.empty()) fail("layer ", i, " has no delta (enable training first)");
             if ((size_t)d.size() != l.delta.size())
               fail("delta for layer ", i, " needs ", l.delta.size(), " floats, got ", d.size());
             std::memcpy(l.delta.host(), d.data(), sizeof(float) * l.delta.size());
           })
      .def(
          "layer_params",
          [](py::object self, int i) {
            Network& n = self.cast<Network&>();
            auto guard = lock_net(n);
            py::dict d;
            for (const Blob& b : n.layer(i).params()) d[py::str(b.name)] = view(b);
            return d;
          },
          "Parameters of layer i in weights-file order, as writable numpy views.")
      .def(
          "layer_buffers",
          [](py::object self, int i) {
            Network& n = self.cast<Network&>();
            auto guard = lock_net(n);
            py::dict d;
            for (const Blob& b : n.layer(i).buffers()) d[py::str(b.name)] = view(b);
            return d;
          },
          "Training buffers of layer i (updates, BN statistics) as writable numpy views.")
      .def(
          "layer_update_buffers",
          [](py::object self, int i) {
            Network& n = self.cast<Network&>();
            auto guard = lock_net(n);
            py::dict d;
            const std::string suffix = "_updates";
            for (const Blob& b : n.layer(i).buffers()) {
              const std::string name = b.name;
              if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
                d[py::str(name)] = view(b);
            }
            return d;
          },
          "The update (gradient + momentum) buffers of layer i alone, as writable numpy views: on a GPU\n"
          "only these are pulled to the host, not the layer's activations.");
}

}  // namespace dn
