/* Shared device helpers: checked CUDA calls that report file:line and the failing call. */
#ifndef TIMIREC_KERNELS_COMMON_CUH
#define TIMIREC_KERNELS_COMMON_CUH

#include <cuda_runtime.h>
#include <stdio.h>

/* Record the first CUDA error into (err, errlen) and return -1 from the enclosing function. */
#define CUDA_TRY(call)                                                                   \
    do {                                                                                 \
        cudaError_t e_ = (call);                                                         \
        if (e_ != cudaSuccess) {                                                         \
            if (err && errlen)                                                           \
                snprintf(err, errlen, "%s:%d: %s failed: %s", __FILE__, __LINE__, #call, \
                         cudaGetErrorString(e_));                                        \
            return -1;                                                                   \
        }                                                                                \
    } while (0)

#endif
