/* A build without nvcc links this instead of kernels/trainer_backend.cu: there is no CUDA
 * backend, and use_gpu falls back to the CPU saying so. */
#include "timirec/backend.h"

#include <stdio.h>

const trainer_backend_t *trainer_backend_cuda(char *why, size_t whylen) {
    snprintf(why, whylen, "this build has no CUDA backend: no nvcc at build time");
    return NULL;
}

struct gpu_model *trainer_gpu_model(const trainer_t *t) {
    (void)t;
    return NULL;
}
