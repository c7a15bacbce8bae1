// The [cost] layer's per-element error and delta, shared by the CPU layer
// (layers/cost.cpp) and the CUDA kernel (cuda/cost.cu).
#pragma once
#include <math.h>

#include "core/hd.hpp"

namespace dn {

enum class CostType { Sse, L1, Smooth };

struct CostTerm {
  float error;  // added to the cost
  float delta;  // truth-side delta (Darknet's delta = -dLoss/dinput up to a factor)
};

DN_HD CostTerm cost_term(CostType type, float truth, float input) {
  const float diff = truth - input;
  CostTerm t;
  switch (type) {
    case CostType::L1:
      t.error = fabsf(diff);
      t.delta = diff > 0 ? 1.f : -1.f;
      break;
    case CostType::Smooth: {
      const float ad = fabsf(diff);
      // Darknet's smooth-L1 sign is flipped beyond |diff| >= 1; use the true gradient sign.
      if (ad < 1) {
        t.error = diff * diff;
        t.delta = diff;
      } else {
        t.error = 2 * ad - 1;
        t.delta = diff > 0 ? 1.f : -1.f;
      }
      break;
    }
    default:
      t.error = diff * diff;
      t.delta = diff;
      break;
  }
  return t;
}

}  // namespace dn
