// Run-time switches of one network, in one object the network owns and passes
// to its layers and backend. The environment only seeds the defaults, here:
//   DARKNET_PY_DEVICE=cpu|cuda, DARKNET_PY_ISA=auto|avx512|avx2|plain,
//   DARKNET_PY_WINOGRAD=auto|on|stream|off, DARKNET_PY_REFERENCE_KERNELS=1, DARKNET_PY_THREADS=N,
//   DARKNET_PY_CUDA_MATH=tf32|fp32, DARKNET_PY_CUDA_GRAPHS=0|1, DARKNET_PY_FUSE=0|1
#pragma once
#include <string>

#include "core/device.hpp"

namespace dn {

enum class CpuIsa { Plain = 0, Avx2 = 1, Avx512 = 2 };
// On: every applicable layer with cached transformed weights (4x the layer's weights);
// Stream: every applicable layer with the weights transformed per call (no cache).
enum class WinogradMode { Auto = 0, On = 1, Off = 2, Stream = 3 };
// The CUDA convolutions' multiplications (cuda/conv_fast.cu): Tf32 on the tensor cores (operands
// rounded to 10-bit mantissas, float accumulation; the default, as cuDNN's), or Fp32, plain FMA
// in float (parity with the CPU to 1e-4). Devices below compute capability 8.0 always run Fp32.
enum class CudaMath { Tf32 = 0, Fp32 = 1 };

CpuIsa cpu_isa_best();                  // the best this CPU supports
const char* cpu_isa_name(CpuIsa isa);   // "avx512", "avx2", "plain"
CpuIsa parse_cpu_isa(const std::string& name);  // "auto" = best; throws for unknown or unsupported
const char* winograd_mode_name(WinogradMode m);
WinogradMode parse_winograd_mode(const std::string& name);  // throws for unknown
const char* cuda_math_name(CudaMath m);                       // "tf32", "fp32"
CudaMath parse_cuda_math(const std::string& name);            // throws for unknown

struct ExecOptions {
  Device device = Device::Cpu;
  CpuIsa isa = CpuIsa::Plain;             // CPU kernel family (GEMM micro-kernels, Winograd transforms)
  WinogradMode winograd = WinogradMode::Auto;
  bool reference_kernels = false;         // plain reference kernels: inference, and the training conv (tests compare both)
  int threads = 0;                        // OpenMP threads for this network's calls; 0 = the runtime's default
  CudaMath cuda_math = CudaMath::Tf32;    // the CUDA convolutions' arithmetic (reference_kernels: the plain SGEMM)
  bool cuda_graphs = true;                // CUDA inference forwards recorded once and replayed as a graph
  // Inference with keep_outputs off: a convolution and the 2x2 max pool after it run as one
  // kernel where the backend can (Network::fused_with_next); off, every layer runs alone.
  bool fuse_layers = true;

  // Defaults: best ISA, auto Winograd, fast kernels, CPU, all threads; then the environment.
  static ExecOptions from_environment();
};

// The process-wide defaults new networks start from (from_environment() on first use);
// set_default_options changes them for networks built afterwards.
ExecOptions default_options();
void set_default_options(const ExecOptions& o);

}  // namespace dn
