// The backend interface: the operations a layer's algorithm is written over.
//
// Each layer (csrc/layers/<type>.cpp) writes its forward/backward/update once,
// as calls on a Backend; CpuBackend (csrc/backend/cpu_backend.cpp) runs them
// with the kernels in csrc/kernels, CudaBackend (cuda/cuda_backend.cu) with the
// kernels in cuda/. Pointers passed to an op are on the backend's device
// (Buffer::on(backend.device())). A network owns one backend instance, made for
// its ExecOptions; it holds per-network state (options, CUDA stream, caches).
//
// Conventions (as the CPU layers always had): NCHW batch-major float arrays;
// "delta" is Darknet's -dLoss/doutput; *_backward ops ADD into the previous
// layer's delta; ops that return a float (costs) return it on the host.
//
// Where a backend has a faster way to run a whole step (the CPU's fused
// inference convolution, Winograd, vectorised maxpool), it overrides the
// specialisation hooks at the end; the layer falls back to its generic
// algorithm when a hook returns false.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/buffer.hpp"
#include "core/error.hpp"
#include "core/options.hpp"
#include "kernels/activations.hpp"
#include "kernels/cost.hpp"

namespace dn {

struct WordTree;
class ConvolutionalLayer;

struct MaxpoolShape {
  int batch = 1, c = 0, h = 0, w = 0;  // input
  int out_h = 0, out_w = 0;
  int size = 2, stride = 2, padding = 1;
};

// The region layer's geometry (Darknet's layout: per anchor, coords+1+classes planes of w*h).
struct RegionShape {
  int batch = 1, w = 0, h = 0, num = 1, classes = 0, coords = 4;
  bool softmax = false, background = false;
  const WordTree* tree = nullptr;  // per-group softmax over the classes when set
  size_t outputs = 0;              // per image: num * (coords + 1 + classes) * w * h
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  const ExecOptions& options() const { return options_; }
  virtual void set_options(const ExecOptions& o) { options_ = o; }

  // ------------------------------------------------------------ transfers
  // Host -> device copy of a network input or truth, queued on this backend's
  // stream (through pinned staging memory on CUDA); a no-op copy on the CPU.
  virtual void upload(float* dst, const float* host_src, size_t n) = 0;
  virtual void download(float* host_dst, const float* src, size_t n) = 0;  // waits for queued work
  virtual void synchronize() = 0;  // waits for queued work; reports a pending device error

  // ------------------------------------------------------------ element-wise
  virtual void fill(float* x, size_t n, float value) = 0;
  virtual void copy(const float* src, float* dst, size_t n) = 0;
  virtual void axpy(size_t n, float alpha, const float* x, float* y) = 0;  // y += alpha * x
  // rows x cols block: dst[r*dst_stride + j] (+)= src[r*src_stride + j] (route's channel slices).
  virtual void copy_rows(int rows, size_t cols, const float* src, size_t src_stride, float* dst,
                         size_t dst_stride, bool accumulate) = 0;
  virtual void activate(float* x, size_t n, Activation a) = 0;
  // delta *= gradient(y), y = the activation's output.
  virtual void gradient(const float* y, size_t n, Activation a, float* delta) = 0;
  virtual double sum_squares(const float* x, size_t n) = 0;

  // ------------------------------------------------------------ convolution
  // Row-major C[M,N] = alpha * op(A) * op(B) + beta * C (beta == 0: C is not read).
  virtual void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc) = 0;
  virtual void im2col(const float* image, int channels, int height, int width, int size, int stride, int pad,
                      float* columns) = 0;
  virtual void col2im_add(const float* columns, int channels, int height, int width, int size, int stride, int pad,
                          float* image) = 0;

  // ------------------------------------------------------------ batch norm
  // Batch statistics (variance with N-1, Darknet's), normalisation (x-mean)/sqrt(var+1e-5),
  // rolling update 0.99*old + 0.01*batch, scale and bias per filter, and their gradients.
  virtual void bn_mean_variance(const float* x, int batch, int filters, int spatial, float* mean,
                                float* variance) = 0;
  virtual void bn_rolling_update(float* rolling_mean, float* rolling_variance, const float* mean,
                                 const float* variance, int filters) = 0;
  virtual void bn_normalize(float* x, const float* mean, const float* variance, int batch, int filters,
                            int spatial) = 0;
  virtual void scale_bias(float* x, const float* scales, int batch, int filters, int spatial) = 0;
  virtual void add_bias(float* x, const float* biases, int batch, int filters, int spatial) = 0;
  virtual void backward_bias(float* bias_updates, const float* delta, int batch, int filters, int spatial) = 0;
  virtual void backward_scale(const float* x_norm, const float* delta, int batch, int filters, int spatial,
                              float* scale_updates) = 0;
  virtual void bn_backward_delta(const float* x, const float* mean, const float* variance, int batch, int filters,
                                 int spatial, float* mean_delta, float* variance_delta, float* delta) = 0;

  // ------------------------------------------------------------ pooling, reorg
  // argmax (batch*outputs ints) may be nullptr at inference; first maximum wins, -1 for an empty window.
  virtual void maxpool_forward(const MaxpoolShape& s, const float* input, float* output, int* argmax) = 0;
  virtual void maxpool_backward(const MaxpoolShape& s, const float* delta, const int* argmax,
                                float* prev_delta) = 0;
  virtual void avgpool_forward(int batch, int c, int spatial, const float* input, float* output) = 0;
  virtual void avgpool_backward(int batch, int c, int spatial, const float* delta, float* prev_delta) = 0;
  // (c, h, w) are the layer's INPUT dims, as Darknet passes them to its reorg index map.
  virtual void reorg_forward(int batch, int c, int h, int w, int stride, bool reverse, const float* input,
                             float* output) = 0;
  virtual void reorg_backward(int batch, int c, int h, int w, int stride, bool reverse, const float* delta,
                              float* prev_delta) = 0;

  // ------------------------------------------------------------ softmax, costs, dropout
  // Softmax over `groups` equal slices of each image's `inputs` values.
  virtual void softmax(int batch, size_t inputs, int groups, float temperature, const float* input,
                       float* output) = 0;
  // One softmax per WordTree sibling group of each image (tree.n() == inputs).
  virtual void softmax_tree(int batch, size_t inputs, const WordTree& tree, float temperature, const float* input,
                            float* output) = 0;
  // delta = truth - output (0 where truth is kMaskedTruth); returns sum(-t log p) over t != 0.
  virtual float softmax_cross_entropy(size_t n, const float* truth, const float* output, float* delta) = 0;
  // output = per-element error, delta (may be nullptr) = the cost's delta; returns the summed error.
  virtual float cost(CostType type, size_t n, const float* input, const float* truth, float* output,
                     float* delta) = 0;
  // draws: one uniform [0,1) per element (drawn on the host from the network's seeded generator).
  virtual void dropout_forward(size_t n, float probability, float scale, const float* input, const float* draws,
                               float* output) = 0;
  virtual void dropout_backward(size_t n, float probability, float scale, const float* draws, const float* delta,
                                float* prev_delta) = 0;

  // ------------------------------------------------------------ region
  // output = activations of input: logistic x, y, extra coords, objectness; class softmax
  // (flat, per tree group) or logistic.
  virtual void region_activate(const RegionShape& s, const float* input, float* output) = 0;
  // delta *= logistic gradient at x, y, extra coords and objectness (declared semantics).
  virtual void region_gradient(const RegionShape& s, const float* output, float* delta) = 0;

  // ------------------------------------------------------------ update
  // update += decay_term * param (decay_term != 0); param += step * update; update *= momentum.
  virtual void sgd(size_t n, float* param, float* update, float step, float decay_term, float momentum) = 0;

  // ------------------------------------------------------------ recorded forwards
  // A device that can record queued work and replay it (CUDA graphs): graph_capture_begin()
  // starts recording (false: this backend cannot), graph_capture_end() keeps the recording
  // (false: it failed and is discarded), graph_launch() queues the kept one (false: none),
  // graph_reset() drops it. Network decides when a recording is still valid.
  virtual bool graph_capture_begin() { return false; }
  virtual bool graph_capture_end() { return false; }
  virtual bool graph_launch() { return false; }
  virtual void graph_reset() {}

  // ------------------------------------------------------------ layer timing
  // Network::layer_times on the device's own clock: timing_start() before a pass,
  // timing_mark(i) once layer i's work is queued, timing_collect() after the pass (waits for
  // the device) gives each marked layer the time since the previous mark. Returns false where
  // the device has no clock of its own: the CPU's work is synchronous and the network keeps the
  // host times it measured.
  virtual void timing_start() {}
  virtual void timing_mark(int layer) { (void)layer; }
  virtual bool timing_collect(std::vector<double>* seconds) {
    (void)seconds;
    return false;
  }

  // ------------------------------------------------------------ specialisations
  // Inference convolution with batch norm folded, bias and activation fused
  // (CPU: packed GEMM / Winograd). Returns false to run the layer's generic algorithm.
  virtual bool conv_inference(ConvolutionalLayer& l, const float* input, float* output) {
    (void)l, (void)input, (void)output;
    return false;
  }
  // Inference convolution with the next layer's 2x2 stride-2 max pool fused (Network plans it
  // when the pool is the conv's only reader and outputs are not kept): the pooled map goes to
  // `pooled`, the conv's own output is never written. can_fuse_conv_maxpool says at plan time
  // whether this backend, with its current options, runs conv_inference_maxpool for the layer;
  // the result must equal conv_inference followed by maxpool_forward bit for bit.
  virtual bool can_fuse_conv_maxpool(const ConvolutionalLayer& l) const {
    (void)l;
    return false;
  }
  virtual void conv_inference_maxpool(ConvolutionalLayer& l, const float* input, float* pooled) {
    (void)l, (void)input, (void)pooled;
    fail("this backend does not fuse a convolution with a max pool");
  }
  // Training convolution, the raw sums only (no batch norm, bias or activation) for the
  // whole batch (CPU: the packed GEMM reading the image in place, no im2col buffer).
  // Returns false to run the layer's generic im2col + GEMM loop.
  virtual bool conv_forward_raw(ConvolutionalLayer& l, const float* input, float* output) {
    (void)l, (void)input, (void)output;
    return false;
  }
  // The same with the batch statistics of the raw sums (a batch-norm layer's training forward):
  // mean and variance (N-1) per filter computed as the convolution finishes (CUDA: in the
  // implicit GEMM's epilogue) instead of in a separate pass. Returns false to run
  // conv_forward_raw (or the generic loop) and bn_mean_variance.
  virtual bool conv_forward_raw_stats(ConvolutionalLayer& l, const float* input, float* output, float* mean,
                                      float* variance) {
    (void)l, (void)input, (void)output, (void)mean, (void)variance;
    return false;
  }
  // Training backward of the raw convolution over the whole batch, given the delta at the
  // conv's output: weight_updates += delta * columns^T (conv_weight_gradient) and
  // prev_delta += the input gradient (conv_input_gradient). Return false to run the
  // layer's generic per-image loop (im2col + GEMM, GEMM + col2im).
  virtual bool conv_weight_gradient(ConvolutionalLayer& l, const float* input, const float* delta) {
    (void)l, (void)input, (void)delta;
    return false;
  }
  virtual bool conv_input_gradient(ConvolutionalLayer& l, const float* delta, float* prev_delta) {
    (void)l, (void)delta, (void)prev_delta;
    return false;
  }
  // Whether this backend's training batch norm keeps no x_norm for a layer with activation
  // act: bn_train_normalize is then given x_norm = null and bn_train_backward recomputes it
  // from x (the layer derives x_norm from x when a caller asks for its buffers).
  virtual bool bn_train_derives_x_norm(Activation act) const {
    (void)act;
    return false;
  }
  // Training batch norm after the batch statistics, from the raw conv output x (kept for the
  // backward): x_norm = (x - mean) / sqrt(var + eps) (unless null), out = act(x_norm * scales +
  // biases). The default runs the single ops above in that order; the CPU does it in one pass.
  virtual void bn_train_normalize(const float* mean, const float* variance, const float* scales,
                                  const float* biases, int batch, int filters, int spatial, Activation act,
                                  const float* x, float* out, float* x_norm) {
    const size_t n = (size_t)batch * filters * spatial;
    copy(x, out, n);
    bn_normalize(out, mean, variance, batch, filters, spatial);
    copy(out, x_norm, n);
    scale_bias(out, scales, batch, filters, spatial);
    add_bias(out, biases, batch, filters, spatial);
    activate(out, n, act);
  }
  // Training backward of activation + batch norm, given the output's delta: delta *=
  // act'(y); bias and scale gradients added; delta *= scales; then Darknet's batch-norm
  // input delta (mean_delta, variance_delta). The default runs the single ops in that
  // order; the CPU does it in two passes per filter with the same arithmetic (and, where
  // x_norm is null, recomputes x_norm and the activation's slope from x, scales and biases).
  virtual void bn_train_backward(const float* y, Activation act, const float* x, const float* x_norm,
                                 const float* mean, const float* variance, const float* scales,
                                 const float* biases, int batch, int filters, int spatial, float* bias_updates,
                                 float* scale_updates, float* mean_delta, float* variance_delta, float* delta) {
    (void)biases;
    gradient(y, (size_t)batch * filters * spatial, act, delta);
    backward_bias(bias_updates, delta, batch, filters, spatial);
    backward_scale(x_norm, delta, batch, filters, spatial, scale_updates);
    scale_bias(delta, scales, batch, filters, spatial);
    bn_backward_delta(x, mean, variance, batch, filters, spatial, mean_delta, variance_delta, delta);
  }

 protected:
  ExecOptions options_;
};

// A backend instance for o.device; throws DarknetError naming why when the
// device is unavailable (build without CUDA, no device or driver).
std::unique_ptr<Backend> make_backend(const ExecOptions& o);
std::unique_ptr<Backend> make_cpu_backend(const ExecOptions& o);

// Counters of the emulated device's memory (see core/device.hpp).
struct EmulatedMemoryStats {
  int64_t allocations = 0, frees = 0, bytes_in_use = 0, uploads = 0, downloads = 0;
};
EmulatedMemoryStats emulated_memory_stats();

// CUDA presence, never an error: false on a build without CUDA or a machine without a device.
bool cuda_built();
bool cuda_available();
std::string cuda_unavailable_reason();  // "" when available

}  // namespace dn
