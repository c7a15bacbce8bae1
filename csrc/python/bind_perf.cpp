// pybind11 bindings for the performance tools: kernel selection, threads, the
// FMA peak microbenchmark and per-layer timing. (The GEMM test entry point lives in
// darknet_py._testing, csrc/testing.)
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <immintrin.h>
#include <optional>

#include "core/options.hpp"
#include "network.hpp"
#include "python/bind.hpp"

namespace dn {

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

// 16 independent FMA chains per thread (latency 4 x 2 ports = 8 needed to saturate).
__attribute__((target("avx512f"))) double fma_loop_avx512(long iters) {
  __m512 a[16];
  for (int i = 0; i < 16; ++i) a[i] = _mm512_set1_ps(1.f + i * 1e-3f);
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
  __m512 s = a[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, a[i]);
  alignas(64) float out[16];
  _mm512_store_ps(out, s);
  return out[0] + (double)iters * 16 * 16 * 2 * 0.0;  // keep the result alive
}

__attribute__((target("avx2,fma"))) double fma_loop_avx2(long iters) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(1.f + i * 1e-3f);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < iters; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  return out[0];
}

// Machine FMA peak in GFLOP/s on `threads` threads with the given ISA (median of `repeats`).
struct Peak {
  double gflops, max_gflops;
  CpuIsa isa;
};
Peak peak_gflops(int threads, const std::string& isa_name, int repeats, double seconds) {
  CpuIsa isa = isa_name == "auto" ? cpu_isa_best() : (isa_name == "avx2" ? CpuIsa::Avx2 : CpuIsa::Avx512);
  if (isa == CpuIsa::Plain || isa > cpu_isa_best()) isa = cpu_isa_best();
  if (isa == CpuIsa::Plain) fail("peak_gflops: needs AVX2 or AVX-512");
  const double flops_per_iter = isa == CpuIsa::Avx512 ? 16.0 * 16 * 2 : 12.0 * 8 * 2;
  auto run = [&](long iters) {
    const auto t0 = std::chrono::steady_clock::now();
    double sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += isa == CpuIsa::Avx512 ? fma_loop_avx512(iters) : fma_loop_avx2(iters);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (sink == 12345.678) std::printf(" ");
    return dt;
  };
  long iters = 1 << 16;
  while (run(iters) < seconds / 4 && iters < (1L << 34)) iters *= 2;
  std::vector<double> g;
  for (int r = 0; r < repeats; ++r) g.push_back(threads * iters * flops_per_iter / run(iters) / 1e9);
  std::sort(g.begin(), g.end());
  return Peak{g[g.size() / 2], g.back(), isa};
}

}  // namespace

void bind_perf(py::module_& m) {
  // Kernel family and Winograd mode are per-network options; these read and change the
  // process defaults that networks built afterwards start from.
  m.def("cpu_kernel", [] { return std::string(cpu_isa_name(default_options().isa)); },
        "The default CPU kernel family of new networks: 'avx512', 'avx2' or 'plain'.");
  m.def("cpu_kernel_best", [] { return std::string(cpu_isa_name(cpu_isa_best())); });
  m.def(
      "set_cpu_kernel",
      [](const std::string& name) {
        ExecOptions o = default_options();
        o.isa = parse_cpu_isa(name);
        set_default_options(o);
      },
      py::arg("name"),
      "Default CPU kernel family of networks built afterwards ('auto', 'avx512', 'avx2', 'plain'); also "
      "DARKNET_PY_ISA.");
  m.def(
      "set_winograd",
      [](const std::string& mode) {
        ExecOptions o = default_options();
        o.winograd = parse_winograd_mode(mode);
        set_default_options(o);
      },
      py::arg("mode"),
      "Default Winograd F(4x4,3x3) mode of networks built afterwards, for 3x3 stride-1 convs: 'auto' "
      "(measured per-shape rule), 'on' (every applicable layer, transformed weights cached: 4x the layer's "
      "weights), 'stream' (every applicable layer, weights transformed per call: no extra memory), 'off'. "
      "Also DARKNET_PY_WINOGRAD.");
  m.def("winograd", [] { return std::string(winograd_mode_name(default_options().winograd)); });
  m.def(
      "set_cuda_math",
      [](const std::string& name) {
        ExecOptions o = default_options();
        o.cuda_math = parse_cuda_math(name);
        set_default_options(o);
      },
      py::arg("name"),
      "Default arithmetic of the CUDA convolutions of networks built afterwards: 'tf32' (tensor cores) or "
      "'fp32' (plain FMA); also DARKNET_PY_CUDA_MATH.");
  m.def("cuda_math", [] { return std::string(cuda_math_name(default_options().cuda_math)); });
  m.def("set_num_threads", [](int n) {
    if (n <= 0) fail("threads must be > 0, got ", n);
    omp_set_num_threads(n);
  });
  m.def("get_num_threads", [] { return omp_get_max_threads(); });
  m.def("peak_gflops",
      [](int threads, const std::string& isa, int repeats, double seconds) {
        if (threads <= 0) fail("threads must be > 0");
        Peak p;
        {
          py::gil_scoped_release r;
          p = peak_gflops(threads, isa, std::max(1, repeats), seconds);
        }
        py::dict d;
        d["gflops"] = p.gflops;
        d["max_gflops"] = p.max_gflops;
        d["threads"] = threads;
        d["isa"] = cpu_isa_name(p.isa);
        return d;
      },
      py::arg("threads") = 1, py::arg("isa") = "auto", py::arg("repeats") = 5, py::arg("seconds") = 0.2,
      "FMA peak of this machine in GFLOP/s (median of repeats) on `threads` threads.");

  // Per-layer timing: runs `warmup` + `runs` passes and returns
  // {"total": [runs], "layers": [[runs] per layer], "backward_layers": ...}.
  m.def(
      "profile_network",
      [](Network& net, const FloatArray& x, int runs, int warmup, bool backward,
         std::optional<FloatArray> truth_boxes) {
        if (x.ndim() != 4 || x.shape(1) != net.channels() || x.shape(2) != net.height() ||
            x.shape(3) != net.width())
          fail("profile: input must be (N, C, H, W) matching the network");
        if (runs <= 0 || warmup < 0) fail("profile: runs must be > 0 and warmup >= 0");
        const int n = (int)x.shape(0);
        if (truth_boxes && !backward) fail("profile: truth is used only with backward=True");
        if (truth_boxes && (truth_boxes->ndim() != 2 || truth_boxes->shape(0) != n ||
                            truth_boxes->shape(1) != net.truths()))
          fail("profile: truth must be (", n, ", ", net.truths(), "), got ",
               truth_boxes->ndim() == 2 ? std::to_string(truth_boxes->shape(0)) + ", " +
                                              std::to_string(truth_boxes->shape(1))
                                        : std::to_string(truth_boxes->ndim()) + " dimensions");
        const float* in = x.data();
        const int L = (int)net.layers.size();
        std::vector<std::vector<double>> fwd(L), bwd(L);
        std::vector<double> total, total_bwd;
        const bool was_training = net.train;
        {
          py::gil_scoped_release r;
          auto guard = net.lock();  // the whole profile is one use of the network
          net.set_batch(n);
          if (backward) net.set_training(true);
          // Without truth boxes the loss is the no-object term alone; with them (a
          // detector's real case) the box, objectness and class deltas are timed too.
          std::vector<float> truth;
          if (truth_boxes) truth.assign(truth_boxes->data(), truth_boxes->data() + truth_boxes->size());
          else if (backward) truth.assign((size_t)n * net.truths(), 0.f);
          std::vector<double> times;
          try {
            for (int it = 0; it < warmup + runs; ++it) {
              net.layer_times = &times;
              const auto t0 = std::chrono::steady_clock::now();
              net.forward(in, backward ? truth.data() : nullptr);
              const auto t1 = std::chrono::steady_clock::now();
              if (it >= warmup) {
                total.push_back(std::chrono::duration<double>(t1 - t0).count());
                for (int i = 0; i < L; ++i) fwd[i].push_back(times[i]);
              }
              if (backward) {
                times.assign(L, 0.0);
                const auto t2 = std::chrono::steady_clock::now();
                net.backward(in);
                const auto t3 = std::chrono::steady_clock::now();
                if (it >= warmup) {
                  total_bwd.push_back(std::chrono::duration<double>(t3 - t2).count());
                  for (int i = 0; i < L; ++i) bwd[i].push_back(times[i]);
                }
              }
            }
          } catch (...) {
            net.layer_times = nullptr;
            if (backward && !was_training) net.set_training(false);
            throw;
          }
          net.layer_times = nullptr;
          if (backward && !was_training) net.set_training(false);
        }
        py::dict d;
        d["total"] = total;
        d["layers"] = fwd;
        if (backward) {
          d["total_backward"] = total_bwd;
          d["backward_layers"] = bwd;
        }
        return d;
      },
      py::arg("net"), py::arg("x"), py::arg("runs") = 20, py::arg("warmup") = 2, py::arg("backward") = false,
      py::arg("truth") = py::none());
}

}  // namespace dn
