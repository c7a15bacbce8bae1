/* C API tests, written in C (the API's own language), self-contained: a small detector cfg
 * is written to the scratch directory given as argv[1]. Run by ctest, and under
 * AddressSanitizer + UndefinedBehaviorSanitizer by tests/test_cpp_host.py: every
 * function is given NULLs, bad sizes and bad files and must answer with a clean status
 * and message; load/detect/free runs in a loop (leaks fail the run at exit). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "darknet_py/darknet_py.h"

static int failures = 0;
static char dir[4096];

#define CHECK(cond)                                                               \
  do {                                                                            \
    if (!(cond)) {                                                                \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
      ++failures;                                                                 \
    }                                                                             \
  } while (0)

/* The call must fail with `status` and a message containing `text`. */
#define EXPECT_FAIL(call, status, text)                                                              \
  do {                                                                                               \
    int got_ = (call);                                                                               \
    const char* msg_ = dn_last_error();                                                              \
    if (got_ != (status) || !msg_ || !strstr(msg_, (text))) {                                        \
      fprintf(stderr, "%s:%d: %s -> %s \"%s\", expected %s containing \"%s\"\n", __FILE__, __LINE__, \
              #call, dn_status_name(got_), msg_ ? msg_ : "(null)", dn_status_name(status), (text));  \
      ++failures;                                                                                    \
    }                                                                                                \
  } while (0)

#define EXPECT_OK(call)                                                                     \
  do {                                                                                      \
    int got_ = (call);                                                                      \
    if (got_ != DN_OK) {                                                                    \
      fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call, dn_status_name(got_), \
              dn_last_error());                                                             \
      ++failures;                                                                           \
    }                                                                                       \
  } while (0)

static const char* path_in_dir(const char* name) {
  static char buffers[8][4200];
  static int next = 0;
  char* p = buffers[next++ % 8];
  snprintf(p, sizeof buffers[0], "%s/%s", dir, name);
  return p;
}

static void write_text(const char* path, const char* text) {
  FILE* f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(2);
  }
  fputs(text, f);
  fclose(f);
}

static long file_size(const char* path) {
  FILE* f = fopen(path, "rb");
  long n;
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fclose(f);
  return n;
}

/* Copies the first `keep` bytes of src to dst, then appends `extra` zero bytes. */
static void copy_file(const char* src, const char* dst, long keep, int extra) {
  FILE* in = fopen(src, "rb");
  FILE* out = fopen(dst, "wb");
  long i;
  int ch;
  if (!in || !out) exit(2);
  for (i = 0; i < keep && (ch = fgetc(in)) != EOF; ++i) fputc(ch, out);
  for (i = 0; i < extra; ++i) fputc(0, out);
  fclose(in);
  fclose(out);
}

/* A small YOLOv2-style detector: 32x32 input, 2 classes, 5 anchors. */
static const char* detector_cfg =
    "[net]\nbatch=2\nsubdivisions=1\nwidth=32\nheight=32\nchannels=3\nlearning_rate=0.001\n"
    "momentum=0.9\ndecay=0.0005\nmax_batches=10\npolicy=constant\nunknown_key=1\n"
    "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
    "[maxpool]\nsize=2\nstride=2\n"
    "[convolutional]\nfilters=35\nsize=1\nstride=1\npad=1\nactivation=linear\n"
    "[region]\nanchors=1.08,1.19, 3.42,4.41, 6.63,11.38, 9.42,5.11, 16.62,10.52\n"
    "bias_match=1\nclasses=2\ncoords=4\nnum=5\nsoftmax=1\njitter=.2\nrescore=1\n"
    "object_scale=5\nnoobject_scale=1\nclass_scale=1\ncoord_scale=1\nabsolute=1\nthresh=.6\nrandom=0\n";

static unsigned char image_rgb8[40 * 24 * 3];
static float image_planes[3 * 24 * 40];
static float input32[3 * 32 * 32];

static void make_inputs(void) {
  int x, y, c;
  for (y = 0; y < 24; ++y)
    for (x = 0; x < 40; ++x)
      for (c = 0; c < 3; ++c) {
        unsigned char v = (unsigned char)((x * 7 + y * 13 + c * 50) % 256);
        image_rgb8[(y * 40 + x) * 3 + c] = v;
        image_planes[(c * 24 + y) * 40 + x] = v / 255.f;
      }
  for (x = 0; x < 3 * 32 * 32; ++x) input32[x] = (float)((x * 31) % 97) / 97.f;
}

static void test_version_and_status_names(void) {
  CHECK(strcmp(dn_version(), DARKNET_PY_VERSION_STRING) == 0);
  CHECK(dn_version_number() ==
        DARKNET_PY_VERSION_MAJOR * 10000 + DARKNET_PY_VERSION_MINOR * 100 + DARKNET_PY_VERSION_PATCH);
  CHECK(strcmp(dn_status_name(DN_BUSY), "DN_BUSY") == 0);
  CHECK(strcmp(dn_status_name(99), "unknown status") == 0);
  CHECK(dn_cuda_available() == 0 || dn_cuda_available() == 1);
}

/* Every function with a NULL network or NULL outputs: a clean status, a message, no crash. */
static void test_null_arguments(dn_network* net) {
  const float* out = NULL;
  const char* text = NULL;
  const dn_detection* dets = NULL;
  size_t n = 0;
  int i = 0;
  long long seen = 0;
  float loss = 0;
  dn_network* made = (dn_network*)&i; /* must be reset to NULL */
  EXPECT_FAIL(dn_network_create(NULL, 1, &made), DN_INVALID_ARGUMENT, "cfg_path is NULL");
  CHECK(made == NULL);
  made = (dn_network*)&i;
  EXPECT_FAIL(dn_network_load(NULL, NULL, 1, &made), DN_INVALID_ARGUMENT, "cfg_path is NULL");
  CHECK(made == NULL);
  EXPECT_FAIL(dn_network_create(path_in_dir("detector.cfg"), 1, NULL), DN_INVALID_ARGUMENT, "out is NULL");
  EXPECT_FAIL(dn_network_load_weights(NULL, "x", -1), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_load_weights(net, NULL, -1), DN_INVALID_ARGUMENT, "weights_path is NULL");
  EXPECT_FAIL(dn_network_load_names(NULL, "x"), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_load_names(net, NULL), DN_INVALID_ARGUMENT, "names_path is NULL");
  EXPECT_FAIL(dn_network_set_names(NULL, NULL, 0), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_set_names(net, NULL, 2), DN_INVALID_ARGUMENT, "names is NULL");
  EXPECT_FAIL(dn_network_class_name(NULL, 0, &text), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_class_name(net, 0, NULL), DN_INVALID_ARGUMENT, "name is NULL");
  EXPECT_FAIL(dn_network_warning_count(NULL, &i), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_warning_count(net, NULL), DN_INVALID_ARGUMENT, "count is NULL");
  EXPECT_FAIL(dn_network_warning(NULL, 0, &text), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_warning(net, 0, NULL), DN_INVALID_ARGUMENT, "text is NULL");
  EXPECT_FAIL(dn_network_set_threads(NULL, 1), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_set_device(NULL, "cpu"), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_set_device(net, NULL), DN_INVALID_ARGUMENT, "device is NULL");
  EXPECT_FAIL(dn_network_resize(NULL, 32, 32), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_set_keep_outputs(NULL, 1), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_input_shape(NULL, &i, &i, &i, &i), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_OK(dn_network_input_shape(net, NULL, NULL, NULL, NULL)); /* shape outputs are optional */
  EXPECT_FAIL(dn_network_output_shape(NULL, &i, &i, &i), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_layer_count(NULL, &i), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_layer_count(net, NULL), DN_INVALID_ARGUMENT, "count is NULL");
  EXPECT_FAIL(dn_network_layer_type(NULL, 0, &text), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_layer_type(net, 0, NULL), DN_INVALID_ARGUMENT, "type is NULL");
  EXPECT_FAIL(dn_network_class_count(NULL, &i), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_class_count(net, NULL), DN_INVALID_ARGUMENT, "classes is NULL");
  EXPECT_FAIL(dn_network_truth_size(NULL, &i), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_truth_size(net, NULL), DN_INVALID_ARGUMENT, "floats_per_image is NULL");
  out = input32;
  EXPECT_FAIL(dn_network_forward(NULL, input32, 1, &out, &n), DN_INVALID_ARGUMENT, "net is NULL");
  CHECK(out == NULL && n == 0);
  EXPECT_FAIL(dn_network_forward(net, NULL, 1, &out, &n), DN_INVALID_ARGUMENT, "input is NULL");
  EXPECT_FAIL(dn_network_forward(net, input32, 1, NULL, &n), DN_INVALID_ARGUMENT, "output is NULL");
  EXPECT_FAIL(dn_network_layer_output(NULL, 0, &out, NULL, NULL, NULL, NULL), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_layer_output(net, 0, NULL, NULL, NULL, NULL, NULL), DN_INVALID_ARGUMENT, "data is NULL");
  EXPECT_FAIL(dn_network_detect_rgb8(NULL, image_rgb8, sizeof image_rgb8, 40, 24, .24f, .5f, .45f, &dets, &i),
              DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_detect_rgb8(net, NULL, sizeof image_rgb8, 40, 24, .24f, .5f, .45f, &dets, &i),
              DN_INVALID_ARGUMENT, "pixels is NULL");
  EXPECT_FAIL(dn_network_detect_rgb8(net, image_rgb8, sizeof image_rgb8, 40, 24, .24f, .5f, .45f, NULL, &i),
              DN_INVALID_ARGUMENT, "detections is NULL");
  EXPECT_FAIL(dn_network_detect_rgb8(net, image_rgb8, sizeof image_rgb8, 40, 24, .24f, .5f, .45f, &dets, NULL),
              DN_INVALID_ARGUMENT, "count is NULL");
  EXPECT_FAIL(dn_network_detect_float(NULL, image_planes, 3 * 24 * 40, 40, 24, .24f, .5f, .45f, &dets, &i),
              DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_detect_float(net, NULL, 3 * 24 * 40, 40, 24, .24f, .5f, .45f, &dets, &i),
              DN_INVALID_ARGUMENT, "planes is NULL");
  EXPECT_FAIL(dn_network_train_step(NULL, input32, 1, input32, 1, &loss), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_train_step(net, NULL, 1, input32, 1, &loss), DN_INVALID_ARGUMENT, "input is NULL");
  EXPECT_FAIL(dn_network_train_step(net, input32, 1, NULL, 1, &loss), DN_INVALID_ARGUMENT, "truth is NULL");
  EXPECT_FAIL(dn_network_seen(NULL, &seen), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_seen(net, NULL), DN_INVALID_ARGUMENT, "seen is NULL");
  EXPECT_FAIL(dn_network_set_seen(NULL, 0), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_save_weights(NULL, "x"), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_save_weights(net, NULL), DN_INVALID_ARGUMENT, "path is NULL");
  dn_network_free(NULL); /* accepted */
  EXPECT_OK(dn_network_layer_count(net, &i));
  CHECK(strcmp(dn_last_error(), "") == 0); /* a successful call clears the message */
}

/* Sizes and values out of range. */
static void test_bad_sizes(void) {
  dn_network* net = NULL;
  const float* out = NULL;
  const char* text = NULL;
  const dn_detection* dets = NULL;
  size_t n = 0;
  int count = 0;
  float loss = 0;
  EXPECT_FAIL(dn_network_create(path_in_dir("detector.cfg"), -3, &net), DN_INVALID_ARGUMENT,
              "batch must be >= 0");
  CHECK(net == NULL);
  EXPECT_OK(dn_network_create(path_in_dir("detector.cfg"), 1, &net));
  if (!net) return;
  EXPECT_FAIL(dn_network_forward(net, input32, 3 * 32 * 32 - 1, &out, &n), DN_INVALID_ARGUMENT,
              "input has 3071 floats, the network takes batch*C*H*W = 1*3*32*32 = 3072");
  EXPECT_FAIL(dn_network_resize(net, 0, 32), DN_INVALID_ARGUMENT, "size must be positive");
  EXPECT_FAIL(dn_network_set_threads(net, -1), DN_INVALID_ARGUMENT, "threads must be >= 0");
  EXPECT_FAIL(dn_network_set_device(net, "tpu"), DN_ERROR, "tpu");
  EXPECT_FAIL(dn_network_set_cuda_math(net, "tf16"), DN_ERROR, "unknown CUDA math 'tf16'");
  EXPECT_FAIL(dn_network_set_cuda_math(net, NULL), DN_INVALID_ARGUMENT, "math is NULL");
  EXPECT_FAIL(dn_network_set_cuda_graphs(NULL, 1), DN_INVALID_ARGUMENT, "net is NULL");
  EXPECT_FAIL(dn_network_set_fuse_layers(NULL, 1), DN_INVALID_ARGUMENT, "net is NULL");
  if (!dn_cuda_available()) /* a build without CUDA, or no device: refused with the reason */
    EXPECT_FAIL(dn_network_set_device(net, "cuda"), DN_ERROR, "");
  EXPECT_FAIL(dn_network_layer_type(net, 4, &text), DN_INVALID_ARGUMENT, "layer index 4 out of range (4 layers)");
  EXPECT_FAIL(dn_network_layer_output(net, -1, &out, NULL, NULL, NULL, NULL), DN_INVALID_ARGUMENT,
              "out of range");
  EXPECT_FAIL(dn_network_class_name(net, -1, &text), DN_INVALID_ARGUMENT, "class_id must be >= 0");
  EXPECT_FAIL(dn_network_warning(net, 99, &text), DN_INVALID_ARGUMENT, "warning index 99 out of range");
  EXPECT_FAIL(dn_network_set_names(net, NULL, -1), DN_INVALID_ARGUMENT, "count must be >= 0");
  EXPECT_FAIL(dn_network_set_seen(net, -5), DN_INVALID_ARGUMENT, "seen must be >= 0");
  EXPECT_FAIL(dn_network_detect_rgb8(net, image_rgb8, sizeof image_rgb8 - 1, 40, 24, .24f, .5f, .45f, &dets, &count),
              DN_INVALID_ARGUMENT, "a 40x24 RGB8 image has 2880");
  CHECK(dets == NULL && count == 0);
  EXPECT_FAIL(dn_network_detect_rgb8(net, image_rgb8, sizeof image_rgb8, -40, 24, .24f, .5f, .45f, &dets, &count),
              DN_INVALID_ARGUMENT, "width and height must be positive");
  EXPECT_FAIL(dn_network_detect_rgb8(net, image_rgb8, sizeof image_rgb8, 40, 24, 1.5f, .5f, .45f, &dets, &count),
              DN_INVALID_ARGUMENT, "thresh must be in [0, 1]");
  EXPECT_FAIL(dn_network_detect_rgb8(net, image_rgb8, sizeof image_rgb8, 40, 24, NAN, .5f, .45f, &dets, &count),
              DN_INVALID_ARGUMENT, "thresh must be in [0, 1]");
  EXPECT_FAIL(dn_network_detect_float(net, image_planes, 10, 40, 24, .24f, .5f, .45f, &dets, &count),
              DN_INVALID_ARGUMENT, "planes has 10 floats");
  EXPECT_FAIL(dn_network_train_step(net, input32, 3 * 32 * 32, input32, 7, &loss), DN_INVALID_ARGUMENT,
              "truth has 7 floats, the network takes batch*truths = 1*150 = 150");
  dn_network_free(net);

  /* Detection needs batch 1 and 3 channels. */
  EXPECT_OK(dn_network_create(path_in_dir("detector.cfg"), 0, &net)); /* the cfg's batch: 2 */
  if (!net) return;
  EXPECT_FAIL(dn_network_detect_rgb8(net, image_rgb8, sizeof image_rgb8, 40, 24, .24f, .5f, .45f, &dets, &count),
              DN_ERROR, "detect: the network has batch 2");
  dn_network_free(net);
}

static void test_bad_files(void) {
  dn_network* net = NULL;
  long size;
  const char* text = NULL;
  int count = 0;
  EXPECT_FAIL(dn_network_create(path_in_dir("missing.cfg"), 1, &net), DN_ERROR, "missing.cfg");
  CHECK(net == NULL);
  write_text(path_in_dir("bad.cfg"), "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nsize=0\n");
  EXPECT_FAIL(dn_network_create(path_in_dir("bad.cfg"), 1, &net), DN_ERROR, "bad.cfg:6: [convolutional] size=0");
  write_text(path_in_dir("empty.cfg"), "");
  EXPECT_FAIL(dn_network_create(path_in_dir("empty.cfg"), 1, &net), DN_ERROR, "no sections");
  CHECK(net == NULL);
  /* A weights file that fails to load leaves *out NULL (the network is freed). */
  EXPECT_FAIL(dn_network_load(path_in_dir("detector.cfg"), path_in_dir("missing.weights"), 1, &net), DN_ERROR,
              "cannot open weights file");
  CHECK(net == NULL);

  EXPECT_OK(dn_network_create(path_in_dir("detector.cfg"), 1, &net));
  if (!net) return;
  EXPECT_OK(dn_network_save_weights(net, path_in_dir("good.weights")));
  size = file_size(path_in_dir("good.weights"));
  CHECK(size > 100);
  copy_file(path_in_dir("good.weights"), path_in_dir("truncated.weights"), size / 2, 0);
  EXPECT_FAIL(dn_network_load_weights(net, path_in_dir("truncated.weights"), -1), DN_ERROR, "truncated.weights");
  copy_file(path_in_dir("good.weights"), path_in_dir("header.weights"), 5, 0);
  EXPECT_FAIL(dn_network_load_weights(net, path_in_dir("header.weights"), -1), DN_ERROR, "not a Darknet weights");
  EXPECT_FAIL(dn_network_load_weights(net, dir, -1), DN_ERROR, "");
  EXPECT_FAIL(dn_network_load_names(net, path_in_dir("missing.names")), DN_ERROR, "cannot open names file");
  EXPECT_FAIL(dn_network_save_weights(net, path_in_dir("no/such/dir/x.weights")), DN_ERROR, "");

  /* Trailing data is a retrievable warning, after the cfg's unused-key warning. */
  copy_file(path_in_dir("good.weights"), path_in_dir("trailing.weights"), size, 8);
  EXPECT_OK(dn_network_load_weights(net, path_in_dir("trailing.weights"), -1));
  EXPECT_OK(dn_network_warning_count(net, &count));
  CHECK(count == 2);
  EXPECT_OK(dn_network_warning(net, 0, &text));
  CHECK(text && strstr(text, "unknown_key"));
  EXPECT_OK(dn_network_warning(net, 1, &text));
  CHECK(text && strstr(text, "trailing.weights"));
  dn_network_free(net);
}

static int same_floats(const float* a, const float* b, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i)
    if (a[i] != b[i]) return 0;
  return 1;
}

static void test_compute(void) {
  dn_network *net = NULL, *copy = NULL;
  const float* out = NULL;
  const float* layer = NULL;
  float first[35 * 16 * 16];
  size_t n = 0;
  int batch = 0, c = 0, h = 0, w = 0, count = 0, i;
  const char* text = NULL;
  const char* names[] = {"cat", "dog"};
  const dn_detection* dets = NULL;
  const dn_detection* dets_float = NULL;
  int count_float = 0;
  float truth[2 * 150];
  float batch_input[2 * 3 * 32 * 32];
  float loss = -1;
  long long seen = -1;

  EXPECT_OK(dn_network_load(path_in_dir("detector.cfg"), NULL, 1, &net));
  if (!net) return;
  EXPECT_OK(dn_network_layer_count(net, &count));
  CHECK(count == 4);
  EXPECT_OK(dn_network_layer_type(net, 3, &text));
  CHECK(text && strcmp(text, "region") == 0);
  EXPECT_OK(dn_network_class_count(net, &count));
  CHECK(count == 2);
  EXPECT_OK(dn_network_truth_size(net, &count));
  CHECK(count == 150);
  EXPECT_OK(dn_network_set_threads(net, 2));
  EXPECT_OK(dn_network_set_device(net, "cpu"));
  EXPECT_OK(dn_network_set_cuda_math(net, "fp32"));
  EXPECT_OK(dn_network_set_cuda_graphs(net, 0));
  EXPECT_OK(dn_network_set_cuda_math(net, "tf32"));
  EXPECT_OK(dn_network_set_cuda_graphs(net, 1));
  EXPECT_OK(dn_network_forward(net, input32, 3 * 32 * 32, &out, &n));
  CHECK(out != NULL && n == 35 * 16 * 16);
  if (out) memcpy(first, out, sizeof first);
  EXPECT_OK(dn_network_layer_output(net, 3, &layer, &batch, &c, &h, &w));
  CHECK(batch == 1 && c == 35 && h == 16 && w == 16);
  CHECK(layer && same_floats(layer, first, 35 * 16 * 16));
  EXPECT_OK(dn_network_layer_output(net, 1, &layer, NULL, &c, &h, &w));
  CHECK(c == 8 && h == 16 && w == 16);
  /* Pooled outputs: the same result; an overwritten layer's output is refused with a reason. */
  EXPECT_FAIL(dn_network_set_keep_outputs(net, 2), DN_INVALID_ARGUMENT, "keep must be 0 or 1");
  EXPECT_OK(dn_network_set_keep_outputs(net, 0));
  EXPECT_OK(dn_network_forward(net, input32, 3 * 32 * 32, &out, &n));
  CHECK(out && same_floats(out, first, 35 * 16 * 16));
  EXPECT_FAIL(dn_network_layer_output(net, 0, &layer, NULL, NULL, NULL, NULL), DN_ERROR, "overwritten");
  /* Every layer alone: the same result. */
  EXPECT_FAIL(dn_network_set_fuse_layers(net, 2), DN_INVALID_ARGUMENT, "enable must be 0 or 1");
  EXPECT_OK(dn_network_set_fuse_layers(net, 0));
  EXPECT_OK(dn_network_forward(net, input32, 3 * 32 * 32, &out, &n));
  CHECK(out && same_floats(out, first, 35 * 16 * 16));
  EXPECT_OK(dn_network_set_fuse_layers(net, 1));
  EXPECT_OK(dn_network_set_keep_outputs(net, 1));

  /* Save and reload: the same output, bit for bit. */
  EXPECT_OK(dn_network_save_weights(net, path_in_dir("roundtrip.weights")));
  EXPECT_OK(dn_network_load(path_in_dir("detector.cfg"), path_in_dir("roundtrip.weights"), 1, &copy));
  if (copy) {
    EXPECT_OK(dn_network_forward(copy, input32, 3 * 32 * 32, &out, &n));
    CHECK(out && same_floats(out, first, 35 * 16 * 16));
    /* Partial load: only the first layer from the file. */
    EXPECT_OK(dn_network_load_weights(copy, path_in_dir("roundtrip.weights"), 1));
    dn_network_free(copy);
  }

  /* Detection: names, RGB8 and float input agree, boxes inside a generous frame. */
  EXPECT_OK(dn_network_set_names(net, names, 2));
  EXPECT_OK(dn_network_class_name(net, 1, &text));
  CHECK(text && strcmp(text, "dog") == 0);
  EXPECT_OK(dn_network_class_name(net, 7, &text));
  CHECK(text && strcmp(text, "7") == 0);
  EXPECT_OK(dn_network_detect_rgb8(net, image_rgb8, sizeof image_rgb8, 40, 24, .01f, .5f, .45f, &dets, &count));
  CHECK(count > 0);
  for (i = 0; i < count; ++i) {
    CHECK(dets[i].class_id >= 0 && dets[i].class_id < 2);
    CHECK(strcmp(dets[i].name, names[dets[i].class_id]) == 0);
    CHECK(dets[i].prob > .01f && dets[i].prob <= 1.f);
    CHECK(i == 0 || dets[i].prob <= dets[i - 1].prob);
    CHECK(dets[i].x > -400 && dets[i].x < 440 && dets[i].w > 0);
  }
  {
    dn_detection saved[64];
    int saved_count = count < 64 ? count : 64;
    memcpy(saved, dets, sizeof(dn_detection) * (size_t)saved_count);
    EXPECT_OK(dn_network_detect_float(net, image_planes, 3 * 24 * 40, 40, 24, .01f, .5f, .45f, &dets_float,
                                      &count_float));
    CHECK(count_float == count);
    for (i = 0; i < saved_count && i < count_float; ++i)
      CHECK(saved[i].class_id == dets_float[i].class_id && saved[i].prob == dets_float[i].prob &&
            saved[i].x == dets_float[i].x && saved[i].h == dets_float[i].h);
  }
  EXPECT_OK(dn_network_detect_rgb8(net, image_rgb8, sizeof image_rgb8, 40, 24, 1.f, .5f, 0.f, &dets, &count));
  CHECK(count == 0 && dets == NULL);

  /* Resize keeps the weights and changes the shapes. */
  EXPECT_OK(dn_network_resize(net, 64, 48));
  EXPECT_OK(dn_network_input_shape(net, &batch, &c, &h, &w));
  CHECK(batch == 1 && c == 3 && h == 48 && w == 64);
  EXPECT_OK(dn_network_output_shape(net, &c, &h, &w));
  CHECK(c == 35 && h == 24 && w == 32);
  EXPECT_OK(dn_network_detect_rgb8(net, image_rgb8, sizeof image_rgb8, 40, 24, .01f, .5f, .45f, &dets, &count));
  dn_network_free(net);

  /* Training: a batch of 2 with one box each; seen counts images. */
  EXPECT_OK(dn_network_create(path_in_dir("detector.cfg"), 0, &net));
  if (!net) return;
  memset(truth, 0, sizeof truth);
  truth[0] = .5f, truth[1] = .5f, truth[2] = .3f, truth[3] = .4f, truth[4] = 1;
  truth[150] = .3f, truth[151] = .6f, truth[152] = .2f, truth[153] = .2f, truth[154] = 0;
  memcpy(batch_input, input32, sizeof input32);
  memcpy(batch_input + 3 * 32 * 32, input32, sizeof input32);
  EXPECT_OK(dn_network_train_step(net, batch_input, 2 * 3 * 32 * 32, truth, 2 * 150, &loss));
  CHECK(loss > 0 && isfinite(loss));
  EXPECT_OK(dn_network_train_step(net, batch_input, 2 * 3 * 32 * 32, truth, 2 * 150, NULL));
  EXPECT_OK(dn_network_seen(net, &seen));
  CHECK(seen == 4);
  EXPECT_OK(dn_network_set_seen(net, 0));
  EXPECT_OK(dn_network_forward(net, batch_input, 2 * 3 * 32 * 32, &out, &n)); /* inference after training */
  CHECK(n == 2 * 35 * 16 * 16);
  dn_network_free(net);
}

/* load -> detect -> free, repeatedly: LeakSanitizer checks nothing stays behind. */
static void test_load_detect_free_loop(void) {
  int round, count = 0;
  const dn_detection* dets = NULL;
  for (round = 0; round < 10; ++round) {
    dn_network* net = NULL;
    EXPECT_OK(dn_network_load(path_in_dir("detector.cfg"), path_in_dir("good.weights"), 1, &net));
    if (!net) return;
    EXPECT_OK(dn_network_load_names(net, path_in_dir("detector.names")));
    EXPECT_OK(dn_network_detect_rgb8(net, image_rgb8, sizeof image_rgb8, 40, 24, .01f, .5f, .45f, &dets, &count));
    CHECK(count > 0 && (strcmp(dets[0].name, "cat") == 0 || strcmp(dets[0].name, "dog") == 0));
    dn_network_free(net);
  }
}

/* Threads: separate networks run concurrently and agree; one network shared by two
 * threads answers DN_OK or DN_BUSY, never anything else. */
struct worker {
  dn_network* net;
  int own_network;
  int ok, busy, other;
  float first_output;
};

static void* run_worker(void* arg) {
  struct worker* job = (struct worker*)arg;
  int i;
  for (i = 0; i < 20; ++i) {
    const float* out = NULL;
    size_t n = 0;
    int status = dn_network_forward(job->net, input32, 3 * 32 * 32, &out, &n);
    if (status == DN_OK) {
      ++job->ok;
      if (job->own_network) job->first_output = out[0]; /* a shared network's output belongs to whoever runs next */
    } else if (status == DN_BUSY) {
      ++job->busy;
      CHECK(strstr(dn_last_error(), "in use by another thread") != NULL);
    } else {
      ++job->other;
    }
  }
  return NULL;
}

static void test_threads(void) {
  struct worker jobs[2];
  pthread_t threads[2];
  dn_network* shared = NULL;
  int i;
  memset(jobs, 0, sizeof jobs);
  for (i = 0; i < 2; ++i) {
    EXPECT_OK(dn_network_load(path_in_dir("detector.cfg"), path_in_dir("good.weights"), 1, &jobs[i].net));
    if (!jobs[i].net) return;
    EXPECT_OK(dn_network_set_threads(jobs[i].net, 1));
    jobs[i].own_network = 1;
  }
  for (i = 0; i < 2; ++i) pthread_create(&threads[i], NULL, run_worker, &jobs[i]);
  for (i = 0; i < 2; ++i) pthread_join(threads[i], NULL);
  CHECK(jobs[0].ok == 20 && jobs[1].ok == 20);
  CHECK(jobs[0].first_output == jobs[1].first_output);
  for (i = 0; i < 2; ++i) dn_network_free(jobs[i].net);

  EXPECT_OK(dn_network_load(path_in_dir("detector.cfg"), path_in_dir("good.weights"), 1, &shared));
  if (!shared) return;
  EXPECT_OK(dn_network_set_threads(shared, 1));
  memset(jobs, 0, sizeof jobs);
  for (i = 0; i < 2; ++i) jobs[i].net = shared;
  for (i = 0; i < 2; ++i) pthread_create(&threads[i], NULL, run_worker, &jobs[i]);
  for (i = 0; i < 2; ++i) pthread_join(threads[i], NULL);
  CHECK(jobs[0].other == 0 && jobs[1].other == 0);
  CHECK(jobs[0].ok + jobs[1].ok > 0);
  printf("shared handle: %d calls ran, %d refused with DN_BUSY\n", jobs[0].ok + jobs[1].ok,
         jobs[0].busy + jobs[1].busy);
  dn_network_free(shared);
}

int main(int argc, char** argv) {
  dn_network* net = NULL;
  if (argc != 2 && !(argc == 3 && strcmp(argv[2], "threads") == 0)) {
    fprintf(stderr, "usage: %s SCRATCH_DIR [threads]\n", argv[0]);
    return 2;
  }
  snprintf(dir, sizeof dir, "%s", argv[1]);
  write_text(path_in_dir("detector.cfg"), detector_cfg);
  write_text(path_in_dir("detector.names"), "cat\ndog\n\n");
  make_inputs();
  if (argc == 3) {
    /* The threads test alone, for ThreadSanitizer builds: its networks run one OpenMP
     * thread each, so libgomp's (uninstrumented) pool takes no part. */
    if (dn_network_create(path_in_dir("detector.cfg"), 1, &net) != DN_OK ||
        dn_network_save_weights(net, path_in_dir("good.weights")) != DN_OK) {
      fprintf(stderr, "cannot prepare the test network: %s\n", dn_last_error());
      return 1;
    }
    dn_network_free(net);
    test_threads();
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    return failures ? 1 : 0;
  }

  test_version_and_status_names();
  if (dn_network_create(path_in_dir("detector.cfg"), 1, &net) != DN_OK) {
    fprintf(stderr, "cannot build the test network: %s\n", dn_last_error());
    return 1;
  }
  test_null_arguments(net);
  dn_network_free(net);
  test_bad_sizes();
  test_bad_files();
  test_compute();
  test_load_detect_free_loop();
  test_threads();
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("c_api_test: all checks passed\n");
  return 0;
}
