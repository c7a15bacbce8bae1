// Winograd F(4x4, 3x3): see winograd.hpp.
//
// Napkin math (yolov2-voc 52x52x128 -> 256, batch 1): direct = 2*256*128*9*2704 px
// = 1.60 GFLOP; Winograd: 13*13 = 169 tiles, GEMMs = 2*36*256*128*169 = 0.40 GFLOP
// (4x fewer); transforms ~100 flops per input tile-channel + ~80 per output
// tile-filter = 0.01 GFLOP, but memory-bound: the input transform writes 36/16 =
// 2.25 floats per input float, the output transform reads 2.25 per output float,
// and every block of 48 tiles re-reads U (36*c*filters floats = 4.7 MB here).
#include "kernels/winograd.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.hpp"
#include "kernels/gemm.hpp"

namespace dn {

namespace {

constexpr int kPanel = kGemmNR;     // 48 tiles per packed B panel
constexpr int kMaxPanels = 4;       // a block is up to 4 panels = 192 tiles
constexpr int kMaxBlock = kPanel * kMaxPanels;

struct Geom {
  int c, h, w, out_h, out_w, tiles_w, tiles_h, tiles_img;
};

}  // namespace

// Hot loops, compiled for AVX-512, AVX2 and the baseline; the caller's isa picks
// one. Explicit variants instead of target_clones: the ISA option reaches the
// transforms, and there is no ifunc resolver (ThreadSanitizer builds crash in it).
namespace wino_detail {

#define DN_WINO_TARGET __attribute__((target("avx512f")))
#define DN_WINO_SUFFIX avx512
#include "kernels/winograd_blocks.inc"
#undef DN_WINO_TARGET
#undef DN_WINO_SUFFIX

#define DN_WINO_TARGET __attribute__((target("avx2")))
#define DN_WINO_SUFFIX avx2
#include "kernels/winograd_blocks.inc"
#undef DN_WINO_TARGET
#undef DN_WINO_SUFFIX

#define DN_WINO_TARGET
#define DN_WINO_SUFFIX plain
#include "kernels/winograd_blocks.inc"
#undef DN_WINO_TARGET
#undef DN_WINO_SUFFIX

void input_block(CpuIsa isa, const Geom& g, const float* input, int t0, int nb, int nbs, float* V) {
  switch (isa) {
    case CpuIsa::Avx512: return input_block_avx512(g, input, t0, nb, nbs, V);
    case CpuIsa::Avx2: return input_block_avx2(g, input, t0, nb, nbs, V);
    case CpuIsa::Plain: break;
  }
  input_block_plain(g, input, t0, nb, nbs, V);
}

void output_block(CpuIsa isa, const Geom& g, int filters, const float* M, int t0, int nb, int nbs,
                  const float* scale, const float* bias, Activation act, float* output) {
  switch (isa) {
    case CpuIsa::Avx512: return output_block_avx512(g, filters, M, t0, nb, nbs, scale, bias, act, output);
    case CpuIsa::Avx2: return output_block_avx2(g, filters, M, t0, nb, nbs, scale, bias, act, output);
    case CpuIsa::Plain: break;
  }
  output_block_plain(g, filters, M, t0, nb, nbs, scale, bias, act, output);
}

}  // namespace wino_detail

bool winograd_applicable(const ConvShape& s) {
  return s.size == 3 && s.stride == 1 && s.pad == 1 && s.groups == 1 && s.out_h == s.h && s.out_w == s.w;
}

bool winograd_selected(const ConvShape& s, WinogradMode mode) {
  if (!winograd_applicable(s)) return false;
  if (mode == WinogradMode::On) return true;
  if (mode == WinogradMode::Off) return false;
  // Measured rule (bench/kernels/bench_kernels.py --only conv, batch 1, 2 loaded cores, GEMM time /
  // Winograd time, medians of alternated runs): wins at 208x208 32->64 1.2-1.7, 104x104 64->128 1.3-1.5,
  // 52x52 128->256 1.5, 104x104 32->64 1.06, 52x52 64->128 1.1, 26x26 256->512 1.4; loses at
  // 208x208 16->32 0.95, 26x26 128->256 0.8, 13x13 128..512 -> 2x 0.6-0.8. Short tile rows (out_w < 52:
  // under 13 tiles) starve the vectorised transforms, and few channels leave little to save.
  // Memory: U is 4x the layer's 3x3 weights, cached while the layer uses Winograd; layers whose U would
  // exceed 36*128*256 floats (4.7 MB; e.g. 26x26 256->512, 19 MB each) stay on the GEMM so inference
  // keeps within weights + 150 MB (the 26x26 win is left on the table; set_winograd("on") takes it).
  const bool small_u = (long)s.c * s.filters <= 128L * 256;
  return s.c >= 32 && s.filters >= 32 && s.out_w >= 52 && s.out_h >= 8 && small_u;
}

void winograd_transform_weights(int filters, int c, const float* weights, float* u) {
  static const double G[6][3] = {{1. / 4, 0, 0},           {-1. / 6, -1. / 6, -1. / 6}, {-1. / 6, 1. / 6, -1. / 6},
                                 {1. / 24, 1. / 12, 1. / 6}, {1. / 24, -1. / 12, 1. / 6}, {0, 0, 1}};
  const size_t xs = (size_t)filters * c;
#pragma omp parallel for schedule(static) if (xs > 4096)
  for (int f = 0; f < filters; ++f)
    for (int ch = 0; ch < c; ++ch) {
      const float* g = weights + ((size_t)f * c + ch) * 9;
      double tmp[6][3];
      for (int i = 0; i < 6; ++i)
        for (int j = 0; j < 3; ++j) tmp[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
      for (int i = 0; i < 6; ++i)
        for (int k = 0; k < 6; ++k)
          u[(size_t)(i * 6 + k) * xs + (size_t)f * c + ch] =
              (float)(tmp[i][0] * G[k][0] + tmp[i][1] * G[k][1] + tmp[i][2] * G[k][2]);
    }
}

void conv3x3_winograd(CpuIsa isa, const ConvShape& s, const float* input, const float* u, const ConvEpilogue& ep,
                      float* output) {
  check(winograd_applicable(s), "conv3x3_winograd: not a 3x3 stride-1 pad-1 ungrouped convolution");
  require_cpu_isa(isa);  // here, outside the parallel region the kernels run in
  Geom g;
  g.c = s.c;
  g.h = s.h;
  g.w = s.w;
  g.out_h = s.out_h;
  g.out_w = s.out_w;
  g.tiles_w = (s.out_w + 3) / 4;
  g.tiles_h = (s.out_h + 3) / 4;
  g.tiles_img = g.tiles_w * g.tiles_h;
  const int T = s.batch * g.tiles_img;
  const int F = s.filters;
  const int threads = std::max(1, omp_get_max_threads());
  // Panels per block: keep V + M of one block near 1.5 MB (L2), and give every
  // thread a few blocks.
  int np = (int)std::min<long>(kMaxPanels, std::max<long>(1, (1536L << 10) / (36L * (g.c + F) * kPanel * 4)));
  while (np > 1 && (T + np * kPanel - 1) / (np * kPanel) < 3 * threads) --np;
  const int nbs = np * kPanel;
  const int blocks = (T + nbs - 1) / nbs;
  const size_t xs_u = (size_t)F * g.c;
#pragma omp parallel num_threads(threads)
  {
    static thread_local std::vector<float> vbuf, mbuf;
    const size_t vneed = (size_t)36 * g.c * nbs, mneed = (size_t)36 * F * nbs;
    if (vbuf.size() < vneed) vbuf.resize(vneed);
    if (mbuf.size() < mneed) mbuf.resize(mneed);
    float* V = vbuf.data();
    float* M = mbuf.data();
#pragma omp for schedule(dynamic, 1)
    for (int blk = 0; blk < blocks; ++blk) {
      const int t0 = blk * nbs, nb = std::min(nbs, T - t0);
      wino_detail::input_block(isa, g, input, t0, nb, nbs, V);
      const int panels = (nb + kPanel - 1) / kPanel;
      for (int xi = 0; xi < 36; ++xi)
        for (int q = 0; q < panels; ++q) {
          const int nvq = std::min(kPanel, nb - q * kPanel);
          gemm_panel(isa, F, g.c, u + xi * xs_u, g.c, V + (size_t)xi * g.c * nbs + (size_t)q * g.c * kPanel,
                     (nvq + 15) / 16 * 16, nvq, M + (size_t)xi * F * nbs + q * kPanel, nbs);
        }
      wino_detail::output_block(isa, g, F, M, t0, nb, nbs, ep.scale, ep.bias, ep.act, output);
    }
  }
}

uint64_t float_checksum(const float* p, size_t n) {
  constexpr uint64_t K = 0x9E3779B97F4A7C15ull;
  uint64_t h[4] = {0x243F6A8885A308D3ull, 0x13198A2E03707344ull, 0xA4093822299F31D0ull, 0x082EFA98EC4E6C89ull};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 4; ++l) {
      uint64_t v;
      std::memcpy(&v, p + i + 2 * l, 8);
      h[l] = (h[l] ^ v) * K;
    }
  for (; i < n; ++i) {
    uint32_t v;
    std::memcpy(&v, p + i, 4);
    h[0] = (h[0] ^ v) * K;
  }
  uint64_t r = n;
  for (int l = 0; l < 4; ++l) r = (r ^ h[l]) * K;
  return r ^ (r >> 29);
}

}  // namespace dn
