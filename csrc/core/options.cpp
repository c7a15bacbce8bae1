// The execution options' names, their defaults from the environment, and the
// process-wide defaults new networks start from.
#include "core/options.hpp"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <mutex>

#include "core/error.hpp"

namespace dn {

namespace {

CpuIsa detect_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return CpuIsa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::Avx2;
  return CpuIsa::Plain;
}

// Environment values that do not parse leave the default, as they always have:
// a typo in a shell profile must not stop every program that imports darknet_py.
template <typename T, typename Parse>
void from_env(const char* variable, T* value, Parse parse) {
  const char* text = std::getenv(variable);
  if (!text) return;
  try {
    *value = parse(std::string(text));
  } catch (const DarknetError&) {
  }
}

int parse_thread_count(const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const long n = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || n <= 0 || n > INT_MAX)
    fail("threads must be a positive integer, got '", text, "'");
  return (int)n;
}

struct ProcessDefaults {
  std::mutex mutex;
  ExecOptions options = ExecOptions::from_environment();
};

ProcessDefaults& process_defaults() {
  static ProcessDefaults defaults;
  return defaults;
}

}  // namespace

CpuIsa cpu_isa_best() {
  static const CpuIsa best = detect_isa();
  return best;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Avx512: return "avx512";
    case CpuIsa::Avx2: return "avx2";
    case CpuIsa::Plain: return "plain";
  }
  return "?";
}

CpuIsa parse_cpu_isa(const std::string& name) {
  CpuIsa want;
  if (name == "auto") want = cpu_isa_best();
  else if (name == "avx512") want = CpuIsa::Avx512;
  else if (name == "avx2") want = CpuIsa::Avx2;
  else if (name == "plain") want = CpuIsa::Plain;
  else fail("unknown CPU kernel '", name, "' (auto, avx512, avx2, plain)");
  if (want > cpu_isa_best())
    fail("this CPU does not support the ", name, " kernels (best: ", cpu_isa_name(cpu_isa_best()), ")");
  return want;
}

const char* winograd_mode_name(WinogradMode m) {
  switch (m) {
    case WinogradMode::Auto: return "auto";
    case WinogradMode::On: return "on";
    case WinogradMode::Off: return "off";
    case WinogradMode::Stream: return "stream";
  }
  return "?";
}

WinogradMode parse_winograd_mode(const std::string& name) {
  if (name == "auto") return WinogradMode::Auto;
  if (name == "on") return WinogradMode::On;
  if (name == "off") return WinogradMode::Off;
  if (name == "stream") return WinogradMode::Stream;
  fail("unknown winograd mode '", name, "' (auto, on, stream, off)");
}

const char* cuda_math_name(CudaMath m) { return m == CudaMath::Fp32 ? "fp32" : "tf32"; }

CudaMath parse_cuda_math(const std::string& name) {
  if (name == "tf32") return CudaMath::Tf32;
  if (name == "fp32") return CudaMath::Fp32;
  fail("unknown CUDA math '", name, "' (tf32, fp32)");
}

ExecOptions ExecOptions::from_environment() {
  ExecOptions o;
  o.isa = cpu_isa_best();
  from_env("DARKNET_PY_DEVICE", &o.device, parse_device);
  from_env("DARKNET_PY_ISA", &o.isa, parse_cpu_isa);
  from_env("DARKNET_PY_WINOGRAD", &o.winograd, parse_winograd_mode);
  from_env("DARKNET_PY_THREADS", &o.threads, parse_thread_count);
  from_env("DARKNET_PY_CUDA_MATH", &o.cuda_math, parse_cuda_math);
  const char* graphs = std::getenv("DARKNET_PY_CUDA_GRAPHS");
  if (graphs && *graphs) o.cuda_graphs = std::string(graphs) != "0";
  const char* fuse = std::getenv("DARKNET_PY_FUSE");
  if (fuse && *fuse) o.fuse_layers = std::string(fuse) != "0";
  const char* reference = std::getenv("DARKNET_PY_REFERENCE_KERNELS");
  o.reference_kernels = reference && *reference && std::string(reference) != "0";
  return o;
}

ExecOptions default_options() {
  ProcessDefaults& d = process_defaults();
  std::lock_guard<std::mutex> lock(d.mutex);
  return d.options;
}

void set_default_options(const ExecOptions& o) {
  check(o.isa <= cpu_isa_best(), "this CPU does not support the ", cpu_isa_name(o.isa), " kernels (best: ",
        cpu_isa_name(cpu_isa_best()), ")");
  check(o.threads >= 0, "threads must be >= 0 (0 = the OpenMP default), got ", o.threads);
  ProcessDefaults& d = process_defaults();
  std::lock_guard<std::mutex> lock(d.mutex);
  d.options = o;
}

}  // namespace dn
