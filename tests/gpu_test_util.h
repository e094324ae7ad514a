/* Helpers shared by the GPU-vs-CPU parity tests (tests/test_gpu_*.c): random inputs that are
 * never zero, device buffers, and a comparison that checks for NaN before any tolerance.
 * Include after test_util.h, inside #ifdef TIMIREC_CUDA. */
#ifndef TIMIREC_GPU_TEST_UTIL_H
#define TIMIREC_GPU_TEST_UTIL_H

#include <stdint.h>

#include "test_util.h"
#include "timirec/cuda.h"
#include "timirec/gpu_ops.h"

static char gt_err[512];

/* Any failing device call ends the test (a later comparison would only repeat it). */
#define GT_TRY(call)                                                              \
    do {                                                                          \
        if ((call) != 0) {                                                        \
            fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, gt_err); \
            exit(1);                                                              \
        }                                                                         \
    } while (0)

/* SKIP (return 77 from main) unless a GPU is visible; prints what was found. */
static inline int gt_have_gpu(void) {
    char desc[512];
    int n = tmr_cuda_describe(desc, sizeof desc);
    printf("%s: %s\n", n > 0 ? "device" : "SKIP", desc);
    return n > 0;
}

static uint64_t gt_state = 0x243f6a8885a308d3ull;
static inline uint32_t gt_u32(void) {
    gt_state ^= gt_state << 13;
    gt_state ^= gt_state >> 7;
    gt_state ^= gt_state << 17;
    return (uint32_t)(gt_state >> 16);
}
/* Uniform in [lo, hi). */
static inline float gt_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)(gt_u32() >> 8) * (1.0f / 16777216.0f);
}
/* scale * (+-[0.1, 1)): random sign and magnitude, never zero. */
static inline void gt_fill(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) {
        float m = gt_uniform(0.1f, 1.0f) * scale;
        x[i] = (gt_u32() & 1) ? m : -m;
    }
}
static inline int32_t gt_below(int32_t n) { return (int32_t)(gt_u32() % (uint32_t)n); }

static inline void *gt_dev(size_t bytes) {
    void *p;
    GT_TRY(tmr_gpu_malloc(&p, bytes, gt_err, sizeof gt_err));
    return p;
}
static inline void *gt_dev_copy(const void *host, size_t bytes) {
    void *p = gt_dev(bytes);
    GT_TRY(tmr_gpu_upload(p, host, bytes, gt_err, sizeof gt_err));
    return p;
}
static inline void gt_get(void *host, const void *dev, size_t bytes) {
    GT_TRY(tmr_gpu_sync(gt_err, sizeof gt_err)); /* a fault inside a kernel surfaces here */
    GT_TRY(tmr_gpu_download(host, dev, bytes, gt_err, sizeof gt_err));
}
static inline void gt_poison(float *dev, int64_t n) {
    GT_TRY(tmr_gpu_fill_nan(dev, n, NULL, gt_err, sizeof gt_err));
}
static inline void gt_free(void *dev) { GT_TRY(tmr_gpu_free(dev, gt_err, sizeof gt_err)); }

/* got (GPU) vs want (CPU), n floats: any non-finite value fails first; then the max absolute
 * error must be <= abs_tol + rel_tol * max|want|. Prints max abs error, the error normalised by
 * max|want|, and how many elements are bit-identical. Returns 1 when it passes. */
static inline int gt_compare(const char *what, const float *got, const float *want, int64_t n,
                             double abs_tol, double rel_tol) {
    int64_t bad_finite = -1, identical = 0;
    double max_abs = 0, max_ref = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(want[i])) {
            if (bad_finite < 0) bad_finite = i;
            continue;
        }
        double diff = fabs((double)got[i] - (double)want[i]);
        if (diff > max_abs) max_abs = diff;
        if (fabs((double)want[i]) > max_ref) max_ref = fabs((double)want[i]);
        identical += memcmp(&got[i], &want[i], sizeof(float)) == 0;
    }
    double tol = abs_tol + rel_tol * max_ref;
    printf("  %-40s n %9lld  max abs err %.3e  normalised %.3e  bit-identical %lld\n", what,
           (long long)n, max_abs, max_ref > 0 ? max_abs / max_ref : max_abs,
           (long long)identical);
    CHECK(bad_finite < 0, "%s: element %lld not finite (gpu %g, cpu %g)", what,
          (long long)bad_finite, bad_finite < 0 ? 0.0 : (double)got[bad_finite],
          bad_finite < 0 ? 0.0 : (double)want[bad_finite]);
    CHECK(max_abs <= tol, "%s: max abs error %.3e > tolerance %.3e", what, max_abs, tol);
    return bad_finite < 0 && max_abs <= tol;
}

#endif
