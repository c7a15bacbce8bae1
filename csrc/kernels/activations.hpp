// Darknet's activation functions and their gradients, shared by the CPU loops
// and the CUDA kernels. Gradients take the activation's OUTPUT, as Darknet does.
#pragma once
#include <cmath>
#include <string>

#include "core/hd.hpp"

namespace dn {

enum class Activation {
  Logistic, Relu, Relie, Linear, Ramp, Tanh, Plse, Leaky, Elu, Loggy, Stair, Hardtan, Lhtan, Selu
};

// Parses Darknet's activation names; returns false for unknown names.
bool parse_activation(const std::string& name, Activation* out);
const char* activation_name(Activation a);

DN_HD float stair_activate(float x) {
  int n = (int)floorf(x);
  if (n % 2 == 0) return floorf(x / 2.f);
  return (x - n) + floorf(x / 2.f);
}
DN_HD float hardtan_activate(float x) { return x < -1 ? -1.f : (x > 1 ? 1.f : x); }
DN_HD float plse_activate(float x) {
  if (x < -4) return .01f * (x + 4);
  if (x > 4) return .01f * (x - 4) + 1;
  return .125f * x + .5f;
}
DN_HD float lhtan_activate(float x) {
  if (x < 0) return .001f * x;
  if (x > 1) return .001f * (x - 1) + 1;
  return x;
}
DN_HD float logistic_activate(float x) { return 1.f / (1.f + expf(-x)); }
DN_HD float leaky_activate(float x) { return x > 0 ? x : .1f * x; }

DN_HD float activate(float x, Activation a) {
  switch (a) {
    case Activation::Linear: return x;
    case Activation::Logistic: return logistic_activate(x);
    case Activation::Loggy: return 2.f / (1.f + expf(-x)) - 1;
    case Activation::Relu: return x * (x > 0);
    case Activation::Elu: return (x >= 0) * x + (x < 0) * (expf(x) - 1);
    case Activation::Selu: return (x >= 0) * 1.0507f * x + (x < 0) * 1.0507f * 1.6732f * (expf(x) - 1);
    case Activation::Relie: return x > 0 ? x : .01f * x;
    case Activation::Ramp: return x * (x > 0) + .1f * x;
    case Activation::Leaky: return leaky_activate(x);
    case Activation::Tanh: return (expf(2 * x) - 1) / (expf(2 * x) + 1);
    case Activation::Plse: return plse_activate(x);
    case Activation::Stair: return stair_activate(x);
    case Activation::Hardtan: return hardtan_activate(x);
    case Activation::Lhtan: return lhtan_activate(x);
  }
  return x;
}

// d(activation)/dx expressed through the output y.
DN_HD float gradient(float y, Activation a) {
  switch (a) {
    case Activation::Linear: return 1;
    case Activation::Logistic: return (1 - y) * y;
    case Activation::Loggy: {
      float t = (y + 1) / 2;
      return 2 * (1 - t) * t;
    }
    case Activation::Relu: return (y > 0);
    case Activation::Elu: return (y >= 0) + (y < 0) * (y + 1);
    case Activation::Selu: return (y >= 0) * 1.0507f + (y < 0) * (y + 1.0507f * 1.6732f);
    case Activation::Relie: return y > 0 ? 1 : .01f;
    case Activation::Ramp: return (y > 0) + .1f;
    case Activation::Leaky: return y > 0 ? 1 : .1f;
    case Activation::Tanh: return 1 - y * y;
    case Activation::Plse: return (y < 0 || y > 1) ? .01f : .125f;
    case Activation::Stair: return floorf(y) == y ? 0.f : 1.f;
    case Activation::Hardtan: return (y > -1 && y < 1) ? 1.f : 0.f;
    case Activation::Lhtan: return (y > 0 && y < 1) ? 1 : .001f;
  }
  return 1;
}

// In-place activation of n floats / multiplication of delta by the gradient.
void activate_array(float* x, size_t n, Activation a);
void gradient_array(const float* y, size_t n, Activation a, float* delta);

}  // namespace dn
