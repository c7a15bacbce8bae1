// darknet_py C++ API: the core classes for hosts without Python.
#pragma once
#include "core/error.hpp"
#include "network.hpp"
