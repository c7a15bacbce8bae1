// The extension module darknet_py._testing: test aids and microbenchmark entry
// points, kept out of the product module darknet_py._core. Test-only: the
// darknet_py package never imports it; tests/ and bench/ do.
//   gemm              the fast or the reference CPU GEMM on numpy arrays
//   run_region_layer  one [region] section run alone on a recorded input
//   conv3x3_direct    the direct 3x3 kernel, its rule or one variant forced
//
// setup.py links it from these sources plus the core objects already compiled
// for _core (nothing is compiled twice). It therefore holds its own copy of the
// core's process state: each call starts from darknet_py._core's process
// defaults (CPU kernel family, Winograd mode: _core.set_cpu_kernel /
// set_winograd), and a DarknetError raised here is _core.DarknetError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.hpp"
#include "core/error.hpp"
#include "core/options.hpp"
#include "kernels/conv_fast.hpp"
#include "kernels/gemm.hpp"
#include "layers/layers.hpp"
#include "layers/region.hpp"
#include "parse/cfg.hpp"
#include "python/bind.hpp"

namespace py = pybind11;

namespace dn {


namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

// darknet_py._core's process defaults, read through its Python API: this module's own
// copy of the core's state never sees _core.set_cpu_kernel or _core.set_winograd.
ExecOptions core_defaults() {
  py::module_ core = py::module_::import("darknet_py._core");
  ExecOptions o = default_options();  // environment-seeded, as _core's
  o.isa = parse_cpu_isa(core.attr("cpu_kernel")().cast<std::string>());
  o.winograd = parse_winograd_mode(core.attr("winograd")().cast<std::string>());
  return o;
}

using dn::to_numpy;  // the bridge's overloads (python/bind.hpp), beside this one
// Host copy of a layer buffer (read-only access: the buffer keeps its newest copy).
py::array_t<float> to_numpy(const FloatBuffer& v, std::vector<py::ssize_t> shape) {
  return to_numpy(v.host(), v.size(), std::move(shape));
}

void check_matrix(const FloatArray& a, int rows, int cols, int ld, const char* name) {
  if (a.ndim() != 2) fail(name, " must be 2-D");
  if (a.shape(1) != ld || a.shape(0) < rows || (cols > ld)) fail(name, " has the wrong shape");
}

void run_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const FloatArray& A, const FloatArray& B,
              float beta, py::array_t<float, py::array::c_style> C, bool reference) {
  const int lda = (int)A.shape(1), ldb = (int)B.shape(1), ldc = (int)C.shape(1);
  check_matrix(A, ta ? K : M, ta ? M : K, lda, "A");
  check_matrix(B, tb ? N : K, tb ? K : N, ldb, "B");
  if (C.ndim() != 2 || C.shape(0) < M || C.shape(1) < N) fail("C has the wrong shape");
  float* c = C.mutable_data();
  const CpuIsa isa = core_defaults().isa;
  py::gil_scoped_release r;
  if (reference)
    gemm_reference(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, c, ldc);
  else
    gemm(isa, ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, c, ldc);
}

// The direct 3x3 stride-1 pad-1 convolution of input (N, C, H, W) with weights (F, C, 3, 3):
// output = act(scale * conv + bias) per filter, on the default CPU kernel family, with the
// kernel's own rule (variant "auto") or "bands" / "filter_vectors" forced.
py::array_t<float> run_conv3x3_direct(const FloatArray& input, const FloatArray& weights, const FloatArray& scale,
                                      const FloatArray& bias, const std::string& activation,
                                      const std::string& variant, std::optional<py::array_t<float>> out_arg,
                                      bool maxpool) {
  if (input.ndim() != 4 || weights.ndim() != 4) fail("input must be (N, C, H, W) and weights (F, C, 3, 3)");
  ConvShape s;
  s.batch = (int)input.shape(0);
  s.c = (int)input.shape(1);
  s.h = s.out_h = (int)input.shape(2);
  s.w = s.out_w = (int)input.shape(3);
  s.filters = (int)weights.shape(0);
  s.size = 3;
  s.pad = 1;
  if (weights.shape(1) != s.c || weights.shape(2) != 3 || weights.shape(3) != 3)
    fail("weights must be (F, C, 3, 3) with the input's C");
  if (scale.size() != s.filters || bias.size() != s.filters) fail("scale and bias need one value per filter");
  ConvEpilogue ep;
  ep.scale = scale.data();
  ep.bias = bias.data();
  if (!parse_activation(activation, &ep.act)) fail("unknown activation ", activation);
  ep.maxpool2x2 = maxpool;
  const int oh = maxpool ? s.h / 2 : s.h, ow = maxpool ? s.w / 2 : s.w;
  DirectVariant v = DirectVariant::Auto;
  if (variant == "bands")
    v = DirectVariant::Bands;
  else if (variant == "filter_vectors")
    v = DirectVariant::FilterVectors;
  else if (variant != "auto")
    fail("variant must be auto, bands or filter_vectors");
  const CpuIsa isa = core_defaults().isa;
  py::array_t<float> out = out_arg ? *out_arg
                                   : py::array_t<float>({(py::ssize_t)s.batch, (py::ssize_t)s.filters,
                                                         (py::ssize_t)oh, (py::ssize_t)ow});
  if (!(out.flags() & py::array::c_style) || out.size() != (py::ssize_t)s.batch * s.filters * oh * ow)
    fail("out must be a C-contiguous float32 array of (N, F, H, W), (N, F, H/2, W/2) pooled");
  float* o = out.mutable_data();
  {
    py::gil_scoped_release r;
    conv3x3_direct(isa, s, input.data(), weights.data(), ep, o, v);
  }
  return out;
}

// Runs one [region] section alone on a recorded input, on a CPU backend:
// forward (with truth when training) and, optionally, backward into a
// previous-layer delta.
py::dict run_region_layer(const std::string& cfg_file, std::optional<std::string> cfg_text, int batch, int w, int h,
                          int c, FloatArray input, std::optional<FloatArray> truth, int64_t seen, bool train,
                          bool backward, std::optional<FloatArray> prev_delta) {
  std::vector<CfgSection> sections = cfg_text ? parse_cfg_text(*cfg_text, cfg_file) : parse_cfg_file(cfg_file);
  const CfgSection* section = nullptr;
  for (const auto& s : sections)
    if (s.type == "region") section = &s;
  check(section != nullptr, cfg_file, ": no [region] section");
  LayerInput in;
  in.batch = batch;
  in.w = w;
  in.h = h;
  in.c = c;
  auto layer = make_region(*section, in);
  auto& region = static_cast<RegionLayer&>(*layer);
  region.set_training(train);

  const size_t total = (size_t)batch * region.inputs;
  check((size_t)input.size() == total, "input has ", input.size(), " floats, the region layer needs ", total);
  std::vector<float> prev(total, 0.f);
  if (prev_delta) {
    check((size_t)prev_delta->size() == total, "prev_delta has ", prev_delta->size(), " floats, expected ", total);
    std::memcpy(prev.data(), prev_delta->data(), total * sizeof(float));
  }
  if (truth)
    check((size_t)truth->size() == (size_t)batch * region.truths, "truth has ", truth->size(), " floats, expected ",
          (size_t)batch * region.truths, " (batch * max * (coords + 1))");

  // The process defaults (ISA, threads), always on the CPU: the aid reads host arrays.
  ExecOptions options = core_defaults();
  options.device = Device::Cpu;
  std::vector<float> delta_after_forward;
  {
    py::gil_scoped_release release;
    std::unique_ptr<Backend> backend = make_cpu_backend(options);
    LayerContext ctx;
    ctx.backend = backend.get();
    ctx.device = Device::Cpu;
    ctx.input = input.data();
    ctx.truth = truth ? truth->data() : nullptr;
    ctx.truth_host = ctx.truth;
    ctx.train = train;
    ctx.seen = seen;
    ctx.prev_delta = prev.data();
    region.forward(ctx);
    const float* d = std::as_const(region.delta).host();
    delta_after_forward.assign(d, d + region.delta.size());
    if (backward) region.backward(ctx);
  }
  const std::vector<py::ssize_t> shape{batch, c, h, w};
  py::dict d;
  d["output"] = to_numpy(region.output, shape);
  d["cost"] = region.cost;
  d["stats"] = stats_dict(region.stats);
  d["info"] = region_info(region);
  d["warnings"] = section->unused_warnings();
  if (train) {
    d["delta_after_forward"] = to_numpy(delta_after_forward, shape);
    d["delta"] = to_numpy(region.delta, shape);
  }
  if (backward) d["prev_delta"] = to_numpy(prev, shape);
  return d;
}

}  // namespace
}  // namespace dn

PYBIND11_MODULE(_testing, m) {
  m.doc() = "darknet_py test aids and microbenchmark entry points (test-only; the package never imports it)";
  // _core first: it registers the classes returned here (WordTree) and DarknetError.
  py::module_ core = py::module_::import("darknet_py._core");
  // This module's copy of dn::DarknetError becomes _core.DarknetError (darknet_py.DarknetError).
  static PyObject* error = py::object(core.attr("DarknetError")).release().ptr();  // lives as long as the process
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const dn::DarknetError& e) {
      py::set_error(error, e.what());
    }
  });

  m.def("gemm", &dn::run_gemm, py::arg("trans_a"), py::arg("trans_b"), py::arg("M"), py::arg("N"), py::arg("K"),
        py::arg("alpha"), py::arg("A"), py::arg("B"), py::arg("beta"), py::arg("C"), py::arg("reference") = false,
        "C = alpha*op(A)*op(B) + beta*C in place (row-major; ld = each array's row length), on the default "
        "CPU kernel family (_core.set_cpu_kernel); reference=True: the double-accumulating reference loop.");

  m.def("conv3x3_direct", &dn::run_conv3x3_direct, py::arg("input"), py::arg("weights"), py::arg("scale"),
        py::arg("bias"), py::arg("activation") = "linear", py::arg("variant") = "auto", py::arg("out") = py::none(),
        py::arg("maxpool") = false,
        "The direct 3x3 stride-1 pad-1 convolution (AVX2/AVX-512 kernel families; DarknetError on plain or\n"
        "where it does not apply): act(scale * conv + bias) per filter. variant: 'auto' (the kernel's rule),\n"
        "'bands' (weights broadcast, pixels the vectors) or 'filter_vectors' (<= 64 filters, swapped roles).\n"
        "out: an (N, F, H, W) float32 array to write (returned), else a new one. maxpool: the output is the\n"
        "2x2 stride-2 max pool of that (N, F, H/2, W/2), fused (even H and W).");

  m.def("run_region_layer", &dn::run_region_layer, py::arg("cfg_file"), py::arg("cfg_text") = py::none(),
        py::arg("batch"), py::arg("w"), py::arg("h"), py::arg("c"), py::arg("input"), py::arg("truth") = py::none(),
        py::arg("seen") = 0, py::arg("train") = false, py::arg("backward") = false,
        py::arg("prev_delta") = py::none(),
        "Builds the last [region] section of a cfg for a (batch, c, h, w) input and runs it alone\n"
        "(testing aid): returns output, cost, stats, info, warnings and, when training,\n"
        "delta_after_forward, delta (after backward if run) and prev_delta.");
}
