// [convolutional]: conv (im2col + GEMM, groups), optional batch norm, bias, activation.
#pragma once
#include "kernels/activations.hpp"
#include "layers/layer.hpp"

namespace dn {

class ConvolutionalLayer : public Layer {
 public:
  int filters = 0, size = 1, stride = 1, pad = 0, groups = 1;
  bool batch_normalize = false;
  Activation activation = Activation::Logistic;
  float learning_rate_scale = 1.f;

  // Parameters (weights-file order: biases, [scales, rolling_mean, rolling_variance], weights).
  std::vector<float> biases, scales, rolling_mean, rolling_variance, weights;
  // Training state.
  std::vector<float> bias_updates, scale_updates, weight_updates;
  std::vector<float> mean, variance, mean_delta, variance_delta, x, x_norm;
  // Inference fast path (kernels/conv_fast.*): BN folded into a per-filter scale/bias.
  std::vector<float> fold_scale, fold_bias;
  // Winograd F(4x4,3x3) weights U[36][filters][c], cached only while this layer
  // runs through Winograd; rebuilt when the checksum of `weights` changes (any
  // write: numpy views, load_weights, update, randomize), freed otherwise.
  std::vector<float> wino_u;
  uint64_t wino_key = 0;
  bool uses_winograd() const;  // the dispatch for the current shape

  size_t weight_count() const { return (size_t)filters * (c / groups) * size * size; }

  void forward(NetState& s) override;
  void forward_fast(NetState& s);  // inference: folded BN, fused epilogue, packed GEMM
  void backward(NetState& s) override;
  void update(const UpdateArgs& a) override;
  void randomize(std::mt19937_64& rng) override;
  void resize(int new_w, int new_h) override;
  size_t workspace_floats() const override;
  double flops() const override;
  std::vector<Blob> params() override;
  std::vector<Blob> buffers() override;
  std::string describe() const override;

  void allocate() override;
};

}  // namespace dn
