// A consumer's own header named like one of darknet_py's internal headers: the public
// headers must not pick it up (they include only <darknet_py/...>).
#pragma once
namespace consumer {
struct Network {
  int layers = 42;
};
}  // namespace consumer
