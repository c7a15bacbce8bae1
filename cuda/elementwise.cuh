// The per-element operations of the backend's element-wise ops (fill, axpy, sgd, activate,
// gradient), run by kernel_utils.cuh's elementwise kernels: f(a, b) updates one element of the
// first array (and of the second for sgd) in place. The formulas are the CPU's
// (kernels/sgd.hpp, kernels/activations.hpp). No CUDA runtime header: tests/cuda_emulation runs
// these on the CPU too.
#pragma once
#include "kernel_utils.cuh"
#include "kernels/activations.hpp"
#include "kernels/sgd.hpp"


namespace dn {
namespace cuda {

struct FillOp {
  float value;
  DN_KERNEL_INLINE void operator()(float& x, float&) const { x = value; }
};
struct AxpyOp {  // a = y, b = x
  float alpha;
  DN_KERNEL_INLINE void operator()(float& y, float& x) const { y += alpha * x; }
};
struct SgdOp {  // a = param, b = update; decay or not is uniform over the launch
  float step, decay_term, momentum;
  DN_KERNEL_INLINE void operator()(float& param, float& update) const {
    if (decay_term != 0.f) sgd_step_decay(param, update, step, decay_term, momentum);
    else sgd_step(param, update, step, momentum);
  }
};
struct ActivateOp {
  Activation a;
  DN_KERNEL_INLINE void operator()(float& x, float&) const { x = ::dn::activate(x, a); }
};
struct GradientOp {  // a = delta, b = y
  Activation a;
  DN_KERNEL_INLINE void operator()(float& delta, float& y) const { delta *= ::dn::gradient(y, a); }
};

}  // namespace cuda
}  // namespace dn
