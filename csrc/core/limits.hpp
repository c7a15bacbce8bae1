// Limits checked before anything is allocated: hostile or mistyped cfg values must end in a
// DarknetError naming the place, never in an overflow, a huge allocation or an endless loop.
//
//   memory_limit()      bytes a network's buffers (activations, parameters, training state,
//                       workspace) may add up to; a network over it is refused with the layer
//                       and the bytes named. Default 32 GiB; DARKNET_PY_MEMORY_LIMIT (bytes, or
//                       with a K/M/G/T suffix) seeds it; set_memory_limit() changes it.
//   kMax*               upper bounds on single cfg values, far above any real network.
#pragma once
#include <cstdint>
#include <string>

#include "core/error.hpp"

namespace dn {

constexpr int kMaxSpatial = 1 << 16;      // width, height of any feature map
constexpr int kMaxChannels = 1 << 20;     // channels, filters (yolo9000: 28,269)
constexpr int kMaxWindow = 1024;          // conv/maxpool/avgpool size, stride, padding; reorg stride
constexpr int kMaxBatch = 1 << 16;        // images per batch
constexpr int kMaxTruthBoxes = 1 << 16;   // region max= (Darknet: 30)
constexpr int kMaxAnchors = 1 << 12;      // region num=
constexpr int kMaxCoords = 64;            // region coords=

uint64_t memory_limit();
void set_memory_limit(uint64_t bytes);  // 0 restores the default (and the environment's value)
uint64_t parse_byte_size(const std::string& text);  // "4096", "16G", "1.5T"; throws DarknetError

// a*b for sizes, or a DarknetError naming `what` when it would not fit in 63 bits.
inline uint64_t checked_mul(uint64_t a, uint64_t b, const char* what) {
  if (a && b > (uint64_t)INT64_MAX / a) fail(what, ": size overflows 64 bits (", a, " x ", b, ")");
  return a * b;
}

}  // namespace dn
