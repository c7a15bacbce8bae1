/* A pure C host: detects objects in a raw RGB8 image through the darknet_py C API.
 *   cc detect.c $(pkg-config --cflags --libs darknet_py) -o c_host
 *   ./c_host CFG WEIGHTS NAMES IMAGE.ppm
 * Prints Darknet-style lines ("dog: 82%") and returns non-zero with the library's
 * message on any failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <darknet_py/darknet_py.h>

/* A binary PPM (P6, maxval 255) without comments; returns malloc'd pixels or NULL. */
static unsigned char* read_ppm(const char* path, int* width, int* height) {
  FILE* f = fopen(path, "rb");
  unsigned char* pixels = NULL;
  int maxval = 0;
  if (!f) return NULL;
  if (fscanf(f, "P6 %d %d %d", width, height, &maxval) == 3 && maxval == 255 && *width > 0 && *height > 0 &&
      fgetc(f) != EOF) {
    size_t size = (size_t)*width * (size_t)*height * 3;
    pixels = (unsigned char*)malloc(size);
    if (pixels && fread(pixels, 1, size, f) != size) {
      free(pixels);
      pixels = NULL;
    }
  }
  fclose(f);
  return pixels;
}

int main(int argc, char** argv) {
  dn_network* net = NULL;
  const dn_detection* found = NULL;
  unsigned char* pixels;
  int width = 0, height = 0, count = 0, i, status;
  if (argc != 5) {
    fprintf(stderr, "usage: %s CFG WEIGHTS NAMES IMAGE.ppm\n", argv[0]);
    return 2;
  }
  printf("darknet_py %s\n", dn_version());
  pixels = read_ppm(argv[4], &width, &height);
  if (!pixels) {
    fprintf(stderr, "error: cannot read %s as a binary PPM\n", argv[4]);
    return 1;
  }
  status = dn_network_load(argv[1], argv[2], 1, &net);
  if (status == DN_OK) status = dn_network_load_names(net, argv[3]);
  if (status == DN_OK)
    status = dn_network_detect_rgb8(net, pixels, (size_t)width * height * 3, width, height, .24f, .5f, .45f, &found,
                                     &count);
  if (status != DN_OK) {
    fprintf(stderr, "error (%s): %s\n", dn_status_name(status), dn_last_error());
  } else {
    for (i = 0; i < count; ++i)
      printf("%s: %.0f%%\t(left=%.0f top=%.0f right=%.0f bottom=%.0f)\n", found[i].name, found[i].prob * 100,
             found[i].x - found[i].w / 2, found[i].y - found[i].h / 2, found[i].x + found[i].w / 2,
             found[i].y + found[i].h / 2);
  }
  dn_network_free(net);
  free(pixels);
  return status == DN_OK ? 0 : 1;
}
