// cuda/batchnorm.cuh's kernels (multi-block per-filter sums, fused training passes) run on the
// CPU through emulation.hpp, in the launch sequences of CudaBackend's batch-norm ops
// (cuda/batchnorm.cu), for tests/test_cuda_emulation.py.
#include <vector>

#include "emulation.hpp"
// emulation.hpp first: it defines the CUDA keywords the header uses.
#include "batchnorm.cuh"

namespace {
using namespace dn;
using namespace dn::cuda;

template <Partial kOp, int kSums>
void partials(const PartialArgs& a, std::vector<double>& out) {
  out.assign((size_t)a.filters * a.chunks * kSums + a.filters, NAN);
  double* p = out.data();
  emu_launch({a.chunks, (unsigned)a.filters, 1}, kPartialThreads, 0, [&] { filter_partials_kernel<kOp, kSums>(a, p); });
}

void input_deltas(const float* x, const float* mean, const float* variance, const float* mean_delta,
                  const float* variance_delta, int batch, int filters, int spatial, float* delta) {
  const size_t total = (size_t)batch * filters * spatial;
  emu_launch({emu_blocks_for(total), 1, 1}, 256, 0, [&] {
    input_delta_kernel(x, mean, variance, mean_delta, variance_delta, batch, filters, spatial, delta);
  });
}

}  // namespace

extern "C" {

// Each mirrors the CudaBackend op of the same name; sms: the multiprocessors the chunking plans
// for; *chunks receives the chunks per filter used.
int emu_bn_mean_variance(const float* x, int batch, int filters, int spatial, float* mean, float* variance, int sms,
                         int* chunks, char* err, int err_len) {
  return emu_guarded(err, err_len, [&] {
    PartialArgs a = chunked(batch, filters, spatial, sms);
    *chunks = (int)a.chunks;
    std::vector<double> p;
    const double n = (double)batch * spatial;
    a.x = x;
    partials<Partial::Sum, 1>(a, p);
    std::vector<double> mean_d(filters);
    emu_launch({emu_blocks_for(filters), 1, 1}, 256, 0,
               [&] { finish_mean_kernel(p.data(), a.chunks, filters, n, mean_d.data(), mean); });
    a.mean_d = mean_d.data();
    partials<Partial::CenteredSquares, 1>(a, p);
    emu_launch({emu_blocks_for(filters), 1, 1}, 256, 0,
               [&] { finish_variance_kernel(p.data(), a.chunks, filters, n, variance); });
  });
}

int emu_bn_backward_scale(const float* x_norm, const float* delta, int batch, int filters, int spatial,
                          float* updates, int sms, char* err, int err_len) {
  return emu_guarded(err, err_len, [&] {
    PartialArgs a = chunked(batch, filters, spatial, sms);
    a.x_norm = x_norm;
    a.delta = const_cast<float*>(delta);
    std::vector<double> p;
    partials<Partial::Product, 1>(a, p);
    emu_launch({emu_blocks_for(filters), 1, 1}, 256, 0, [&] { finish_add_kernel(p.data(), a.chunks, filters, updates); });
  });
}

int emu_bn_backward_delta(const float* x, const float* mean, const float* variance, int batch, int filters,
                          int spatial, float* mean_delta, float* variance_delta, float* delta, int sms, char* err,
                          int err_len) {
  return emu_guarded(err, err_len, [&] {
    PartialArgs a = chunked(batch, filters, spatial, sms);
    a.x = x, a.mean = mean, a.delta = delta;
    std::vector<double> p;
    partials<Partial::DeltaCentered, 2>(a, p);
    emu_launch({emu_blocks_for(filters), 1, 1}, 256, 0, [&] {
      finish_deltas_kernel<2>(p.data(), a.chunks, filters, variance, nullptr, nullptr, mean_delta, variance_delta);
    });
    input_deltas(x, mean, variance, mean_delta, variance_delta, batch, filters, spatial, delta);
  });
}

int emu_bn_train_normalize(const float* mean, const float* variance, const float* scales, const float* biases,
                           int batch, int filters, int spatial, int act, const float* x, float* out, float* x_norm,
                           char* err, int err_len) {
  return emu_guarded(err, err_len, [&] {
    const size_t total = (size_t)batch * filters * spatial;
    emu_launch({emu_blocks_for(total), 1, 1}, 256, 0, [&] {
      train_normalize_kernel(x, mean, variance, scales, biases, batch, filters, spatial, static_cast<Activation>(act),
                             out, x_norm);
    });
  });
}

int emu_bn_train_backward(const float* y, int act, const float* x, const float* x_norm, const float* mean,
                          const float* variance, const float* scales, int batch, int filters, int spatial,
                          float* bias_updates, float* scale_updates, float* mean_delta, float* variance_delta,
                          float* delta, int sms, int* chunks, char* err, int err_len) {
  return emu_guarded(err, err_len, [&] {
    PartialArgs a = chunked(batch, filters, spatial, sms);
    *chunks = (int)a.chunks;
    a.x = x, a.y = y, a.x_norm = x_norm, a.delta = delta, a.mean = mean, a.variance = variance, a.scales = scales;
    a.act = static_cast<Activation>(act);
    std::vector<double> p;
    partials<Partial::TrainBackward, 4>(a, p);
    emu_launch({emu_blocks_for(filters), 1, 1}, 256, 0, [&] {
      finish_deltas_kernel<4>(p.data(), a.chunks, filters, variance, bias_updates, scale_updates, mean_delta,
                              variance_delta);
    });
    input_deltas(x, mean, variance, mean_delta, variance_delta, batch, filters, spatial, delta);
  });
}

}  // extern "C"
