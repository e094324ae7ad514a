/* Device memory helpers for the host side (tests, backend): checked, with file:line messages. */
#include <math.h>

#include "common.cuh"
#include "timirec/gpu_ops.h"

extern "C" int tmr_gpu_malloc(void **p, size_t bytes, char *err, size_t errlen) {
    *p = NULL;
    CUDA_TRY(cudaMalloc(p, bytes ? bytes : 1));
    return 0;
}

extern "C" int tmr_gpu_free(void *p, char *err, size_t errlen) {
    CUDA_TRY(cudaFree(p));
    return 0;
}

extern "C" int tmr_gpu_upload(void *dst, const void *host_src, size_t bytes, char *err,
                              size_t errlen) {
    CUDA_TRY(cudaMemcpy(dst, host_src, bytes, cudaMemcpyHostToDevice));
    return 0;
}

extern "C" int tmr_gpu_download(void *host_dst, const void *src, size_t bytes, char *err,
                                size_t errlen) {
    CUDA_TRY(cudaMemcpy(host_dst, src, bytes, cudaMemcpyDeviceToHost));
    return 0;
}

__global__ void fill_nan_kernel(float *x, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = __int_as_float(0x7fc00000); /* quiet NaN */
}

extern "C" int tmr_gpu_fill_nan(float *x, int64_t n, void *stream, char *err, size_t errlen) {
    GPU_CHECK_SIZE(n >= 0);
    if (n == 0) return 0;
    fill_nan_kernel<<<tmr_blocks_for(n, 256), 256, 0, (cudaStream_t)stream>>>(x, n);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

extern "C" int tmr_gpu_sync(char *err, size_t errlen) {
    CUDA_TRY(cudaDeviceSynchronize());
    return 0;
}
