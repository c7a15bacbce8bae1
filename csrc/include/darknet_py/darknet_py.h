/* darknet_py C API: load a Darknet cfg/weights, run forward, read outputs.
 * Opaque handles, explicit ownership; every call returns a status (0 = ok) and
 * dn_last_error() describes the most recent failure on this thread. */
#ifndef DARKNET_PY_H
#define DARKNET_PY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dn_network dn_network;

/* Threads: every call on one dn_network is serialised by the network's lock (a second
 * thread waits); use one dn_network per thread for parallel inference. An output pointer
 * from dn_network_forward is only stable while no other thread calls into the same net. */

/* Thread-local message of the last failed call ("" if none). */
const char* dn_last_error(void);

/* Builds a network from a .cfg file with the given batch (0 keeps the cfg's). */
int dn_network_load(const char* cfg_path, const char* weights_path /* may be NULL */, int batch, dn_network** out);
void dn_network_free(dn_network* net);

int dn_network_input_shape(const dn_network* net, int* batch, int* channels, int* height, int* width);
int dn_network_output_shape(const dn_network* net, int* channels, int* height, int* width);
int dn_network_layer_count(const dn_network* net);
/* Changes the input size in place (weights kept). On failure the network keeps its
 * previous size and stays usable. */
int dn_network_resize(dn_network* net, int width, int height);
/* Warnings collected while loading (unknown cfg keys with file:line; weights of a bigger
 * cfg whose tail was not used), one per line; "" when none. Valid until the next call on net. */
const char* dn_network_warnings(const dn_network* net);

/* input: batch*channels*height*width floats (NCHW). output: receives a pointer to the
 * network-owned output (batch*C*H*W floats), valid until the next call on net. */
int dn_network_forward(dn_network* net, const float* input, const float** output);

/* Moves the network to "cpu" or "cuda" (parameters upload on the next forward; moving back
 * pulls everything to the host). Fails with a reason when CUDA is not built in or no device. */
int dn_network_set_device(dn_network* net, const char* device);
/* 1 when this build has CUDA and a usable device, else 0. */
int dn_cuda_available(void);

int dn_network_save_weights(const dn_network* net, const char* path);

#ifdef __cplusplus
}
#endif
#endif
