// [convolutional]: conv (im2col + GEMM, groups), optional batch norm, bias, activation.
#pragma once
#include "kernels/activations.hpp"
#include "kernels/conv_fast.hpp"
#include "layers/layer.hpp"

namespace dn {

class ConvolutionalLayer : public Layer {
 public:
  int filters = 0, size = 1, stride = 1, pad = 0, groups = 1;
  bool batch_normalize = false;
  Activation activation = Activation::Logistic;
  float learning_rate_scale = 1.f;

  // Parameters (weights-file order: biases, [scales, rolling_mean, rolling_variance], weights).
  FloatBuffer biases, scales, rolling_mean, rolling_variance, weights;
  // Training state.
  FloatBuffer bias_updates, scale_updates, weight_updates;
  FloatBuffer mean, variance, mean_delta, variance_delta, x, x_norm;
  // The last training forward's batch norm kept no x_norm (Backend::bn_train_derives_x_norm):
  // buffers() derives it from x on request, the backward recomputes it.
  bool x_norm_derived = false;
  // The CPU backend's inference specialisation (backend/cpu_backend.cpp): BN folded
  // into a per-filter scale/bias, and the Winograd F(4x4,3x3) weights U[36][filters][c],
  // cached only while this layer runs through Winograd; rebuilt when the checksum of
  // `weights` changes (any write: numpy views, load_weights, update, randomize).
  std::vector<float> fold_scale, fold_bias;
  std::vector<float> wino_u;
  uint64_t wino_key = 0;
  // Whether the CPU inference path runs this layer through Winograd under `mode`.
  bool uses_winograd(WinogradMode mode) const;

  ConvShape shape() const;  // the kernels' view of this layer's geometry
  size_t weight_count() const { return (size_t)filters * (c / groups) * size * size; }
  bool is_1x1() const { return size == 1 && stride == 1 && pad == 0; }

  void forward(LayerContext& ctx) override;
  void backward(LayerContext& ctx) override;
  void update(const UpdateArgs& a, Backend& backend) override;
  void randomize(std::mt19937_64& rng, WeightInit init) override;
  void resize(int new_w, int new_h) override;
  size_t workspace_floats(bool train_or_reference) const override;
  double flops() const override;
  std::vector<Blob> params() override;
  std::vector<Blob> buffers() override;
  std::vector<FloatBuffer*> all_buffers() override;
  std::string describe() const override;

  void allocate() override;
};

}  // namespace dn
