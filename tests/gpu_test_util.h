/* Helpers of the GPU-vs-CPU parity tests (tests/test_gpu_*.c): random inputs, device copies,
 * poisoned outputs, and the comparison every test prints. Only for CUDA builds (including
 * the host emulation, where gpu_is_emulated() is 1 and tests use smaller shapes).
 *
 * A comparison checks finiteness first (an unwritten output is NaN: outputs are poisoned
 * before each run), then the normalised error ||gpu - cpu|| / ||cpu|| (the absolute
 * ||gpu - cpu|| where the CPU tensor is all zeros), and prints it with the largest absolute
 * difference. */
#ifndef TIMIREC_GPU_TEST_UTIL_H
#define TIMIREC_GPU_TEST_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "timirec/gpu_ops.h"
#include "timirec/rng.h"

/* Tolerance for a parameter gradient summed over `rows` rows: 1e-5, or what the CPU's serial
 * float sum of zero-mean terms may itself be off by (its rounding error grows like
 * sqrt(rows) ulps of the terms: 4 sqrt(rows) 2^-24 relative), whichever is larger; e.g.
 * 1.7e-5 for 5,120 rows (batch 256 x history 20), 5.4e-5 for 51,200. */
static inline double gt_tol_rows(double tol, int64_t rows) {
    double r = 4.0 * sqrt((double)rows) * 0x1p-24;
    return r > tol ? r : tol;
}

/* Worst normalised error seen, for the test's last line. */
static double gt_worst = 0;
static char gt_worst_label[256] = "";

/* Uniform in [lo, hi) from Philox (RNG_TEST, epoch = tag, index = element). */
static inline void gt_fill(float *x, int64_t n, uint32_t tag, float lo, float hi) {
    for (int64_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * rng_uniform01(rng_u32(77, RNG_TEST, tag, (uint64_t)i, 0));
}

static inline float *gt_rand(int64_t n, uint32_t tag, float lo, float hi) {
    float *x = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!x) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    gt_fill(x, n, tag, lo, hi);
    return x;
}

static inline float *gt_copy(const float *x, int64_t n) {
    float *y = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!y) exit(1);
    memcpy(y, x, (size_t)n * sizeof(float));
    return y;
}

/* Device copies of host arrays, and poisoned (NaN / -1) device buffers. */
static inline float *gt_up(const float *h, int64_t n) {
    float *d = (float *)gpu_malloc((size_t)n * sizeof(float));
    gpu_to_device(d, h, (size_t)n * sizeof(float));
    return d;
}
static inline int32_t *gt_upi(const int32_t *h, int64_t n) {
    int32_t *d = (int32_t *)gpu_malloc((size_t)n * sizeof(int32_t));
    gpu_to_device(d, h, (size_t)n * sizeof(int32_t));
    return d;
}
static inline float *gt_poisoned(int64_t n) {
    float *d = (float *)gpu_malloc((size_t)n * sizeof(float));
    gpu_poison(d, (size_t)n * sizeof(float));
    return d;
}

/* Compare host arrays gpu (copied back) and cpu over n elements. Returns the normalised error
 * (INFINITY when something is not finite). */
static inline double gt_compare_host(const char *label, const float *gpu, const float *cpu,
                                     int64_t n, double tol) {
    int64_t bad = 0, first_bad = -1;
    double diff2 = 0, ref2 = 0, maxabs = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(gpu[i]) || !isfinite(cpu[i])) {
            if (bad++ == 0) first_bad = i;
            continue;
        }
        double dlt = (double)gpu[i] - (double)cpu[i];
        diff2 += dlt * dlt;
        ref2 += (double)cpu[i] * cpu[i];
        if (fabs(dlt) > maxabs) maxabs = fabs(dlt);
    }
    double rel = bad ? INFINITY : ref2 > 0 ? sqrt(diff2 / ref2) : sqrt(diff2);
    printf("  %-58s n %9lld  err %.2e  max abs %.2e%s\n", label, (long long)n, rel, maxabs,
           ref2 > 0 ? "" : " (cpu all 0: absolute)");
    CHECK(bad == 0, "%s: %lld non-finite values (first at %lld: gpu %g cpu %g)", label,
          (long long)bad, (long long)first_bad, bad ? (double)gpu[first_bad] : 0.0,
          bad ? (double)cpu[first_bad] : 0.0);
    CHECK(rel <= tol, "%s: normalised error %.3g above %.3g", label, rel, tol);
    if (tu_max_err(&gt_worst, rel)) snprintf(gt_worst_label, sizeof gt_worst_label, "%s", label);
    return rel;
}

/* The same for a device array. */
static inline double gt_compare(const char *label, const float *dev, const float *cpu, int64_t n,
                                double tol) {
    float *h = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!h) exit(1);
    gpu_to_host(h, dev, (size_t)n * sizeof(float));
    double rel = gt_compare_host(label, h, cpu, n, tol);
    free(h);
    return rel;
}

/* gpu_scatter_add_rows' guarantee (include/timirec/gpu_ops.h; SEG_CHUNK in
 * kernels/embedding.cu): a table row whose id occurs at most GT_SEG_CHUNK times among the n
 * ids is the CPU's bit for bit; a row with more is a chunked sum, within float rounding. */
#define GT_SEG_CHUNK 32

/* Compare a scatter-added device table (rows, d) with the CPU's: rows whose id occurs at most
 * GT_SEG_CHUNK times in ids (n), untouched rows included, exactly; the others (if any) with
 * gt_tol_rows(tol, the longest run). Returns the longest run. */
static inline int64_t gt_compare_scatter(const char *label, const float *dev, const float *cpu,
                                         const int32_t *ids, int64_t n, int64_t rows, int d,
                                         double tol) {
    int64_t *count = (int64_t *)calloc((size_t)(rows > 0 ? rows : 1), sizeof(int64_t));
    float *h = (float *)malloc((size_t)(rows * d > 0 ? rows * d : 1) * sizeof(float));
    float *gs = (float *)malloc((size_t)(rows * d > 0 ? rows * d : 1) * sizeof(float));
    float *cs = (float *)malloc((size_t)(rows * d > 0 ? rows * d : 1) * sizeof(float));
    if (!count || !h || !gs || !cs) exit(1);
    for (int64_t r = 0; r < n; r++) count[ids[r]]++;
    gpu_to_host(h, dev, (size_t)(rows * d) * sizeof(float));
    int64_t longest = 0;
    for (int64_t t = 0; t < rows; t++)
        if (count[t] > longest) longest = count[t];
    char lab[256];
    for (int is_long = 0; is_long <= 1; is_long++) {
        int64_t m = 0;
        for (int64_t t = 0; t < rows; t++) {
            if ((count[t] > GT_SEG_CHUNK) != is_long) continue;
            memcpy(gs + m, h + t * d, (size_t)d * sizeof(float));
            memcpy(cs + m, cpu + t * d, (size_t)d * sizeof(float));
            m += d;
        }
        if (is_long && m == 0) break;
        snprintf(lab, sizeof lab, "%s, runs %s %d (%s)", label, is_long ? ">" : "<=",
                 GT_SEG_CHUNK, is_long ? "chunked" : "exact");
        gt_compare_host(lab, gs, cs, m, is_long ? gt_tol_rows(tol, longest) : 0);
    }
    free(count), free(h), free(gs), free(cs);
    return longest;
}

/* Exact comparison of int32 arrays (device vs host). */
static inline void gt_compare_int(const char *label, const int32_t *dev, const int32_t *cpu,
                                  int64_t n) {
    int32_t *h = (int32_t *)malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    if (!h) exit(1);
    gpu_to_host(h, dev, (size_t)n * sizeof(int32_t));
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (h[i] != cpu[i] && bad++ == 0) first = i;
    printf("  %-58s n %9lld  %s\n", label, (long long)n, bad ? "DIFFER" : "identical");
    CHECK(bad == 0, "%s: %lld of %lld differ (first at %lld: gpu %d cpu %d)", label,
          (long long)bad, (long long)n, (long long)first, bad ? h[first] : 0, bad ? cpu[first] : 0);
    free(h);
}

/* Histories for a batch: lengths in 1..L (row 0 has length L, row 1 length 1, and with
 * with_empty the last row of a batch of 3 or more is empty), items in 1..n_items-1,
 * right-padded with 0; positions length - l (0 for padding). hist, pos (B, L); length (B). */
static inline void gt_histories(int B, int L, int n_items, uint32_t tag, int with_empty,
                                int32_t *hist, int32_t *pos, int32_t *length) {
    for (int b = 0; b < B; b++) {
        int len = b == 0 ? L : b == 1 ? 1
                                      : 1 + (int)(rng_u32(5, RNG_TEST, tag, (uint64_t)b, 0) % (uint32_t)L);
        if (with_empty && B >= 3 && b == B - 1) len = 0;
        length[b] = len;
        for (int l = 0; l < L; l++) {
            int64_t r = (int64_t)b * L + l;
            hist[r] = l < len ? 1 + (int)(rng_u32(5, RNG_TEST, tag + 1, (uint64_t)r, 0) %
                                          (uint32_t)(n_items - 1))
                              : 0;
            pos[r] = l < len ? len - l : 0;
        }
    }
}

/* The argmax interest kstar[b] = argmax_k V[b, k] . E[cand[b, 0]] (first max on ties) chosen by
 * the GPU (gpu_ks, host copy) against the CPU's (cpu_ks). V: the GPU's interests (host copy;
 * the CPU's own when both sides scored the same V). What is guaranteed: each side computes
 * the K scores in float, in its own order (the GPU fuses multiply-adds), so a float score is
 * within gamma = d 2^-24 sum_j |V_kj t_j| of the exact one; a row may therefore differ only
 * where the GPU's choice is a near tie of the best in exact arithmetic: its exact score is
 * within 2 (gamma_choice + gamma_best) of the exact maximum. Any other difference fails.
 * Returns the number of rows that differ. */
static inline int gt_kstar_check(const char *label, const int32_t *gpu_ks, const int32_t *cpu_ks,
                                 const float *V, const float *E, const int32_t *cand, int B, int C,
                                 int K, int d) {
    int differ = 0, bad = 0, first_bad = -1;
    for (int b = 0; b < B; b++) {
        if (gpu_ks[b] == cpu_ks[b]) continue;
        differ++;
        const int g = gpu_ks[b];
        if (g < 0 || g >= K) {
            if (bad++ == 0) first_bad = b;
            continue;
        }
        const float *t = E + (int64_t)cand[(int64_t)b * C] * d;
        double best = -INFINITY, best_abs = 0, sg = 0, sg_abs = 0;
        for (int k = 0; k < K; k++) {
            const float *v = V + ((int64_t)b * K + k) * d;
            double sk = 0, ak = 0;
            for (int j = 0; j < d; j++) {
                sk += (double)v[j] * t[j];
                ak += fabs((double)v[j] * t[j]);
            }
            if (sk > best) best = sk, best_abs = ak;
            if (k == g) sg = sk, sg_abs = ak;
        }
        const double gamma = (double)d * 0x1p-24;
        if (!(sg >= best - 2.0 * gamma * (sg_abs + best_abs)) && bad++ == 0) first_bad = b;
    }
    printf("  %-58s n %9d  %d differ%s\n", label, B, differ,
           differ ? (bad ? ", NOT near ties" : ", all near ties") : " (identical)");
    CHECK(bad == 0, "%s: %d rows differ beyond a near tie (first: row %d, gpu %d, cpu %d)", label,
          bad, first_bad, first_bad >= 0 ? gpu_ks[first_bad] : 0,
          first_bad >= 0 ? cpu_ks[first_bad] : 0);
    return differ;
}

/* Parameters (or Adam moments) of two training runs. exact: the runs are guaranteed to agree
 * bit for bit (the same kernels on the same stream with the same cuBLAS workspace, or any two
 * runs in the emulation, which has one code path for both): every element compared with
 * memcmp. Otherwise (a CUDA graph replay against direct launches: cuBLAS promises
 * reproducibility only on one stream with one workspace) they agree within Adam: a gradient
 * at rounding level can flip the sign of an update, which moves an element by up to about lr
 * per step, so every |a - b| <= 4 lr steps, and overall ||a - b|| / ||b|| <= 1e-3.
 * Non-finite values fail either way. Returns 1 when they agree. */
static inline int gt_same_params(const char *label, const float *a, const float *b, int64_t n,
                                 int exact, double lr, int64_t steps) {
    int64_t differ = 0, bad = 0, first = -1;
    double diff2 = 0, ref2 = 0, maxabs = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) {
            if (bad++ == 0 && first < 0) first = i;
            continue;
        }
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0 && differ++ == 0 && first < 0) first = i;
        const double dlt = (double)a[i] - (double)b[i];
        diff2 += dlt * dlt;
        ref2 += (double)b[i] * b[i];
        if (fabs(dlt) > maxabs) maxabs = fabs(dlt);
    }
    const double rel = ref2 > 0 ? sqrt(diff2 / ref2) : sqrt(diff2);
    const double bound = 4.0 * lr * (double)steps;
    printf("  %-58s n %9lld  %lld differ, max abs %.2e, err %.2e (%s)\n", label, (long long)n,
           (long long)differ, maxabs, rel, exact ? "must be identical" : "within Adam's step");
    CHECK(bad == 0, "%s: %lld non-finite values (first at %lld)", label, (long long)bad,
          (long long)first);
    if (exact)
        CHECK(differ == 0, "%s: %lld of %lld differ (first at %lld: %.9g vs %.9g)", label,
              (long long)differ, (long long)n, (long long)first, first >= 0 ? a[first] : 0.0,
              first >= 0 ? b[first] : 0.0);
    else
        CHECK(maxabs <= bound && rel <= 1e-3, "%s: max abs %.3g (bound %.3g), err %.3g", label,
              maxabs, bound, rel);
    return bad == 0 && (exact ? differ == 0 : maxabs <= bound && rel <= 1e-3);
}

static inline int gt_finish(const char *name) {
    printf("%s: worst normalised error %.2e (%s)\n", name, gt_worst, gt_worst_label);
    return tu_finish(name);
}

/* SKIP unless a GPU (or the emulation) is there; returns the context. */
static inline gpu_ctx_t *gt_start(const char *name) {
    char desc[512], err[512];
    if (gpu_device_count(desc, sizeof desc) < 1) {
        printf("SKIP: %s\n", desc);
        exit(TU_SKIP);
    }
    gpu_ctx_t *ctx = gpu_ctx_create(err, sizeof err);
    if (!ctx) {
        printf("SKIP: %s\n", err);
        exit(TU_SKIP);
    }
    gpu_debug_sync(1);
    printf("%s on %s\n", name, desc);
    return ctx;
}

#endif
