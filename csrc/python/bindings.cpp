// The extension module darknet_py._core: the only bridge between Python and the core.
#include "python/bind.hpp"

#include "core/error.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "darknet_py C++ core";
  // C++ DarknetError becomes darknet_py.DarknetError (a ValueError subclass) with the same text.
  static py::exception<dn::DarknetError> error(m, "DarknetError", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const dn::DarknetError& e) {
      // Decoded leniently: a message quoting bytes from a file must not turn into a
      // UnicodeDecodeError on the way to Python.
      const std::string msg = e.what();
      PyObject* text = PyUnicode_DecodeUTF8(msg.data(), (Py_ssize_t)msg.size(), "backslashreplace");
      if (!text) {
        PyErr_Clear();
        py::set_error(error, "DarknetError (message not decodable)");
        return;
      }
      PyErr_SetObject(error.ptr(), text);
      Py_DECREF(text);
    }
  });
  dn::bind_network(m);
  dn::bind_detect(m);
  dn::bind_image(m);
  dn::bind_perf(m);
  dn::bind_device(m);
  dn::bind_classifier(m);
}
