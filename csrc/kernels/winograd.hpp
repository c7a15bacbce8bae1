// Winograd F(4x4, 3x3) for 3x3 stride-1 pad-1 convolutions (groups = 1) on the
// inference fast path (Lavin & Gray's transforms, interpolation points 0, +-1, +-2, inf).
//
//   Y = A^T [ (G g G^T) . (B^T d B) ] A     per 6x6 input tile d -> 4x4 output tile
//
// Weights are transformed once into U[36][filters][c] (36/9 = 4x the 3x3
// weights; the layer caches U, see CpuBackend::conv_inference). Per block
// of up to 4 x 48 output tiles a thread transforms the input into GEMM B panels
// V[36][c][tiles], runs the project's packed micro-kernel 36 times
// (M[xi] = U[xi] * V[xi], M = filters, K = c, N = tiles), then applies the
// output transform and the conv epilogue (folded BN scale/bias, activation).
// The 36 GEMMs do 36 multiplies per 16 outputs instead of 144: at most a 4x
// FLOP saving, paid for by the transforms (memory-bound, ~O(c + filters) per tile).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/options.hpp"
#include "kernels/conv_fast.hpp"

namespace dn {

// Floats of the transformed weights for a filters x c 3x3 layer.
inline size_t winograd_weights_floats(int filters, int c) { return (size_t)36 * filters * c; }
// U[36][filters][c] from Darknet's [filters][c][3][3].
void winograd_transform_weights(int filters, int c, const float* weights, float* u);

// Whether the layer shape can run through Winograd at all.
bool winograd_applicable(const ConvShape& s);
// The dispatch: applicable and, per the mode, expected to be faster than the GEMM path
// (Auto: the measured per-shape rule; On / Stream: every applicable layer, cached /
// streamed weights (tests); Off: never).
enum class WinogradPlan { None, Cached, Streamed };
WinogradPlan winograd_plan(const ConvShape& s, WinogradMode mode);
bool winograd_selected(const ConvShape& s, WinogradMode mode);

// output[batch, filters, h, w] = act(scale * conv3x3(input) + bias), u from winograd_transform_weights.
// isa picks the transforms' and the GEMM micro-kernel's instruction set.
void conv3x3_winograd(CpuIsa isa, const ConvShape& s, const float* input, const float* u, const ConvEpilogue& ep,
                      float* output);

// The same convolution with the weights transformed per call, a filter panel at a time
// (no U cache: memory stays at the 3x3 weights). The roles are swapped for short maps:
// the transformed input V is the broadcast operand (tiles are the GEMM rows) and each
// 48-filter panel of U, made from the raw weights just before use, is the packed one.
void conv3x3_winograd_streamed(CpuIsa isa, const ConvShape& s, const float* input, const float* weights,
                               const ConvEpilogue& ep, float* output);

// A 64-bit hash of the raw bits of n floats (4 multiply-xor lanes): any change
// of one float always changes it (each step is a bijection of the state).
uint64_t float_checksum(const float* p, size_t n);

}  // namespace dn
