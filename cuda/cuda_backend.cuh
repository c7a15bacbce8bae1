// CudaBackend: the Backend interface (csrc/backend/backend.hpp) on one CUDA
// device, with the kernels in cuda/*.cu. Internal to cuda/: host code reaches it
// through csrc/backend/cuda_entry.hpp (make_backend) and the Backend interface.
//
// The member functions are defined next to their kernels, one file per layer
// type (convolutional.cu: gemm/im2col/col2im_add, batchnorm.cu, ...); this
// class's own state lives in cuda_backend.cu.
//
// Every launch and asynchronous copy goes to the instance's stream. The stream
// is a BLOCKING stream (cudaStreamDefault, not cudaStreamNonBlocking) and the
// code is built without --default-stream per-thread, so the synchronous
// cudaMemcpy of cuda::memory() (Buffer's lazy host/device sync) on the legacy
// default stream is ordered after every kernel queued here, and every kernel
// queued later is ordered after it.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <unordered_map>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cuda_entry.hpp"
#include "common.cuh"

namespace dn {

struct WordTree;

namespace cuda {

struct ImplicitGemm;  // conv_fast.cu

// Counted allocations (AllocationStats). device_alloc zero-fills when asked.
void* device_alloc(size_t bytes, bool zero);
void device_free(void* p) noexcept;
void* pinned_alloc(size_t bytes);
void pinned_free(void* p) noexcept;

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const ExecOptions& o);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  Device device() const override { return Device::Cuda; }

  void upload(float* dst, const float* host_src, size_t n) override;
  void download(float* host_dst, const float* src, size_t n) override;
  void synchronize() override;

  void fill(float* x, size_t n, float value) override;
  void copy(const float* src, float* dst, size_t n) override;
  void axpy(size_t n, float alpha, const float* x, float* y) override;
  void copy_rows(int rows, size_t cols, const float* src, size_t src_stride, float* dst, size_t dst_stride,
                 bool accumulate) override;
  void activate(float* x, size_t n, Activation a) override;
  void gradient(const float* y, size_t n, Activation a, float* delta) override;
  double sum_squares(const float* x, size_t n) override;

  void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
            int ldb, float beta, float* C, int ldc) override;
  void im2col(const float* image, int channels, int height, int width, int size, int stride, int pad,
              float* columns) override;
  void col2im_add(const float* columns, int channels, int height, int width, int size, int stride, int pad,
                  float* image) override;

  void bn_mean_variance(const float* x, int batch, int filters, int spatial, float* mean, float* variance) override;
  void bn_rolling_update(float* rolling_mean, float* rolling_variance, const float* mean, const float* variance,
                         int filters) override;
  void bn_normalize(float* x, const float* mean, const float* variance, int batch, int filters,
                    int spatial) override;
  void scale_bias(float* x, const float* scales, int batch, int filters, int spatial) override;
  void add_bias(float* x, const float* biases, int batch, int filters, int spatial) override;
  void backward_bias(float* bias_updates, const float* delta, int batch, int filters, int spatial) override;
  void backward_scale(const float* x_norm, const float* delta, int batch, int filters, int spatial,
                      float* scale_updates) override;
  void bn_backward_delta(const float* x, const float* mean, const float* variance, int batch, int filters,
                         int spatial, float* mean_delta, float* variance_delta, float* delta) override;
  // Fused training batch norm (batchnorm.cu): one element pass forward; one reduction pass
  // (activation gradient, bias/scale/mean/variance sums) and one element pass backward. x_norm is
  // not kept (the backward recomputes it from x with the same formula): one map less written,
  // read and held on the device per batch-norm layer.
  bool bn_train_derives_x_norm(Activation act) const override {
    (void)act;
    return !options_.reference_kernels;
  }
  void bn_train_normalize(const float* mean, const float* variance, const float* scales, const float* biases,
                          int batch, int filters, int spatial, Activation act, const float* x, float* out,
                          float* x_norm) override;
  void bn_train_backward(const float* y, Activation act, const float* x, const float* x_norm, const float* mean,
                         const float* variance, const float* scales, const float* biases, int batch, int filters,
                         int spatial, float* bias_updates, float* scale_updates, float* mean_delta,
                         float* variance_delta, float* delta) override;

  void maxpool_forward(const MaxpoolShape& s, const float* input, float* output, int* argmax) override;
  void maxpool_backward(const MaxpoolShape& s, const float* delta, const int* argmax, float* prev_delta) override;
  void avgpool_forward(int batch, int c, int spatial, const float* input, float* output) override;
  void avgpool_backward(int batch, int c, int spatial, const float* delta, float* prev_delta) override;
  void reorg_forward(int batch, int c, int h, int w, int stride, bool reverse, const float* input,
                     float* output) override;
  void reorg_backward(int batch, int c, int h, int w, int stride, bool reverse, const float* delta,
                      float* prev_delta) override;

  void softmax(int batch, size_t inputs, int groups, float temperature, const float* input, float* output) override;
  void softmax_tree(int batch, size_t inputs, const WordTree& tree, float temperature, const float* input,
                    float* output) override;
  float softmax_cross_entropy(size_t n, const float* truth, const float* output, float* delta) override;
  float cost(CostType type, size_t n, const float* input, const float* truth, float* output, float* delta) override;
  void dropout_forward(size_t n, float probability, float scale, const float* input, const float* draws,
                       float* output) override;
  void dropout_backward(size_t n, float probability, float scale, const float* draws, const float* delta,
                        float* prev_delta) override;

  void region_activate(const RegionShape& s, const float* input, float* output) override;
  void region_gradient(const RegionShape& s, const float* output, float* delta) override;

  void sgd(size_t n, float* param, float* update, float step, float decay_term, float momentum) override;

  // CUDA graphs of the inference forward (Network records one and replays it).
  bool graph_capture_begin() override;
  bool graph_capture_end() override;
  bool graph_launch() override;
  void graph_reset() override;

  // Per-layer times from CUDA events recorded on the stream (no synchronisation per layer).
  void timing_start() override;
  void timing_mark(int layer) override;
  bool timing_collect(std::vector<double>* seconds) override;

  // conv_fast.cu: the convolutions as implicit GEMMs (tensor cores under CudaMath::Tf32),
  // batch folded in, fused epilogues; reference_kernels runs the layer's im2col + SGEMM instead.
  bool conv_inference(ConvolutionalLayer& l, const float* input, float* output) override;
  bool conv_forward_raw(ConvolutionalLayer& l, const float* input, float* output) override;
  bool conv_forward_raw_stats(ConvolutionalLayer& l, const float* input, float* output, float* mean,
                              float* variance) override;
  bool conv_weight_gradient(ConvolutionalLayer& l, const float* input, const float* delta) override;
  bool conv_input_gradient(ConvolutionalLayer& l, const float* delta, float* prev_delta) override;

 private:
  // Launches p (choosing the tile, the split of K and the arithmetic) and, when K is split,
  // the reduction that finishes it. With mean and variance (a forward), the epilogue also sums
  // each filter's raw outputs and a last kernel writes the batch statistics: returns true then,
  // false where K was split (no statistics computed).
  bool implicit_gemm(ImplicitGemm& p, int max_splits, float* mean = nullptr, float* variance = nullptr);
  // Device copy of a WordTree's groups, uploaded on first use: group offsets
  // [0, groups), then group sizes [groups, 2*groups).
  const int* tree_groups(const WordTree& tree);
  // Device scratch of at least `bytes`, grown on demand and kept: slot kScratchWork for
  // reductions and split-K partial sums, kScratchFilters for the input gradient's flipped
  // filters (alive while a split-K GEMM uses the other slot).
  static constexpr int kScratchWork = 0, kScratchFilters = 1, kScratchSlots = 2;
  void* scratch(size_t bytes, int slot = kScratchWork);
  // Partial sums of a reduction: room for kReduceBlocks doubles and the total.
  double* reduction_partials() { return static_cast<double*>(scratch((kReduceBlocks + 1) * sizeof(double))); }
  // Sums the first `blocks` partials on the device (fixed order: deterministic)
  // and returns the total on the host (waits for the stream).
  double finish_sum(unsigned blocks);
  // Room for the per-filter partial sums of the batch-norm reductions (batchnorm.cu).
  double* partial_sums(size_t doubles) { return static_cast<double*>(scratch(doubles * sizeof(double))); }

  struct TreeCache {
    std::vector<int> offset, size;  // host copy, to notice a different tree at a reused address
    int* device = nullptr;
  };

  int multiprocessors_ = 1;
  int compute_major_ = 0;  // the device's compute capability (TF32 tensor cores from 8)
  cudaStream_t stream_ = nullptr;
  cudaEvent_t staging_done_ = nullptr;  // recorded after the last upload that read staging_
  float* staging_ = nullptr;            // pinned host staging for upload()
  size_t staging_bytes_ = 0;
  double* result_ = nullptr;  // pinned: one reduced value fetched from the device
  void* scratch_[kScratchSlots] = {};
  size_t scratch_bytes_[kScratchSlots] = {};
  std::unordered_map<const WordTree*, TreeCache> trees_;
  // Layer timing: events_[0] recorded by timing_start, events_[k] after the k-th marked layer.
  std::vector<cudaEvent_t> events_;
  cudaGraphExec_t graph_exec_ = nullptr;  // the recorded forward (graph_capture_end)
  std::vector<int> marked_layers_;
  size_t events_used_ = 0;
};

}  // namespace cuda
}  // namespace dn
