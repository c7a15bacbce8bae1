/* darknet_py C API: load a Darknet cfg/weights, run forward, detect objects, train.
 *
 * Conventions
 *  - Opaque handles with explicit ownership: dn_network_load/dn_network_create make a
 *    network, dn_network_free releases it (NULL is accepted).
 *  - Every function that can fail returns a dn_status (DN_OK = 0). On failure the
 *    output parameters are left as documented (pointer outputs are set to NULL when the
 *    output pointer itself is valid) and dn_last_error() says why.
 *  - dn_last_error() is thread-local: it describes the last call made on the calling
 *    thread that returned a status (a successful call clears it to ""). The returned
 *    text stays valid until the next such call on the same thread.
 *  - Pointers the network hands out (forward output, layer outputs, detections, class
 *    names, warnings) are owned by the network and stay valid until the next call on
 *    that network (or dn_network_free); copy what you keep.
 *  - Images and tensors are float32, NCHW, batch-major (Darknet's layout).
 *
 * Threads
 *  One network handle must not be used from two threads at once: a call made while
 *  another thread is inside a call on the same handle is refused with DN_BUSY (never
 *  silently wrong results). Separate handles are independent and may run concurrently,
 *  one per thread.
 *  Each call uses OpenMP inside (dn_network_set_threads bounds it for that handle).
 *  libgomp reads GOMP_SPINCOUNT once at start-up: the Python package sets 10000 (idle
 *  workers sleep sooner); a host that wants the same sets it in its environment.
 */
#ifndef DARKNET_PY_H
#define DARKNET_PY_H

#include <stddef.h>

#define DARKNET_PY_VERSION_MAJOR 0
#define DARKNET_PY_VERSION_MINOR 1
#define DARKNET_PY_VERSION_PATCH 0
#define DARKNET_PY_VERSION_STRING "0.1.0"

/* Symbols of the API are the only ones exported from the shared library. */
#if defined(_WIN32)
#define DN_API
#elif defined(DARKNET_PY_BUILDING_LIBRARY)
#define DN_API __attribute__((visibility("default")))
#else
#define DN_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dn_status {
  DN_OK = 0,
  DN_ERROR = 1,            /* the core failed: bad cfg/weights file, shape mismatch, device... */
  DN_INVALID_ARGUMENT = 2, /* an argument was NULL, out of range or of the wrong size */
  DN_OUT_OF_MEMORY = 3,
  DN_BUSY = 4              /* another thread is inside a call on the same network handle */
} dn_status;

typedef struct dn_network dn_network;

/* One detected object. */
typedef struct dn_detection {
  int class_id;       /* the class with the highest probability */
  float prob;         /* its probability: objectness * P(class | object) (WordTree: down the tree) */
  float objectness;
  float x, y, w, h;   /* box centre and size, in pixels of the image passed in */
  const char* name;   /* class name (dn_network_load_names), or its number as text */
} dn_detection;

/* ---- version and errors -------------------------------------------------------------- */
/* "MAJOR.MINOR.PATCH" of the library actually loaded (compare with DARKNET_PY_VERSION_STRING). */
DN_API const char* dn_version(void);
/* MAJOR*10000 + MINOR*100 + PATCH. */
DN_API int dn_version_number(void);
/* Message of the last failed call on this thread ("" after a successful call). */
DN_API const char* dn_last_error(void);
/* Short name of a status ("DN_OK", "DN_INVALID_ARGUMENT", ...); "unknown status" otherwise. */
DN_API const char* dn_status_name(int status);

/* ---- building and loading ------------------------------------------------------------ */
/* Builds a network from a .cfg file with Darknet's seeded random initialisation (seed 0).
 * batch > 0 replaces the cfg's batch (and sets subdivisions to 1, as Darknet's
 * set_batch_network); 0 keeps the cfg's batch/subdivisions; negative is refused.
 * *out is set to NULL first and to the network on success. */
DN_API int dn_network_create(const char* cfg_path, int batch, dn_network** out);
/* dn_network_create + dn_network_load_weights(all layers) when weights_path is not NULL. */
DN_API int dn_network_load(const char* cfg_path, const char* weights_path, int batch, dn_network** out);
/* Loads a Darknet .weights file into the first `cutoff` layers (cutoff < 0: all layers),
 * as Darknet's load_weights_upto. A truncated file fails (layer, expected vs found); data
 * left after the last loaded layer is a warning (dn_network_warning). */
DN_API int dn_network_load_weights(dn_network* net, const char* weights_path, int cutoff);
/* Class names for detections: one per line (surrounding blanks stripped, trailing blank
 * lines dropped), as Darknet's .names files. */
DN_API int dn_network_load_names(dn_network* net, const char* names_path);
/* Class names from memory: `count` strings (copied). count 0 clears them. */
DN_API int dn_network_set_names(dn_network* net, const char* const* names, int count);
/* The name of class `class_id` (its number as text when no name is loaded for it). */
DN_API int dn_network_class_name(const dn_network* net, int class_id, const char** name);
DN_API void dn_network_free(dn_network* net);

/* Non-fatal problems found while loading: unused cfg keys (file:line), trailing data in a
 * weights file. Kept for the life of the network. */
DN_API int dn_network_warning_count(const dn_network* net, int* count);
DN_API int dn_network_warning(const dn_network* net, int index, const char** text);

/* ---- execution settings ---------------------------------------------------------------- */
/* OpenMP threads for this network's calls; 0 = the OpenMP runtime's default. */
DN_API int dn_network_set_threads(dn_network* net, int threads);
/* Moves the network to "cpu" or "cuda" (parameters upload on the next forward; moving back
 * pulls everything to the host). Fails with a reason when CUDA is not built in or no device. */
DN_API int dn_network_set_device(dn_network* net, const char* device);
/* The CUDA convolutions' arithmetic: "tf32" (tensor cores, the default) or "fp32" (plain FMA,
 * parity with the CPU to 1e-4); other names are refused. No effect on the CPU. */
DN_API int dn_network_set_cuda_math(dn_network* net, const char* math);
/* enable = 1 (default): on CUDA, an inference forward is recorded once as a CUDA graph and
 * replayed while the network's buffers stay the same; 0 runs every forward eagerly. */
DN_API int dn_network_set_cuda_graphs(dn_network* net, int enable);
/* 1 when this build has CUDA and a usable device, else 0 (cannot fail). */
DN_API int dn_cuda_available(void);
/* keep = 1 (default): every layer keeps its output after a forward (dn_network_layer_output
 * reads any layer). keep = 0: inference lends layer outputs from a shared pool planned by
 * liveness (a few activation maps alive instead of all); afterwards only outputs no later
 * layer overwrote are readable, others fail with a message. Detection needs only the last. */
DN_API int dn_network_set_keep_outputs(dn_network* net, int keep);
/* enable = 1 (default; DARKNET_PY_FUSE seeds it): with keep = 0, a convolution and the 2x2
 * stride-2 max pool after it run as one kernel where the CPU backend can (the conv's output is
 * then never written; the result is the same bit for bit); 0 runs every layer alone. */
DN_API int dn_network_set_fuse_layers(dn_network* net, int enable);
/* Changes the input size in place (weights kept), as Darknet's resize_network. */
DN_API int dn_network_resize(dn_network* net, int width, int height);

/* ---- shapes -------------------------------------------------------------------------- */
/* Any output pointer may be NULL when not wanted. */
DN_API int dn_network_input_shape(const dn_network* net, int* batch, int* channels, int* height, int* width);
/* The output layer (the last layer that is not [cost]), per image. */
DN_API int dn_network_output_shape(const dn_network* net, int* channels, int* height, int* width);
DN_API int dn_network_layer_count(const dn_network* net, int* count);
/* The layer's cfg section name ("convolutional", "region", ...); valid for the network's life. */
DN_API int dn_network_layer_type(const dn_network* net, int index, const char** type);
/* Classes the detection layers tell apart (the last [region] layer's classes; 0 without one). */
DN_API int dn_network_class_count(const dn_network* net, int* classes);
/* Truth floats per image that dn_network_train_step expects (0 without loss layers). */
DN_API int dn_network_truth_size(const dn_network* net, int* floats_per_image);

/* ---- compute ------------------------------------------------------------------------- */
/* input: input_count = batch*channels*height*width floats (NCHW); any other count is
 * refused. *output receives the network-owned output of the output layer
 * (batch*C*H*W floats, *output_count of them when output_count is not NULL).
 * Runs in inference mode, as Darknet's network_predict (after dn_network_train_step too;
 * the training state is kept for the next step). */
DN_API int dn_network_forward(dn_network* net, const float* input, size_t input_count, const float** output,
                              size_t* output_count);
/* Output of layer `index` from the last forward (batch*C*H*W floats, network-owned); any
 * shape pointer may be NULL. */
DN_API int dn_network_layer_output(dn_network* net, int index, const float** data, int* batch, int* channels,
                                   int* height, int* width);

/* Detects objects in one image, as `darknet detector test`: the image is letterboxed to
 * the network input, run forward, decoded by every region layer with `thresh` and
 * `hier_thresh` (WordTree descent), sorted and suppressed by Darknet's do_nms_sort with
 * `nms` (0 = no NMS); each box whose best class probability exceeds thresh is returned,
 * highest probability first, with its box in pixels of this image.
 * Darknet's defaults: thresh .24 (detector test; .5 for demo), hier_thresh .5, nms .45.
 * The network must take 3 channels and have batch 1.
 *   rgb8:  width*height*3 bytes, rows top to bottom, pixels R,G,B interleaved;
 *          size = the number of bytes passed (checked).
 *   float: 3 planes (R, G, B) of height*width floats in [0,1] (Darknet's image layout);
 *          size = the number of floats passed (checked).
 * *detections (network-owned, *count entries) is set to NULL/0 on failure. */
DN_API int dn_network_detect_rgb8(dn_network* net, const unsigned char* pixels, size_t size, int width, int height,
                                  float thresh, float hier_thresh, float nms, const dn_detection** detections,
                                  int* count);
DN_API int dn_network_detect_float(dn_network* net, const float* planes, size_t size, int width, int height,
                                   float thresh, float hier_thresh, float nms, const dn_detection** detections,
                                   int* count);

/* One Darknet training step (train_network_datum): seen += batch, forward in training mode
 * with the truth, backward, and an SGD update with the cfg's learning-rate policy once a
 * whole batch*subdivisions is accumulated. input: batch*C*H*W floats; truth:
 * batch*dn_network_truth_size floats (detection: max_boxes*(x,y,w,h,class) per image,
 * relative coordinates, zero padded). *loss (may be NULL) receives the step's cost. */
DN_API int dn_network_train_step(dn_network* net, const float* input, size_t input_count, const float* truth,
                                 size_t truth_count, float* loss);
/* Images seen so far (what a weights file stores), and setting it (e.g. to 0 for a fresh run). */
DN_API int dn_network_seen(const dn_network* net, long long* seen);
DN_API int dn_network_set_seen(dn_network* net, long long seen);

/* Writes Darknet .weights (format 0.2.0) atomically: temp file, then rename. */
DN_API int dn_network_save_weights(const dn_network* net, const char* path);

#ifdef __cplusplus
}
#endif
#endif
