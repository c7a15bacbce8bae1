// Shared declarations for the pybind11 bridge (only csrc/python includes pybind11).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace dn {

// A new numpy array of `shape` holding a copy of n floats.
inline py::array_t<float> to_numpy(const float* data, size_t n, std::vector<py::ssize_t> shape) {
  py::array_t<float> a(shape);
  if (n) std::memcpy(a.mutable_data(), data, n * sizeof(float));
  return a;
}
inline py::array_t<float> to_numpy(const std::vector<float>& v, std::vector<py::ssize_t> shape) {
  return to_numpy(v.data(), v.size(), std::move(shape));
}

struct RegionStats;
class RegionLayer;
// bind_detect.cpp: the dictionaries _core returns for a region layer and its statistics
// (also used by the test-only darknet_py._testing, which links the bridge's object).
py::dict stats_dict(const RegionStats& s);
py::dict region_info(const RegionLayer& l);

void bind_network(py::module_& m);  // bind_network.cpp: Network, layers, weights
void bind_detect(py::module_& m);   // bind_detect.cpp: region decoding, NMS, WordTree
void bind_image(py::module_& m);    // bind_image.cpp: resize, letterbox, augmentation
void bind_perf(py::module_& m);     // bind_perf.cpp: kernels, threads, peak, per-layer timing
void bind_device(py::module_& m);   // bind_device.cpp: CUDA availability, device facts, allocation counters
void bind_classifier(py::module_& m);  // bind_classifier.cpp: classifier augmentation, hierarchical truth
}  // namespace dn
