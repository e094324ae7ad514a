/* The interest extractor (docs/MODEL.md, "Interest extractor") on the CPU: gradient checks in
 * double precision of every extractor tensor against central finite differences (all four
 * add_pos/add_trm combinations, K = 1 and 3, and one larger sampled shape), the forward against
 * docs/MODEL.md's formulas written out per element (the sub-ops on their own: the op table's grad
 * mode, test_gpu_ops), float against double (forward and backward), identical bits with 1 and all
 * threads, a length-1 history (alpha = 1, V = x), an empty history (V = 0, never NaN), and extra
 * padding columns changing nothing. Random inputs only (Philox, RNG_TEST). */
#include "gradcheck.h"
#include "test_util.h"
#include "timirec/common.h"
#include "timirec/cpu_ops.h"
#include "timirec/gemm.h"
#include "timirec/model.h"
#include "timirec/rng.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SEED 20221017u
/* Absolute tolerance of the finite differences for a loss that sums n_terms products of size
 * ~1: round-off in one evaluation is ~1e-16 n_terms, and in (up - down) / 2h with h = 1e-6
 * ~1e-10 n_terms (it varies with the gemm's blocking, hence with the thread count). */
#define GC_ATOL(n_terms) (1e-10 * (double)(n_terms))

/* ---- random inputs ------------------------------------------------------------------------ */

static uint32_t g_salt = 1;

static double rnd_normal(uint64_t i, uint32_t salt) {
    philox4x32_t r = rng_block(SEED, RNG_TEST, salt, i, 0);
    double u1 = ((double)(r.v[0] >> 8) + 1.0) / 16777216.0;
    double u2 = (double)(r.v[1] >> 8) / 16777216.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void fill_normal(double *x, int64_t n, double mean, double sd) {
    uint32_t s = g_salt++;
    for (int64_t i = 0; i < n; i++) x[i] = mean + sd * rnd_normal((uint64_t)i, s);
}

/* Uniform in [0, range). */
static uint32_t rnd_below(uint32_t range) {
    static uint64_t idx = 0;
    uint32_t draw = 0;
    return rng_below(SEED, RNG_TEST, 7, idx++, &draw, range);
}

static double *dalloc(int64_t n) { return tmr_calloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double max_abs(const double *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        tu_max_err(&m, fabs(x[i]));
    return m;
}

/* ---- batches ------------------------------------------------------------------------------ */

typedef struct {
    int B, L;
    int32_t *hist, *pos; /* (B, L) */
    int *len;            /* (B) */
} batch_t;

/* Lengths: row 0 has 1 item, row 1 has L, the others random in 1..L (or in 0..L with
 * allow_empty, and then the last row is empty). Ids uniform in 1..N-1; pos = length - l. */
static void make_batch(batch_t *bt, int B, int L, int N, int allow_empty) {
    bt->B = B;
    bt->L = L;
    bt->hist = tmr_calloc((size_t)B * L, sizeof(int32_t));
    bt->pos = tmr_calloc((size_t)B * L, sizeof(int32_t));
    bt->len = tmr_calloc((size_t)B, sizeof(int));
    for (int b = 0; b < B; b++) {
        int len = b == 0 ? 1 : b == 1 ? L : 1 + (int)rnd_below((uint32_t)L);
        if (allow_empty && b == B - 1) len = 0;
        bt->len[b] = len;
        for (int l = 0; l < len; l++) {
            bt->hist[b * L + l] = 1 + (int32_t)rnd_below((uint32_t)(N - 1));
            bt->pos[b * L + l] = len - l;
        }
    }
}

static void free_batch(batch_t *bt) {
    free(bt->hist);
    free(bt->pos);
    free(bt->len);
}

/* ---- model set-up ------------------------------------------------------------------------- */

static void make_layout(model_layout_t *lay, int N, int d, int a, int K, int hmax, int add_pos,
                        int add_trm) {
    model_config_t cfg = {STAGE_PRETRAIN, N, d, a, K, hmax, add_pos, add_trm, 1, 1.0, 0.5};
    char err[256];
    if (model_config_check(&cfg, err, sizeof err) != 0) tmr_fatal("bad test config: %s", err);
    model_layout_build(&cfg, lay);
}

/* Weights larger than the 0.01 initialisation so that every gradient is far from zero:
 * tables normal(emb_sd), Linear normal(w_sd), LayerNorm gamma 1 + normal(0.2), beta normal(0.3). */
static void fill_params(const model_layout_t *lay, double *params, double emb_sd, double w_sd) {
    for (int t = 0; t < lay->n_tensors; t++) {
        const param_t *p = &lay->t[t];
        double *x = params + p->offset;
        if (p->init == INIT_ONES) fill_normal(x, p->size, 1.0, 0.2);
        else if (p->init == INIT_ZEROS) fill_normal(x, p->size, 0.0, 0.3);
        else if (strstr(p->name, "embeddings")) fill_normal(x, p->size, 0.0, emb_sd);
        else fill_normal(x, p->size, 0.0, w_sd);
    }
}

/* ---- docs/MODEL.md's formulas per element (an independent check of the forward) ---------------- */

static void spec_ln(const double *z, const double *g, const double *be, int d, double *y) {
    double mu = 0, var = 0;
    for (int c = 0; c < d; c++) mu += z[c];
    mu /= d;
    for (int c = 0; c < d; c++) var += (z[c] - mu) * (z[c] - mu);
    var /= d;
    for (int c = 0; c < d; c++) y[c] = g[c] * (z[c] - mu) / sqrt(var + 1e-5) + be[c];
}

/* y[o] = b[o] + sum_c W[o, c] x[c]  (W [out, in]). */
static void spec_lin(const double *W, const double *b, const double *x, int in, int out,
                     double *y) {
    for (int o = 0; o < out; o++) {
        double s = b[o];
        for (int c = 0; c < in; c++) s += W[o * in + c] * x[c];
        y[o] = s;
    }
}

/* V (K, d) of one history (L entries of hist/pos). */
static void spec_forward(const model_layout_t *lay, const double *prm, const int32_t *hist,
                         const int32_t *pos, int L, double *V) {
    const model_config_t *cfg = &lay->cfg;
    const int d = cfg->emb_size, a = cfg->attn_size, K = cfg->K;
#define P_(id) (prm + model_offset(lay, (id)))
    double *x = dalloc((int64_t)L * d), *q = dalloc((int64_t)L * d), *k = dalloc((int64_t)L * d);
    double *v = dalloc((int64_t)L * d), *h1 = dalloc((int64_t)L * d), *tmp = dalloc(4 * d);
    double *e = dalloc((int64_t)L * K), *w = dalloc(L);
    for (int l = 0; l < L; l++)
        for (int c = 0; c < d; c++)
            x[l * d + c] = P_(P_EXT_ITEM_EMB)[hist[l] * d + c] +
                           (cfg->add_pos ? P_(P_EXT_POS_EMB)[pos[l] * d + c] : 0.0);
    if (cfg->add_trm) {
        for (int l = 0; l < L; l++) {
            spec_lin(P_(P_TRM_WQ), P_(P_TRM_BQ), x + l * d, d, d, q + l * d);
            spec_lin(P_(P_TRM_WK), P_(P_TRM_BK), x + l * d, d, d, k + l * d);
            spec_lin(P_(P_TRM_WV), P_(P_TRM_BV), x + l * d, d, d, v + l * d);
        }
        for (int i = 0; i < L; i++) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < L; j++) {
                w[j] = -INFINITY;
                if (hist[j] > 0) w[j] = dot(q + i * d, k + j * d, d) / sqrt((double)d);
                if (w[j] > mx) mx = w[j];
            }
            for (int j = 0; j < L; j++) sum += w[j] = hist[j] > 0 ? exp(w[j] - mx) : 0.0;
            for (int c = 0; c < d; c++) {
                double ctx = 0;
                for (int j = 0; j < L; j++) ctx += (sum > 0 ? w[j] / sum : 0.0) * v[j * d + c];
                tmp[c] = ctx + x[i * d + c];
            }
            spec_ln(tmp, P_(P_TRM_LN1_G), P_(P_TRM_LN1_B), d, h1 + i * d);
        }
        for (int l = 0; l < L; l++) {
            double *u = tmp, *f = tmp + d, *z = tmp + 2 * d;
            spec_lin(P_(P_TRM_FF1_W), P_(P_TRM_FF1_B), h1 + l * d, d, d, u);
            for (int c = 0; c < d; c++) u[c] = u[c] > 0 ? u[c] : 0;
            spec_lin(P_(P_TRM_FF2_W), P_(P_TRM_FF2_B), u, d, d, f);
            for (int c = 0; c < d; c++) z[c] = f[c] + h1[l * d + c];
            spec_ln(z, P_(P_TRM_LN2_G), P_(P_TRM_LN2_B), d, x + l * d);
            for (int c = 0; c < d; c++) x[l * d + c] *= hist[l] > 0;
        }
    }
    for (int l = 0; l < L; l++) {
        double *t = tmp;
        spec_lin(P_(P_EXT_W1), P_(P_EXT_B1), x + l * d, d, a, t);
        for (int j = 0; j < a; j++) t[j] = tanh(t[j]);
        spec_lin(P_(P_EXT_W2), P_(P_EXT_B2), t, a, K, e + l * K);
    }
    for (int kk = 0; kk < K; kk++) {
        double mx = -INFINITY, sum = 0;
        for (int l = 0; l < L; l++)
            if (hist[l] > 0 && e[l * K + kk] > mx) mx = e[l * K + kk];
        for (int l = 0; l < L; l++) sum += w[l] = hist[l] > 0 ? exp(e[l * K + kk] - mx) : 0.0;
        for (int c = 0; c < d; c++) {
            double s = 0;
            for (int l = 0; l < L; l++) s += (sum > 0 ? w[l] / sum : 0.0) * x[l * d + c];
            V[kk * d + c] = s;
        }
    }
#undef P_
    free(x);
    free(q);
    free(k);
    free(v);
    free(h1);
    free(tmp);
    free(e);
    free(w);
}

/* W2.bias adds b2[k] to every position's score of interest k, and k_linear.bias adds q_i . bk
 * to every key's score of query i: softmax ignores both, so their gradients are exactly zero
 * (in the reference too, up to round-off). */
static int shift_invariant(const model_layout_t *lay, int t) {
    return t == lay->id[P_EXT_B2] || t == lay->id[P_TRM_BK];
}

/* A gradient that is zero in exact arithmetic: the analytic one must be round-off
 * (<= 1e-13 of the largest gradient) and so must every central difference (<= 1e-7). */
static int check_zero_grad(const char *name, gc_loss_fn loss, void *ctx, double *params,
                           int64_t off, int64_t size, const double *analytic, double gscale) {
    double ga = max_abs(analytic + off, size), gn = 0, h = 1e-6;
    for (int64_t i = off; i < off + size; i++) {
        double keep = params[i];
        params[i] = keep + h;
        double up = loss(ctx, params);
        params[i] = keep - h;
        double down = loss(ctx, params);
        params[i] = keep;
        double num = fabs((up - down) / (2 * h));
        tu_max_err(&gn, num);
    }
    int bad = !(ga <= 1e-13 * gscale) || !(gn <= 1e-7);
    printf("  %-58s zero by softmax shift invariance: |analytic| %.1e, |numeric| %.1e%s\n", name,
           ga, gn, bad ? "  FAIL" : "");
    return bad;
}

/* ---- whole-extractor gradient checks ------------------------------------------------------ */

typedef struct {
    const model_layout_t *lay;
    const batch_t *bt;
    extractor_cache_t_d *c;
    double *V, *Rw; /* (B, K, d) */
    int64_t nV;
} ext_ctx_t;

static double ext_loss(void *vctx, const double *params) {
    ext_ctx_t *x = vctx;
    extractor_forward_d(x->lay, params, x->bt->hist, x->bt->pos, x->bt->B, x->bt->L, x->c, x->V);
    return dot(x->V, x->Rw, x->nV);
}

static void run_extractor_case(int add_pos, int add_trm, int N, int d, int a, int K, int L,
                               int B, int max_samples) {
    model_layout_t lay;
    make_layout(&lay, N, d, a, K, L + 2, add_pos, add_trm);
    printf("extractor add_pos=%d add_trm=%d N=%d d=%d a=%d K=%d B=%d L=%d%s\n", add_pos, add_trm,
           N, d, a, K, B, L, max_samples ? " (sampled)" : "");
    double *params = dalloc(lay.total), *grads = dalloc(lay.total);
    fill_params(&lay, params, 0.5, 0.4);
    batch_t bt;
    make_batch(&bt, B, L, N, 0);
    extractor_cache_t_d c;
    extractor_cache_alloc_d(&c, &lay, B, L);
    ext_ctx_t ctx = {&lay, &bt, &c, dalloc((int64_t)B * K * d), dalloc((int64_t)B * K * d),
                     (int64_t)B * K * d};
    fill_normal(ctx.Rw, ctx.nV, 0.0, 1.0);

    /* Gradients must be added: start from a known non-zero buffer. */
    fill_normal(grads, lay.total, 0.0, 1.0);
    double *base = dalloc(lay.total);
    memcpy(base, grads, (size_t)lay.total * sizeof *grads);
    extractor_forward_d(&lay, params, bt.hist, bt.pos, B, L, &c, ctx.V);
    extractor_backward_d(&lay, params, bt.hist, bt.pos, B, L, &c, ctx.Rw, grads);
    for (int64_t i = 0; i < lay.total; i++) grads[i] -= base[i];
    free(base);

    /* Forward: finite, against docs/MODEL.md per element, length-1 row has V = x row 0. */
    int finite = 1;
    for (int64_t i = 0; i < ctx.nV; i++) finite &= isfinite(ctx.V[i]);
    CHECK(finite, "V has a non-finite element");
    double *Vs = dalloc((int64_t)K * d), worst = 0, scale = max_abs(ctx.V, ctx.nV);
    for (int b = 0; b < B; b++) {
        spec_forward(&lay, params, bt.hist + b * L, bt.pos + b * L, L, Vs);
        for (int64_t i = 0; i < (int64_t)K * d; i++) {
            double diff = fabs(Vs[i] - ctx.V[(int64_t)b * K * d + i]);
            tu_max_err(&worst, diff);
        }
    }
    printf("  forward vs docs/MODEL.md formulas: max abs diff %.2e (max |V| %.2e)\n", worst, scale);
    CHECK(worst <= 1e-12 * (1 + scale), "forward differs from docs/MODEL.md formulas by %g", worst);
    free(Vs);
    int len1_ok = 1;
    for (int k = 0; k < K; k++) {
        len1_ok &= c.alpha[(int64_t)k * L] == 1.0;
        for (int cc = 0; cc < d; cc++) len1_ok &= ctx.V[(int64_t)k * d + cc] == c.x[cc];
    }
    CHECK(len1_ok, "length-1 history: alpha must be 1 and V the row's x");

    gc_opts_t o = gc_default_opts();
    o.max_samples = max_samples;
    o.atol = GC_ATOL(ctx.nV);
    int bad = 0;
    const double gscale = max_abs(grads, lay.total);
    for (int t = 0; t < lay.n_tensors; t++) {
        const param_t *p = &lay.t[t];
        if (shift_invariant(&lay, t)) {
                bad += check_zero_grad(p->name, ext_loss, &ctx, params, p->offset, p->size, grads,
                                   gscale);
            continue;
        }
        /* An all-zero analytic gradient would make the check vacuous (the tables' rows of
         * unused ids are zero, but never a whole tensor). With L = 1 every softmax has one
         * entry (weight 1): W1, W2, q and k then have no gradient, rightly. */
        if (L > 1)
            CHECK(max_abs(grads + p->offset, p->size) > 1e-6, "%s: gradient is all zero", p->name);
        bad += gc_check(p->name, ext_loss, &ctx, params, p->offset, p->size, grads, &o);
    }
    CHECK(bad == 0, "%d gradient elements wrong", bad);

    free(ctx.V);
    free(ctx.Rw);
    extractor_cache_free_d(&c);
    free_batch(&bt);
    free(params);
    free(grads);
}

/* ---- float vs double, threads, padding ---------------------------------------------------- */

static void run_float_vs_double(int add_pos, int add_trm) {
    const int N = 50, d = 64, a = 8, K = 4, L = 20, B = 16;
    model_layout_t lay;
    make_layout(&lay, N, d, a, K, L, add_pos, add_trm);
    double *pd = dalloc(lay.total), *gd = dalloc(lay.total);
    fill_params(&lay, pd, 0.5, 1.0 / sqrt((double)d));
    float *pf = tmr_calloc((size_t)lay.total, sizeof(float));
    float *gf = tmr_calloc((size_t)lay.total, sizeof(float));
    for (int64_t i = 0; i < lay.total; i++) pf[i] = (float)pd[i];
    for (int64_t i = 0; i < lay.total; i++) pd[i] = pf[i]; /* same values in both precisions */
    batch_t bt;
    make_batch(&bt, B, L, N, 0);
    const int64_t nV = (int64_t)B * K * d;
    double *Vd = dalloc(nV), *Rd = dalloc(nV);
    float *Vf = tmr_calloc((size_t)nV, sizeof(float)), *Rf = tmr_calloc((size_t)nV, sizeof(float));
    fill_normal(Rd, nV, 0.0, 1.0);
    for (int64_t i = 0; i < nV; i++) Rd[i] = Rf[i] = (float)Rd[i];
    extractor_cache_t_d cd;
    extractor_cache_t_f cf;
    extractor_cache_alloc_d(&cd, &lay, B, L);
    extractor_cache_alloc_f(&cf, &lay, B, L);
    extractor_forward_d(&lay, pd, bt.hist, bt.pos, B, L, &cd, Vd);
    extractor_backward_d(&lay, pd, bt.hist, bt.pos, B, L, &cd, Rd, gd);
    extractor_forward_f(&lay, pf, bt.hist, bt.pos, B, L, &cf, Vf);
    extractor_backward_f(&lay, pf, bt.hist, bt.pos, B, L, &cf, Rf, gf);
    double worst = 0, scale = max_abs(Vd, nV);
    for (int64_t i = 0; i < nV; i++) {
        double diff = fabs((double)Vf[i] - Vd[i]);
        tu_max_err(&worst, diff);
    }
    printf("float vs double add_pos=%d add_trm=%d (d=%d K=%d B=%d L=%d): V max rel diff %.2e\n",
           add_pos, add_trm, d, K, B, L, worst / scale);
    CHECK(worst <= 1e-5 * scale, "float V differs from double by %g (scale %g)", worst, scale);
    const double gall = max_abs(gd, lay.total);
    for (int t = 0; t < lay.n_tensors; t++) {
        const param_t *p = &lay.t[t];
        double gw = 0, gs = max_abs(gd + p->offset, p->size);
        for (int64_t i = 0; i < p->size; i++) {
            double diff = fabs((double)gf[p->offset + i] - gd[p->offset + i]);
            tu_max_err(&gw, diff);
        }
        if (shift_invariant(&lay, t)) {
            /* Zero in exact arithmetic: float round-off only, relative to the largest gradient. */
            printf("  grad %-58s max |float - double| %.2e (zero by shift invariance; largest "
                   "gradient %.2e)\n", p->name, gw, gall);
            CHECK(gw <= 1e-5 * gall, "%s: float round-off %g too large", p->name, gw);
            continue;
        }
        printf("  grad %-58s max rel diff %.2e\n", p->name, gs > 0 ? gw / gs : gw);
        CHECK(gw <= 1e-5 * gs, "%s: float gradient differs by %g (scale %g)", p->name, gw, gs);
    }

    /* Identical bits with one thread and with all of them (built-in gemm: itself
     * reproducible), float precision as training runs it. */
    gemm_impl_t keep = tmr_gemm_current();
    tmr_gemm_use(GEMM_BUILTIN);
    int threads = omp_get_max_threads();
    float *V1 = tmr_calloc((size_t)nV, sizeof(float)), *g1 = tmr_calloc((size_t)lay.total, sizeof(float));
    memset(gf, 0, (size_t)lay.total * sizeof *gf);
    extractor_forward_f(&lay, pf, bt.hist, bt.pos, B, L, &cf, Vf);
    extractor_backward_f(&lay, pf, bt.hist, bt.pos, B, L, &cf, Rf, gf);
    omp_set_num_threads(1);
    extractor_forward_f(&lay, pf, bt.hist, bt.pos, B, L, &cf, V1);
    extractor_backward_f(&lay, pf, bt.hist, bt.pos, B, L, &cf, Rf, g1);
    omp_set_num_threads(threads);
    tmr_gemm_use(keep);
    CHECK(memcmp(V1, Vf, (size_t)nV * sizeof *V1) == 0 &&
              memcmp(g1, gf, (size_t)lay.total * sizeof *g1) == 0,
          "results differ between 1 and %d threads", threads);
    printf("  1 thread vs %d threads (builtin gemm): %s\n", threads,
           memcmp(V1, Vf, (size_t)nV * sizeof *V1) == 0 ? "identical" : "DIFFERENT");

    free(V1);
    free(g1);
    extractor_cache_free_d(&cd);
    extractor_cache_free_f(&cf);
    free_batch(&bt);
    free(pd);
    free(gd);
    free(pf);
    free(gf);
    free(Vd);
    free(Rd);
    free(Vf);
    free(Rf);
}

/* The same histories with 3 extra all-padding columns: V and every gradient unchanged, and the
 * padding rows of the tables (E[0], P[0]) get no gradient. */
static void run_padding(int add_pos, int add_trm) {
    const int N = 20, d = 8, a = 4, K = 3, L = 6, B = 4, X = 3;
    model_layout_t lay;
    make_layout(&lay, N, d, a, K, L + X, add_pos, add_trm);
    double *p = dalloc(lay.total), *g = dalloc(lay.total), *g2 = dalloc(lay.total);
    fill_params(&lay, p, 0.5, 0.4);
    batch_t bt, wide;
    make_batch(&bt, B, L, N, 0);
    wide.B = B;
    wide.L = L + X;
    wide.hist = tmr_calloc((size_t)B * (L + X), sizeof(int32_t));
    wide.pos = tmr_calloc((size_t)B * (L + X), sizeof(int32_t));
    wide.len = tmr_calloc((size_t)B, sizeof(int));
    for (int b = 0; b < B; b++)
        for (int l = 0; l < L; l++) {
            wide.hist[b * (L + X) + l] = bt.hist[b * L + l];
            wide.pos[b * (L + X) + l] = bt.pos[b * L + l];
        }
    const int64_t nV = (int64_t)B * K * d;
    double *V = dalloc(nV), *V2 = dalloc(nV), *Rw = dalloc(nV);
    fill_normal(Rw, nV, 0.0, 1.0);
    extractor_cache_t_d c;
    extractor_cache_alloc_d(&c, &lay, B, L + X);
    extractor_forward_d(&lay, p, bt.hist, bt.pos, B, L, &c, V);
    extractor_backward_d(&lay, p, bt.hist, bt.pos, B, L, &c, Rw, g);
    extractor_forward_d(&lay, p, wide.hist, wide.pos, B, L + X, &c, V2);
    extractor_backward_d(&lay, p, wide.hist, wide.pos, B, L + X, &c, Rw, g2);
    double dv = 0, dg = 0;
    for (int64_t i = 0; i < nV; i++) tu_max_err(&dv, fabs(V[i] - V2[i]));
    for (int64_t i = 0; i < lay.total; i++) tu_max_err(&dg, fabs(g[i] - g2[i]));
    printf("padding add_pos=%d add_trm=%d: +%d padding columns change V by %.2e, grads by %.2e\n",
           add_pos, add_trm, X, dv, dg);
    CHECK(dv <= 1e-13 * (1 + max_abs(V, nV)), "extra padding changed V by %g", dv);
    CHECK(dg <= 1e-13 * (1 + max_abs(g, lay.total)), "extra padding changed the gradients by %g", dg);
    const double *gE0 = g2 + model_offset(&lay, P_EXT_ITEM_EMB);
    CHECK(max_abs(gE0, d) == 0, "padding id 0 got an item-table gradient");
    if (add_pos) CHECK(max_abs(g2 + model_offset(&lay, P_EXT_POS_EMB), d) == 0,
                       "position 0 got a gradient");
    extractor_cache_free_d(&c);
    free_batch(&bt);
    free_batch(&wide);
    free(p);
    free(g);
    free(g2);
    free(V);
    free(V2);
    free(Rw);
}

/* An empty history in the batch (not produced by the sampler, but allowed): V = 0, the other
 * rows and all gradients finite. */
static void run_empty_row(void) {
    const int N = 15, d = 8, a = 4, K = 2, L = 4, B = 3;
    model_layout_t lay;
    make_layout(&lay, N, d, a, K, L, 1, 1);
    double *p = dalloc(lay.total), *g = dalloc(lay.total);
    fill_params(&lay, p, 0.5, 0.4);
    batch_t bt;
    make_batch(&bt, B, L, N, 1);
    const int64_t nV = (int64_t)B * K * d;
    double *V = dalloc(nV), *Rw = dalloc(nV);
    fill_normal(Rw, nV, 0.0, 1.0);
    extractor_cache_t_d c;
    extractor_cache_alloc_d(&c, &lay, B, L);
    extractor_forward_d(&lay, p, bt.hist, bt.pos, B, L, &c, V);
    extractor_backward_d(&lay, p, bt.hist, bt.pos, B, L, &c, Rw, g);
    int finite = 1;
    for (int64_t i = 0; i < nV; i++) finite &= isfinite(V[i]);
    for (int64_t i = 0; i < lay.total; i++) finite &= isfinite(g[i]);
    CHECK(finite, "empty history: non-finite V or gradient");
    CHECK(max_abs(V + (B - 1) * (int64_t)K * d, (int64_t)K * d) == 0, "empty history: V not 0");
    printf("empty history: V = 0, everything finite: %s\n", finite ? "yes" : "NO");
    extractor_cache_free_d(&c);
    free_batch(&bt);
    free(p);
    free(g);
    free(V);
    free(Rw);
}

int main(void) {
    double t0 = tmr_now();
    for (int add_trm = 0; add_trm < 2; add_trm++)
        for (int add_pos = 0; add_pos < 2; add_pos++)
            for (int K = 1; K <= 3; K += 2) run_extractor_case(add_pos, add_trm, 12, 8, 4, K, 6, 4, 0);
    run_extractor_case(1, 1, 30, 16, 6, 5, 9, 4, 40);
    run_extractor_case(1, 1, 10, 4, 1, 2, 1, 3, 0); /* L = 1, d = 4, a = 1: the smallest shape */

    for (int add_trm = 0; add_trm < 2; add_trm++) {
        run_float_vs_double(1, add_trm);
        run_padding(add_trm, add_trm);
        run_padding(!add_trm, add_trm);
    }
    run_empty_row();
    printf("(%.1f s)\n", tmr_now() - t0);
    return tu_finish("test_grad_extractor");
}
