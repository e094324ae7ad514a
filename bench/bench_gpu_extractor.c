/* Each extractor kernel of the CUDA backend (kernels/attention.cu, layernorm_ffn.cu,
 * interest.cu, and the embedding backward's table scatter in embedding.cu) timed alone with
 * CUDA events, at the reference's shapes (batch 256, history 20, emb 64, attn 8, K 2) and at a
 * long-history shape (history 200, K 16): median of TIMED calls after WARMUP, on random inputs
 * (9 rows in 10 with a full history, the others 1..L; the scatter's ids: lengths 1..L, so
 * about half the slots are padding item 0 / position 0, and a position has up to B rows).
 *
 * Next to each time: the achieved GB/s (the bytes the op must move at least: every input read
 * once, every output written once) and GFLOP/s (the op's useful arithmetic: the attention
 * backward counts its four L x L x d products, not the recomputation of the scores), and the
 * fraction of the roofline: max(bytes / d2d bandwidth, flops / FP32 SGEMM rate) / time, with
 * the ceilings of this device in bench/results/device.csv (bench_device; H200: 4,231 GB/s,
 * 51 TFLOP/s). Appends rows to bench/results/kernels.csv. SKIP without a GPU.
 * TIMIREC_BENCH_SMOKE=1: batch 8, one call each, no rows appended (runs in the host emulation
 * to check the harness). */
#include "bench_util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timirec/common.h"
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

enum { WARMUP = 5, TIMED = 30, MAX_TIMED = 64 };

typedef struct {
    const char *name;
    int B, L, d, a, K;
} shape_t;

/* Ceilings of `device` measured by bench_device (H200's when device.csv has none, said so). */
static void read_ceilings(const char *device, double *gbps, double *gflops) {
    *gbps = bench_device_ceiling(device, "d2d_gbps");
    *gflops = 1000.0 * bench_device_ceiling(device, "sgemm_tflops");
    if (!(*gbps > 0) || !(*gflops > 0)) {
        printf("note: no ceilings for %s in bench/results/device.csv; the H200's assumed\n", device);
        *gbps = 4231, *gflops = 51120; /* H200 (bench/results/device.csv, 2026-11-28) */
    }
}

static float *dev_rand(int64_t n, uint32_t tag, float lo, float hi) {
    float *h = tmr_malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        h[i] = lo + (hi - lo) * rng_uniform01(rng_u32(11, RNG_TEST, tag, (uint64_t)i, 0));
    float *d = gpu_malloc((size_t)n * sizeof(float));
    gpu_to_device(d, h, (size_t)n * sizeof(float));
    free(h);
    return d;
}

static float *dev_zero(int64_t n) {
    float *d = gpu_malloc((size_t)n * sizeof(float));
    gpu_zero(d, (size_t)n * sizeof(float));
    return d;
}

typedef struct {
    gpu_ctx_t *ctx;
    shape_t s;
    int32_t *hist;
    float *x, *x2, *q, *k, *v, *ctx_out, *stats, *dctx, *dq, *dk, *dv, *D;
    float *gamma, *beta, *y, *xhat, *rstd, *dz, *dgamma, *dbeta, *work;
    float *W1, *b1, *W2, *b2, *r, *f, *dW1, *db1, *dW2, *db2, *dr, *dh;
    float *iW1, *ib1, *iW2, *ib2, *t, *e, *alpha, *V, *dV, *dx, *diW1, *dib1, *diW2, *de, *dt;
    int32_t *sc_item, *sc_pos; /* (B, L) a batch's item ids and positions, 0 for padding */
    float *sc_E, *sc_P;        /* (SCATTER_ITEMS, d), (L + 1, d) gradient tables */
} bufs_t;

/* Items of the scatter rows (ML-1M's 3,706, as in the reference run). */
#define SCATTER_ITEMS 3706

static void op_attn_fwd(bufs_t *b) {
    gpu_ext_attn_forward(b->ctx, b->q, b->k, b->v, b->hist, b->s.B, b->s.L, b->s.d, b->stats,
                         b->ctx_out);
}
static void op_attn_bwd(bufs_t *b) {
    gpu_ext_attn_backward(b->ctx, b->q, b->k, b->v, b->hist, b->stats, b->dctx, b->s.B, b->s.L,
                          b->s.d, b->dq, b->dk, b->dv, b->D);
}
static void op_ln_fwd(bufs_t *b) {
    gpu_ext_add_layernorm_forward(b->ctx, b->x, b->x2, b->gamma, b->beta, b->hist,
                                  (int64_t)b->s.B * b->s.L, b->s.d, b->y, b->xhat, b->rstd);
}
static void op_ln_bwd(bufs_t *b) {
    gpu_ext_add_layernorm_backward(b->ctx, b->dctx, b->xhat, b->rstd, b->gamma, b->hist,
                                   (int64_t)b->s.B * b->s.L, b->s.d, b->dz, b->dgamma, b->dbeta,
                                   b->work);
}
static void op_ffn_fwd(bufs_t *b) {
    gpu_ext_ffn_forward(b->ctx, b->x, b->W1, b->b1, b->W2, b->b2, (int64_t)b->s.B * b->s.L,
                        b->s.d, b->s.d, b->r, b->f);
}
static void op_ffn_bwd(bufs_t *b) {
    gpu_ext_ffn_backward(b->ctx, b->x, b->r, b->W1, b->W2, b->dctx, (int64_t)b->s.B * b->s.L,
                         b->s.d, b->s.d, b->dh, b->dW1, b->db1, b->dW2, b->db2, b->dr);
}
static void op_int_fwd(bufs_t *b) {
    gpu_ext_interest_forward(b->ctx, b->x, b->hist, b->iW1, b->ib1, b->iW2, b->ib2, b->s.B,
                             b->s.L, b->s.d, b->s.a, b->s.K, b->t, b->e, b->alpha, b->V);
}
static void op_int_bwd(bufs_t *b) {
    gpu_ext_interest_backward(b->ctx, b->x, b->t, b->alpha, b->iW1, b->iW2, b->dV, b->s.B,
                              b->s.L, b->s.d, b->s.a, b->s.K, b->dx, b->diW1, b->dib1, b->diW2,
                              NULL, b->de, b->dt);
}

/* The embedding backward's two table gradients (gpu_scatter_add_rows), one timed each: the
 * items (runs of 1 to a few rows, and the padding item 0 with thousands) and the positions
 * (runs of up to B rows, position 0 the padding). */
static void op_scatter_items(bufs_t *b) {
    gpu_scatter_add_rows(b->ctx, b->sc_item, (int64_t)b->s.B * b->s.L, b->s.d, b->dctx, b->sc_E);
}
static void op_scatter_pos(bufs_t *b) {
    gpu_scatter_add_rows(b->ctx, b->sc_pos, (int64_t)b->s.B * b->s.L, b->s.d, b->dctx, b->sc_P);
}

/* Distinct ids among n (ids < n_ids): the table rows a scatter reads and writes. */
static int64_t distinct_ids(const int32_t *ids, int64_t n, int n_ids) {
    char *seen = calloc((size_t)n_ids, 1);
    if (!seen) tmr_fatal("out of memory");
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (!seen[ids[i]]) seen[ids[i]] = 1, k++;
    free(seen);
    return k;
}

int main(void) {
    char desc[512];
    if (gpu_device_count(desc, sizeof desc) < 1) {
        printf("SKIP: %s\n", desc);
        return 0;
    }
    char err[512];
    gpu_ctx_t *ctx = gpu_ctx_create(err, sizeof err);
    if (!ctx) {
        printf("SKIP: %s\n", err);
        return 0;
    }
    const int smoke = getenv("TIMIREC_BENCH_SMOKE") != NULL;
    const int warmup = smoke ? 0 : WARMUP, timed = smoke ? 1 : TIMED;
    char device[512];
    snprintf(device, sizeof device, "%s", desc);
    for (char *p = device; *p; p++)
        if (*p == ',') *p = ';';
    double bw_ceil, flop_ceil;
    read_ceilings(device, &bw_ceil, &flop_ceil);
    const char *commit = bench_commit(), *date = bench_date();
    FILE *csv = NULL;
    if (!smoke) {
        const char *path = "bench/results/kernels.csv";
        FILE *probe = fopen(path, "r");
        const int fresh = probe == NULL;
        if (probe) fclose(probe);
        csv = fopen(path, "a");
        if (!csv) perror(path);
        if (csv && fresh)
            fprintf(csv, "device,date,commit,kernel,shape,us,gbps,gflops,fraction_of_ceiling\n");
    }
    printf("extractor kernels on %s; ceilings %.0f GB/s (d2d), %.1f TFLOP/s (FP32 SGEMM)\n", desc,
           bw_ceil, flop_ceil / 1000);
    printf("%-22s %-26s %10s %10s %10s %9s\n", "kernel", "shape", "us", "GB/s", "GFLOP/s",
           "roofline");
    static const shape_t shapes[] = {
        {"reference", 256, 20, 64, 8, 2},
        {"long", 256, 200, 64, 8, 16},
    };
    gpu_timer_t *timer = gpu_timer_create();
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        shape_t s = shapes[si];
        if (smoke) s.B = 8;
        const int B = s.B, L = s.L, d = s.d, a = s.a, K = s.K;
        const int64_t n = (int64_t)B * L, nd = n * d;
        char shape[96];
        snprintf(shape, sizeof shape, "B%d L%d d%d a%d K%d", B, L, d, a, K);
        int32_t *hh = tmr_malloc((size_t)n * sizeof(int32_t));
        for (int bi = 0; bi < B; bi++) {
            const int len = bi % 10 ? L : 1 + (int)(rng_u32(11, RNG_TEST, 7, (uint64_t)bi, 0) % (uint32_t)L);
            for (int l = 0; l < L; l++) hh[(int64_t)bi * L + l] = l < len ? 1 + l : 0;
        }
        bufs_t b = {.ctx = ctx, .s = s};
        b.hist = gpu_malloc((size_t)n * sizeof(int32_t));
        gpu_to_device(b.hist, hh, (size_t)n * sizeof(int32_t));
        free(hh);
        const float wb = 1.0f / sqrtf((float)d);
        b.x = dev_rand(nd, 1, -1, 1), b.x2 = dev_rand(nd, 2, -1, 1);
        b.q = dev_rand(nd, 3, -1, 1), b.k = dev_rand(nd, 4, -1, 1), b.v = dev_rand(nd, 5, -1, 1);
        b.dctx = dev_rand(nd, 6, -1, 1);
        b.ctx_out = dev_zero(nd), b.stats = dev_zero(2 * n), b.dq = dev_zero(nd);
        b.dk = dev_zero(nd), b.dv = dev_zero(nd), b.D = dev_zero(n);
        b.gamma = dev_rand(d, 7, 0.5f, 1.5f), b.beta = dev_rand(d, 8, -0.5f, 0.5f);
        b.y = dev_zero(nd), b.xhat = dev_zero(nd), b.rstd = dev_zero(n), b.dz = dev_zero(nd);
        b.dgamma = dev_zero(d), b.dbeta = dev_zero(d), b.work = dev_zero(nd);
        b.W1 = dev_rand((int64_t)d * d, 9, -wb, wb), b.b1 = dev_rand(d, 10, -0.1f, 0.1f);
        b.W2 = dev_rand((int64_t)d * d, 11, -wb, wb), b.b2 = dev_rand(d, 12, -0.1f, 0.1f);
        b.r = dev_zero(nd), b.f = dev_zero(nd), b.dW1 = dev_zero((int64_t)d * d);
        b.db1 = dev_zero(d), b.dW2 = dev_zero((int64_t)d * d), b.db2 = dev_zero(d);
        b.dr = dev_zero(nd), b.dh = dev_zero(nd);
        b.iW1 = dev_rand((int64_t)a * d, 13, -wb, wb), b.ib1 = dev_rand(a, 14, -0.2f, 0.2f);
        b.iW2 = dev_rand((int64_t)K * a, 15, -0.7f, 0.7f), b.ib2 = dev_rand(K, 16, -0.2f, 0.2f);
        b.t = dev_zero(n * a), b.e = dev_zero(n * K), b.alpha = dev_zero(n * K);
        b.V = dev_zero((int64_t)B * K * d), b.dV = dev_rand((int64_t)B * K * d, 17, -1, 1);
        b.dx = dev_zero(nd), b.diW1 = dev_zero((int64_t)a * d), b.dib1 = dev_zero(a);
        b.diW2 = dev_zero((int64_t)K * a), b.de = dev_zero(n * K), b.dt = dev_zero(n * a);
        /* Scatter ids like a real batch: lengths 1..L uniform (about half the slots padding:
         * item 0 and position 0 get thousands of rows), random items, positions len - l. */
        int32_t *hi = tmr_malloc((size_t)n * sizeof(int32_t)), *hp = tmr_malloc((size_t)n * sizeof(int32_t));
        for (int bi = 0; bi < B; bi++) {
            const int len = 1 + (int)(rng_u32(11, RNG_TEST, 8, (uint64_t)bi, 0) % (uint32_t)L);
            for (int l = 0; l < L; l++) {
                const int64_t r = (int64_t)bi * L + l;
                hi[r] = l < len ? 1 + (int)(rng_u32(11, RNG_TEST, 9, (uint64_t)r, 0) % (SCATTER_ITEMS - 1)) : 0;
                hp[r] = l < len ? len - l : 0;
            }
        }
        const int64_t rows_item = distinct_ids(hi, n, SCATTER_ITEMS), rows_pos = distinct_ids(hp, n, L + 1);
        b.sc_item = gpu_malloc((size_t)n * sizeof(int32_t));
        b.sc_pos = gpu_malloc((size_t)n * sizeof(int32_t));
        gpu_to_device(b.sc_item, hi, (size_t)n * sizeof(int32_t));
        gpu_to_device(b.sc_pos, hp, (size_t)n * sizeof(int32_t));
        free(hi), free(hp);
        b.sc_E = dev_zero((int64_t)SCATTER_ITEMS * d), b.sc_P = dev_zero((int64_t)(L + 1) * d);
        /* Each op's minimum traffic (floats; hist as one float each) and useful flops. */
        const double LLd = (double)B * L * L * d, ndd = (double)nd * d;
        const double nad = (double)n * a * d, nak = (double)n * a * K, bkld = (double)B * K * L * d;
        const struct {
            const char *name;
            void (*run)(bufs_t *);
            double floats, flops;
        } ops[] = {
            {"attn_forward", op_attn_fwd, 4.0 * nd + 3.0 * n, 4 * LLd},
            {"attn_backward", op_attn_bwd, 7.0 * nd + 4.0 * n, 8 * LLd},
            {"layernorm_forward", op_ln_fwd, 4.0 * nd + 2.0 * n + 2.0 * d, 8.0 * nd},
            {"layernorm_backward", op_ln_bwd, 3.0 * nd + 2.0 * n + 5.0 * d, 10.0 * nd},
            {"ffn_forward", op_ffn_fwd, 3.0 * nd + 2.0 * d * d + 2.0 * d, 4 * ndd},
            {"ffn_backward", op_ffn_bwd, 5.0 * nd + 4.0 * d * d + 2.0 * d, 8 * ndd},
            {"interest_forward", op_int_fwd,
             (double)nd + n + (double)n * a + 2.0 * n * K + (double)B * K * d, 2 * nad + 2 * nak + 2 * bkld},
            {"interest_backward", op_int_bwd,
             2.0 * nd + 2.0 * (double)n * a + 2.0 * n * K + (double)B * K * d,
             4 * nad + 4 * nak + 4 * bkld},
            /* rows and ids read, the touched table rows read and written; one add a value */
            {"scatter_add_items", op_scatter_items, (double)nd + n + 2.0 * rows_item * d, (double)nd},
            {"scatter_add_positions", op_scatter_pos, (double)nd + n + 2.0 * rows_pos * d, (double)nd},
        };
        /* The backward ops read what their forward saved: run the forwards once first. */
        op_attn_fwd(&b), op_ln_fwd(&b), op_ffn_fwd(&b), op_int_fwd(&b);
        for (size_t oi = 0; oi < sizeof ops / sizeof *ops; oi++) {
            double ms[MAX_TIMED];
            for (int w = 0; w < warmup; w++) ops[oi].run(&b);
            for (int it = 0; it < timed; it++) {
                gpu_timer_start(timer);
                ops[oi].run(&b);
                ms[it] = gpu_timer_stop_ms(timer);
            }
            const double us = 1000.0 * bench_median(ms, timed);
            const double gbps = ops[oi].floats * 4.0 / (us * 1e3);
            const double gflops = ops[oi].flops / (us * 1e3);
            const double t_bw = ops[oi].floats * 4.0 / (bw_ceil * 1e3);   /* us */
            const double t_fl = ops[oi].flops / (flop_ceil * 1e3);        /* us */
            const double frac = (t_bw > t_fl ? t_bw : t_fl) / us;
            printf("%-22s %-26s %10.1f %10.1f %10.1f %8.1f%%\n", ops[oi].name, shape, us, gbps,
                   gflops, 100 * frac);
            if (csv)
                fprintf(csv, "%s,%s,%s,%s,%s,%.2f,%.1f,%.1f,%.4f\n", device, date ? date : "",
                        commit ? commit : "", ops[oi].name, shape, us, gbps, gflops, frac);
        }
        float **all[] = {&b.x, &b.x2, &b.q, &b.k, &b.v, &b.ctx_out, &b.stats, &b.dctx, &b.dq,
                         &b.dk, &b.dv, &b.D, &b.gamma, &b.beta, &b.y, &b.xhat, &b.rstd, &b.dz,
                         &b.dgamma, &b.dbeta, &b.work, &b.W1, &b.b1, &b.W2, &b.b2, &b.r, &b.f,
                         &b.dW1, &b.db1, &b.dW2, &b.db2, &b.dr, &b.dh, &b.iW1, &b.ib1, &b.iW2,
                         &b.ib2, &b.t, &b.e, &b.alpha, &b.V, &b.dV, &b.dx, &b.diW1, &b.dib1,
                         &b.diW2, &b.de, &b.dt};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) gpu_free(*all[i]);
        gpu_free(b.hist), gpu_free(b.sc_item), gpu_free(b.sc_pos), gpu_free(b.sc_E);
        gpu_free(b.sc_P);
    }
    gpu_timer_free(timer);
    if (csv) fclose(csv);
    gpu_ctx_free(ctx);
    return 0;
}
#endif
