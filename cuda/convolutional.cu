// [convolutional] on device: im2col / col2im kernels, a hand-written tiled
// SGEMM, and the layer's forward / backward / update composed exactly as
// csrc/layers/convolutional.cpp (same loops over images and groups, same
// order of batch norm, bias and activation steps).
#include <algorithm>

#include "common.cuh"
#include "cuda_layers.hpp"
#include "kernels/batchnorm.hpp"
#include "kernels/sgd.hpp"

namespace dn {
namespace cuda {

namespace {

// ------------------------------------------------------------------ SGEMM
// Block tile 64x64 of C, K in steps of 16, 256 threads as 16x16, each
// computing a 4x4 sub-tile with a stride of 16 rows/columns (so a warp's
// shared-memory reads and global writes hit consecutive addresses). A and B
// tiles are staged through shared memory; the load pattern follows the stored
// layout of each operand (transposed or not) so global reads are coalesced.
constexpr int kTileM = 64, kTileN = 64, kTileK = 16;
constexpr int kGemmThreads = 256;
constexpr int kSub = 4;          // 4x4 results per thread
constexpr int kPad = 2;          // row padding: conflict-free stores of the k-fastest loads
static_assert(kTileM * kTileK == kGemmThreads * kSub, "A tile: 4 loads per thread");
static_assert(kTileK * kTileN == kGemmThreads * kSub, "B tile: 4 loads per thread");

__global__ void __launch_bounds__(kGemmThreads)
    sgemm_kernel(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* __restrict__ A,
                 int lda, const float* __restrict__ B, int ldb, float beta, float* __restrict__ C, int ldc) {
  __shared__ float As[kTileK][kTileM + kPad];  // As[k][i] = op(A)[row0 + i][k0 + k]
  __shared__ float Bs[kTileK][kTileN + kPad];  // Bs[k][j] = op(B)[k0 + k][col0 + j]
  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;
  const int row0 = blockIdx.y * kTileM, col0 = blockIdx.x * kTileN;

  float acc[kSub][kSub];
#pragma unroll
  for (int r = 0; r < kSub; ++r)
#pragma unroll
    for (int c = 0; c < kSub; ++c) acc[r][c] = 0.f;

  for (int k0 = 0; k0 < K; k0 += kTileK) {
#pragma unroll
    for (int l = 0; l < kSub; ++l) {
      const int idx = tid + l * kGemmThreads;  // 0 .. 1023
      // op(A)[i][k] is A[i*lda + k] (row-major M x K) or A[k*lda + i] (stored K x M):
      // let consecutive threads walk the contiguous index.
      const int i = trans_a ? idx % kTileM : idx / kTileK;
      const int k = trans_a ? idx / kTileM : idx % kTileK;
      const int gi = row0 + i, gk = k0 + k;
      float v = 0.f;
      if (gi < M && gk < K) v = trans_a ? A[(size_t)gk * lda + gi] : A[(size_t)gi * lda + gk];
      As[k][i] = v;
    }
#pragma unroll
    for (int l = 0; l < kSub; ++l) {
      const int idx = tid + l * kGemmThreads;
      // op(B)[k][j] is B[k*ldb + j] (row-major K x N) or B[j*ldb + k] (stored N x K).
      const int j = trans_b ? idx / kTileK : idx % kTileN;
      const int k = trans_b ? idx % kTileK : idx / kTileN;
      const int gk = k0 + k, gj = col0 + j;
      float v = 0.f;
      if (gk < K && gj < N) v = trans_b ? B[(size_t)gj * ldb + gk] : B[(size_t)gk * ldb + gj];
      Bs[k][j] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      float a[kSub], b[kSub];
#pragma unroll
      for (int r = 0; r < kSub; ++r) a[r] = As[kk][ty + 16 * r];
#pragma unroll
      for (int c = 0; c < kSub; ++c) b[c] = Bs[kk][tx + 16 * c];
#pragma unroll
      for (int r = 0; r < kSub; ++r)
#pragma unroll
        for (int c = 0; c < kSub; ++c) acc[r][c] = fmaf(a[r], b[c], acc[r][c]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int r = 0; r < kSub; ++r) {
    const int i = row0 + ty + 16 * r;
    if (i >= M) continue;
#pragma unroll
    for (int c = 0; c < kSub; ++c) {
      const int j = col0 + tx + 16 * c;
      if (j >= N) continue;
      float* out = C + (size_t)i * ldc + j;
      // beta == 0 never reads C (it may hold garbage or NaN), as the CPU gemm.
      *out = beta == 0.f ? alpha * acc[r][c] : alpha * acc[r][c] + beta * *out;
    }
  }
}

__global__ void scale_matrix_kernel(int M, int N, float beta, float* __restrict__ C, int ldc) {
  DN_GRID_STRIDE(idx, (size_t)M * N) {
    const size_t i = idx / (size_t)N, j = idx % (size_t)N;
    float* c = C + i * ldc + j;
    *c = beta == 0.f ? 0.f : beta * *c;
  }
}

// ------------------------------------------------------------ im2col / col2im
// Layout of csrc/kernels/im2col.cpp: column row r = (ch*size + ky)*size + kx,
// column col = oy*out_w + ox; out-of-image taps read 0.

// One thread per (ch, oy, ox): writes its size*size column entries
// (consecutive threads -> consecutive ox -> coalesced writes and, for
// stride 1, coalesced reads).
__global__ void im2col_kernel(const float* __restrict__ image, int channels, int height, int width, int size,
                              int stride, int pad, int out_h, int out_w, float* __restrict__ columns) {
  const size_t plane_out = (size_t)out_h * out_w;
  DN_GRID_STRIDE(idx, (size_t)channels * plane_out) {
    const int ox = (int)(idx % out_w);
    const int oy = (int)((idx / out_w) % out_h);
    const int ch = (int)(idx / plane_out);
    const float* plane = image + (size_t)ch * height * width;
    float* dst = columns + (size_t)ch * size * size * plane_out + (size_t)oy * out_w + ox;
    for (int ky = 0; ky < size; ++ky) {
      const int iy = oy * stride + ky - pad;
      for (int kx = 0; kx < size; ++kx) {
        const int ix = ox * stride + kx - pad;
        dst[(size_t)(ky * size + kx) * plane_out] =
            (iy >= 0 && iy < height && ix >= 0 && ix < width) ? plane[(size_t)iy * width + ix] : 0.f;
      }
    }
  }
}

// Gather form of col2im_add: one thread per image pixel sums the column
// entries of every tap that reads it, in the CPU's (ky, kx) order, starting
// from the pixel's current value; no atomics, same rounding as the CPU loop.
__global__ void col2im_add_kernel(const float* __restrict__ columns, int channels, int height, int width, int size,
                                  int stride, int pad, int out_h, int out_w, float* __restrict__ image) {
  const size_t plane_out = (size_t)out_h * out_w;
  DN_GRID_STRIDE(idx, (size_t)channels * height * width) {
    const int ix = (int)(idx % width);
    const int iy = (int)((idx / width) % height);
    const int ch = (int)(idx / ((size_t)width * height));
    float v = image[idx];
    for (int ky = 0; ky < size; ++ky) {
      const int ny = iy + pad - ky;  // = oy * stride for the output row that reads (iy, ix) with tap ky
      if (ny < 0 || ny % stride) continue;
      const int oy = ny / stride;
      if (oy >= out_h) continue;
      for (int kx = 0; kx < size; ++kx) {
        const int nx = ix + pad - kx;
        if (nx < 0 || nx % stride) continue;
        const int ox = nx / stride;
        if (ox >= out_w) continue;
        v += columns[(size_t)((ch * size + ky) * size + kx) * plane_out + (size_t)oy * out_w + ox];
      }
    }
    image[idx] = v;
  }
}

// ----------------------------------------------------------------- SGD

__global__ void sgd_kernel(float* __restrict__ params, float* __restrict__ updates, size_t n, float step,
                           float momentum) {
  DN_GRID_STRIDE(i, n) sgd_step(params[i], updates[i], step, momentum);
}

__global__ void sgd_decay_kernel(float* __restrict__ params, float* __restrict__ updates, size_t n, float step,
                                 float decay_term, float momentum) {
  DN_GRID_STRIDE(i, n) sgd_step_decay(params[i], updates[i], step, decay_term, momentum);
}

int conv_out(int in, int size, int stride, int pad) { return (in + 2 * pad - size) / stride + 1; }

// Uploads v into b when the layer has it; otherwise leaves b empty.
void upload_if(DeviceBuffer<float>& b, const std::vector<float>& v) {
  if (v.empty())
    b.resize(0);
  else
    b.upload(v);
}

void download_if(const DeviceBuffer<float>& b, std::vector<float>& v, const char* name) {
  if (v.empty() && b.empty()) return;
  check(b.size() == v.size(), "ConvDeviceState::download: ", name, " has ", b.size(), " floats on the device, ",
        v.size(), " on the host");
  b.download(v.data(), v.size());
}

}  // namespace

// ---------------------------------------------------------------- launchers

void cuda_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* d_A, int lda,
               const float* d_B, int ldb, float beta, float* d_C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {  // C = beta * C, as the CPU gemm
    if (beta != 1.f) {
      scale_matrix_kernel<<<grid_for((size_t)M * N), kThreads>>>(M, N, beta, d_C, ldc);
      DN_CUDA_LAUNCH_CHECK();
    }
    return;
  }
  const dim3 grid((N + kTileN - 1) / kTileN, (M + kTileM - 1) / kTileM);
  check(grid.y <= 65535u, "cuda_gemm: M = ", M, " exceeds the grid limit");
  sgemm_kernel<<<grid, kGemmThreads>>>(trans_a, trans_b, M, N, K, alpha, d_A, lda, d_B, ldb, beta, d_C, ldc);
  DN_CUDA_LAUNCH_CHECK();
}

void cuda_im2col(const float* d_image, int channels, int height, int width, int size, int stride, int pad,
                 float* d_columns) {
  const int out_h = conv_out(height, size, stride, pad), out_w = conv_out(width, size, stride, pad);
  const size_t n = (size_t)channels * out_h * out_w;
  if (!n) return;
  im2col_kernel<<<grid_for(n), kThreads>>>(d_image, channels, height, width, size, stride, pad, out_h, out_w,
                                           d_columns);
  DN_CUDA_LAUNCH_CHECK();
}

void cuda_col2im_add(const float* d_columns, int channels, int height, int width, int size, int stride, int pad,
                     float* d_image) {
  const int out_h = conv_out(height, size, stride, pad), out_w = conv_out(width, size, stride, pad);
  const size_t n = (size_t)channels * height * width;
  if (!n) return;
  col2im_add_kernel<<<grid_for(n), kThreads>>>(d_columns, channels, height, width, size, stride, pad, out_h, out_w,
                                               d_image);
  DN_CUDA_LAUNCH_CHECK();
}

// ------------------------------------------------------------ device state

void ConvDeviceState::upload(const ConvolutionalLayer& l) {
  weights.upload(l.weights);
  biases.upload(l.biases);
  upload_if(scales, l.scales);
  upload_if(rolling_mean, l.rolling_mean);
  upload_if(rolling_variance, l.rolling_variance);
  upload_if(weight_updates, l.weight_updates);
  upload_if(bias_updates, l.bias_updates);
  upload_if(scale_updates, l.scale_updates);
  upload_if(mean, l.mean);
  upload_if(variance, l.variance);
  upload_if(mean_delta, l.mean_delta);
  upload_if(variance_delta, l.variance_delta);
  upload_if(x, l.x);
  upload_if(x_norm, l.x_norm);
}

void ConvDeviceState::download(ConvolutionalLayer& l) const {
  download_if(weights, l.weights, "weights");
  download_if(biases, l.biases, "biases");
  download_if(scales, l.scales, "scales");
  download_if(rolling_mean, l.rolling_mean, "rolling_mean");
  download_if(rolling_variance, l.rolling_variance, "rolling_variance");
  download_if(weight_updates, l.weight_updates, "weight_updates");
  download_if(bias_updates, l.bias_updates, "bias_updates");
  download_if(scale_updates, l.scale_updates, "scale_updates");
  download_if(mean, l.mean, "mean");
  download_if(variance, l.variance, "variance");
  download_if(mean_delta, l.mean_delta, "mean_delta");
  download_if(variance_delta, l.variance_delta, "variance_delta");
  download_if(x, l.x, "x");
  download_if(x_norm, l.x_norm, "x_norm");
}

// ------------------------------------------------------------------- layer

void cuda_convolutional_forward(const ConvolutionalLayer& l, ConvDeviceState& p, const float* d_input,
                                float* d_output, float* d_workspace, bool train) {
  const int spatial = l.out_w * l.out_h;
  const int cg = l.c / l.groups;         // input channels per group
  const int m = l.filters / l.groups;    // output channels per group
  const int k = l.size * l.size * cg;    // column rows
  const bool direct = l.workspace_floats() == 0;  // 1x1/1/0: the input is the column matrix
  check(p.weights.size() == l.weight_count() && p.biases.size() == (size_t)l.filters, "layer ", l.index,
        " (convolutional, CUDA): device parameters not uploaded");
  check(direct || d_workspace, "layer ", l.index, " (convolutional, CUDA): no workspace");
  for (int b = 0; b < l.batch; ++b)
    for (int g = 0; g < l.groups; ++g) {
      const float* a = p.weights.data() + (size_t)g * m * k;
      const float* im = d_input + ((size_t)b * l.groups + g) * cg * l.h * l.w;
      float* out = d_output + ((size_t)b * l.groups + g) * m * spatial;
      const float* col = im;
      if (!direct) {
        cuda_im2col(im, cg, l.h, l.w, l.size, l.stride, l.pad, d_workspace);
        col = d_workspace;
      }
      cuda_gemm(false, false, m, spatial, k, 1.f, a, k, col, spatial, 0.f, out, spatial);
    }

  const size_t total = (size_t)l.batch * l.outputs;
  if (l.batch_normalize) {
    if (train) {
      check(p.x.size() == total && p.x_norm.size() == total && p.mean.size() == (size_t)l.filters, "layer ",
            l.index, " (convolutional, CUDA): training forward without training buffers");
      cuda_copy(d_output, p.x.data(), total);
      cuda_bn_mean_variance(d_output, l.batch, l.filters, spatial, p.mean.data(), p.variance.data());
      cuda_bn_rolling_update(p.rolling_mean.data(), p.rolling_variance.data(), p.mean.data(), p.variance.data(),
                             l.filters);
      cuda_bn_normalize(d_output, p.mean.data(), p.variance.data(), l.batch, l.filters, spatial);
      cuda_copy(d_output, p.x_norm.data(), total);
    } else {
      cuda_bn_normalize(d_output, p.rolling_mean.data(), p.rolling_variance.data(), l.batch, l.filters, spatial);
    }
    cuda_scale_bias(d_output, p.scales.data(), l.batch, l.filters, spatial);
  }
  cuda_add_bias(d_output, p.biases.data(), l.batch, l.filters, spatial);
  cuda_activate_array(d_output, total, l.activation);
}

void cuda_convolutional_backward(const ConvolutionalLayer& l, ConvDeviceState& p, const float* d_input,
                                 const float* d_output, float* d_delta, float* d_prev_delta, float* d_workspace,
                                 bool train) {
  const int spatial = l.out_w * l.out_h;
  const int cg = l.c / l.groups;
  const int m = l.filters / l.groups;
  const int k = l.size * l.size * cg;
  const size_t total = (size_t)l.batch * l.outputs;
  check(p.weight_updates.size() == l.weight_count() && p.bias_updates.size() == (size_t)l.filters, "layer ",
        l.index, " (convolutional, CUDA): backward without training buffers");
  cuda_gradient_array(d_output, total, l.activation, d_delta);
  cuda_backward_bias(p.bias_updates.data(), d_delta, l.batch, l.filters, spatial);
  if (l.batch_normalize) {
    check(p.x.size() == total && p.x_norm.size() == total && p.scale_updates.size() == (size_t)l.filters,
          "layer ", l.index, " (convolutional, CUDA): backward without batch-norm buffers");
    const float* use_mean = train ? p.mean.data() : p.rolling_mean.data();
    const float* use_var = train ? p.variance.data() : p.rolling_variance.data();
    cuda_backward_scale(p.x_norm.data(), d_delta, l.batch, l.filters, spatial, p.scale_updates.data());
    cuda_scale_bias(d_delta, p.scales.data(), l.batch, l.filters, spatial);
    cuda_bn_backward_delta(p.x.data(), use_mean, use_var, l.batch, l.filters, spatial, p.mean_delta.data(),
                           p.variance_delta.data(), d_delta);
  }
  const bool direct = l.workspace_floats() == 0;
  check(direct || d_workspace, "layer ", l.index, " (convolutional, CUDA): no workspace");
  for (int b = 0; b < l.batch; ++b)
    for (int g = 0; g < l.groups; ++g) {
      const float* d = d_delta + ((size_t)b * l.groups + g) * m * spatial;
      const float* im = d_input + ((size_t)b * l.groups + g) * cg * l.h * l.w;
      float* wu = p.weight_updates.data() + (size_t)g * m * k;
      const float* col = im;
      if (!direct) {
        cuda_im2col(im, cg, l.h, l.w, l.size, l.stride, l.pad, d_workspace);
        col = d_workspace;
      }
      // weight_updates += delta * columns^T
      cuda_gemm(false, true, m, k, spatial, 1.f, d, spatial, col, spatial, 1.f, wu, k);
      if (d_prev_delta) {
        float* prev = d_prev_delta + ((size_t)b * l.groups + g) * cg * l.h * l.w;
        const float* a = p.weights.data() + (size_t)g * m * k;
        if (direct) {
          // Declared semantics: the 1x1 input gradient is ADDED into the previous delta.
          cuda_gemm(true, false, k, spatial, m, 1.f, a, k, d, spatial, 1.f, prev, spatial);
        } else {
          cuda_gemm(true, false, k, spatial, m, 1.f, a, k, d, spatial, 0.f, d_workspace, spatial);
          cuda_col2im_add(d_workspace, cg, l.h, l.w, l.size, l.stride, l.pad, prev);
        }
      }
    }
}

void cuda_convolutional_update(const ConvolutionalLayer& l, ConvDeviceState& p, const UpdateArgs& a) {
  check(p.weight_updates.size() == p.weights.size() && p.bias_updates.size() == p.biases.size(), "layer ", l.index,
        " (convolutional, CUDA): update without training buffers");
  const float lr = a.learning_rate * l.learning_rate_scale;
  const float step = lr / a.batch;
  const float decay = -a.decay * a.batch;
  const size_t nf = (size_t)l.filters;
  sgd_kernel<<<grid_for(nf), kThreads>>>(p.biases.data(), p.bias_updates.data(), nf, step, a.momentum);
  DN_CUDA_LAUNCH_CHECK();
  if (l.batch_normalize) {
    check(p.scale_updates.size() == nf, "layer ", l.index, " (convolutional, CUDA): update without scale updates");
    sgd_kernel<<<grid_for(nf), kThreads>>>(p.scales.data(), p.scale_updates.data(), nf, step, a.momentum);
    DN_CUDA_LAUNCH_CHECK();
  }
  const size_t n = p.weights.size();
  if (n) {
    sgd_decay_kernel<<<grid_for(n), kThreads>>>(p.weights.data(), p.weight_updates.data(), n, step, decay,
                                                a.momentum);
    DN_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace cuda
}  // namespace dn
