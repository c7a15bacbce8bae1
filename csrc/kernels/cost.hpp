// The [cost] layer's per-element error and delta, shared by the CPU layer
// (layers/cost.cpp) and the CUDA kernel (cuda/cost.cu).
#pragma once
#include <math.h>

#include "core/hd.hpp"

namespace dn {

enum class CostType { Sse, Masked, L1, Smooth };

// Darknet's marker for "no label here" in masked costs (YOLO9000 classification data).
constexpr float kMaskedTruth = -1234.f;

struct CostTerm {
  float error;  // added to the cost
  float delta;  // truth-side delta (Darknet's delta = -dLoss/dinput up to a factor)
};

DN_HD CostTerm cost_term(CostType type, float truth, float input) {
  // masked: unlabelled entries cost nothing (Darknet copies the marker into the input).
  const float diff = (type == CostType::Masked && truth == kMaskedTruth) ? 0.f : truth - input;
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
    default:  // sse, masked
      t.error = diff * diff;
      t.delta = diff;
      break;
  }
  return t;
}

}  // namespace dn
