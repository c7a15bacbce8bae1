/* A C host that runs a script of C API calls on one network, for tests/test_cpp_host.py,
 * which compares what it writes with Darknet's full-network fixtures:
 *
 *   net_ops CFG OP...
 *     weights PATH CUTOFF    dn_network_load_weights (CUTOFF < 0: every layer)
 *     forward IN OUT         IN: raw float32 (NCHW, the network's input size); OUT: the
 *                            network output of dn_network_forward, raw float32
 *     layers PREFIX          every layer's output of the last forward (dn_network_layer_output)
 *                            to PREFIX<index>.f32, raw float32
 *     resize W H             dn_network_resize
 *     save PATH              dn_network_save_weights
 *
 * The network is made by dn_network_create(CFG, batch 1) (Darknet's seeded initialisation).
 * Each op prints one line; any failure prints the library's message and exits 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "darknet_py/darknet_py.h"

static dn_network* net = NULL;

static int fail(const char* what, int status) {
  fprintf(stderr, "%s failed (%s): %s\n", what, dn_status_name(status), dn_last_error());
  dn_network_free(net);
  return 1;
}

static int write_floats(const char* path, const float* data, size_t count) {
  FILE* f = fopen(path, "wb");
  size_t written;
  if (!f) return 0;
  written = fwrite(data, sizeof(float), count, f);
  return fclose(f) == 0 && written == count;
}

/* Reads exactly `count` floats from path (a shorter or longer file is refused). */
static float* read_floats(const char* path, size_t count) {
  FILE* f = fopen(path, "rb");
  float* data;
  if (!f) return NULL;
  data = (float*)malloc(count * sizeof(float));
  if (data && (fread(data, sizeof(float), count, f) != count || fgetc(f) != EOF)) {
    free(data);
    data = NULL;
  }
  fclose(f);
  return data;
}

int main(int argc, char** argv) {
  int i, status;
  if (argc < 3) {
    fprintf(stderr, "usage: %s CFG OP...\n", argv[0]);
    return 2;
  }
  status = dn_network_create(argv[1], 1, &net);
  if (status != DN_OK) return fail("dn_network_create", status);
  for (i = 2; i < argc; ++i) {
    const char* op = argv[i];
    if (strcmp(op, "weights") == 0 && i + 2 < argc) {
      const int cutoff = atoi(argv[i + 2]);
      status = dn_network_load_weights(net, argv[i + 1], cutoff);
      if (status != DN_OK) return fail("dn_network_load_weights", status);
      printf("weights %s cutoff %d\n", argv[i + 1], cutoff);
      i += 2;
    } else if (strcmp(op, "forward") == 0 && i + 2 < argc) {
      int b = 0, c = 0, h = 0, w = 0;
      size_t n, out_count = 0;
      const float* out = NULL;
      float* x;
      status = dn_network_input_shape(net, &b, &c, &h, &w);
      if (status != DN_OK) return fail("dn_network_input_shape", status);
      n = (size_t)b * c * h * w;
      x = read_floats(argv[i + 1], n);
      if (!x) {
        fprintf(stderr, "cannot read %zu floats (%dx%dx%dx%d) from %s\n", n, b, c, h, w, argv[i + 1]);
        dn_network_free(net);
        return 1;
      }
      status = dn_network_forward(net, x, n, &out, &out_count);
      free(x);
      if (status != DN_OK) return fail("dn_network_forward", status);
      if (!write_floats(argv[i + 2], out, out_count)) {
        fprintf(stderr, "cannot write %s\n", argv[i + 2]);
        dn_network_free(net);
        return 1;
      }
      printf("forward %dx%dx%dx%d -> %zu floats\n", b, c, h, w, out_count);
      i += 2;
    } else if (strcmp(op, "layers") == 0 && i + 1 < argc) {
      int count = 0, l;
      status = dn_network_layer_count(net, &count);
      if (status != DN_OK) return fail("dn_network_layer_count", status);
      for (l = 0; l < count; ++l) {
        const float* data = NULL;
        int b = 0, c = 0, h = 0, w = 0;
        char path[4200];
        status = dn_network_layer_output(net, l, &data, &b, &c, &h, &w);
        if (status != DN_OK) return fail("dn_network_layer_output", status);
        snprintf(path, sizeof path, "%s%d.f32", argv[i + 1], l);
        if (!write_floats(path, data, (size_t)b * c * h * w)) {
          fprintf(stderr, "cannot write %s\n", path);
          dn_network_free(net);
          return 1;
        }
      }
      printf("layers %d\n", count);
      i += 1;
    } else if (strcmp(op, "resize") == 0 && i + 2 < argc) {
      status = dn_network_resize(net, atoi(argv[i + 1]), atoi(argv[i + 2]));
      if (status != DN_OK) return fail("dn_network_resize", status);
      printf("resize %sx%s\n", argv[i + 1], argv[i + 2]);
      i += 2;
    } else if (strcmp(op, "save") == 0 && i + 1 < argc) {
      status = dn_network_save_weights(net, argv[i + 1]);
      if (status != DN_OK) return fail("dn_network_save_weights", status);
      printf("save %s\n", argv[i + 1]);
      i += 1;
    } else {
      fprintf(stderr, "bad op or missing arguments at '%s'\n", op);
      dn_network_free(net);
      return 2;
    }
  }
  dn_network_free(net);
  return 0;
}
