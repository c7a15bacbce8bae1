// CUDA bindings: device query and per-kernel parity entry points (numpy in,
// CUDA kernel, numpy out) used by tests/test_cuda_parity.py to compare every
// CUDA kernel with its CPU reference. Always compiled; without DN_WITH_CUDA,
// cuda_available() is False and every parity function raises DarknetError
// ("built without CUDA").
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "network.hpp"
#include "python/bind.hpp"

#ifdef DN_WITH_CUDA
#include "../../cuda/cuda_layers.hpp"  // repo-root cuda/, not a -I path (keeps <cuda/...> toolkit headers unshadowed)
#include "layers/convolutional.hpp"
#include "layers/region.hpp"
#include "parse/tree.hpp"
#endif

namespace dn {

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

#ifdef DN_WITH_CUDA
constexpr bool kBuiltWithCuda = true;
#else
constexpr bool kBuiltWithCuda = false;
#endif

#ifndef DN_WITH_CUDA
[[noreturn]] void no_cuda() {
  throw DarknetError(
      "darknet_py was built without CUDA: rebuild with DARKNET_PY_CUDA=1 (setup.py) or -DDARKNET_PY_CUDA=ON "
      "(CMake) to use the CUDA kernels");
}
#endif

#ifdef DN_WITH_CUDA
using cuda::DeviceBuffer;

void require_device() {
  check(cuda::cuda_available(), "no CUDA device available (darknet_py was built with CUDA, but ",
        "cudaGetDeviceCount found none)");
}

DeviceBuffer<float> to_device(const FloatArray& a) {
  DeviceBuffer<float> d;
  d.upload(a.data(), (size_t)a.size());
  return d;
}

// Device copy of `a` (checked to hold n floats), or of n zeros when a is None.
DeviceBuffer<float> to_device_or_zeros(const py::object& a, size_t n, const char* what) {
  DeviceBuffer<float> d(n);
  if (a.is_none()) {
    d.zero();
    return d;
  }
  FloatArray arr = FloatArray::ensure(a);
  if (!arr) fail(what, " must be a float32 array");
  check((size_t)arr.size() == n, what, " has ", arr.size(), " floats, expected ", n);
  d.upload(arr.data(), n);
  return d;
}

FloatArray optional_array(const py::object& a, size_t n, const char* what) {
  FloatArray arr = FloatArray::ensure(a);
  if (!arr) fail(what, " must be a float32 array");
  check((size_t)arr.size() == n, what, " has ", arr.size(), " floats, expected ", n);
  return arr;
}

py::array_t<float> to_numpy(const DeviceBuffer<float>& d, std::vector<py::ssize_t> shape) {
  py::array_t<float> a(shape);
  check((size_t)a.size() == d.size(), "internal: device buffer of ", d.size(), " floats for a numpy array of ",
        a.size());
  d.download(a.mutable_data(), d.size());
  return a;
}

py::array_t<float> to_numpy(const DeviceBuffer<float>& d) { return to_numpy(d, {(py::ssize_t)d.size()}); }

py::array_t<int> to_numpy_int(const DeviceBuffer<int>& d, std::vector<py::ssize_t> shape) {
  py::array_t<int> a(shape);
  d.download(a.mutable_data(), d.size());
  return a;
}

std::vector<py::ssize_t> shape_of(const FloatArray& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

void check_ndim(const FloatArray& a, int nd, const char* what) {
  check(a.ndim() == nd, what, " must have ", nd, " dimensions, got ", a.ndim());
}

Activation activation_from(const std::string& name) {
  Activation a;
  if (!parse_activation(name, &a)) fail("unknown activation '", name, "'");
  return a;
}

template <typename L>
L& layer_as(Network& net, int index, const char* type) {
  L* l = dynamic_cast<L*>(&net.layer(index));
  check(l != nullptr, "layer ", index, " is a ", net.layer(index).type, " layer, not ", type);
  return *l;
}

// --------------------------------------------------------------- parity

py::array_t<float> activation_forward(const FloatArray& x, const std::string& act) {
  require_device();
  DeviceBuffer<float> d = to_device(x);
  cuda::cuda_activate_array(d.data(), d.size(), activation_from(act));
  return to_numpy(d, shape_of(x));
}

py::array_t<float> activation_backward(const FloatArray& y, const FloatArray& delta, const std::string& act) {
  require_device();
  check(y.size() == delta.size(), "y and delta differ in size");
  DeviceBuffer<float> dy = to_device(y), dd = to_device(delta);
  cuda::cuda_gradient_array(dy.data(), dy.size(), activation_from(act), dd.data());
  return to_numpy(dd, shape_of(delta));
}

py::array_t<float> gemm(bool ta, bool tb, float alpha, const FloatArray& A, const FloatArray& B, float beta,
                        const FloatArray& C) {
  require_device();
  check_ndim(A, 2, "A");
  check_ndim(B, 2, "B");
  check_ndim(C, 2, "C");
  const int M = (int)C.shape(0), N = (int)C.shape(1);
  const int K = (int)(ta ? A.shape(0) : A.shape(1));
  check((ta ? A.shape(1) : A.shape(0)) == M, "A does not match C's ", M, " rows");
  check((tb ? B.shape(1) : B.shape(0)) == K, "B does not match A's inner size ", K);
  check((tb ? B.shape(0) : B.shape(1)) == N, "B does not match C's ", N, " columns");
  DeviceBuffer<float> dA = to_device(A), dB = to_device(B), dC = to_device(C);
  cuda::cuda_gemm(ta, tb, M, N, K, alpha, dA.data(), (int)A.shape(1), dB.data(), (int)B.shape(1), beta, dC.data(),
                  N);
  return to_numpy(dC, shape_of(C));
}

py::dict convolutional(Network& net, int index, const FloatArray& x, const py::object& delta,
                       const py::object& prev_delta, bool train) {
  require_device();
  ConvolutionalLayer& l = layer_as<ConvolutionalLayer>(net, index, "convolutional");
  const size_t in_n = (size_t)l.batch * l.inputs, out_n = (size_t)l.batch * l.outputs;
  check((size_t)x.size() == in_n, "x has ", x.size(), " floats, layer ", index, " takes batch*inputs = ", in_n);
  check(!(train && l.batch_normalize) || l.training, "layer ", index,
        ": a training forward with batch norm needs training buffers (set_training(True))");
  cuda::ConvDeviceState p;
  p.upload(l);
  DeviceBuffer<float> dx = to_device(x), out(out_n);
  DeviceBuffer<float> ws(std::max<size_t>(1, l.workspace_floats()));
  cuda::cuda_convolutional_forward(l, p, dx.data(), out.data(), ws.data(), train);
  const std::vector<py::ssize_t> map = {l.batch, l.out_c, l.out_h, l.out_w};
  const py::ssize_t nf = l.filters;
  py::dict r;
  r["output"] = to_numpy(out, map);
  if (l.batch_normalize) {
    r["rolling_mean"] = to_numpy(p.rolling_mean);
    r["rolling_variance"] = to_numpy(p.rolling_variance);
    if (train) {
      r["x"] = to_numpy(p.x, map);
      r["x_norm"] = to_numpy(p.x_norm, map);
      r["mean"] = to_numpy(p.mean);
      r["variance"] = to_numpy(p.variance);
    }
  }
  if (!delta.is_none()) {
    check(l.training, "layer ", index, ": backward needs training buffers (set_training(True))");
    DeviceBuffer<float> dd = to_device(optional_array(delta, out_n, "delta"));
    DeviceBuffer<float> dprev = to_device_or_zeros(prev_delta, in_n, "prev_delta");
    cuda::cuda_convolutional_backward(l, p, dx.data(), out.data(), dd.data(), dprev.data(), ws.data(), train);
    r["delta"] = to_numpy(dd, map);
    r["prev_delta"] = to_numpy(dprev, shape_of(x));
    r["weight_updates"] = to_numpy(p.weight_updates, {nf, (py::ssize_t)(l.c / l.groups), l.size, l.size});
    r["bias_updates"] = to_numpy(p.bias_updates);
    if (l.batch_normalize) {
      r["scale_updates"] = to_numpy(p.scale_updates);
      r["mean_delta"] = to_numpy(p.mean_delta);
      r["variance_delta"] = to_numpy(p.variance_delta);
    }
  }
  return r;
}

py::dict convolutional_update(Network& net, int index, int batch, float learning_rate, float momentum,
                              float decay) {
  require_device();
  ConvolutionalLayer& l = layer_as<ConvolutionalLayer>(net, index, "convolutional");
  check(l.training, "layer ", index, ": update needs training buffers (set_training(True))");
  cuda::ConvDeviceState p;
  p.upload(l);
  UpdateArgs a;
  a.batch = batch;
  a.learning_rate = learning_rate;
  a.momentum = momentum;
  a.decay = decay;
  cuda::cuda_convolutional_update(l, p, a);
  py::dict r;
  r["weights"] = to_numpy(p.weights);
  r["biases"] = to_numpy(p.biases);
  r["weight_updates"] = to_numpy(p.weight_updates);
  r["bias_updates"] = to_numpy(p.bias_updates);
  if (l.batch_normalize) {
    r["scales"] = to_numpy(p.scales);
    r["scale_updates"] = to_numpy(p.scale_updates);
  }
  return r;
}

py::dict maxpool(const FloatArray& x, int size, int stride, int padding, const py::object& delta,
                 const py::object& prev_delta) {
  require_device();
  check_ndim(x, 4, "x");
  check(size > 0 && stride > 0 && padding >= 0, "maxpool: bad size/stride/padding");
  cuda::MaxpoolShape s;
  s.batch = (int)x.shape(0);
  s.c = (int)x.shape(1);
  s.h = (int)x.shape(2);
  s.w = (int)x.shape(3);
  s.size = size;
  s.stride = stride;
  s.padding = padding;
  s.out_w = (s.w + padding - size) / stride + 1;
  s.out_h = (s.h + padding - size) / stride + 1;
  check(s.out_w > 0 && s.out_h > 0, "maxpool: window larger than the input");
  const size_t out_n = (size_t)s.batch * s.c * s.out_h * s.out_w;
  DeviceBuffer<float> dx = to_device(x), out(out_n);
  DeviceBuffer<int> argmax(out_n);
  cuda::cuda_maxpool_forward(s, dx.data(), out.data(), argmax.data());
  const std::vector<py::ssize_t> map = {s.batch, s.c, s.out_h, s.out_w};
  py::dict r;
  r["output"] = to_numpy(out, map);
  r["argmax"] = to_numpy_int(argmax, map);
  if (!delta.is_none()) {
    DeviceBuffer<float> dd = to_device(optional_array(delta, out_n, "delta"));
    DeviceBuffer<float> dprev = to_device_or_zeros(prev_delta, (size_t)x.size(), "prev_delta");
    cuda::cuda_maxpool_backward(s, dd.data(), argmax.data(), dprev.data());
    r["prev_delta"] = to_numpy(dprev, shape_of(x));
  }
  return r;
}

py::dict avgpool(const FloatArray& x, const py::object& delta, const py::object& prev_delta) {
  require_device();
  check_ndim(x, 4, "x");
  const int b = (int)x.shape(0), c = (int)x.shape(1), h = (int)x.shape(2), w = (int)x.shape(3);
  DeviceBuffer<float> dx = to_device(x), out((size_t)b * c);
  cuda::cuda_avgpool_forward(b, c, h, w, dx.data(), out.data());
  py::dict r;
  r["output"] = to_numpy(out, {b, c});
  if (!delta.is_none()) {
    DeviceBuffer<float> dd = to_device(optional_array(delta, (size_t)b * c, "delta"));
    DeviceBuffer<float> dprev = to_device_or_zeros(prev_delta, (size_t)x.size(), "prev_delta");
    cuda::cuda_avgpool_backward(b, c, h, w, dd.data(), dprev.data());
    r["prev_delta"] = to_numpy(dprev, shape_of(x));
  }
  return r;
}

py::dict route(const std::vector<FloatArray>& sources, const py::object& delta, const py::object& prev_deltas) {
  require_device();
  check(!sources.empty(), "route: no sources");
  const int batch = (int)sources[0].shape(0);
  std::vector<DeviceBuffer<float>> outs, deltas;
  std::vector<cuda::RouteSource> rs;
  size_t outputs = 0;
  for (const FloatArray& s : sources) {
    check(s.ndim() >= 1 && s.shape(0) == batch, "route: every source needs the same batch (first dimension)");
    outs.push_back(to_device(s));
    outputs += (size_t)s.size() / batch;
  }
  const bool backward = !delta.is_none();
  if (backward) {
    std::vector<py::object> prev;
    if (!prev_deltas.is_none()) prev = prev_deltas.cast<std::vector<py::object>>();
    check(prev.empty() || prev.size() == sources.size(), "route: one prev_delta per source");
    for (size_t i = 0; i < sources.size(); ++i)
      deltas.push_back(to_device_or_zeros(prev.empty() ? py::none() : prev[i], (size_t)sources[i].size(),
                                          "prev_delta"));
  }
  for (size_t i = 0; i < sources.size(); ++i) {
    cuda::RouteSource s;
    s.d_output = outs[i].data();
    s.d_delta = backward ? deltas[i].data() : nullptr;
    s.outputs = (size_t)sources[i].size() / batch;
    rs.push_back(s);
  }
  DeviceBuffer<float> out((size_t)batch * outputs);
  cuda::cuda_route_forward(batch, outputs, rs, out.data());
  py::dict r;
  r["output"] = to_numpy(out, {batch, (py::ssize_t)outputs});
  if (backward) {
    DeviceBuffer<float> dd = to_device(optional_array(delta, (size_t)batch * outputs, "delta"));
    cuda::cuda_route_backward(batch, outputs, rs, dd.data());
    py::list prev;
    for (size_t i = 0; i < sources.size(); ++i) prev.append(to_numpy(deltas[i], shape_of(sources[i])));
    r["prev_deltas"] = prev;
  }
  return r;
}

py::dict reorg(const FloatArray& x, int stride, bool reverse, const py::object& delta, const py::object& prev_delta) {
  require_device();
  check_ndim(x, 4, "x");
  check(stride > 0, "reorg: stride must be > 0");
  const int b = (int)x.shape(0), c = (int)x.shape(1), h = (int)x.shape(2), w = (int)x.shape(3);
  int oc, oh, ow;
  if (reverse) {
    check(c % (stride * stride) == 0, "reverse reorg needs channels divisible by stride^2");
    oc = c / (stride * stride);
    oh = h * stride;
    ow = w * stride;
  } else {
    check(w % stride == 0 && h % stride == 0, "reorg needs w and h divisible by the stride");
    oc = c * stride * stride;
    oh = h / stride;
    ow = w / stride;
  }
  DeviceBuffer<float> dx = to_device(x), out((size_t)x.size());
  cuda::cuda_reorg_forward(b, c, h, w, stride, reverse, dx.data(), out.data());
  py::dict r;
  r["output"] = to_numpy(out, {b, oc, oh, ow});
  if (!delta.is_none()) {
    DeviceBuffer<float> dd = to_device(optional_array(delta, (size_t)x.size(), "delta"));
    DeviceBuffer<float> dprev = to_device_or_zeros(prev_delta, (size_t)x.size(), "prev_delta");
    cuda::cuda_reorg_backward(b, c, h, w, stride, reverse, dd.data(), dprev.data());
    r["prev_delta"] = to_numpy(dprev, shape_of(x));
  }
  return r;
}

py::dict softmax(const FloatArray& x, int groups, float temperature, const py::object& truth,
                 const py::object& prev_delta, const std::string& tree_path) {
  require_device();
  check_ndim(x, 2, "x");
  const int batch = (int)x.shape(0);
  const size_t inputs = (size_t)x.shape(1), n = (size_t)x.size();
  WordTree tree;
  if (!tree_path.empty()) tree = read_tree(tree_path);
  DeviceBuffer<float> dx = to_device(x), out(n);
  auto run = [&](const float* d_truth, float* d_delta) {
    if (!tree_path.empty())
      return cuda::cuda_softmax_tree_forward(batch, inputs, tree, temperature, dx.data(), out.data(), d_truth,
                                             d_delta);
    return cuda::cuda_softmax_forward(batch, inputs, groups, temperature, dx.data(), out.data(), d_truth, d_delta);
  };
  py::dict r;
  if (truth.is_none()) {
    run(nullptr, nullptr);
    r["output"] = to_numpy(out, shape_of(x));
    return r;
  }
  DeviceBuffer<float> dt = to_device(optional_array(truth, n, "truth")), delta(n);
  const float cost = run(dt.data(), delta.data());
  DeviceBuffer<float> dprev = to_device_or_zeros(prev_delta, n, "prev_delta");
  cuda::cuda_softmax_backward(batch, inputs, delta.data(), dprev.data());
  r["output"] = to_numpy(out, shape_of(x));
  r["delta"] = to_numpy(delta, shape_of(x));
  r["cost"] = cost;
  r["prev_delta"] = to_numpy(dprev, shape_of(x));
  return r;
}

py::dict cost(const FloatArray& x, const FloatArray& truth, const std::string& type, float scale,
              const py::object& prev_delta) {
  require_device();
  CostType t;
  if (type == "sse") t = CostType::Sse;
  else if (type == "masked") t = CostType::Masked;
  else if (type == "L1") t = CostType::L1;
  else if (type == "smooth") t = CostType::Smooth;
  else fail("unknown cost type '", type, "' (sse, masked, L1, smooth)");
  const size_t n = (size_t)x.size();
  check((size_t)truth.size() == n, "truth has ", truth.size(), " floats, x ", n);
  DeviceBuffer<float> dx = to_device(x), dt = to_device(truth), out(n), delta(n);
  const float c = cuda::cuda_cost_forward(t, n, dx.data(), dt.data(), out.data(), delta.data());
  DeviceBuffer<float> dprev = to_device_or_zeros(prev_delta, n, "prev_delta");
  cuda::cuda_cost_backward(n, scale, delta.data(), dprev.data());
  py::dict r;
  r["output"] = to_numpy(out, shape_of(x));
  r["delta"] = to_numpy(delta, shape_of(x));
  r["cost"] = c;
  r["prev_delta"] = to_numpy(dprev, shape_of(x));
  return r;
}

py::dict dropout(const FloatArray& x, const FloatArray& draws, float probability, bool train,
                 const py::object& delta, const py::object& prev_delta) {
  require_device();
  check(probability >= 0 && probability < 1, "dropout: probability must be in [0, 1)");
  const size_t n = (size_t)x.size();
  check((size_t)draws.size() == n, "draws has ", draws.size(), " floats, x ", n);
  const float scale = 1.f / (1.f - probability);  // as make_dropout
  DeviceBuffer<float> dx = to_device(x), dr = to_device(draws), out(n);
  cuda::cuda_dropout_forward(n, probability, scale, train, dx.data(), dr.data(), out.data());
  py::dict r;
  r["output"] = to_numpy(out, shape_of(x));
  if (!delta.is_none()) {
    DeviceBuffer<float> dd = to_device(optional_array(delta, n, "delta"));
    DeviceBuffer<float> dprev = to_device_or_zeros(prev_delta, n, "prev_delta");
    cuda::cuda_dropout_backward(n, probability, scale, dr.data(), dd.data(), dprev.data());
    r["prev_delta"] = to_numpy(dprev, shape_of(x));
  }
  return r;
}

// Runs the layer's CUDA forward (and, with truth, the host loss and the CUDA
// backward). The host loss writes the layer's own delta/cost/stats.
py::dict region(Network& net, int index, const FloatArray& x, const py::object& truth, int64_t seen,
                const py::object& prev_delta) {
  require_device();
  RegionLayer& l = layer_as<RegionLayer>(net, index, "region");
  const size_t n = (size_t)l.batch * l.outputs;
  check((size_t)x.size() == n, "x has ", x.size(), " floats, layer ", index, " takes ", n);
  const std::vector<py::ssize_t> map = {l.batch, l.out_c, l.out_h, l.out_w};
  DeviceBuffer<float> dx = to_device(x), out(n);
  py::dict r;
  if (truth.is_none()) {
    cuda::cuda_region_forward(l, dx.data(), out.data(), nullptr, nullptr, false, seen);
    r["output"] = to_numpy(out, map);
    return r;
  }
  check(l.training, "layer ", index, ": a training forward needs training buffers (set_training(True))");
  FloatArray t = optional_array(truth, (size_t)l.batch * l.truths, "truth");
  DeviceBuffer<float> delta(n);
  cuda::cuda_region_forward(l, dx.data(), out.data(), delta.data(), t.data(), true, seen);
  r["output"] = to_numpy(out, map);
  r["loss_delta"] = to_numpy(delta, map);
  r["cost"] = l.cost;
  DeviceBuffer<float> dprev = to_device_or_zeros(prev_delta, n, "prev_delta");
  cuda::cuda_region_backward(l, out.data(), delta.data(), dprev.data());
  r["delta"] = to_numpy(delta, map);
  r["prev_delta"] = to_numpy(dprev, map);
  return r;
}
#endif  // DN_WITH_CUDA

}  // namespace

void bind_cuda(py::module_& m) {
  m.def("cuda_built", [] { return kBuiltWithCuda; }, "True when the core was compiled with the CUDA kernels.");
  m.def(
      "cuda_available",
      [] {
#ifdef DN_WITH_CUDA
        return cuda::cuda_available();
#else
        return false;
#endif
      },
      "True when built with CUDA and a CUDA device is present.");
  m.def("cuda_device_count", [] {
#ifdef DN_WITH_CUDA
    return cuda::cuda_device_count();
#else
    return 0;
#endif
  });
  m.def(
      "cuda_device_info",
      [](int device) -> py::dict {
#ifdef DN_WITH_CUDA
        const cuda::DeviceInfo i = cuda::cuda_device_info(device);
        py::dict d;
        d["index"] = i.index;
        d["name"] = i.name;
        d["compute_capability"] = py::make_tuple(i.major, i.minor);
        d["total_memory"] = i.total_memory;
        d["multiprocessors"] = i.multiprocessors;
        return d;
#else
        (void)device;
        no_cuda();
#endif
      },
      py::arg("device") = 0);

#ifdef DN_WITH_CUDA
#define DN_CUDA_OR(fn) fn
#else
#define DN_CUDA_OR(fn) [](py::args, py::kwargs) -> py::object { no_cuda(); }
#endif
  // Parity entry points (see tests/test_cuda_parity.py). prev_delta defaults
  // to zeros; the returned prev_delta is it plus the input gradient.
  m.def("cuda_parity_activation_forward", DN_CUDA_OR(activation_forward), "(x, activation) -> activate(x)");
  m.def("cuda_parity_activation_backward", DN_CUDA_OR(activation_backward),
        "(y, delta, activation) -> delta * gradient(y)");
  m.def("cuda_parity_gemm", DN_CUDA_OR(gemm), "(trans_a, trans_b, alpha, A, B, beta, C) -> alpha*op(A)op(B)+beta*C");
#ifdef DN_WITH_CUDA
  m.def("cuda_parity_convolutional", &convolutional, py::arg("net"), py::arg("index"), py::arg("x"),
        py::arg("delta") = py::none(), py::arg("prev_delta") = py::none(), py::arg("train") = true,
        "Forward (+ backward with delta) of a network's conv layer on the device, from the layer's current "
        "parameters and buffers (the host layer is not modified).");
  m.def("cuda_parity_convolutional_update", &convolutional_update, py::arg("net"), py::arg("index"),
        py::arg("batch"), py::arg("learning_rate"), py::arg("momentum"), py::arg("decay"));
  m.def("cuda_parity_maxpool", &maxpool, py::arg("x"), py::arg("size"), py::arg("stride"), py::arg("padding"),
        py::arg("delta") = py::none(), py::arg("prev_delta") = py::none());
  m.def("cuda_parity_avgpool", &avgpool, py::arg("x"), py::arg("delta") = py::none(),
        py::arg("prev_delta") = py::none());
  m.def("cuda_parity_route", &route, py::arg("sources"), py::arg("delta") = py::none(),
        py::arg("prev_deltas") = py::none());
  m.def("cuda_parity_reorg", &reorg, py::arg("x"), py::arg("stride"), py::arg("reverse") = false,
        py::arg("delta") = py::none(), py::arg("prev_delta") = py::none());
  m.def("cuda_parity_softmax", &softmax, py::arg("x"), py::arg("groups") = 1, py::arg("temperature") = 1.f,
        py::arg("truth") = py::none(), py::arg("prev_delta") = py::none(), py::arg("tree") = "",
        "tree: path of a WordTree file for [softmax] tree= (then groups is ignored)");
  m.def("cuda_parity_cost", &cost, py::arg("x"), py::arg("truth"), py::arg("type") = "sse",
        py::arg("scale") = 1.f, py::arg("prev_delta") = py::none());
  m.def("cuda_parity_dropout", &dropout, py::arg("x"), py::arg("draws"), py::arg("probability"),
        py::arg("train") = true, py::arg("delta") = py::none(), py::arg("prev_delta") = py::none());
  m.def("cuda_parity_region", &region, py::arg("net"), py::arg("index"), py::arg("x"),
        py::arg("truth") = py::none(), py::arg("seen") = 0, py::arg("prev_delta") = py::none(),
        "CUDA forward activations; with truth also the host loss (it writes the layer's delta/cost) and the "
        "CUDA backward.");
#else
  for (const char* name : {"cuda_parity_convolutional", "cuda_parity_convolutional_update", "cuda_parity_maxpool",
                           "cuda_parity_avgpool", "cuda_parity_route", "cuda_parity_reorg", "cuda_parity_softmax",
                           "cuda_parity_cost", "cuda_parity_dropout", "cuda_parity_region"})
    m.def(name, [](py::args, py::kwargs) -> py::object { no_cuda(); });
#endif
#undef DN_CUDA_OR
}

}  // namespace dn
