/* Shared device helpers: checked CUDA calls that report file:line and the failing call. */
#ifndef TIMIREC_KERNELS_COMMON_CUH
#define TIMIREC_KERNELS_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>
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

/* The same for cuBLAS calls (status code in the message; cublas_v2.h included by the caller). */
#define CUBLAS_TRY(call)                                                                 \
    do {                                                                                 \
        int s_ = (int)(call);                                                            \
        if (s_ != 0) {                                                                   \
            if (err && errlen)                                                           \
                snprintf(err, errlen, "%s:%d: %s failed: cuBLAS status %d", __FILE__,    \
                         __LINE__, #call, s_);                                           \
            return -1;                                                                   \
        }                                                                                \
    } while (0)

/* Blocks of `threads` that cover n elements (one thread per element). */
static inline unsigned tmr_blocks_for(int64_t n, int threads) {
    return (unsigned)((n + threads - 1) / threads);
}

/* A launcher's argument check: return -1 with the failed condition when cond is false. */
#define GPU_CHECK_SIZE(cond)                                                              \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            if (err && errlen)                                                           \
                snprintf(err, errlen, "%s:%d: bad shape: %s does not hold", __FILE__,     \
                         __LINE__, #cond);                                               \
            return -1;                                                                   \
        }                                                                                \
    } while (0)

#endif
