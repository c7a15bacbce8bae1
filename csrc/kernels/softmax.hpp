// Softmax of n values read/written with a stride, divided by a temperature
// (Darknet's formula: exp(x/t - max/t) / sum).
#pragma once
#include <cfloat>
#include <cmath>

#include "core/hd.hpp"

namespace dn {

DN_HD void softmax(const float* input, int n, float temperature, int stride, float* output) {
  float largest = -FLT_MAX;
  for (int i = 0; i < n; ++i)
    if (input[i * stride] > largest) largest = input[i * stride];
  float sum = 0;
  for (int i = 0; i < n; ++i) {
    const float e = expf(input[i * stride] / temperature - largest / temperature);
    sum += e;
    output[i * stride] = e;
  }
  for (int i = 0; i < n; ++i) output[i * stride] /= sum;
}

}  // namespace dn
