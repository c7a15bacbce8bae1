// Darknet's SGD step (update_convolutional_layer), per parameter, shared by the
// CPU update and the CUDA update kernel. `update` holds the accumulated
// negative gradient (sum of delta * input) and doubles as the momentum state.
#pragma once
#include "core/hd.hpp"

namespace dn {

// param += step * update; update *= momentum   (step = learning_rate / batch)
DN_HD void sgd_step(float& param, float& update, float step, float momentum) {
  param += step * update;
  update *= momentum;
}

// Weights first add the decay term: update += decay_term * param
// (decay_term = -decay * batch), then take the step above.
DN_HD void sgd_step_decay(float& param, float& update, float step, float decay_term, float momentum) {
  update += decay_term * param;
  sgd_step(param, update, step, momentum);
}

}  // namespace dn
