// The CUDA side of darknet_py: device memory, device query and, for every
// layer type in csrc/layers, forward/backward (and update) functions that run
// on device buffers with the CPU layer's parameters. Plain C++ (no CUDA
// headers), so host code such as csrc/python/bind_cuda.cpp can include it;
// the definitions live in cuda/*.cu and are linked only when the core is built
// with DN_WITH_CUDA (DARKNET_PY_CUDA=1 for setup.py, -DDARKNET_PY_CUDA=ON for CMake).
//
// Conventions:
//  * d_* pointers are device memory, h_* host memory; layouts are the CPU's
//    (NCHW, batch-major, Darknet's region layout).
//  * "delta" is Darknet's delta (-dLoss/doutput). Backward functions ADD the
//    input gradient into d_prev_delta (nullptr: skip), as the CPU layers do.
//  * Every formula comes from the csrc/kernels/*.hpp headers the CPU uses.
//  * Errors throw dn::DarknetError with the CUDA error string; nothing aborts.
//  * All work is queued on the default stream; results are ready for the
//    next cudaMemcpy (DeviceBuffer::download) or cuda_synchronize().
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/activations.hpp"
#include "kernels/cost.hpp"
#include "layers/convolutional.hpp"
#include "layers/layer.hpp"
#include "layers/region.hpp"
#include "parse/tree.hpp"

namespace dn {
namespace cuda {

// ------------------------------------------------------------------ devices

struct DeviceInfo {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;  // compute capability
  size_t total_memory = 0;   // bytes
  int multiprocessors = 0;
};

// True when a CUDA device can be used (false, never an error, without one).
bool cuda_available();
int cuda_device_count();                     // 0 when no device / no driver
DeviceInfo cuda_device_info(int device = 0);  // throws for a bad index
void cuda_set_device(int device);
void cuda_synchronize();  // waits for queued work; throws a pending kernel error

// ------------------------------------------------------------ device memory

// Owning device array (RAII): freed in the destructor, movable, not copyable.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void resize(size_t n);                    // reallocates when n differs; contents undefined
  void upload(const T* host, size_t n);     // resize(n) + copy host -> device
  void upload(const std::vector<T>& v) { upload(v.data(), v.size()); }
  void download(T* host, size_t n) const;   // copies the first n elements (n <= size())
  std::vector<T> to_host() const;
  void zero();

  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }

 private:
  void release() noexcept;
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

extern template class DeviceBuffer<float>;
extern template class DeviceBuffer<int>;
extern template class DeviceBuffer<double>;

// -------------------------------------------------------- small array ops

void cuda_copy(const float* d_src, float* d_dst, size_t n);
void cuda_fill(float* d_x, size_t n, float value);
void cuda_axpy(size_t n, float alpha, const float* d_x, float* d_y);  // y += alpha * x

// ------------------------------------------------------------- activation

void cuda_activate_array(float* d_x, size_t n, Activation a);
// delta *= gradient(y) (y = the activation's output), as gradient_array.
void cuda_gradient_array(const float* d_y, size_t n, Activation a, float* d_delta);

// ------------------------------------------------------------- batch norm
// Same arguments as csrc/kernels/batchnorm.hpp, on device arrays.

void cuda_bn_mean_variance(const float* d_x, int batch, int filters, int spatial, float* d_mean, float* d_variance);
void cuda_bn_normalize(float* d_x, const float* d_mean, const float* d_variance, int batch, int filters,
                       int spatial);
void cuda_bn_rolling_update(float* d_rolling_mean, float* d_rolling_variance, const float* d_mean,
                            const float* d_variance, int filters);
void cuda_scale_bias(float* d_x, const float* d_scales, int batch, int filters, int spatial);
void cuda_add_bias(float* d_x, const float* d_biases, int batch, int filters, int spatial);
void cuda_backward_bias(float* d_bias_updates, const float* d_delta, int batch, int filters, int spatial);
void cuda_backward_scale(const float* d_x_norm, const float* d_delta, int batch, int filters, int spatial,
                         float* d_scale_updates);
void cuda_bn_backward_delta(const float* d_x, const float* d_mean, const float* d_variance, int batch, int filters,
                            int spatial, float* d_mean_delta, float* d_variance_delta, float* d_delta);

// ---------------------------------------------------------- convolutional

// Row-major SGEMM, the CPU gemm's contract (kernels/gemm.hpp):
// C[M,N] = alpha * op(A) * op(B) + beta * C (beta == 0: C is not read).
void cuda_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* d_A, int lda,
               const float* d_B, int ldb, float beta, float* d_C, int ldc);
void cuda_im2col(const float* d_image, int channels, int height, int width, int size, int stride, int pad,
                 float* d_columns);
void cuda_col2im_add(const float* d_columns, int channels, int height, int width, int size, int stride, int pad,
                     float* d_image);

// Device mirror of a ConvolutionalLayer's parameters and training buffers.
struct ConvDeviceState {
  DeviceBuffer<float> weights, biases, scales, rolling_mean, rolling_variance;
  DeviceBuffer<float> weight_updates, bias_updates, scale_updates;
  DeviceBuffer<float> mean, variance, mean_delta, variance_delta, x, x_norm;

  // Copies every parameter and every training buffer the layer has allocated.
  void upload(const ConvolutionalLayer& l);
  // Copies them back (sizes must match the layer's).
  void download(ConvolutionalLayer& l) const;
};

// d_output: batch*outputs; d_workspace: at least l.workspace_floats().
void cuda_convolutional_forward(const ConvolutionalLayer& l, ConvDeviceState& p, const float* d_input,
                                float* d_output, float* d_workspace, bool train);
// d_delta (batch*outputs) is modified in place as on the CPU: activation
// gradient, then the batch-norm backward; the weight/bias/scale updates
// accumulate; the input gradient is added into d_prev_delta (may be nullptr).
// `train` picks the batch statistics (true) or the rolling ones, as the CPU.
void cuda_convolutional_backward(const ConvolutionalLayer& l, ConvDeviceState& p, const float* d_input,
                                 const float* d_output, float* d_delta, float* d_prev_delta, float* d_workspace,
                                 bool train);
void cuda_convolutional_update(const ConvolutionalLayer& l, ConvDeviceState& p, const UpdateArgs& a);

// ----------------------------------------------------------------- maxpool
// The maxpool/avgpool/route/reorg/softmax/cost/dropout classes are private to
// their .cpp files, so their CUDA functions take the layer's parameters.

struct MaxpoolShape {
  int batch = 1, c = 0, h = 0, w = 0;  // input
  int out_h = 0, out_w = 0;
  int size = 2, stride = 2, padding = 1;
};
// d_argmax (batch*outputs ints, may be nullptr at inference): the input index
// of each output's maximum (first maximum wins, -1 when the window is empty).
void cuda_maxpool_forward(const MaxpoolShape& s, const float* d_input, float* d_output, int* d_argmax);
void cuda_maxpool_backward(const MaxpoolShape& s, const float* d_delta, const int* d_argmax, float* d_prev_delta);

// ----------------------------------------------------------------- avgpool

void cuda_avgpool_forward(int batch, int c, int h, int w, const float* d_input, float* d_output);
void cuda_avgpool_backward(int batch, int c, int h, int w, const float* d_delta, float* d_prev_delta);

// ------------------------------------------------------------------- route

struct RouteSource {
  const float* d_output = nullptr;  // source layer output (batch * outputs)
  float* d_delta = nullptr;         // source layer delta, nullptr when it has none
  size_t outputs = 0;               // per image
};
void cuda_route_forward(int batch, size_t outputs, const std::vector<RouteSource>& sources, float* d_output);
void cuda_route_backward(int batch, size_t outputs, const std::vector<RouteSource>& sources, const float* d_delta);

// ------------------------------------------------------------------- reorg
// (w, h, c) are the layer's INPUT dims, as the CPU passes them to reorg_index.

void cuda_reorg_forward(int batch, int c, int h, int w, int stride, bool reverse, const float* d_input,
                        float* d_output);
void cuda_reorg_backward(int batch, int c, int h, int w, int stride, bool reverse, const float* d_delta,
                         float* d_prev_delta);

// ------------------------------------------------------------------ region

// Forward: the activations on device (logistic, flat or per-tree-group
// softmax). With train, the loss runs on the host as in Darknet's GPU path:
// the layer's CPU forward on a host copy of the input fills l.delta, l.cost and
// l.stats, and the delta is pushed to d_delta. Without train d_delta (if
// given) is zeroed and l.cost = 0.
void cuda_region_forward(RegionLayer& l, const float* d_input, float* d_output, float* d_delta,
                         const float* h_truth, bool train, int64_t seen);
// Backward (declared semantics): logistic gradient on x, y, extra coords and
// objectness, in place in d_delta; then d_prev_delta += d_delta.
void cuda_region_backward(const RegionLayer& l, const float* d_output, float* d_delta, float* d_prev_delta);

// ----------------------------------------------------------------- softmax

// Softmax over `groups` equal slices of each image's `inputs` values. With
// d_truth: d_delta = t - p and the returned cost is sum(-t log p) (else 0).
float cuda_softmax_forward(int batch, size_t inputs, int groups, float temperature, const float* d_input,
                           float* d_output, const float* d_truth, float* d_delta);
// [softmax] tree=: one softmax per WordTree sibling group of each image
// (tree.n() == inputs); truth/delta/cost as above.
float cuda_softmax_tree_forward(int batch, size_t inputs, const WordTree& tree, float temperature,
                                const float* d_input, float* d_output, const float* d_truth, float* d_delta);
void cuda_softmax_backward(int batch, size_t inputs, const float* d_delta, float* d_prev_delta);

// -------------------------------------------------------------------- cost

// Returns the cost (sum of the per-element errors, also written to d_output).
float cuda_cost_forward(CostType type, size_t n, const float* d_input, const float* d_truth, float* d_output,
                        float* d_delta);
void cuda_cost_backward(size_t n, float scale, const float* d_delta, float* d_prev_delta);

// ----------------------------------------------------------------- dropout

// d_draws: one uniform [0,1) draw per element, drawn on the host from the
// network's seeded generator (so CPU and CUDA runs drop the same units).
void cuda_dropout_forward(size_t n, float probability, float scale, bool train, const float* d_input,
                          const float* d_draws, float* d_output);
void cuda_dropout_backward(size_t n, float probability, float scale, const float* d_draws, const float* d_delta,
                           float* d_prev_delta);

}  // namespace cuda
}  // namespace dn
