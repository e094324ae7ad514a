/* Device time of the fused training heads (kernels/heads.cu; the single heads, the pretrain
 * and candidate evaluation scores, the GRU and Adam: the op table's perf mode,
 * bench_gpu_ops), each through its gpu_ops.h launcher, at the reference's training shapes
 * (batch 256, history 20, emb 64, K 2, C 2) and at K 16. Median of TIMED runs after a
 * warm-up, CUDA events around
 * the launcher (the losses' launchers include their B-double copy back to the host; the
 * table-gradient launchers include the sorted scatter).
 *
 * Printed next to the device's ceilings from bench/results/device.csv (the last row for this
 * GPU: d2d copy GB/s, FP32 SGEMM TFLOP/s): the heads in GB/s of compulsory traffic
 * (each input read once, each output written once; E rows gathered count once per candidate)
 * against the d2d copy rate. Appends rows to bench/results/kernels.csv (header written only
 * when the file is new). SKIP without a GPU. */
#include "bench_util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timirec/common.h"
#include "timirec/cpu_ops.h"
#include "timirec/model.h"
#include "timirec/rng.h"
#ifdef TIMIREC_CUDA
#include "timirec/gpu_ops.h"
#endif

#ifndef TIMIREC_CUDA
int main(void) {
    printf("SKIP: built without CUDA (no nvcc)\n");
    return 0;
}
#else

enum { B = 256, D = 64, N_ITEMS = 3707, WARMUP = 3, TIMED = 20 };

static gpu_ctx_t *ctx;
static gpu_timer_t *timer;
static FILE *csv;
static char device[512];
static const char *commit, *date;
static double ceil_gbps, ceil_gflops; /* 0: unknown */

/* Uniform in [lo, hi) on the device. */
static float *dev_rand(int64_t n, uint32_t tag, float lo, float hi) {
    float *h = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!h) exit(1);
    for (int64_t i = 0; i < n; i++)
        h[i] = lo + (hi - lo) * rng_uniform01(rng_u32(11, RNG_TEST, tag, (uint64_t)i, 0));
    float *d = (float *)gpu_malloc((size_t)n * sizeof(float));
    gpu_to_device(d, h, (size_t)n * sizeof(float));
    free(h);
    return d;
}

static int32_t *dev_ids(int64_t n, uint32_t tag, int range) {
    int32_t *h = (int32_t *)malloc((size_t)n * sizeof(int32_t));
    if (!h) exit(1);
    for (int64_t i = 0; i < n; i++) h[i] = (int32_t)(rng_u32(11, RNG_TEST, tag, (uint64_t)i, 0) % (uint32_t)range);
    int32_t *d = (int32_t *)gpu_malloc((size_t)n * sizeof(int32_t));
    gpu_to_device(d, h, (size_t)n * sizeof(int32_t));
    free(h);
    return d;
}

/* The ceilings of this GPU measured by bench_device (the defaults above when there are none). */
static void read_ceilings(const char *desc) {
    const double gbps = bench_device_ceiling(desc, "d2d_gbps");
    const double tflops = bench_device_ceiling(desc, "sgemm_tflops");
    if (gbps > 0) ceil_gbps = gbps;
    if (tflops > 0) ceil_gflops = tflops * 1000.0;
}

typedef void (*op_fn)(void *arg);

/* Times op, prints one line, appends a csv row. bytes / flops: per run (0: not reported). */
static void report(const char *kernel, const char *shape, op_fn op, void *arg, double bytes,
                   double flops) {
    for (int i = 0; i < WARMUP; i++) op(arg);
    double ms[TIMED];
    for (int i = 0; i < TIMED; i++) {
        gpu_timer_start(timer);
        op(arg);
        ms[i] = gpu_timer_stop_ms(timer);
    }
    const double us = bench_median(ms, TIMED) * 1e3;
    const double gbps = bytes > 0 ? bytes / (us * 1e-6) / 1e9 : 0;
    const double gflops = flops > 0 ? flops / (us * 1e-6) / 1e9 : 0;
    /* the bound each kernel is judged by: memory for the heads and Adam, SGEMM for the GRU */
    const double frac = flops > 0 ? (ceil_gflops > 0 ? gflops / ceil_gflops : 0)
                                  : (ceil_gbps > 0 ? gbps / ceil_gbps : 0);
    printf("%-30s %-34s %10.1f us", kernel, shape, us);
    if (bytes > 0) printf("  %8.1f GB/s", gbps);
    if (flops > 0) printf("  %8.1f GFLOP/s", gflops);
    if (frac > 0)
        printf("  (%.3f of %s %.0f)", frac, flops > 0 ? "SGEMM GFLOP/s" : "d2d GB/s",
               flops > 0 ? ceil_gflops : ceil_gbps);
    printf("\n");
    if (csv) {
        fprintf(csv, "%s,%s,%s,%s,%s,%.2f,", device, date ? date : "", commit ? commit : "", kernel,
                shape, us);
        if (bytes > 0) fprintf(csv, "%.1f", gbps);
        fprintf(csv, ",");
        if (flops > 0) fprintf(csv, "%.1f", gflops);
        fprintf(csv, ",");
        if (frac > 0) fprintf(csv, "%.4f", frac);
        fprintf(csv, "\n");
    }
}

/* ---- heads ---- */

typedef struct {
    int C, K, d;
    float *E, *V, *u, *w, *pi, *tgt, *dpi, *scores, *dscores, *du, *dV, *dE, *work;
    int32_t *cand, *kstar;
} head_arg_t;

static void op_pretrain_rank(void *p) {
    head_arg_t *a = (head_arg_t *)p;
    gpu_pretrain_rank(ctx, a->E, a->V, a->cand, B, a->C, a->K, a->d, 0, a->kstar,
                      a->scores, a->dscores);
}
static void op_pretrain_backward(void *p) {
    head_arg_t *a = (head_arg_t *)p;
    gpu_pretrain_scores_backward(ctx, a->E, a->V, a->cand, B, a->C, a->K, a->d, a->kstar,
                                 a->dscores, a->dV, a->dE, a->work);
}
static void op_user_distill(void *p) {
    head_arg_t *a = (head_arg_t *)p;
    gpu_user_vector_distill(ctx, a->E, a->V, a->cand, a->pi, B, a->C, a->K, a->d, 0, 0.5, a->w,
                            a->u, a->tgt, a->dpi);
}
static void op_candidate_rank(void *p) {
    head_arg_t *a = (head_arg_t *)p;
    gpu_candidate_rank(ctx, a->E, a->u, a->cand, B, a->C, a->d, 0, a->scores, a->dscores);
}
static void op_finetune_backward(void *p) {
    head_arg_t *a = (head_arg_t *)p;
    gpu_finetune_head_backward(ctx, a->E, a->V, a->u, a->w, a->cand, B, a->C, a->K, a->d,
                               a->dscores, a->du, a->dV, a->dpi, a->dE, a->work);
}

static void bench_heads(int C, int K, int d) {
    head_arg_t a;
    a.C = C, a.K = K, a.d = d;
    const int64_t nE = (int64_t)N_ITEMS * d, nV = (int64_t)B * K * d, nS = (int64_t)B * C;
    a.E = dev_rand(nE, 20, -1, 1), a.V = dev_rand(nV, 21, -1, 1), a.u = dev_rand((int64_t)B * d, 22, -1, 1);
    a.w = dev_rand((int64_t)B * K, 23, 0, 1), a.pi = dev_rand((int64_t)B * K, 24, -2, 2);
    a.tgt = dev_rand((int64_t)B * K, 25, 0, 1), a.dpi = dev_rand((int64_t)B * K, 25, 0, 0);
    a.scores = dev_rand(nS, 26, -1, 1), a.dscores = dev_rand(nS, 27, -1e-3f, 1e-3f);
    a.du = dev_rand((int64_t)B * d, 28, 0, 0), a.dV = dev_rand(nV, 28, 0, 0);
    a.dE = dev_rand(nE, 28, 0, 0), a.work = dev_rand(nS * d, 29, 0, 0);
    a.cand = dev_ids(nS, 30, N_ITEMS), a.kstar = dev_ids(B, 31, K);
    char shape[64];
    snprintf(shape, sizeof shape, "B%d C%d K%d d%d", B, C, K, d);
    const double f = 4.0, rows = (double)nS * d * f; /* the gathered candidate rows */
    report("pretrain_rank", shape, op_pretrain_rank, &a,
           rows + (double)nV * f + (double)nS * (4 + 2 * f), 2.0 * nS * d + 2.0 * B * K * d);
    report("pretrain_scores_backward", shape, op_pretrain_backward, &a,
           2 * rows + (double)B * d * f * 3 + (double)nS * (4 + f) + rows * 2 /* scatter */, 0);
    report("user_vector_distill", shape, op_user_distill, &a,
           (double)nV * f + (double)B * d * f * 2 + (double)B * K * f * 5, 4.0 * nV);
    report("candidate_rank", shape, op_candidate_rank, &a,
           rows + (double)B * d * f + (double)nS * (4 + 2 * f), 2.0 * nS * d);
    report("finetune_head_backward", shape, op_finetune_backward, &a,
           2 * rows + (double)nV * f * 3 + (double)B * d * f * 3 + (double)nS * (4 + f) +
               rows * 2,
           0);
    gpu_free(a.E), gpu_free(a.V), gpu_free(a.u), gpu_free(a.w), gpu_free(a.pi), gpu_free(a.tgt);
    gpu_free(a.dpi), gpu_free(a.scores), gpu_free(a.dscores), gpu_free(a.du), gpu_free(a.dV);
    gpu_free(a.dE), gpu_free(a.work), gpu_free(a.cand), gpu_free(a.kstar);
}

int main(void) {
    char desc[512], err[512];
    if (gpu_device_count(desc, sizeof desc) < 1 || gpu_is_emulated()) {
        printf("SKIP: %s\n", gpu_is_emulated() ? "emulated build (no device timing)" : desc);
        return 0;
    }
    ctx = gpu_ctx_create(err, sizeof err);
    if (!ctx) {
        printf("SKIP: %s\n", err);
        return 0;
    }
    timer = gpu_timer_create();
    const char *name = strstr(desc, "device 0: ");
    snprintf(device, sizeof device, "%s", name ? name + 10 : desc);
    device[strcspn(device, ",")] = 0;
    read_ceilings(device);
    commit = bench_commit(), date = bench_date();
    const char *path = "bench/results/kernels.csv";
    FILE *probe = fopen(path, "r");
    const int fresh = probe == NULL;
    if (probe) fclose(probe);
    csv = fopen(path, "a");
    if (!csv) perror(path);
    if (csv && fresh)
        fprintf(csv, "device,date,commit,kernel,shape,us,gbps,gflops,fraction_of_ceiling\n");
    printf("%s; ceilings from bench/results/device.csv: d2d %.0f GB/s, SGEMM %.0f GFLOP/s%s\n",
           device, ceil_gbps, ceil_gflops, ceil_gbps > 0 ? "" : " (no row for this GPU)");
    bench_heads(2, 2, D);
    bench_heads(2, 16, D);
    if (csv) fclose(csv);
    gpu_timer_free(timer);
    gpu_ctx_free(ctx);
    return 0;
}
#endif
