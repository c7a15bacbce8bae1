#include "kernels/activations.hpp"

#include <cstring>

namespace dn {

namespace {
struct NamedActivation {
  const char* name;
  Activation act;
};
const NamedActivation kActivations[] = {
    {"logistic", Activation::Logistic}, {"relu", Activation::Relu},       {"relie", Activation::Relie},
    {"linear", Activation::Linear},     {"ramp", Activation::Ramp},       {"tanh", Activation::Tanh},
    {"plse", Activation::Plse},         {"leaky", Activation::Leaky},     {"elu", Activation::Elu},
    {"loggy", Activation::Loggy},       {"stair", Activation::Stair},     {"hardtan", Activation::Hardtan},
    {"lhtan", Activation::Lhtan},       {"selu", Activation::Selu},
};
}  // namespace

bool parse_activation(const std::string& name, Activation* out) {
  for (const auto& e : kActivations)
    if (name == e.name) {
      *out = e.act;
      return true;
    }
  return false;
}

const char* activation_name(Activation a) {
  for (const auto& e : kActivations)
    if (e.act == a) return e.name;
  return "?";
}

void activate_array(float* x, size_t n, Activation a) {
  if (a == Activation::Linear) return;
  if (a == Activation::Leaky) {  // the hot case: keep it a branch-free vector loop
#pragma omp parallel for simd schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; ++i) x[i] = x[i] > 0 ? x[i] : .1f * x[i];
    return;
  }
#pragma omp parallel for schedule(static) if (n > 32768)
  for (size_t i = 0; i < n; ++i) x[i] = activate(x[i], a);
}

void gradient_array(const float* y, size_t n, Activation a, float* delta) {
  if (a == Activation::Linear) return;
#pragma omp parallel for schedule(static) if (n > 32768)
  for (size_t i = 0; i < n; ++i) delta[i] *= gradient(y[i], a);
}

}  // namespace dn
