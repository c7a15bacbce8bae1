// cuda/kernel_utils.cuh's element-wise kernels (128-bit groups with 32-bit indices plus the
// n % 4 tail, or the scalar loop) with cuda/elementwise.cuh's operations, run on the CPU through
// emulation.hpp, choosing the kernel as common.cuh's launch_elementwise does.
#include <cstdint>

#include "emulation.hpp"
// emulation.hpp first: it defines the CUDA keywords the headers use.
#include "elementwise.cuh"
#include "kernel_utils.cuh"

namespace {
using namespace dn;
using namespace dn::cuda;

template <bool kWriteB, class F>
int run(float* a, float* b, size_t n, F f) {
  const bool vec4 = reinterpret_cast<uintptr_t>(a) % 16 == 0 && reinterpret_cast<uintptr_t>(b) % 16 == 0;
  if (vec4) {
    const unsigned groups = (unsigned)(n / 4), tail = (unsigned)(n % 4);
    emu_launch({emu_blocks_for(groups ? groups : 1, 64), 1, 1}, 64, 0,
               [&] { elementwise_vec4_kernel<kWriteB>(a, b, groups, tail, f); });
  } else {
    emu_launch({emu_blocks_for(n, 64), 1, 1}, 64, 0, [&] { elementwise_kernel<kWriteB>(a, b, n, f); });
  }
  return vec4 ? 4 : 1;
}

}  // namespace

extern "C" {

// op 0 fill(value), 1 axpy(alpha: a += alpha * b), 2 sgd(step, decay_term, momentum on a, b),
// 3 activate(act), 4 gradient(act: a *= act'(b)). Returns the access width used (4 or 1).
int emu_elementwise(int op, float* a, float* b, size_t n, float p0, float p1, float p2, int act) {
  switch (op) {
    case 0: return run<false>(a, nullptr, n, FillOp{p0});
    case 1: return run<false>(a, b, n, AxpyOp{p0});
    case 2: return run<true>(a, b, n, SgdOp{p0, p1, p2});
    case 3: return run<false>(a, nullptr, n, ActivateOp{static_cast<Activation>(act)});
    default: return run<false>(a, b, n, GradientOp{static_cast<Activation>(act)});
  }
}

}  // extern "C"
