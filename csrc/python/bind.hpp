// Shared declarations for the pybind11 bridge (only csrc/python includes pybind11).
#pragma once
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace dn {
void bind_network(py::module_& m);  // bind_network.cpp: Network, layers, weights
void bind_detect(py::module_& m);   // bind_detect.cpp: region decoding, NMS, WordTree
void bind_image(py::module_& m);    // bind_image.cpp: resize, letterbox, augmentation
void bind_perf(py::module_& m);     // bind_perf.cpp: kernels, threads, peak, per-layer timing
void bind_device(py::module_& m);   // bind_device.cpp: CUDA availability, device facts, allocation counters
void bind_classifier(py::module_& m);  // bind_classifier.cpp: classifier augmentation, hierarchical truth
}  // namespace dn
