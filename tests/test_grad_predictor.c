/* The interest predictor (E2 -> packed GRU -> projection MLP, docs/MODEL.md "Interest predictor"):
 *  - double-precision gradient checks of every predictor tensor (E2, the four GRU tensors,
 *    every projection layer) through the whole predictor for n_layers 2 and 3, dropout off
 *    (eval) and on (training, fixed key: the mask is a constant), lengths 1 .. L, loss =
 *    sum(pred_intent * R) (the GRU and the projection alone, n_layers 1 to 4 in both modes:
 *    the op table's grad mode, test_gpu_ops);
 *  - a forward value computed independently (numpy, docs/MODEL.md's gate equations) for a tiny case;
 *  - padding never matters (extra padded columns, or junk ids past length: identical bits);
 *  - the dropout mask is exactly the documented Philox mapping and keeps ~1-p;
 *  - float and double forwards agree;
 *  - the GRU input projections over the packed rows (PRED_INPUT_ROWS) and over the distinct
 *    E2 rows (PRED_INPUT_TABLE) give the same forward bits and the same gradients up to the
 *    order of float sums, both pass the gradient check, and AUTO picks each where it should. */
#include "gradcheck.h"
#include "test_util.h"
#include "timirec/cpu_ops.h"
#include "timirec/rng.h"

#include <stdint.h>

/* Uniform in [-1, 1), never exactly 0 in practice. */
static double urand(uint32_t salt, uint64_t i) {
    return rng_uniform01(rng_u32(2024, RNG_TEST, salt, i, 0)) * 2.0 - 1.0;
}

static model_config_t make_cfg(int N, int d, int K, int L, int n_layers, double p) {
    model_config_t c;
    memset(&c, 0, sizeof c);
    c.stage = STAGE_FINETUNE;
    c.n_items = N;
    c.emb_size = d;
    c.attn_size = 4;
    c.K = K;
    c.history_max = L;
    c.add_pos = 1;
    c.add_trm = 0;
    c.n_layers = n_layers;
    c.temp = 1.0;
    c.dropout = p;
    char err[200];
    if (model_config_check(&c, err, sizeof err)) {
        fprintf(stderr, "bad test config: %s\n", err);
        exit(1);
    }
    return c;
}

/* Random parameters, large enough for non-trivial gradients: E2 ~ U(-1,1), GRU ~ U(-.6,.6),
 * projection ~ U(-.5,.5); extractor tensors U(-.1,.1) (unused here). */
static void fill_params(const model_layout_t *lay, double *params, uint32_t salt) {
    int first = lay->id[P_PRED_ITEM_EMB];
    for (int t = 0; t < lay->n_tensors; t++) {
        const param_t *p = &lay->t[t];
        double scale = t < first ? 0.1 : t == first ? 1.0 : (t <= lay->id[P_GRU_B_HH] ? 0.6 : 0.5);
        for (int64_t i = 0; i < p->size; i++)
            params[p->offset + i] = scale * urand(salt + (uint32_t)t, (uint64_t)i);
    }
}

typedef struct {
    const model_layout_t *lay;
    const int32_t *hist, *length;
    int B, L, training;
    dropout_key_t key;
    predictor_cache_t_d *cache;
    const double *Rm;   /* (B, K) */
    double *pred;       /* (B, K) */
} pctx_t;

static double pred_loss(void *vctx, const double *params) {
    pctx_t *c = vctx;
    predictor_forward_d(c->lay, params, c->hist, c->length, c->B, c->L, c->training, c->key, 0, 0,
                        c->cache, c->pred);
    double s = 0;
    for (int e = 0; e < c->B * c->lay->cfg.K; e++) s += c->pred[e] * c->Rm[e];
    return s;
}

/* Gradient check of every predictor tensor for one configuration and input path (PRED_INPUT_*;
 * 25 packed rows over 11 items: AUTO takes the table). */
static void grad_case(int n_layers, int training, int input_path) {
    const int N = 12, d = 8, K = 3, B = 6, L = 7;
    model_config_t cfg = make_cfg(N, d, K, L, n_layers, 0.5);
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    double *params = malloc(sizeof(double) * (size_t)lay.total);
    double *grads = calloc((size_t)lay.total, sizeof(double));
    fill_params(&lay, params, 100u + (uint32_t)n_layers * 10u + (uint32_t)training);
    int32_t length[6] = {1, 7, 3, 7, 2, 5};
    int32_t hist[6 * 7];
    for (int b = 0; b < B; b++)
        for (int l = 0; l < L; l++)
            hist[b * L + l] = l < length[b]
                ? 1 + (int32_t)(rng_u32(7, RNG_TEST, 1, (uint64_t)(b * L + l), 0) % (uint32_t)(N - 1))
                : 0;
    double Rm[6 * 3], pred[6 * 3];
    for (int e = 0; e < B * K; e++) Rm[e] = urand(900, (uint64_t)e);
    predictor_cache_t_d cache;
    predictor_cache_alloc_d(&cache, &lay, B, L);
    cache.input_path = input_path;
    dropout_key_t key = {12345, 77};
    pctx_t ctx = {&lay, hist, length, B, L, training, key, &cache, Rm, pred};
    pred_loss(&ctx, params);
    for (int e = 0; e < B * K; e++) CHECK(isfinite(pred[e]), "pred_intent[%d] = %g", e, pred[e]);
    predictor_backward_d(&lay, params, hist, length, B, L, &cache, Rm, grads);
    printf("n_layers %d, %s, GRU inputs over %s:\n", n_layers,
           training ? "training (dropout p=0.5, fixed key)" : "eval",
           cache.U > 0 ? "distinct E2 rows" : "packed rows");
    CHECK((cache.U > 0) == (input_path != PRED_INPUT_ROWS), "input path %d ran %s", input_path,
          cache.U > 0 ? "the table" : "the rows");
    gc_opts_t o = gc_default_opts();
    int first = lay.id[P_PRED_ITEM_EMB];
    for (int t = 0; t < lay.n_tensors; t++) {
        const param_t *p = &lay.t[t];
        if (t < first) {
            /* The predictor never touches the extractor's gradients. */
            int nz = 0;
            for (int64_t i = 0; i < p->size; i++) nz += grads[p->offset + i] != 0;
            CHECK(nz == 0, "%s got %d nonzero gradients from the predictor", p->name, nz);
            continue;
        }
        int bad = gc_check(p->name, pred_loss, &ctx, params, p->offset, p->size, grads, &o);
        CHECK(bad == 0, "%s: %d elements off (n_layers %d, training %d)", p->name, bad, n_layers,
              training);
    }
    /* Non-trivial: every GRU tensor and the last projection layer have sizeable gradients. */
    for (int id = P_GRU_W_IH; id <= P_GRU_B_HH; id++) {
        const param_t *p = &lay.t[lay.id[id]];
        double mx = 0;
        for (int64_t i = 0; i < p->size; i++) tu_max_err(&mx, fabs(grads[p->offset + i]));
        CHECK(mx > 1e-3, "%s: gradients all tiny (%g)", p->name, mx);
    }
    predictor_cache_free_d(&cache);
    free(params);
    free(grads);
}

/* A forward value computed independently with numpy from docs/MODEL.md's equations: N 5, d 4,
 * attn 2, K 2, no pos/trm, n_layers 2, every parameter (flat index i of the whole buffer)
 * = 0.5 sin(0.37 i + 0.11); hist [[1,3,2],[4,0,0]], length [3,1]; eval. */
static void golden_case(void) {
    model_config_t cfg = make_cfg(5, 4, 2, 3, 2, 0.5);
    cfg.attn_size = 2;
    cfg.add_pos = 0;
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    CHECK(lay.total == 210, "layout total %lld", (long long)lay.total);
    double *params = malloc(sizeof(double) * (size_t)lay.total);
    for (int64_t i = 0; i < lay.total; i++) params[i] = 0.5 * sin(0.37 * (double)i + 0.11);
    int32_t hist[6] = {1, 3, 2, 4, 0, 0}, length[2] = {3, 1};
    const double want[4] = {0.306165979341324, 0.483527537177098, 0.43748685003854,
                            0.457463736034783};
    predictor_cache_t_d cache;
    predictor_cache_alloc_d(&cache, &lay, 2, 3);
    double pred[4];
    dropout_key_t key = {1, 1};
    predictor_forward_d(&lay, params, hist, length, 2, 3, 0, key, 0, 0, &cache, pred);
    for (int e = 0; e < 4; e++) CHECK_CLOSE(pred[e], want[e], 1e-12);
    printf("golden forward (numpy, MODEL.md gate equations): %.15g %.15g %.15g %.15g\n", pred[0],
           pred[1], pred[2], pred[3]);
    predictor_cache_free_d(&cache);
    free(params);
}

/* Padding: extra padded columns, or junk ids past each length, change nothing (bits). */
static void padding_case(void) {
    const int N = 12, d = 8, K = 3, B = 5, L = 6, L2 = 10;
    model_config_t cfg = make_cfg(N, d, K, L2, 3, 0.5);
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    double *params = malloc(sizeof(double) * (size_t)lay.total);
    fill_params(&lay, params, 300);
    int32_t length[5] = {6, 1, 4, 6, 3};
    int32_t h1[5 * 6], h2[5 * 10], h3[5 * 10];
    for (int b = 0; b < B; b++)
        for (int l = 0; l < L2; l++) {
            int32_t id = 1 + (int32_t)(rng_u32(7, RNG_TEST, 2, (uint64_t)(b * L2 + l), 0) % (uint32_t)(N - 1));
            int real = l < length[b];
            if (l < L) h1[b * L + l] = real ? id : 0;
            h2[b * L2 + l] = real ? id : 0;
            h3[b * L2 + l] = id; /* junk past length: must be ignored */
        }
    predictor_cache_t_d cache;
    predictor_cache_alloc_d(&cache, &lay, B, L2);
    dropout_key_t key = {99, 3};
    double p1[15], p2[15], p3[15], R[15];
    for (int e = 0; e < B * K; e++) R[e] = urand(901, (uint64_t)e);
    double *g1 = calloc((size_t)lay.total, sizeof(double)), *g2 = calloc((size_t)lay.total, sizeof(double));
    double *g3 = calloc((size_t)lay.total, sizeof(double));
    predictor_forward_d(&lay, params, h1, length, B, L, 1, key, 0, 0, &cache, p1);
    predictor_backward_d(&lay, params, h1, length, B, L, &cache, R, g1);
    predictor_forward_d(&lay, params, h2, length, B, L2, 1, key, 0, 0, &cache, p2);
    predictor_backward_d(&lay, params, h2, length, B, L2, &cache, R, g2);
    predictor_forward_d(&lay, params, h3, length, B, L2, 1, key, 0, 0, &cache, p3);
    predictor_backward_d(&lay, params, h3, length, B, L2, &cache, R, g3);
    CHECK(memcmp(p1, p2, sizeof p1) == 0, "extra padded columns changed pred_intent");
    CHECK(memcmp(p1, p3, sizeof p1) == 0, "ids past length changed pred_intent");
    CHECK(memcmp(g1, g2, sizeof(double) * (size_t)lay.total) == 0, "extra padding changed gradients");
    CHECK(memcmp(g1, g3, sizeof(double) * (size_t)lay.total) == 0, "ids past length changed gradients");
    printf("padding: identical forward and gradients with L %d vs %d, and with junk past length\n", L, L2);
    predictor_cache_free_d(&cache);
    free(params);
    free(g1);
    free(g2);
    free(g3);
}

/* Dropout: recompute the documented mapping here, without proj_dropout_keep. */
static int mapping_keep(dropout_key_t key, int layer, int B, int b, int d, int j, double p) {
    uint64_t idx = (uint64_t)(((int64_t)layer * B + b) * d + j);
    uint32_t w = rng_u32(key.seed, RNG_DROPOUT, key.step, idx, 0);
    float u = (float)(w >> 8) / 16777216.0f;
    return u >= (float)p;
}

static void dropout_case(double p) {
    const int N = 40, d = 64, K = 2, B = 256, L = 5;
    model_config_t cfg = make_cfg(N, d, K, L, 3, p);
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    double *params = malloc(sizeof(double) * (size_t)lay.total);
    fill_params(&lay, params, 400);
    int32_t *hist = malloc(sizeof(int32_t) * B * L), *length = malloc(sizeof(int32_t) * B);
    for (int b = 0; b < B; b++) {
        length[b] = 1 + b % L;
        for (int l = 0; l < L; l++)
            hist[b * L + l] = l < length[b] ? 1 + (b * 7 + l * 3) % (N - 1) : 0;
    }
    predictor_cache_t_d cache;
    predictor_cache_alloc_d(&cache, &lay, B, L);
    dropout_key_t key = {0xDEADBEEFCAFEull, 41};
    double *pred = malloc(sizeof(double) * B * K);
    double *eval_acts = malloc(sizeof(double) * 2 * B * d);
    predictor_forward_d(&lay, params, hist, length, B, L, 0, key, 0, 0, &cache, pred);
    memcpy(eval_acts, cache.acts, sizeof(double) * 2 * B * d);
    predictor_forward_d(&lay, params, hist, length, B, L, 1, key, 0, 0, &cache, pred);
    const double scale = 1.0 / (1.0 - p);
    int64_t kept = 0, total = 0, helper_bad = 0, layer0_bad = 0, dropped_nonzero = 0;
    for (int layer = 0; layer < 2; layer++)
        for (int b = 0; b < B; b++)
            for (int j = 0; j < d; j++) {
                int keep = mapping_keep(key, layer, B, b, d, j, p);
                helper_bad += keep != proj_dropout_keep(key.seed, key.step, layer, B, b, d, j, (float)p);
                kept += keep;
                total++;
                double got = cache.acts[((int64_t)layer * B + b) * d + j];
                if (!keep && got != 0) dropped_nonzero++;
                if (layer == 0) {
                    /* Layer 0's input g is the same in both modes: a_train = keep ? a_eval*s : 0. */
                    double want = keep ? eval_acts[(int64_t)b * d + j] * scale : 0.0;
                    if (got != want) layer0_bad++;
                }
            }
    double rate = (double)kept / (double)total;
    printf("dropout p=%.2f: keep rate %.4f over %lld elements (expected %.2f)\n", p, rate,
           (long long)total, 1 - p);
    CHECK(helper_bad == 0, "proj_dropout_keep differs from the mapping on %lld elements", (long long)helper_bad);
    CHECK(layer0_bad == 0, "layer 0: %lld elements differ from keep ? eval*scale : 0", (long long)layer0_bad);
    CHECK(dropped_nonzero == 0, "%lld dropped elements are nonzero", (long long)dropped_nonzero);
    CHECK(fabs(rate - (1 - p)) < 0.015, "keep rate %.4f, want %.2f", rate, 1 - p);
    /* A different step gives a different mask. */
    dropout_key_t key2 = key;
    key2.step++;
    int diff = 0;
    for (int j = 0; j < d; j++) diff += mapping_keep(key, 0, B, 0, d, j, p) != mapping_keep(key2, 0, B, 0, d, j, p);
    CHECK(diff > 0, "the mask does not change with the step");
    predictor_cache_free_d(&cache);
    free(params);
    free(hist);
    free(length);
    free(pred);
    free(eval_acts);
}

/* Float and double forwards agree (training, same key). */
static void float_double_case(void) {
    const int N = 50, d = 32, K = 4, B = 33, L = 9;
    model_config_t cfg = make_cfg(N, d, K, L, 2, 0.5);
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    double *pd = malloc(sizeof(double) * (size_t)lay.total);
    float *pf = malloc(sizeof(float) * (size_t)lay.total);
    fill_params(&lay, pd, 500);
    for (int64_t i = 0; i < lay.total; i++) {
        pf[i] = (float)pd[i];
        pd[i] = (double)pf[i];
    }
    int32_t hist[33 * 9], length[33];
    for (int b = 0; b < B; b++) {
        length[b] = 1 + (b * 5) % L;
        for (int l = 0; l < L; l++) hist[b * L + l] = l < length[b] ? 1 + (b * 11 + l * 5) % (N - 1) : 0;
    }
    predictor_cache_t_d cd;
    predictor_cache_t_f cf;
    predictor_cache_alloc_d(&cd, &lay, B, L);
    predictor_cache_alloc_f(&cf, &lay, B, L);
    dropout_key_t key = {5, 6};
    double outd[33 * 4];
    float outf[33 * 4];
    for (int training = 0; training < 2; training++) {
        predictor_forward_d(&lay, pd, hist, length, B, L, training, key, 0, 0, &cd, outd);
        predictor_forward_f(&lay, pf, hist, length, B, L, training, key, 0, 0, &cf, outf);
        double worst = 0;
        int bad = 0;
        for (int e = 0; e < B * K; e++) {
            double diff = fabs((double)outf[e] - outd[e]);
            if (!(diff <= 1e-5 * (1 + fabs(outd[e])))) bad++;
            tu_max_err(&worst, diff);
        }
        printf("float vs double forward (%s): max abs diff %.2e\n", training ? "training" : "eval", worst);
        CHECK(bad == 0, "float and double differ on %d of %d outputs (worst %g)", bad, B * K, worst);
    }
    /* Float backward is finite and close to double's. */
    double *gd = calloc((size_t)lay.total, sizeof(double));
    float *gf = calloc((size_t)lay.total, sizeof(float));
    double Rd[33 * 4];
    float Rf[33 * 4];
    for (int e = 0; e < B * K; e++) Rf[e] = (float)urand(902, (uint64_t)e), Rd[e] = Rf[e];
    predictor_backward_d(&lay, pd, hist, length, B, L, &cd, Rd, gd);
    predictor_backward_f(&lay, pf, hist, length, B, L, &cf, Rf, gf);
    double worst = 0, gmax = 0;
    for (int64_t i = 0; i < lay.total; i++) {
        double diff = fabs((double)gf[i] - gd[i]);
        tu_max_err(&worst, diff);
        tu_max_err(&gmax, fabs(gd[i]));
    }
    printf("float vs double backward: max abs diff %.2e (|grad| up to %.2e)\n", worst, gmax);
    CHECK(worst <= 1e-4 * (1 + gmax), "float backward differs by %g", worst);
    predictor_cache_free_d(&cd);
    predictor_cache_free_f(&cf);
    free(pd);
    free(pf);
    free(gd);
    free(gf);
}

/* ROWS vs TABLE on one batch of the float (and double) model: forward bits equal (each packed
 * row's projection is the same dot products), gradients equal up to summation order. n_items
 * sets how often items repeat; returns the distinct E2 rows AUTO saw, U (0: it chose ROWS). */
#define INPUT_PATH_CASE(SUF, REALT, TOL)                                                         \
    static int64_t input_path_case_##SUF(int n_items) {                                         \
        const int d = 16, K = 2, B = 48, L = 12;                                                \
        model_config_t cfg = make_cfg(n_items, d, K, L, 2, 0.5);                                \
        model_layout_t lay;                                                                     \
        model_layout_build(&cfg, &lay);                                                         \
        double *pd = malloc(sizeof(double) * (size_t)lay.total);                                \
        fill_params(&lay, pd, 700);                                                             \
        REALT *params = malloc(sizeof(REALT) * (size_t)lay.total);                              \
        for (int64_t i = 0; i < lay.total; i++) params[i] = (REALT)pd[i];                       \
        int32_t hist[48 * 12], length[48];                                                      \
        for (int b = 0; b < B; b++) {                                                           \
            length[b] = 1 + (int32_t)(rng_u32(8, RNG_TEST, 3, (uint64_t)b, 0) % L);             \
            for (int l = 0; l < L; l++)                                                         \
                hist[b * L + l] = l < length[b] ? 1 + (int32_t)(rng_u32(8, RNG_TEST, 4,         \
                                                  (uint64_t)(b * L + l), 0) % (uint32_t)n_items) \
                                                : 0;                                            \
        }                                                                                       \
        REALT Rm[48 * 2], out[3][48 * 2];                                                       \
        for (int e = 0; e < B * K; e++) Rm[e] = (REALT)urand(903, (uint64_t)e);                 \
        REALT *g[3];                                                                            \
        int64_t U = -1;                                                                         \
        dropout_key_t key = {31, 4};                                                            \
        const int paths[3] = {PRED_INPUT_ROWS, PRED_INPUT_TABLE, PRED_INPUT_AUTO};              \
        for (int p = 0; p < 3; p++) {                                                           \
            predictor_cache_t_##SUF c;                                                          \
            predictor_cache_alloc_##SUF(&c, &lay, B, L);                                        \
            c.input_path = paths[p];                                                            \
            g[p] = calloc((size_t)lay.total, sizeof(REALT));                                    \
            predictor_forward_##SUF(&lay, params, hist, length, B, L, 1, key, 0, 0, &c, out[p]); \
            predictor_backward_##SUF(&lay, params, hist, length, B, L, &c, Rm, g[p]);           \
            CHECK((c.U > 0) == (paths[p] == PRED_INPUT_TABLE) || paths[p] == PRED_INPUT_AUTO,   \
                  "path %d: U = %lld", paths[p], (long long)c.U);                               \
            if (paths[p] == PRED_INPUT_AUTO) U = c.U;                                           \
            predictor_cache_free_##SUF(&c);                                                     \
        }                                                                                       \
        CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0, "pred_intent differs between paths"); \
        double worst = 0, gmax = 0;                                                             \
        int64_t nonfinite = 0;                                                                  \
        for (int64_t i = 0; i < lay.total; i++) {                                               \
            nonfinite += !isfinite((double)g[1][i]);                                            \
            double diff = fabs((double)g[0][i] - (double)g[1][i]);                              \
            tu_max_err(&worst, diff);                                                           \
            tu_max_err(&gmax, fabs((double)g[0][i]));                                           \
        }                                                                                       \
        printf(#REALT ", %d items: rows vs table path, same forward bits, gradients within "    \
               "%.2e (|grad| up to %.2e); AUTO %s\n", n_items, worst, gmax,                    \
               U > 0 ? "took the table" : "took the rows");                                     \
        CHECK(nonfinite == 0, "%lld table-path gradients not finite", (long long)nonfinite);    \
        CHECK(gmax > 1e-2, "gradients all tiny (%g)", gmax);                                    \
        CHECK(worst <= (TOL) * gmax, "rows and table gradients differ by %g", worst);           \
        CHECK(memcmp(g[2], U > 0 ? g[1] : g[0], sizeof(REALT) * (size_t)lay.total) == 0,        \
              "AUTO's gradients are not those of the path it took");                            \
        for (int p = 0; p < 3; p++) free(g[p]);                                                 \
        free(params);                                                                           \
        free(pd);                                                                               \
        return U;                                                                               \
    }
INPUT_PATH_CASE(f, float, 1e-5)
INPUT_PATH_CASE(d, double, 1e-12)

int main(void) {
    golden_case();
    grad_case(2, 1, PRED_INPUT_AUTO);
    grad_case(3, 0, PRED_INPUT_AUTO);
    grad_case(2, 1, PRED_INPUT_ROWS);
    grad_case(2, 0, PRED_INPUT_TABLE);
    /* 30 items in ~300 packed rows: AUTO takes the table; 100,000: nearly every row distinct. */
    CHECK(input_path_case_f(30) > 0, "AUTO took the rows with items repeating ~10 times");
    CHECK(input_path_case_d(30) > 0, "AUTO took the rows with items repeating ~10 times");
    CHECK(input_path_case_f(100000) == 0, "AUTO took the table with distinct items");
    CHECK(input_path_case_d(100000) == 0, "AUTO took the table with distinct items");
    padding_case();
    dropout_case(0.5);
    dropout_case(0.2);
    float_double_case();
    return tu_finish("test_grad_predictor");
}
