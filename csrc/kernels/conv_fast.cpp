#include "kernels/conv_fast.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/batchnorm.hpp"
#include "kernels/gemm.hpp"

namespace dn {

void fold_batchnorm(int filters, const float* biases, const float* scales, const float* mean, const float* var,
                    std::vector<float>& out_scale, std::vector<float>& out_bias) {
  out_bias.assign(biases, biases + filters);
  if (!scales) {
    out_scale.clear();
    return;
  }
  out_scale.resize(filters);
  for (int f = 0; f < filters; ++f) {
    const float s = scales[f] / sqrtf(var[f] + kBatchNormEpsilon);
    out_scale[f] = s;
    out_bias[f] = biases[f] - mean[f] * s;
  }
}

void pack_im2col_panel(const ConvShape& s, const float* image, int k0, int kc, int j0, int nr, int width,
                       float* dst) {
  const int ksz = s.size * s.size;
  const int oy0 = j0 / s.out_w, ox0 = j0 % s.out_w;
  for (int kk = 0; kk < kc; ++kk) {
    const int k = k0 + kk;
    const int ch = k / ksz, r = k % ksz, ky = r / s.size, kx = r % s.size;
    const float* plane = image + (size_t)ch * s.h * s.w;
    float* d = dst + (size_t)kk * width;
    int oy = oy0, ox = ox0, j = 0;
    while (j < nr) {
      const int seg = std::min(nr - j, s.out_w - ox);
      const int iy = oy * s.stride - s.pad + ky;
      float* out = d + j;
      if (iy < 0 || iy >= s.h) {
        std::memset(out, 0, sizeof(float) * seg);
      } else {
        const float* row = plane + (size_t)iy * s.w;
        if (s.stride == 1) {
          const int ix0 = ox - s.pad + kx;  // column t reads row[ix0 + t]
          const int lo = std::min(seg, std::max(0, -ix0));
          const int hi = std::max(lo, std::min(seg, s.w - ix0));
          for (int t = 0; t < lo; ++t) out[t] = 0.f;
          if (hi > lo) std::memcpy(out + lo, row + ix0 + lo, sizeof(float) * (hi - lo));
          for (int t = hi; t < seg; ++t) out[t] = 0.f;
        } else {
          for (int t = 0; t < seg; ++t) {
            const int ix = (ox + t) * s.stride - s.pad + kx;
            out[t] = (ix >= 0 && ix < s.w) ? row[ix] : 0.f;
          }
        }
      }
      j += seg;
      ox += seg;
      if (ox == s.out_w) {
        ox = 0;
        ++oy;
      }
    }
    for (int t = nr; t < width; ++t) d[t] = 0.f;
  }
}

void pack_im2col_panel_transposed(const ConvShape& s, const float* image, int k0, int kc, int j0, int nr, int width,
                                  float* dst) {
  const int ksz = s.size * s.size;
  for (int col = 0; col < width; ++col) {
    float* d = dst + col;
    if (col >= nr) {
      for (int r = 0; r < kc; ++r) d[(size_t)r * width] = 0.f;
      continue;
    }
    const int k = j0 + col;
    const int ch = k / ksz, rem = k % ksz, ky = rem / s.size, kx = rem % s.size;
    const float* plane = image + (size_t)ch * s.h * s.w;
    int oy = k0 / s.out_w, ox = k0 % s.out_w;
    for (int r = 0; r < kc; ++r) {
      const int iy = oy * s.stride - s.pad + ky, ix = ox * s.stride - s.pad + kx;
      d[(size_t)r * width] = (iy >= 0 && iy < s.h && ix >= 0 && ix < s.w) ? plane[(size_t)iy * s.w + ix] : 0.f;
      if (++ox == s.out_w) {
        ox = 0;
        ++oy;
      }
    }
  }
}

void conv_forward_fast(CpuIsa isa, const ConvShape& s, const float* input, const float* weights,
                       const ConvEpilogue& ep, float* output) {
  const int spatial = s.out_w * s.out_h;
  const int cg = s.c / s.groups;
  const int m = s.filters / s.groups;
  const int k = s.size * s.size * cg;
  const bool direct = s.size == 1 && s.stride == 1 && s.pad == 0;
  for (int b = 0; b < s.batch; ++b)
    for (int g = 0; g < s.groups; ++g) {
      const float* a = weights + (size_t)g * m * k;
      const float* im = input + ((size_t)b * s.groups + g) * cg * s.h * s.w;
      float* out = output + ((size_t)b * s.groups + g) * m * spatial;
      GemmEpilogue e;
      e.scale = ep.scale ? ep.scale + (size_t)g * m : nullptr;
      e.bias = ep.bias ? ep.bias + (size_t)g * m : nullptr;
      e.act = ep.act;
      PackB pack;
      if (direct) {
        pack = [=](int k0, int kc, int j0, int nr, int width, float* dst) {
          for (int kk = 0; kk < kc; ++kk) {
            float* d = dst + (size_t)kk * width;
            std::memcpy(d, im + (size_t)(k0 + kk) * spatial + j0, sizeof(float) * nr);
            for (int t = nr; t < width; ++t) d[t] = 0.f;
          }
        };
      } else {
        pack = [=, &s](int k0, int kc, int j0, int nr, int width, float* dst) {
          pack_im2col_panel(s, im, k0, kc, j0, nr, width, dst);
        };
      }
      gemm_packed(isa, m, spatial, k, a, k, 1, pack, out, spatial, false, &e);
    }
}

}  // namespace dn
