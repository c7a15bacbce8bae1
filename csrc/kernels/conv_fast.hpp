// Fast inference convolution: BN folded into a per-filter scale and bias
// applied in the GEMM epilogue together with the activation, B panels packed
// straight from the image (no im2col buffer; 1x1 stride-1 convs read the input
// as the B matrix). Winograd F(4x4,3x3) for 3x3 stride-1 convs is in
// kernels/winograd.*, dispatched per shape from CpuBackend::conv_inference.
// The layer's generic algorithm (layers/convolutional.cpp) stays the reference.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/options.hpp"
#include "kernels/activations.hpp"

namespace dn {

struct ConvShape {
  int batch = 1, c = 0, h = 0, w = 0;
  int filters = 0, size = 1, stride = 1, pad = 0, groups = 1;
  int out_h = 0, out_w = 0;
};

// Per-filter y = act(scale[f] * conv + bias[f]); scale may be null (no BN).
struct ConvEpilogue {
  const float* scale = nullptr;
  const float* bias = nullptr;
  Activation act = Activation::Linear;
  bool accumulate = false;  // output += conv (scale, bias and act must then be the identity)
  // conv3x3_direct and the Winograd convolutions: the output is the 2x2 stride-2 max pool of the activated convolution
  // (out_h/2 x out_w/2 per filter, Darknet's [maxpool] size=2 stride=2 on an even map); the
  // convolution's own output is never written.
  bool maxpool2x2 = false;
};

// Refuses ep.maxpool2x2 on an odd output or with accumulation, naming `kernel` in the error;
// nothing when no pool is asked for.
void check_fused_pool(const char* kernel, const ConvShape& s, const ConvEpilogue& ep);

// Folds BN (rolling statistics) into scale/bias: scale = gamma / sqrt(var + eps),
// bias = beta - mean * scale. Without BN, scale is empty and bias = biases.
void fold_batchnorm(int filters, const float* biases, const float* scales, const float* mean, const float* var,
                    std::vector<float>& out_scale, std::vector<float>& out_bias);

// output[batch, filters, out_h, out_w] from input[batch, c, h, w] and weights
// [filters, c/groups, size, size] (Darknet order), on the isa GEMM micro-kernels.
void conv_forward_fast(CpuIsa isa, const ConvShape& s, const float* input, const float* weights,
                       const ConvEpilogue& ep, float* output);

// Direct 3x3 stride-1 pad-1 convolution for few input channels (AVX2 and up; conv_forward_fast
// takes it where it applies): the filters' weights are the broadcast operand, read in place,
// and the vector operand is the zero-padded input read straight at each tap's offset, so
// nothing is packed (the im2col panels cost as much as the GEMM when K = 9c is small).
// Measured against the packed GEMM (alternated processes, 1 and 2 threads): 416x416 3->16
// 0.52-0.73x the time, 3->32 0.80-0.85, 208x208 16->32 0.76-0.79, 104x104 16->32 0.60,
// 208x208 24->32 0.92; more channels with few filters below.
constexpr int kDirectMaxChannels = 24;
// With few filters the GEMM's B packing is not amortised either: on AVX2 the direct kernel also
// takes up to 64 channels when there are at most 64 filters (the input gradients of the early
// layers run as such convolutions). Measured (alternated, 2 threads, batch 8 or 32): 208x208
// 32->16 0.78x the time, 104x104 32->64 0.85, 64->32 at 104 / 52 / 20 px 0.91 / 0.8 / 0.65,
// 104x104 64->16 0.7, 208x208 32->32 even; 26x26 256->128 1.05 (slower, not taken).
constexpr int kDirectFewFiltersMaxChannels = 64, kDirectFewFiltersMax = 64;
// Up to this many filters the direct kernel swaps its roles (the filters are the vector
// operand, the pixels broadcast; conv_fast.cpp's fv_row), bit-identical results.
constexpr int kDirectFilterVectorMaxFilters = 64;
constexpr long kDirectChunkFloats = 48 * 1024;  // a thread's padded input rows (192 KB, L2)
bool conv3x3_direct_applicable(CpuIsa isa, const ConvShape& s);
// Which kernel conv3x3_direct runs: its rule (Auto), or one forced (the kernel lab and the
// tests compare them; FilterVectors needs at most kDirectFilterVectorMaxFilters filters).
enum class DirectVariant { Auto, Bands, FilterVectors };
void conv3x3_direct(CpuIsa isa, const ConvShape& s, const float* input, const float* weights, const ConvEpilogue& ep,
                    float* output, DirectVariant variant = DirectVariant::Auto);

// ---- training backward of the raw convolution (batch norm and activation are the layer's)
// weight_updates[filters, c, size, size] += sum over the batch of delta * columns^T, with the
// images folded into the GEMM's K in chunks (a per-image GEMM with K = out_h * out_w reads and
// writes the whole weight-sized C once per image: 13x13 1024->1024 moved 600 MB per batch of 8).
// Returns false where the per-image loop (im2col + GEMM, split-K inside) is the better path:
// maps of kFoldMaxSpatial pixels and more, and grouped convolutions.
constexpr int kFoldMaxSpatial = 1024;
bool conv_backward_weights_fast(CpuIsa isa, const ConvShape& s, const float* input, const float* delta,
                                float* weight_updates);

// The same weight gradient for 3x3 stride-1 'same' layers on large maps with few channels and
// filters (AVX2 and up): no im2col and no packing; per (4 filters, channel, tap row) the
// delta rows are multiplied with the zero-padded input rows at the three tap columns, 8 pixels
// per vector, in row blocks that stay in L1/L2. Each weight belongs to one thread, so any
// thread count gives the same bits.
bool conv3x3_weight_gradient_direct_applicable(CpuIsa isa, const ConvShape& s);
void conv3x3_weight_gradient_direct(CpuIsa isa, const ConvShape& s, const float* input, const float* delta,
                                    float* weight_updates);

// prev_delta += the input gradient, as a forward convolution of delta with the weights
// transposed (c <-> filters) and flipped: for stride 1 and a "same" padding (size odd, pad =
// size / 2) dX[c](y, x) = sum_f,a,b W[f][c][size-1-a][size-1-b] dY[f](y+a-pad, x+b-pad), so
// the packed GEMM reads delta in place (no GEMM into a column buffer, no col2im pass).
bool conv_backward_input_applicable(const ConvShape& s);
void conv_backward_input_fast(CpuIsa isa, const ConvShape& s, const float* delta, const float* weights,
                              float* prev_delta);

// Packs a kc x width panel of the virtual im2col matrix of one image/group.
void pack_im2col_panel(const ConvShape& s, const float* image, int k0, int kc, int j0, int nr, int width, float* dst);

}  // namespace dn
