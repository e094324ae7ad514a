/* A build without nvcc links this instead of kernels/topk.cu: the GPU top-K entry points
 * exist and say why they cannot run. */
#include "timirec/topk.h"

#include "timirec/common.h"

#include <stdio.h>

int topk_gpu(gpu_ctx_t *ctx, const topk_problem_t *dev_problem, int k, int32_t *items_out,
             float *scores_out, int32_t *counts, char *err, size_t errlen) {
    (void)ctx, (void)dev_problem, (void)k, (void)items_out, (void)scores_out, (void)counts;
    return tmr_error(err, errlen, "topk_gpu: this build has no CUDA (nvcc not found at build time)");
}
int topk_gpu_devices(char *desc, size_t desclen) {
    snprintf(desc, desclen, "built without CUDA");
    return 0;
}
int topk_gpu_baseline(gpu_ctx_t *ctx, const topk_problem_t *dev_problem, int k,
                      int32_t *items_out, float *scores_out, int32_t *counts, char *err,
                      size_t errlen) {
    return topk_gpu(ctx, dev_problem, k, items_out, scores_out, counts, err, errlen);
}
int topk_gpu_malloc(void **ptr, size_t bytes, char *err, size_t errlen) {
    (void)bytes;
    *ptr = NULL;
    return tmr_error(err, errlen, "topk_gpu_malloc: this build has no CUDA");
}
void topk_gpu_free(void *ptr) { (void)ptr; }
int topk_gpu_copy(void *dst, const void *src, size_t bytes, int to_device, char *err, size_t errlen) {
    (void)dst, (void)src, (void)bytes, (void)to_device;
    return tmr_error(err, errlen, "topk_gpu_copy: this build has no CUDA");
}
int topk_gpu_sync(char *err, size_t errlen) {
    return tmr_error(err, errlen, "topk_gpu_sync: this build has no CUDA");
}
double topk_gpu_fp32_peak_gflops(void) { return 0; }
