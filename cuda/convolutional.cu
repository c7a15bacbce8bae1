// The convolution ops: a hand-written tiled SGEMM (with a deterministic
// split-K for GEMMs too small to fill the device, such as the weight gradient
// of a layer with few filters and a large map), im2col, and col2im in gather
// form. The layer's algorithm (per image and group: im2col + GEMM, ...) is
// csrc/layers/convolutional.cpp, shared with the CPU.
#include <algorithm>

#include "common.cuh"
#include "cuda_backend.cuh"

namespace dn {
namespace cuda {

namespace {

// ------------------------------------------------------------------ SGEMM
// Block tile 64x64 of C, K in steps of 16, 256 threads as 16x16, each
// computing a 4x4 sub-tile with a stride of 16 rows/columns (so a warp's
// shared-memory reads and global writes hit consecutive addresses). A and B
// tiles are staged through shared memory; the load pattern follows the stored
// layout of each operand (transposed or not) so global reads are coalesced.
// Each result accumulates its k terms in increasing order with fmaf, so the
// tiling does not change the rounding; only a split of K does.
constexpr int kTileM = 64, kTileN = 64, kTileK = 16;
constexpr int kGemmThreads = 256;
constexpr int kSub = 4;  // 4x4 results per thread
constexpr int kPad = 2;  // row padding: conflict-free stores of the k-fastest loads
static_assert(kTileM * kTileK == kGemmThreads * kSub, "A tile: 4 loads per thread");
static_assert(kTileK * kTileN == kGemmThreads * kSub, "B tile: 4 loads per thread");

// Split-K: at least this many k per split, at most this many splits.
constexpr int kMinSplitK = 512;
constexpr int kMaxSplits = 64;

// blockIdx.z selects the k range [z*k_split, min(K, (z+1)*k_split)). With
// `partial` set, the raw sums go to partial[z][M][N] (no alpha/beta) for
// splitk_reduce_kernel; otherwise C = alpha*sum + beta*C.
__global__ void __launch_bounds__(kGemmThreads)
    sgemm_kernel(bool trans_a, bool trans_b, int M, int N, int K, int k_split, float alpha,
                 const float* __restrict__ A, int lda, const float* __restrict__ B, int ldb, float beta,
                 float* __restrict__ C, int ldc, float* __restrict__ partial) {
  __shared__ float As[kTileK][kTileM + kPad];  // As[k][i] = op(A)[row0 + i][k0 + k]
  __shared__ float Bs[kTileK][kTileN + kPad];  // Bs[k][j] = op(B)[k0 + k][col0 + j]
  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;
  const int row0 = blockIdx.y * kTileM, col0 = blockIdx.x * kTileN;
  const int k_begin = blockIdx.z * k_split;
  const int k_end = min(K, k_begin + k_split);

  float acc[kSub][kSub];
#pragma unroll
  for (int r = 0; r < kSub; ++r)
#pragma unroll
    for (int c = 0; c < kSub; ++c) acc[r][c] = 0.f;

  for (int k0 = k_begin; k0 < k_end; k0 += kTileK) {
#pragma unroll
    for (int l = 0; l < kSub; ++l) {
      const int idx = tid + l * kGemmThreads;  // 0 .. 1023
      // op(A)[i][k] is A[i*lda + k] (row-major M x K) or A[k*lda + i] (stored K x M):
      // let consecutive threads walk the contiguous index.
      const int i = trans_a ? idx % kTileM : idx / kTileK;
      const int k = trans_a ? idx / kTileM : idx % kTileK;
      const int gi = row0 + i, gk = k0 + k;
      float v = 0.f;
      if (gi < M && gk < k_end) v = trans_a ? A[(size_t)gk * lda + gi] : A[(size_t)gi * lda + gk];
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
      if (gk < k_end && gj < N) v = trans_b ? B[(size_t)gj * ldb + gk] : B[(size_t)gk * ldb + gj];
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
      if (partial) {
        partial[((size_t)blockIdx.z * M + i) * N + j] = acc[r][c];
      } else {
        float* out = C + (size_t)i * ldc + j;
        // beta == 0 never reads C (it may hold garbage or NaN), as the CPU gemm.
        *out = beta == 0.f ? alpha * acc[r][c] : alpha * acc[r][c] + beta * *out;
      }
    }
  }
}

// C = alpha * (sum of the splits, in split order) + beta * C: deterministic.
__global__ void splitk_reduce_kernel(int M, int N, int splits, float alpha, const float* __restrict__ partial,
                                     float beta, float* __restrict__ C, int ldc) {
  const size_t mn = (size_t)M * N;
  DN_GRID_STRIDE(idx, mn) {
    float sum = 0.f;
    for (int s = 0; s < splits; ++s) sum += partial[(size_t)s * mn + idx];
    const size_t i = idx / (size_t)N, j = idx % (size_t)N;
    float* out = C + i * ldc + j;
    *out = beta == 0.f ? alpha * sum : alpha * sum + beta * *out;
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

int conv_out(int in, int size, int stride, int pad) { return (in + 2 * pad - size) / stride + 1; }

}  // namespace

void CudaBackend::gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                       const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {  // C = beta * C, as the CPU gemm
    if (beta != 1.f) {
      scale_matrix_kernel<<<grid_for((size_t)M * N), kThreads, 0, stream_>>>(M, N, beta, C, ldc);
      DN_CUDA_LAUNCH_CHECK();
    }
    return;
  }
  const unsigned gx = (unsigned)((N + kTileN - 1) / kTileN), gy = (unsigned)((M + kTileM - 1) / kTileM);
  check(gy <= 65535u, "gemm (CUDA): M = ", M, " exceeds the grid limit");
  // Split K when the tiles alone leave most multiprocessors idle.
  const size_t tiles = (size_t)gx * gy, target = 2 * (size_t)multiprocessors_;
  int splits = 1;
  if (tiles < target && K >= 2 * kMinSplitK)
    splits = (int)std::min<size_t>({(target + tiles - 1) / tiles, (size_t)(K / kMinSplitK), (size_t)kMaxSplits});
  int k_split = K;
  float* partial = nullptr;
  if (splits > 1) {
    k_split = ((K + splits - 1) / splits + kTileK - 1) / kTileK * kTileK;
    splits = (K + k_split - 1) / k_split;
    partial = static_cast<float*>(scratch((size_t)splits * M * N * sizeof(float)));
  }
  const dim3 grid(gx, gy, (unsigned)splits);
  sgemm_kernel<<<grid, kGemmThreads, 0, stream_>>>(trans_a, trans_b, M, N, K, k_split, alpha, A, lda, B, ldb, beta,
                                                   C, ldc, partial);
  DN_CUDA_LAUNCH_CHECK();
  if (partial) {
    splitk_reduce_kernel<<<grid_for((size_t)M * N), kThreads, 0, stream_>>>(M, N, splits, alpha, partial, beta, C,
                                                                             ldc);
    DN_CUDA_LAUNCH_CHECK();
  }
}

void CudaBackend::im2col(const float* image, int channels, int height, int width, int size, int stride, int pad,
                         float* columns) {
  const int out_h = conv_out(height, size, stride, pad), out_w = conv_out(width, size, stride, pad);
  if (channels <= 0 || out_h <= 0 || out_w <= 0) return;
  const size_t n = (size_t)channels * out_h * out_w;
  im2col_kernel<<<grid_for(n), kThreads, 0, stream_>>>(image, channels, height, width, size, stride, pad, out_h,
                                                       out_w, columns);
  DN_CUDA_LAUNCH_CHECK();
}

void CudaBackend::col2im_add(const float* columns, int channels, int height, int width, int size, int stride,
                             int pad, float* image) {
  const int out_h = conv_out(height, size, stride, pad), out_w = conv_out(width, size, stride, pad);
  if (channels <= 0 || height <= 0 || width <= 0 || out_h <= 0 || out_w <= 0) return;
  const size_t n = (size_t)channels * height * width;
  col2im_add_kernel<<<grid_for(n), kThreads, 0, stream_>>>(columns, channels, height, width, size, stride, pad,
                                                           out_h, out_w, image);
  DN_CUDA_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace dn
