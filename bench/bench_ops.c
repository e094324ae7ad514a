/* Kernel benchmarks of every hot op of the model, at the default shapes (batch 256, history 20,
 * d 64, K 2) and at large ones (history 200 and 512, K 16 and 64, batch 8,192, a 100,000-item
 * catalog). First the op table's CPU perf mode (tests/op_table.h: the extractor's ops, the
 * GRU, the projection, the single heads, Adam), then the compositions still set up here
 * (the whole predictor, the training heads' scores + loss, full-catalog scoring + rank). Each op is the CPU reference backend's own function (include/timirec/cpu/):
 * before it is timed, its float version is checked against its double version on the same
 * random inputs (float outputs poisoned with NaN first), as max |float - double| / max |double|
 * over every output. Then one warm-up and repeats (3 to 100, about --budget seconds), median time,
 * and GB/s (the bytes the op must move at least) or GFLOP/s (its multiply-adds x 2).
 * The CUDA kernels have their own benchmarks (bench_gpu_ops, bench_gpu_heads, timed with
 * CUDA events against the device's ceilings). Prints a table; appends rows to
 * bench/results/ops.csv (device, date, commit).
 *
 *   build/bench/bench_ops [--quick 1] [--only attention] [--csv FILE]
 *   TIMIREC_BENCH_QUICK=1 make bench: the default shapes only, short timing. */
#include "timirec/common.h"
#include "timirec/cpu_ops.h"
#include "timirec/metrics.h"
#include "timirec/model.h"
#include "timirec/options.h"
#include "timirec/rng.h"
#include "bench_util.h"
#include "op_table.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shapes --------------------------------------------------------------------------------- */

/* The single ops (tests/op_table.c: the extractor's, the GRU, the projection, the heads,
 * Adam) are timed by op_run_perf at the table's perf shapes; the compositions below are
 * still set up here. */
enum {
    OP_GRU = 1 << 0,      /* interest predictor: E2 gather, GRU, projection */
    OP_SCORE = 1 << 1,    /* scores of the training candidates + ranking loss, fwd + bwd */
    OP_TOPK = 1 << 2,     /* full-catalog scores + the target's rank among every item */
    OP_ALL = (1 << 3) - 1,
    OP_SEQ = OP_GRU,
    OP_K = OP_SCORE,
};

typedef struct {
    const char *name;
    int B, L, K, d, N;   /* batch, history, interests, emb_size, items (N) */
    unsigned ops;
    int quick;           /* part of the quick run (TIMIREC_BENCH_QUICK=1) */
} case_t;

static const case_t cases[] = {
    {"default", 256, 20, 2, 64, 3707, OP_ALL, 1},
    {"history 200", 256, 200, 2, 64, 3707, OP_SEQ, 0},
    {"history 512", 32, 512, 2, 64, 3707, OP_SEQ, 0},
    {"K 16", 256, 50, 16, 64, 3707, OP_K, 0},
    {"K 64", 256, 50, 64, 64, 3707, OP_K, 0},
    {"batch 8192", 8192, 20, 2, 64, 3707, OP_ALL & ~OP_TOPK, 0},
    {"catalog 100k", 256, 20, 2, 64, 100000, OP_TOPK, 0},
};

/* ---- helpers -------------------------------------------------------------------------------- */

static double g_budget = 0.3; /* seconds of timed repeats per op */
static uint64_t g_seed = 42;

static float *rand_f(size_t n, double scale) {
    float *x = tmr_malloc(tmr_mul_size(n ? n : 1, sizeof *x));
    uint64_t s = g_seed++;
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(scale * (2.0 * rng_uniform01(rng_u32(s, RNG_TEST, 0, i, 0)) - 1.0));
    return x;
}

static double *to_d(const float *x, size_t n) {
    double *y = tmr_malloc(tmr_mul_size(n ? n : 1, sizeof *y));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static float *nan_f(size_t n) {
    float *x = tmr_malloc(tmr_mul_size(n ? n : 1, sizeof *x));
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

static float *zeros_f(size_t n) { return tmr_calloc(n ? n : 1, sizeof(float)); }
static double *zeros_d(size_t n) { return tmr_calloc(n ? n : 1, sizeof(double)); }

/* max |f - d| / max |d| over n outputs; +inf when f or d has a NaN, or an Inf the other does
 * not have. Never NaN: the errors are combined with fmax, which would drop a NaN (and keeps
 * +inf). */
static double rel_err(const float *f, const double *d, size_t n) {
    double md = 0, me = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(f[i]) || !isfinite(d[i])) {
            if ((double)f[i] == d[i]) continue; /* the same infinity */
            return INFINITY;
        }
        md = fmax(md, fabs(d[i]));
        me = fmax(me, fabs((double)f[i] - d[i]));
    }
    return md > 0 ? me / md : me;
}

/* |f - d| / |d| of two scalars (losses); +inf when either is not finite (never NaN). */
static double rel_err1(double f, double d) {
    return isfinite(f) && isfinite(d) ? fabs(f - d) / fmax(fabs(d), 1e-30) : INFINITY;
}

/* A batch: histories of random lengths 1..L (right-padded with 0), positions, C candidates. */
typedef struct {
    int B, L, C;
    int32_t *hist, *pos, *length, *cand;
    int64_t T; /* sum of lengths: the GRU's packed rows */
} bbatch_t;

static void batch_make(bbatch_t *b, int B, int L, int C, int N) {
    b->B = B, b->L = L, b->C = C, b->T = 0;
    b->hist = tmr_malloc(tmr_mul_size((size_t)B * L, sizeof(int32_t)));
    b->pos = tmr_malloc(tmr_mul_size((size_t)B * L, sizeof(int32_t)));
    b->length = tmr_malloc((size_t)B * sizeof(int32_t));
    b->cand = tmr_malloc(tmr_mul_size((size_t)B * C, sizeof(int32_t)));
    uint64_t s = g_seed++;
    for (int i = 0; i < B; i++) {
        int len = i == 0 ? L : 1 + (int)(rng_u32(s, RNG_TEST, 1, (uint64_t)i, 0) % (uint32_t)L);
        b->length[i] = len;
        b->T += len;
        for (int l = 0; l < L; l++) {
            int64_t e = (int64_t)i * L + l;
            b->hist[e] = l < len ? 1 + (int32_t)(rng_u32(s, RNG_TEST, 2, (uint64_t)e, 0) % (uint32_t)(N - 1)) : 0;
            b->pos[e] = l < len ? len - l : 0;
        }
        for (int c = 0; c < C; c++)
            b->cand[(int64_t)i * C + c] = 1 + (int32_t)(rng_u32(s, RNG_TEST, 3, (uint64_t)i * C + c, 0) % (uint32_t)(N - 1));
    }
}

static void batch_free_(bbatch_t *b) {
    free(b->hist);
    free(b->pos);
    free(b->length);
    free(b->cand);
}

/* ---- timing and the table ------------------------------------------------------------------- */

typedef struct {
    const char *device;
    const char *commit, *date;
    FILE *csv;
    int threads;
    int n_fail;
} report_t;

typedef void (*kernel_fn)(void *arg);

/* Median seconds of fn(arg): one warm-up, then repeats until the budget (3 to 100). */
static double time_median(kernel_fn fn, void *arg, int *repeats) {
    double t0 = tmr_now();
    fn(arg);
    double once = tmr_now() - t0;
    int n = once > 0 ? (int)(g_budget / once) : 100;
    n = n < 3 ? 3 : n > 100 ? 100 : n;
    double t[100];
    for (int r = 0; r < n; r++) {
        t0 = tmr_now();
        fn(arg);
        t[r] = tmr_now() - t0;
    }
    *repeats = n;
    return bench_median(t, n);
}

/* One op: validated (err against tol) and, if it passed, timed. work is bytes (gbps = 1) or
 * flops. Prints the CPU row and the GPU row, appends both to the CSV. */
static void report(report_t *rp, const case_t *cs, const char *op, const char *shape, double err,
                   double tol, kernel_fn fn, void *arg, double work, int gbps) {
    int ok = err <= tol, repeats = 0;
    double secs = ok ? time_median(fn, arg, &repeats) : NAN;
    double rate = ok ? work / secs / 1e9 : NAN;
    const char *unit = gbps ? "GB/s" : "GFLOP/s";
    char status[64];
    snprintf(status, sizeof status, ok ? "ok" : "FAIL (error > %.0e)", tol);
    if (!ok) rp->n_fail++;
    printf("%-26s %-13s %-30s %-4s %10.3f %9.1f %-7s %9.1e  %s\n", op, cs->name, shape, "cpu",
           secs * 1e3, rate, unit, err, status);
    if (rp->csv) {
        fprintf(rp->csv, "%s,%s,%s,%s,%s,\"%s\",cpu,%d,%d,%.4f,%.2f,%s,%.2e,%s\n", rp->device,
                rp->date, rp->commit, op, cs->name, shape, rp->threads, repeats, secs * 1e3, rate,
                unit, err, ok ? "ok" : "FAIL");
    }
    fflush(stdout);
}

/* The parameter table of the case (finetune: every tensor exists), float and double. */
typedef struct {
    model_layout_t lay;
    float *pf;
    double *pd;
} bmodel_t;

static void model_make(bmodel_t *m, const case_t *cs) {
    model_config_t cfg = {.stage = STAGE_FINETUNE, .n_items = cs->N, .emb_size = cs->d,
                          .attn_size = 8, .K = cs->K, .history_max = cs->L, .add_pos = 1,
                          .add_trm = 1, .n_layers = 2, .temp = 0.5, .dropout = 0.5};
    char err[256];
    if (model_config_check(&cfg, err, sizeof err)) tmr_fatal("bench_ops: %s", err);
    model_layout_build(&cfg, &m->lay);
    m->pf = tmr_malloc(tmr_mul_size((size_t)m->lay.total, sizeof(float)));
    model_init_params(&m->lay, 7, m->pf);
    m->pd = to_d(m->pf, (size_t)m->lay.total);
}

static void model_free_(bmodel_t *m) {
    free(m->pf);
    free(m->pd);
}

/* ---- the ops -------------------------------------------------------------------------------- */

/* Each op: inputs in float and double, outputs in float (poisoned) and double; one call of
 * each precision for the check; the float call timed through a small argument struct.
 * A backward is checked on the float forward's saved activations (converted to double): a ReLU
 * or an argmax whose input sits within rounding of its edge would otherwise differ between
 * the precisions for reasons that are no fault of the backward. Weight gradients are float
 * sums over up to B*L = 164k rows, hence the looser tolerance. */
#define FWD_TOL 1e-5
#define BWD_TOL 1e-4

typedef struct {
    const bmodel_t *m;
    const bbatch_t *b;
    predictor_cache_t_f *c;
    const float *dpred;
    float *pred, *grads;
} gru_arg_t;
static void run_gru_fwd(void *p) {
    gru_arg_t *a = p;
    dropout_key_t key = {1, 0};
    predictor_forward_f(&a->m->lay, a->m->pf, a->b->hist, a->b->length, a->b->B, a->b->L, 1, key,
                        0, 0, a->c, a->pred);
}
static void run_gru_bwd(void *p) {
    gru_arg_t *a = p;
    predictor_backward_f(&a->m->lay, a->m->pf, a->b->hist, a->b->length, a->b->B, a->b->L, a->c,
                         a->dpred, a->grads);
}

static void bench_gru(report_t *rp, const case_t *cs, const bmodel_t *m, const bbatch_t *b) {
    int B = b->B, L = b->L, d = cs->d, K = cs->K;
    size_t total = (size_t)m->lay.total, bk = (size_t)B * K;
    predictor_cache_t_f cf;
    predictor_cache_t_d cd;
    predictor_cache_alloc_f(&cf, &m->lay, B, L);
    predictor_cache_alloc_d(&cd, &m->lay, B, L);
    dropout_key_t key = {1, 0};
    float *pred = nan_f(bk), *dpred = rand_f(bk, 1);
    double *predd = zeros_d(bk), *dpredd = to_d(dpred, bk);
    predictor_forward_f(&m->lay, m->pf, b->hist, b->length, B, L, 1, key, 0, 0, &cf, pred);
    predictor_forward_d(&m->lay, m->pd, b->hist, b->length, B, L, 1, key, 0, 0, &cd, predd);
    char shape[64];
    snprintf(shape, sizeof shape, "B=%d L=%d d=%d T=%lld", B, L, d, (long long)b->T);
    gru_arg_t a = {m, b, &cf, dpred, pred, NULL};
    /* The GRU dominates: input and recurrent products, 2 x (3d x d) multiply-adds per row each. */
    double flops = 12.0 * (double)b->T * d * d;
    report(rp, cs, "GRU predictor fwd", shape, rel_err(pred, predd, bk), FWD_TOL, run_gru_fwd, &a, flops, 0);
    float *grads = zeros_f(total);
    double *gradsd = zeros_d(total);
    predictor_backward_f(&m->lay, m->pf, b->hist, b->length, B, L, &cf, dpred, grads);
    predictor_backward_d(&m->lay, m->pd, b->hist, b->length, B, L, &cd, dpredd, gradsd);
    a.grads = grads;
    report(rp, cs, "GRU predictor bwd", shape, rel_err(grads, gradsd, total), BWD_TOL, run_gru_bwd, &a,
           2 * flops, 0);
    predictor_cache_free_f(&cf);
    predictor_cache_free_d(&cd);
    free(pred), free(dpred), free(predd), free(dpredd), free(grads), free(gradsd);
}

/* Training scores + ranking loss + their backward, both stages' heads. */
typedef struct {
    const bmodel_t *m;
    const bbatch_t *b;
    const float *V, *pi;
    int finetune;
    float *scores, *dscores, *dV, *grads, *w, *u, *du, *dpi, loss;
    int32_t *kstar;
} score_arg_t;
#define SCORE_STEP(P)                                                                                   \
    static void score_step_##P(const model_layout_t *lay, const REAL_##P *params, const bbatch_t *b,    \
                               const REAL_##P *V, const REAL_##P *pi, int finetune, REAL_##P *scores,   \
                               REAL_##P *dscores, REAL_##P *dV, REAL_##P *grads, REAL_##P *w,           \
                               REAL_##P *u, REAL_##P *du, REAL_##P *dpi, int32_t *kstar,                \
                               REAL_##P *loss) {                                                        \
        int B = b->B, C = b->C, K = lay->cfg.K, d = lay->cfg.emb_size;                                  \
        if (finetune) {                                                                                 \
            user_vector_##P(V, pi, B, K, d, w, u);                                                      \
            candidate_scores_##P(lay, params, u, b->cand, B, C, scores);                                \
            *loss = ranking_loss_##P(scores, B, C, 0, dscores);                                         \
            memset(du, 0, sizeof(REAL_##P) * (size_t)B * d);                                            \
            candidate_scores_backward_##P(lay, params, u, b->cand, B, C, dscores, du, grads);           \
            user_vector_backward_##P(V, w, du, B, K, d, dV, dpi);                                       \
        } else {                                                                                        \
            pretrain_scores_##P(lay, params, V, b->cand, B, C, 1, kstar, scores);                       \
            *loss = ranking_loss_##P(scores, B, C, 0, dscores);                                         \
            pretrain_scores_backward_##P(lay, params, V, b->cand, B, C, kstar, dscores, dV, grads);     \
        }                                                                                               \
    }
typedef float REAL_f;
typedef double REAL_d;
SCORE_STEP(f)
SCORE_STEP(d)
static void run_score(void *p) {
    score_arg_t *a = p;
    score_step_f(&a->m->lay, a->m->pf, a->b, a->V, a->pi, a->finetune, a->scores, a->dscores, a->dV,
                 a->grads, a->w, a->u, a->du, a->dpi, a->kstar, &a->loss);
}

static void bench_score(report_t *rp, const case_t *cs, const bmodel_t *m, const bbatch_t *b) {
    int B = b->B, C = b->C, K = cs->K, d = cs->d;
    size_t bkd = (size_t)B * K * d, bk = (size_t)B * K, bc = (size_t)B * C, bd = (size_t)B * d,
           total = (size_t)m->lay.total;
    float *V = rand_f(bkd, 0.3), *pi = rand_f(bk, 1);
    double *Vd = to_d(V, bkd), *pid = to_d(pi, bk);
    int32_t *kstar = tmr_malloc(sizeof(int32_t) * (size_t)B), *kstard = tmr_malloc(sizeof(int32_t) * (size_t)B);
    for (int finetune = 0; finetune <= 1; finetune++) {
        float *scores = nan_f(bc), *dscores = nan_f(bc), *dV = zeros_f(bkd), *grads = zeros_f(total),
              *w = nan_f(bk), *u = nan_f(bd), *du = nan_f(bd), *dpi = zeros_f(bk), lf;
        double *scoresd = zeros_d(bc), *dscoresd = zeros_d(bc), *dVd = zeros_d(bkd),
               *gradsd = zeros_d(total), *wd = zeros_d(bk), *ud = zeros_d(bd), *dud = zeros_d(bd),
               *dpid = zeros_d(bk), ld;
        score_step_f(&m->lay, m->pf, b, V, pi, finetune, scores, dscores, dV, grads, w, u, du, dpi, kstar, &lf);
        score_step_d(&m->lay, m->pd, b, Vd, pid, finetune, scoresd, dscoresd, dVd, gradsd, wd, ud, dud,
                     dpid, kstard, &ld);
        int same_k = finetune || memcmp(kstar, kstard, sizeof(int32_t) * (size_t)B) == 0;
        double err = fmax(fmax(rel_err(scores, scoresd, bc), rel_err(dscores, dscoresd, bc)),
                          fmax(rel_err(dV, dVd, bkd), rel_err(grads, gradsd, total)));
        err = fmax(err, rel_err1(lf, ld));
        if (finetune) err = fmax(err, rel_err(dpi, dpid, bk));
        if (!same_k) err = INFINITY;
        char shape[64];
        snprintf(shape, sizeof shape, "B=%d C=%d K=%d d=%d", B, C, K, d);
        score_arg_t a = {m, b, V, pi, finetune, scores, dscores, dV, grads, w, u, du, dpi, 0, kstar};
        /* bytes: interests, candidate rows read twice (forward, backward) and written once */
        double bytes = 4.0 * (2.0 * (double)bkd + 3.0 * (double)bc * d);
        report(rp, cs, finetune ? "scores + loss (finetune)" : "scores + loss (pretrain)", shape, err,
               BWD_TOL, run_score, &a, bytes, 1);
        free(scores), free(dscores), free(dV), free(grads), free(w), free(u), free(du), free(dpi);
        free(scoresd), free(dscoresd), free(dVd), free(gradsd), free(wd), free(ud), free(dud), free(dpid);
    }
    free(V), free(pi), free(Vd), free(pid), free(kstar), free(kstard);
}

/* Full-catalog scoring (finetune user vector against every item) and each row's rank among all
 * items but the user's history, as test_all evaluation does. */
typedef struct {
    const bmodel_t *m;
    const bbatch_t *b;
    const float *u;
    const int32_t *all, *excluded;
    const int64_t *ex_off;
    float *scores;
    int64_t *ranks;
} topk_arg_t;
static void run_topk(void *p) {
    topk_arg_t *a = p;
    int B = a->b->B, N = a->m->lay.cfg.n_items;
    candidate_scores_f(&a->m->lay, a->m->pf, a->u, a->all, B, N, a->scores);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < B; i++)
        a->ranks[i] = metrics_rank_all(a->scores + (size_t)i * N, N, a->b->cand[(size_t)i * a->b->C],
                                       a->excluded + a->ex_off[i], a->ex_off[i + 1] - a->ex_off[i]);
}

static int cmp_i32(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

static void bench_topk(report_t *rp, const case_t *cs, const bmodel_t *m, const bbatch_t *b) {
    int B = b->B, N = cs->N, d = cs->d, L = b->L;
    size_t bn = (size_t)B * N, bd = (size_t)B * d;
    int32_t *all = tmr_malloc(tmr_mul_size(bn, sizeof *all));
    for (size_t i = 0; i < bn; i++) all[i] = (int32_t)(i % (size_t)N); /* column j = item j */
    int32_t *excluded = tmr_malloc(tmr_mul_size((size_t)B * L, sizeof *excluded));
    int64_t *ex_off = tmr_malloc(((size_t)B + 1) * sizeof *ex_off);
    ex_off[0] = 0;
    for (int i = 0; i < B; i++) {
        int len = b->length[i];
        memcpy(excluded + ex_off[i], b->hist + (size_t)i * L, sizeof(int32_t) * (size_t)len);
        qsort(excluded + ex_off[i], (size_t)len, sizeof(int32_t), cmp_i32);
        ex_off[i + 1] = ex_off[i] + len;
    }
    float *u = rand_f(bd, 0.3), *scores = nan_f(bn);
    double *ud = to_d(u, bd), *scoresd = zeros_d(bn);
    int64_t *ranks = tmr_malloc((size_t)B * sizeof *ranks);
    candidate_scores_f(&m->lay, m->pf, u, all, B, N, scores);
    candidate_scores_d(&m->lay, m->pd, ud, all, B, N, scoresd);
    char shape[64];
    snprintf(shape, sizeof shape, "B=%d N=%d d=%d", B, N, d);
    topk_arg_t a = {m, b, u, all, excluded, ex_off, scores, ranks};
    report(rp, cs, "full-catalog score + rank", shape, rel_err(scores, scoresd, bn), FWD_TOL, run_topk,
           &a, 2.0 * (double)bn * d, 0);
    free(all), free(excluded), free(ex_off), free(u), free(scores), free(ud), free(scoresd), free(ranks);
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    tmr_flush_subnormals(); /* as the model step does: the ops here are called one by one */
    const char *csv_path = "bench/results/ops.csv", *only = "";
    const char *quick_env = getenv("TIMIREC_BENCH_QUICK");
    int64_t quick = quick_env && *quick_env && strcmp(quick_env, "0") != 0;
    double budget = -1;
    int64_t threads = 0;
    opt_t table[] = {
        {"quick", OPT_INT, &quick, 0, 1, "default shapes only, short timing (also "
                                         "TIMIREC_BENCH_QUICK=1)"},
        {"only", OPT_STR, &only, 0, 0, "run only the ops whose name contains this text"},
        {"budget", OPT_FLOAT, &budget, 0, 60, "seconds of timed repeats per op (default 0.3; 0.1 quick)"},
        {"threads", OPT_INT, &threads, 0, 1024, "OpenMP threads (0: all cores)"},
        {"csv", OPT_STR, &csv_path, 0, 0, "results file to append to (empty: none)"},
    };
    int n_opts = (int)(sizeof table / sizeof table[0]);
    char err[1024];
    int rc = options_parse(table, n_opts, argc, argv, 1, NULL, 0, NULL, err, sizeof err);
    if (rc) {
        if (rc < 0) fprintf(stderr, "bench_ops: %s\n", err);
        options_usage("usage: bench_ops [options]", table, n_opts, rc < 0 ? stderr : stdout);
        return rc < 0 ? 2 : 0;
    }
    g_budget = budget >= 0 ? budget : quick ? 0.1 : 0.3;
    if (threads > 0) omp_set_num_threads((int)threads);
    char device[256];
    bench_cpu_name(device, sizeof device);
    const char *commit = bench_commit(), *date = bench_date();
    report_t rp = {device, commit ? commit : "", date ? date : "", NULL, omp_get_max_threads(), 0};
    if (csv_path && *csv_path) {
        rp.csv = fopen(csv_path, "a");
        if (!rp.csv) fprintf(stderr, "bench_ops: warning: cannot append to %s\n", csv_path);
        else if (ftell(rp.csv) == 0)
            fprintf(rp.csv, "device,date,commit,op,case,shape,impl,threads,repeats,ms,rate,unit,"
                            "max_rel_err,status\n");
    }
    printf("Kernel benchmarks of the CPU reference ops on %s, %d threads, %s matrix product%s\n",
           device, rp.threads, tmr_gemm_name(tmr_gemm_current()), quick ? " (quick)" : "");
    printf("each op checked against its double-precision version first (err = max |f - d| / max |d|), "
           "then median of repeats\n\n");
    double t0 = tmr_now();
    if (rp.csv) fflush(rp.csv); /* op_run_perf appends to the same file */
    rp.n_fail += op_run_perf(NULL, only, quick ? PERF_QUICK : PERF_FULL, rp.csv ? csv_path : NULL);
    printf("\n");
    printf("%-26s %-13s %-30s %-4s %10s %9s %-7s %9s  %s\n", "op", "case", "shape", "dev", "ms",
           "rate", "", "err", "status");
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const case_t *cs = &cases[ci];
        if (quick && !cs->quick) continue;
        g_seed = 42 + 1000 * ci; /* the same inputs whichever ops run (--only) */
        bmodel_t m;
        model_make(&m, cs);
        bbatch_t b;
        batch_make(&b, cs->B, cs->L, 2, cs->N); /* target + 1 negative, as training */
#define WANT(bit, name) ((cs->ops & (bit)) && (!*only || strstr(name, only)))
        if (WANT(OP_GRU, "GRU predictor")) bench_gru(&rp, cs, &m, &b);
        if (WANT(OP_SCORE, "scores + loss")) bench_score(&rp, cs, &m, &b);
        if (WANT(OP_TOPK, "full-catalog score + rank")) bench_topk(&rp, cs, &m, &b);
#undef WANT
        batch_free_(&b);
        model_free_(&m);
    }
    printf("\n%d op%s failed validation; %.1f s%s%s\n", rp.n_fail, rp.n_fail == 1 ? "" : "s",
           tmr_now() - t0, rp.csv ? "; rows appended to " : "", rp.csv ? csv_path : "");
    if (rp.csv) fclose(rp.csv);
    return rp.n_fail ? 1 : 0;
}
