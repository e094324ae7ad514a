/* Full-catalog scoring + top-K: the blocked kernel (topk.h) against the simple ways, at the
 * ML-1M evaluation shape (6,040 users x 3,706 items) and the CPU shape (10,000 users x
 * 100,000 items), emb 64, k = 50; on a GPU also the 100,000 x 1,000,000 shape.
 *
 * CPU variants, every one checked against the brute-force sort (topk_bruteforce) on a sample
 * of users before it is timed:
 *   naive          per user, per item a scalar dot product, then the heap (the former
 *                  recommend loop); timed on a slice of the users (items/s is what counts)
 *   gemm+psort     the matrix product of a block of users against the whole catalog, then a
 *                  partial sort (quickselect + sort of the first k) of every row; with the
 *                  built-in product and with OpenBLAS when built in; on up to 2,000 users
 *   blocked        topk_cpu: tiles of 512 items, a heap per row behind a threshold test,
 *                  nothing of size users x items written; built-in product (and OpenBLAS)
 * items_scored_per_s = users x items x n_vecs / s (a "-K2" backend scores every item with 2
 * interest vectors per user: the pretrain stage's max over K = 2). fraction_of_roofline: against the matrix
 * product alone at the kernel's tile shape (128 x 512 x emb, results in L2), measured in the
 * same run on all threads: the FLOP ceiling of this machine with this product.
 *
 * Rows are appended to bench/results/topk.csv. TIMIREC_BENCH_QUICK=1: smaller shapes. */
#include "timirec/common.h"
#include "timirec/gemm.h"
#include "timirec/topk.h"
#include "bench_util.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static uint64_t rng = 0x2545f4914f6cdd1dull;
static float uniform_nz(void) { /* +-[0.05, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    float v = 0.05f + 0.95f * (float)(rng >> 40) / 16777216.0f;
    return rng & 1 ? v : -v;
}
static uint32_t next_u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

typedef struct {
    float score;
    int32_t item;
} si_t;
static inline int si_worse(si_t a, si_t b) {
    return a.score < b.score || (a.score == b.score && a.item > b.item);
}
static int si_cmp(const void *a, const void *b) {
    si_t x = *(const si_t *)a, y = *(const si_t *)b;
    return si_worse(x, y) ? 1 : si_worse(y, x) ? -1 : 0;
}

/* Quickselect: afterwards a[0..k) holds the k best (any order). */
static void select_best(si_t *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        si_t pivot = a[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (si_worse(pivot, a[i])) i++;
            while (si_worse(a[j], pivot)) j--;
            if (i <= j) {
                si_t t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

/* One row's eligible scores -> best k, best first. */
static int32_t row_partial_sort(const topk_problem_t *p, int64_t r, const float *s, si_t *buf, int k,
                                int32_t *items, float *scores) {
    int64_t l = p->seen_index ? p->seen_index[r] : r, e = p->seen_off[l], e1 = p->seen_off[l + 1];
    int64_t n = 0;
    for (int32_t j = p->skip_padding; j < p->n_items; j++) {
        while (e < e1 && p->seen[e] < j) e++;
        if (e < e1 && p->seen[e] == j) continue;
        if (!isnan(s[j])) buf[n++] = (si_t){s[j], j};
    }
    int64_t m = n < k ? n : k;
    if (n > k) select_best(buf, n, k);
    qsort(buf, (size_t)m, sizeof *buf, si_cmp);
    for (int i = 0; i < k; i++) {
        items[i] = i < m ? buf[i].item : -1;
        scores[i] = i < m ? buf[i].score : NAN;
    }
    return (int32_t)m;
}

/* gemm + partial sort: blocks of 64 users x the whole catalog (one n_vecs = 1 row each). */
static void gemm_psort(const topk_problem_t *p, int k, int32_t *items, float *scores, int32_t *counts) {
    const int64_t U = p->n_rows, N = p->n_items, D = p->dim, blk = 64;
    float *s = tmr_malloc(tmr_mul_size((size_t)(blk * N), sizeof *s));
    si_t *bufs = tmr_malloc(tmr_mul_size((size_t)(omp_get_max_threads() * N), sizeof *bufs));
    for (int64_t u0 = 0; u0 < U; u0 += blk) {
        const int64_t nb = U - u0 < blk ? U - u0 : blk;
        tmr_sgemm(0, 1, nb, N, D, 1.0f, p->vecs + u0 * D, D, p->items, D, 0.0f, s, N);
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t b = 0; b < nb; b++)
            counts[u0 + b] = row_partial_sort(p, u0 + b, s + b * N, bufs + omp_get_thread_num() * N, k,
                                              items + (u0 + b) * k, scores + (u0 + b) * k);
    }
    free(s);
    free(bufs);
}

/* The former recommend loop: scalar dot products, then a heap. */
static void naive(const topk_problem_t *p, int k, int32_t *items, float *scores, int32_t *counts) {
    const int64_t N = p->n_items, D = p->dim;
    si_t *bufs = tmr_malloc(tmr_mul_size((size_t)(omp_get_max_threads() * N), sizeof *bufs));
    float *ss = tmr_malloc(tmr_mul_size((size_t)(omp_get_max_threads() * N), sizeof *ss));
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t u = 0; u < p->n_rows; u++) {
        float *s = ss + omp_get_thread_num() * N;
        const float *x = p->vecs + u * D;
        for (int64_t j = 0; j < N; j++) {
            float acc = 0;
            for (int64_t d = 0; d < D; d++) acc += x[d] * p->items[j * D + d];
            s[j] = acc;
        }
        counts[u] = row_partial_sort(p, u, s, bufs + omp_get_thread_num() * N, k, items + u * k,
                                     scores + u * k);
    }
    free(bufs);
    free(ss);
}

/* Same lists on the first rows? (scores compared to 1e-4 relative: the naive loop rounds
 * differently; items must match where the scores are not within that of each other.) */
static int agree(int64_t rows, int k, const int32_t *ia, const float *sa, const int32_t *ca,
                 const int32_t *ib, const float *sb, const int32_t *cb, int exact) {
    for (int64_t r = 0; r < rows; r++) {
        if (ca[r] != cb[r]) return 0;
        for (int i = 0; i < ca[r]; i++) {
            const float x = sa[r * k + i], y = sb[r * k + i];
            if (exact ? (ia[r * k + i] != ib[r * k + i] || x != y)
                      : !(fabsf(x - y) <= 1e-4f * (fabsf(y) + 1e-3f)))
                return 0;
        }
    }
    return 1;
}

typedef struct {
    const char *device, *date, *commit;
    FILE *csv;
} out_t;

static void row(out_t *o, const char *backend, int64_t U, int64_t N, int D, int k, double s,
                double items_per_s, double ceiling_items_per_s) {
    double frac = ceiling_items_per_s > 0 ? items_per_s / ceiling_items_per_s : NAN;
    printf("  %-28s %7lld x %8lld  %9.2f ms  %8.3g items/s  %5.1f%% of roofline\n", backend,
           (long long)U, (long long)N, s * 1e3, items_per_s, 100 * frac);
    if (o->csv)
        fprintf(o->csv, "%s,%s,%s,%s,%lld,%lld,%d,%d,%.3f,%.4g,%.3f\n", o->device, o->date,
                o->commit, backend, (long long)U, (long long)N, D, k, s * 1e3, items_per_s, frac);
}

/* The product alone at the kernel's tile shape (128 x 512 x D), one per thread, repeated:
 * GFLOP/s of this machine's ceiling for the blocked kernel. */
static double product_ceiling_gflops(int D) {
    const int M = 128, N = 512, reps = 200;
    double best = 0;
    for (int trial = 0; trial < 5; trial++) {
        double t0 = tmr_now();
#pragma omp parallel
        {
            float *a = tmr_malloc(sizeof(float) * M * D), *b = tmr_malloc(sizeof(float) * D * N),
                  *c = tmr_malloc(sizeof(float) * M * N);
            for (int i = 0; i < M * D; i++) a[i] = 0.5f + (float)(i % 7) * 0.01f;
            for (int i = 0; i < D * N; i++) b[i] = 0.25f + (float)(i % 5) * 0.01f;
            for (int r = 0; r < reps; r++) tmr_sgemm(0, 0, M, N, D, 1.0f, a, D, b, N, 0.0f, c, N);
            free(a), free(b), free(c);
        }
        double s = tmr_now() - t0;
        double g = 2.0 * M * N * D * reps * omp_get_max_threads() / s / 1e9;
        if (g > best) best = g;
    }
    return best;
}

typedef void (*topk_fn)(const topk_problem_t *, int, int32_t *, float *, int32_t *);

static double time_fn(topk_fn f, const topk_problem_t *p, int k, int32_t *it, float *sc,
                      int32_t *cn, int reps) {
    double t[16];
    for (int r = 0; r < reps; r++) {
        double t0 = tmr_now();
        f(p, k, it, sc, cn);
        t[r] = tmr_now() - t0;
    }
    return bench_median(t, reps);
}

static void cpu_shape(out_t *o, int64_t U, int32_t N, int D, int V, int k, double ceiling_gflops,
                      int reps) {
    printf("CPU %lld users x %d items x emb %d, %d vector(s) per user, top %d (%d threads)\n",
           (long long)U, (int)N, D, V, k, omp_get_max_threads());
    float *vecs = tmr_malloc(tmr_mul_size((size_t)(U * V * D), sizeof(float)));
    float *items = tmr_malloc(tmr_mul_size((size_t)N * D, sizeof(float)));
    for (int64_t i = 0; i < U * V * D; i++) vecs[i] = uniform_nz();
    for (int64_t i = 0; i < (int64_t)N * D; i++) items[i] = uniform_nz();
    /* Each user has seen 20..120 items (sorted, distinct). */
    int64_t *off = tmr_malloc(sizeof(int64_t) * (size_t)(U + 1));
    int32_t *seen = tmr_malloc(tmr_mul_size((size_t)U * 120, sizeof(int32_t)));
    off[0] = 0;
    for (int64_t u = 0; u < U; u++) {
        int n = 20 + (int)(next_u32() % 101);
        int32_t step = (N - 1) / n > 1 ? (N - 1) / n : 1, it = 1 + (int32_t)(next_u32() % (uint32_t)step);
        int64_t e = off[u];
        for (int i = 0; i < n && it < N; i++, it += 1 + (int32_t)(next_u32() % (uint32_t)step)) seen[e++] = it;
        off[u + 1] = e;
    }
    topk_problem_t p = {U, V, D, vecs, N, items, off, seen, NULL, 1};
    size_t n_out = (size_t)(U * k);
    int32_t *it = tmr_malloc(n_out * sizeof *it), *cn = tmr_malloc((size_t)U * sizeof *cn);
    float *sc = tmr_malloc(n_out * sizeof *sc);
    /* Reference on a sample of rows. */
    const int64_t sample = U < 16 ? U : 16;
    topk_problem_t ps = p;
    ps.n_rows = sample;
    int32_t *ri = tmr_malloc((size_t)(sample * k) * sizeof *ri), *rc = tmr_malloc((size_t)sample * sizeof *rc);
    float *rs = tmr_malloc((size_t)(sample * k) * sizeof *rs);
    tmr_gemm_use(GEMM_BUILTIN);
    topk_bruteforce(&ps, k, ri, rs, rc);
    const double ceiling_items = ceiling_gflops * 1e9 / (2.0 * D * V);
    const double pairs = (double)U * N;

    for (int impl = 0; impl <= tmr_gemm_have_openblas(); impl++) {
        tmr_gemm_use(impl ? GEMM_OPENBLAS : GEMM_BUILTIN);
        char name[64];
        topk_cpu(&p, k, it, sc, cn);
        int ok = agree(sample, k, it, sc, cn, ri, rs, rc, !impl);
        snprintf(name, sizeof name, "cpu-blocked-%s%s", impl ? "openblas" : "builtin",
                 V == 2 ? "-K2" : V > 2 ? "-K>2" : "");
        if (!ok) {
            printf("  %s: FAILED the check against brute force: not timed\n", name);
            continue;
        }
        double s = time_fn(topk_cpu, &p, k, it, sc, cn, reps);
        row(o, name, U, N, D, k, s, pairs * V / s, ceiling_items);
        if (V == 1) {
            /* On a slice of the users: its rate does not depend on their number. */
            topk_problem_t pg = p;
            pg.n_rows = U < 2000 ? U : 2000;
            gemm_psort(&pg, k, it, sc, cn);
            snprintf(name, sizeof name, "cpu-%s-gemm+psort", impl ? "openblas" : "builtin");
            if (!agree(sample, k, it, sc, cn, ri, rs, rc, !impl)) {
                printf("  %s: FAILED the check against brute force: not timed\n", name);
                continue;
            }
            s = time_fn(gemm_psort, &pg, k, it, sc, cn, reps);
            row(o, name, pg.n_rows, N, D, k, s, (double)pg.n_rows * N / s, ceiling_items);
        }
    }
    tmr_gemm_use(GEMM_BUILTIN);
    if (V == 1) {
        /* The naive loop on a slice of the users (its rate does not depend on their number). */
        topk_problem_t pn = p;
        pn.n_rows = U < 256 ? U : 256;
        naive(&pn, k, it, sc, cn);
        if (!agree(sample, k, it, sc, cn, ri, rs, rc, 0)) {
            printf("  cpu-naive: FAILED the check against brute force: not timed\n");
        } else {
            double s = time_fn(naive, &pn, k, it, sc, cn, 1);
            row(o, "cpu-naive", pn.n_rows, N, D, k, s, (double)pn.n_rows * N / s, ceiling_items);
        }
    }
    free(vecs), free(items), free(off), free(seen), free(it), free(cn), free(sc);
    free(ri), free(rc), free(rs);
}


#ifdef TIMIREC_CUDA
#include "timirec/gpu_ops.h"

/* ---- GPU rows: the kernel (topk_gpu) and the baseline (cuBLAS product + CUB segmented sort of
 * every row), each checked against topk_cpu on the first rows before it is timed. */
static char gerr[512];
static int gpu_failures; /* GPU steps that failed or variants that failed their check */
#define GTRY(call)                                                                   \
    do {                                                                             \
        if ((call) != 0) {                                                           \
            printf("  GPU step failed: %s: %s\n", #call, gerr);                      \
            gpu_failures++;                                                          \
            return;                                                                  \
        }                                                                            \
    } while (0)

typedef int (*gpu_fn)(gpu_ctx_t *, const topk_problem_t *, int, int32_t *, float *, int32_t *,
                      char *, size_t);

/* Chunk sizes tried for the kernel at the large shape (TIMIREC_TOPK_GPU_USERS / _ITEMS): the
 * default (256 MiB of scratch, 32,768 items), a scratch that fits in L2, and a large one. */
static const char *const chunk_configs[][2] = {{"", ""}, {"1024", "8192"}, {"4096", "65536"}};

static void gpu_shape(gpu_ctx_t *ctx, out_t *o, int64_t U, int32_t N, int D, int V, int k, int reps,
                      int64_t baseline_users, double peak_gflops, int sweep_chunks) {
    printf("GPU %lld users x %d items x emb %d, %d vector(s) per user, top %d\n", (long long)U,
           (int)N, D, V, k);
    const size_t nv = (size_t)(U * V * D), ni = (size_t)N * D;
    float *vecs = tmr_malloc(nv * sizeof(float)), *items = tmr_malloc(ni * sizeof(float));
    for (size_t i = 0; i < nv; i++) vecs[i] = uniform_nz();
    for (size_t i = 0; i < ni; i++) items[i] = uniform_nz();
    int64_t *off = tmr_malloc(sizeof(int64_t) * (size_t)(U + 1));
    int32_t *seen = tmr_malloc(tmr_mul_size((size_t)U * 120 + 1, sizeof(int32_t)));
    off[0] = 0;
    for (int64_t u = 0; u < U; u++) {
        int n = 20 + (int)(next_u32() % 101);
        int32_t step = (N - 1) / n > 1 ? (N - 1) / n : 1, it = 1 + (int32_t)(next_u32() % (uint32_t)step);
        int64_t e = off[u];
        for (int i = 0; i < n && it < N; i++, it += 1 + (int32_t)(next_u32() % (uint32_t)step)) seen[e++] = it;
        off[u + 1] = e;
    }
    topk_problem_t hp = {U, V, D, vecs, N, items, off, seen, NULL, 1}, dp = hp;
    GTRY(topk_gpu_malloc((void **)&dp.vecs, nv * sizeof(float), gerr, sizeof gerr));
    GTRY(topk_gpu_malloc((void **)&dp.items, ni * sizeof(float), gerr, sizeof gerr));
    GTRY(topk_gpu_malloc((void **)&dp.seen_off, sizeof(int64_t) * (size_t)(U + 1), gerr, sizeof gerr));
    GTRY(topk_gpu_malloc((void **)&dp.seen, sizeof(int32_t) * (size_t)(off[U] + 1), gerr, sizeof gerr));
    GTRY(topk_gpu_copy((void *)dp.vecs, vecs, nv * sizeof(float), 1, gerr, sizeof gerr));
    GTRY(topk_gpu_copy((void *)dp.items, items, ni * sizeof(float), 1, gerr, sizeof gerr));
    GTRY(topk_gpu_copy((void *)dp.seen_off, off, sizeof(int64_t) * (size_t)(U + 1), 1, gerr, sizeof gerr));
    GTRY(topk_gpu_copy((void *)dp.seen, seen, sizeof(int32_t) * (size_t)(off[U] + 1), 1, gerr, sizeof gerr));
    int32_t *d_items, *d_counts;
    float *d_scores;
    GTRY(topk_gpu_malloc((void **)&d_items, (size_t)(U * k) * 4, gerr, sizeof gerr));
    GTRY(topk_gpu_malloc((void **)&d_scores, (size_t)(U * k) * 4, gerr, sizeof gerr));
    GTRY(topk_gpu_malloc((void **)&d_counts, (size_t)U * 4, gerr, sizeof gerr));
    /* The CPU's lists of the first rows. */
    const int64_t sample = U < 16 ? U : 16;
    topk_problem_t hs = hp;
    hs.n_rows = sample;
    int32_t *ri = tmr_malloc((size_t)(sample * k) * 4), *rc = tmr_malloc((size_t)sample * 4);
    float *rs = tmr_malloc((size_t)(sample * k) * 4);
    int32_t *gi = tmr_malloc((size_t)(sample * k) * 4), *gc = tmr_malloc((size_t)sample * 4);
    float *gs = tmr_malloc((size_t)(sample * k) * 4);
    topk_cpu(&hs, k, ri, rs, rc);
    const double ceiling_items = peak_gflops * 1e9 / (2.0 * D * V);
    const char *names[] = {V == 1 ? "gpu-cublas+select" : "gpu-cublas+select-K2",
                           V == 1 ? "gpu-cublas+segsort" : "gpu-cublas+segsort-K2"};
    gpu_fn fns[] = {topk_gpu, topk_gpu_baseline};
    const int n_configs = sweep_chunks ? 3 : 1;
    for (int v = 0; v < 1 + n_configs; v++) {
        topk_problem_t run = dp;
        char name[96];
        const int base = v == n_configs; /* the baseline runs last */
        snprintf(name, sizeof name, "%s", names[base]);
        if (base) run.n_rows = U < baseline_users ? U : baseline_users;
        if (!base && v > 0) {
            setenv("TIMIREC_TOPK_GPU_USERS", chunk_configs[v][0], 1);
            setenv("TIMIREC_TOPK_GPU_ITEMS", chunk_configs[v][1], 1);
            snprintf(name, sizeof name, "%s[chunks %sx%s]", names[0], chunk_configs[v][0],
                     chunk_configs[v][1]);
        } else {
            unsetenv("TIMIREC_TOPK_GPU_USERS");
            unsetenv("TIMIREC_TOPK_GPU_ITEMS");
        }
        gpu_fn fn = fns[base];
        const int rc_first = fn(ctx, &run, k, d_items, d_scores, d_counts, gerr, sizeof gerr); /* warm-up */
        if (rc_first == -2) { /* not in this build (the CPU emulation has no CUB) */
            printf("  %s: SKIP: %s\n", name, gerr);
            continue;
        }
        GTRY(rc_first);
        GTRY(topk_gpu_copy(gi, d_items, (size_t)(sample * k) * 4, 0, gerr, sizeof gerr));
        GTRY(topk_gpu_copy(gs, d_scores, (size_t)(sample * k) * 4, 0, gerr, sizeof gerr));
        GTRY(topk_gpu_copy(gc, d_counts, (size_t)sample * 4, 0, gerr, sizeof gerr));
        if (!agree(sample, k, gi, gs, gc, ri, rs, rc, 0)) {
            printf("  %s: FAILED the check against topk_cpu: not timed\n", name);
            gpu_failures++;
            continue;
        }
        if (reps == 0) { /* check only */
            printf("  %s: agrees with topk_cpu on the first %lld rows\n", name, (long long)sample);
            continue;
        }
        double t[16];
        for (int r = 0; r < reps; r++) {
            double t0 = tmr_now();
            GTRY(fn(ctx, &run, k, d_items, d_scores, d_counts, gerr, sizeof gerr));
            GTRY(topk_gpu_sync(gerr, sizeof gerr));
            t[r] = tmr_now() - t0;
        }
        const double s = bench_median(t, reps);
        row(o, name, run.n_rows, N, D, k, s, (double)run.n_rows * N * V / s, ceiling_items);
    }
    unsetenv("TIMIREC_TOPK_GPU_USERS");
    unsetenv("TIMIREC_TOPK_GPU_ITEMS");
    topk_gpu_free((void *)dp.vecs), topk_gpu_free((void *)dp.items);
    topk_gpu_free((void *)dp.seen_off), topk_gpu_free((void *)dp.seen);
    topk_gpu_free(d_items), topk_gpu_free(d_scores), topk_gpu_free(d_counts);
    free(vecs), free(items), free(off), free(seen), free(ri), free(rc), free(rs), free(gi), free(gc), free(gs);
}

void bench_topk_gpu(out_t *o, int quick, int check_only) {
    char desc[256];
    if (topk_gpu_devices(desc, sizeof desc) < 1) {
        printf("SKIP GPU rows: %s\n", desc);
        return;
    }
    gpu_ctx_t *ctx = gpu_ctx_create(gerr, sizeof gerr);
    if (!ctx) {
        printf("SKIP GPU rows: %s\n", gerr);
        return;
    }
    const double peak = topk_gpu_fp32_peak_gflops();
    printf("GPU: %s, FP32 peak %.0f GFLOP/s (SMs x 128 lanes x 2 x clock)\n", desc, peak);
    const char *cpu_device = o->device;
    char dev[300];
    snprintf(dev, sizeof dev, "%s", desc);
    for (char *c = dev; *c; c++)
        if (*c == ',') *c = ';';
    o->device = dev;
    if (check_only) { /* the checks on tiny shapes, nothing recorded */
        gpu_shape(ctx, o, 12, 600, 16, 1, 50, 0, 12, peak, 1);
        gpu_shape(ctx, o, 10, 400, 8, 2, 20, 0, 10, peak, 0);
    } else {
        gpu_shape(ctx, o, 6040, 3706, 64, 1, 50, 10, 6040, peak, 0);
        gpu_shape(ctx, o, 6040, 3706, 64, 2, 50, 10, 6040, peak, 0);
        if (quick) gpu_shape(ctx, o, 20000, 200000, 64, 1, 50, 3, 2000, peak, 1);
        else gpu_shape(ctx, o, 100000, 1000000, 64, 1, 50, 3, 2000, peak, 1);
    }
    gpu_ctx_free(ctx); /* the cuBLAS handle and topk_gpu's scratch */
    o->device = cpu_device;
}
#endif

int main(void) {
    const int quick = getenv("TIMIREC_BENCH_QUICK") != NULL;
    const char *commit = bench_commit(), *date = bench_date();
    char device[256];
    bench_cpu_name(device, sizeof device);
    /* TIMIREC_BENCH_CHECK_ONLY=1: only the GPU variants' checks, on tiny shapes (a quick
     * look at a new machine); no row is written. */
    const int check_only = getenv("TIMIREC_BENCH_CHECK_ONLY") != NULL;
    FILE *csv = check_only ? NULL : fopen("bench/results/topk.csv", "a");
    if (csv && ftell(csv) == 0)
        fprintf(csv, "device,date,commit,backend,users,items,emb,k,ms,items_scored_per_s,fraction_of_roofline\n");
    out_t o = {device, date ? date : "unknown", commit ? commit : "unknown", csv};
    tmr_gemm_use(GEMM_BUILTIN);
#ifdef TIMIREC_CUDA
    if (check_only) {
        bench_topk_gpu(&o, quick, 1);
        printf("GPU checks: %s\n", gpu_failures ? "FAILED" : "all passed");
        return gpu_failures != 0;
    }
#endif
    const double ceiling = product_ceiling_gflops(64);
    printf("product ceiling (built-in, 128 x 512 x 64 per thread, %d threads): %.1f GFLOP/s\n",
           omp_get_max_threads(), ceiling);
    if (csv)
        fprintf(csv, "%s,%s,%s,cpu-product-ceiling,128,512,64,0,0,%.4g,1\n", device, o.date, o.commit,
                ceiling * 1e9 / 128.0);
    cpu_shape(&o, 6040, 3706, 64, 1, 50, ceiling, quick ? 3 : 5);
    cpu_shape(&o, 6040, 3706, 64, 2, 50, ceiling, quick ? 3 : 5);
    cpu_shape(&o, quick ? 2000 : 10000, 100000, 64, 1, 50, ceiling, quick ? 1 : 3);
#ifdef TIMIREC_CUDA
    bench_topk_gpu(&o, quick, 0);
#else
    printf("SKIP GPU rows: built without CUDA\n");
#endif
    if (csv) fclose(csv);
    return 0;
}
