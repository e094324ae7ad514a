/* A build without nvcc links this instead of kernels/device.cu's discovery: no CUDA here. */
#include "timirec/cuda.h"

#include <stdio.h>

int tmr_cuda_built(void) { return 0; }

int tmr_cuda_describe(char *out, size_t outlen) {
    snprintf(out, outlen, "not built (no nvcc at build time)");
    return 0;
}
