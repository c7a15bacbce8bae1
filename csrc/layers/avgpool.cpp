// [avgpool]: global average pooling over each channel (Darknet's avgpool).
#include <cstdio>

#include "layers/layers.hpp"

namespace dn {

class AvgpoolLayer : public Layer {
 public:
  void compute_shape() {
    out_w = 1;
    out_h = 1;
    out_c = c;
    inputs = (size_t)w * h * c;
    outputs = (size_t)c;
  }
  void resize(int nw, int nh) override {
    w = nw;
    h = nh;
    compute_shape();
    allocate();
  }
  double flops() const override { return (double)inputs; }
  void forward(NetState& s) override {
    const int spatial = w * h;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < batch; ++b)
      for (int k = 0; k < c; ++k) {
        const float* in = s.input + ((size_t)b * c + k) * spatial;
        float sum = 0;  // float accumulation in input order, as Darknet
        for (int i = 0; i < spatial; ++i) sum += in[i];
        output[(size_t)b * c + k] = sum / spatial;
      }
  }
  void backward(NetState& s) override {
    if (!s.delta) return;
    const int spatial = w * h;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < batch; ++b)
      for (int k = 0; k < c; ++k) {
        float* d = s.delta + ((size_t)b * c + k) * spatial;
        const float g = delta[(size_t)b * c + k] / spatial;
        for (int i = 0; i < spatial; ++i) d[i] += g;
      }
  }
  std::string describe() const override {
    char buf[160];
    std::snprintf(buf, sizeof buf, "avg                     %4d x%4d x%4d   ->  %4d", w, h, c, c);
    return buf;
  }
};

std::unique_ptr<Layer> make_avgpool(const CfgSection&, const LayerInput& in, Network&) {
  auto l = std::make_unique<AvgpoolLayer>();
  l->type = "avgpool";
  l->batch = in.batch;
  l->w = in.w;
  l->h = in.h;
  l->c = in.c;
  l->compute_shape();
  l->allocate();
  return l;
}

}  // namespace dn
