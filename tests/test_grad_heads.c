/* Scores and losses (docs/MODEL.md, "Pretrain head" to "Distillation loss"), double-precision
 * gradient checks and values:
 *  - pretrain training scores (gradient wrt V and E, the argmax fixed), first-max tie rule,
 *    eval scores = brute-force max over k;
 *  - user_vector's weights sum to 1 (its and candidate_scores' gradients: the op table,
 *    test_gpu_ops);
 *  - ranking_loss against the reference's direct form, C = 2 equals BPR, a hand case, huge
 *    score gaps (its gradient check: the op table's grad mode, test_gpu_ops, C 2 to 31);
 *  - distill_loss: a hand case, the target in [-1, 1], distill_loss_from_target agrees, temp
 *    0.5 and 1 (its gradient check, target constant: the op table, temperatures 0.5 to 1.3);
 *  - the composed finetune chain ranking(candidate_scores(user_vector(V, pi))) + distill,
 *    checked wrt V, pred_intent and E (the distillation target is held constant: detached). */
#include "gradcheck.h"
#include "test_util.h"
#include "timirec/cpu_ops.h"
#include "timirec/rng.h"

#include <stdint.h>

static double urand(uint32_t salt, uint64_t i) {
    return rng_uniform01(rng_u32(4242, RNG_TEST, salt, i, 0)) * 2.0 - 1.0;
}

static void make_layout(model_layout_t *lay, int N, int d, int K) {
    model_config_t c;
    memset(&c, 0, sizeof c);
    c.stage = STAGE_FINETUNE;
    c.n_items = N;
    c.emb_size = d;
    c.attn_size = 4;
    c.K = K;
    c.history_max = 4;
    c.add_pos = 0;
    c.add_trm = 0;
    c.n_layers = 1;
    c.temp = 1;
    c.dropout = 0.5;
    char err[200];
    if (model_config_check(&c, err, sizeof err)) {
        fprintf(stderr, "bad test config: %s\n", err);
        exit(1);
    }
    model_layout_build(&c, lay);
}

/* Shapes shared by the checks. all = [params (lay.total) | V (B,K,d) | pi (B,K) | u (B,d)]. */
enum { N_ = 15, D_ = 8, K_ = 3, B_ = 5, C_ = 4 };

typedef struct {
    model_layout_t lay;
    int64_t oV, oPI, oU, n_all;
    int32_t cand[B_ * C_];
    double R[B_ * C_];        /* random loss weights on scores */
    double Ru[B_ * D_];
    int32_t kstar0[B_];
    int kstar_flips;
    double temp;
    double *base;             /* unperturbed copy of all (for detached targets) */
} hctx_t;

static void setup(hctx_t *h, uint32_t salt) {
    make_layout(&h->lay, N_, D_, K_);
    h->oV = h->lay.total;
    h->oPI = h->oV + B_ * K_ * D_;
    h->oU = h->oPI + B_ * K_;
    h->n_all = h->oU + B_ * D_;
    for (int e = 0; e < B_ * C_; e++)
        h->cand[e] = (int32_t)(rng_u32(11, RNG_TEST, salt, (uint64_t)e, 0) % N_);
    h->cand[1 * C_ + 2] = h->cand[0];     /* a repeated row of E across the batch */
    h->cand[2 * C_ + 3] = h->cand[2 * C_]; /* and within a row */
    for (int e = 0; e < B_ * C_; e++) h->R[e] = urand(salt + 1, (uint64_t)e);
    for (int e = 0; e < B_ * D_; e++) h->Ru[e] = urand(salt + 2, (uint64_t)e);
    h->kstar_flips = 0;
    h->temp = 1;
    h->base = NULL;
}

static double *random_all(const hctx_t *h, uint32_t salt) {
    double *a = malloc(sizeof(double) * (size_t)h->n_all);
    for (int64_t i = 0; i < h->n_all; i++) a[i] = urand(salt, (uint64_t)i);
    /* pred_intent logits over a wider range */
    for (int e = 0; e < B_ * K_; e++) a[h->oPI + e] *= 2.0;
    return a;
}

static int check_tensor(const char *name, gc_loss_fn f, void *ctx, double *all, int64_t off,
                        int64_t size, const double *grad) {
    gc_opts_t o = gc_default_opts();
    int bad = gc_check(name, f, ctx, all, off, size, grad, &o);
    CHECK(bad == 0, "%s: %d elements off", name, bad);
    double mx = 0;
    for (int64_t i = 0; i < size; i++) tu_max_err(&mx, fabs(grad[off + i]));
    CHECK(mx > 1e-3, "%s: gradients all tiny (%g)", name, mx);
    return bad;
}

/* ---- pretrain scores ---- */

static double pretrain_loss(void *vctx, const double *all) {
    hctx_t *h = vctx;
    int32_t ks[B_];
    double s[B_ * C_];
    pretrain_scores_d(&h->lay, all, all + h->oV, h->cand, B_, C_, 1, ks, s);
    for (int b = 0; b < B_; b++) h->kstar_flips += ks[b] != h->kstar0[b];
    double L = 0;
    for (int e = 0; e < B_ * C_; e++) L += s[e] * h->R[e];
    return L;
}

static void test_pretrain(void) {
    printf("pretrain scores (training: k* = argmax_k V·E[target]):\n");
    hctx_t h;
    setup(&h, 10);
    double *all = random_all(&h, 20), *grad = calloc((size_t)h.n_all, sizeof(double));
    const int d = D_, K = K_;
    const double *E = all + model_offset(&h.lay, P_EXT_ITEM_EMB), *V = all + h.oV;
    double s[B_ * C_];
    pretrain_scores_d(&h.lay, all, V, h.cand, B_, C_, 1, h.kstar0, s);
    /* k* is the first argmax, and the scores use it. */
    for (int b = 0; b < B_; b++) {
        int best = 0;
        double bv = -INFINITY;
        for (int k = 0; k < K; k++) {
            double v = 0;
            for (int j = 0; j < d; j++) v += V[(b * K + k) * d + j] * E[h.cand[b * C_] * d + j];
            if (v > bv) bv = v, best = k;
        }
        CHECK(h.kstar0[b] == best, "kstar[%d] = %d, want %d", b, h.kstar0[b], best);
        for (int c = 0; c < C_; c++) {
            double want = 0;
            for (int j = 0; j < d; j++) want += V[(b * K + best) * d + j] * E[h.cand[b * C_ + c] * d + j];
            CHECK_CLOSE(s[b * C_ + c], want, 1e-12);
        }
    }
    pretrain_scores_backward_d(&h.lay, all, V, h.cand, B_, C_, h.kstar0, h.R, grad + h.oV, grad);
    int64_t oE = model_offset(&h.lay, P_EXT_ITEM_EMB);
    check_tensor("pretrain: V (B,K,d)", pretrain_loss, &h, all, h.oV, B_ * K_ * D_, grad);
    check_tensor("pretrain: interest_extractor.i_embeddings.weight", pretrain_loss, &h, all, oE,
                 (int64_t)N_ * D_, grad);
    CHECK(h.kstar_flips == 0, "the argmax flipped %d times under finite differences", h.kstar_flips);
    /* Non-selected interests get no gradient. */
    for (int b = 0; b < B_; b++)
        for (int k = 0; k < K; k++)
            if (k != h.kstar0[b])
                for (int j = 0; j < d; j++)
                    CHECK(grad[h.oV + (b * K + k) * d + j] == 0, "dV[%d,%d] nonzero", b, k);

    /* Ties: the first max wins. Row 0: three equal interests -> 0; row 1: interests 1 and 2
     * equal and larger than 0 -> 1. */
    double *V2 = malloc(sizeof(double) * B_ * K_ * D_);
    memcpy(V2, V, sizeof(double) * B_ * K_ * D_);
    const double *t0 = E + h.cand[0] * d, *t1 = E + h.cand[C_] * d;
    for (int j = 0; j < d; j++) {
        V2[(0 * K + 1) * d + j] = V2[(0 * K + 2) * d + j] = V2[(0 * K + 0) * d + j];
        V2[(1 * K + 1) * d + j] = t1[j];
        V2[(1 * K + 2) * d + j] = t1[j];
        V2[(1 * K + 0) * d + j] = 0.5 * t1[j];
    }
    (void)t0;
    int32_t ks[B_];
    pretrain_scores_d(&h.lay, all, V2, h.cand, B_, C_, 1, ks, s);
    CHECK(ks[0] == 0, "three-way tie: kstar %d, want 0", ks[0]);
    CHECK(ks[1] == 1, "tie of 1 and 2: kstar %d, want 1", ks[1]);

    /* Eval: max over k, brute force; float agrees. */
    pretrain_scores_d(&h.lay, all, V, h.cand, B_, C_, 0, NULL, s);
    float *allf = malloc(sizeof(float) * (size_t)h.n_all);
    for (int64_t i = 0; i < h.n_all; i++) allf[i] = (float)all[i];
    float sf[B_ * C_];
    pretrain_scores_f(&h.lay, allf, allf + h.oV, h.cand, B_, C_, 0, NULL, sf);
    int bad = 0;
    for (int b = 0; b < B_; b++)
        for (int c = 0; c < C_; c++) {
            double m = -INFINITY;
            for (int k = 0; k < K; k++) {
                double v = 0;
                for (int j = 0; j < d; j++) v += V[(b * K + k) * d + j] * E[h.cand[b * C_ + c] * d + j];
                m = fmax(m, v);
            }
            bad += !tu_close(s[b * C_ + c], m, 1e-12);
            bad += !tu_close(sf[b * C_ + c], m, 1e-5);
        }
    CHECK(bad == 0, "eval scores: %d differ from the brute-force max over k", bad);
    printf("  eval scores = brute-force max_k (double and float): %s\n", bad ? "FAIL" : "ok");
    free(V2);
    free(allf);
    free(all);
    free(grad);
}

/* ---- user vector and candidate scores ---- */

/* The weights sum to 1 per row (the gradient checks of user_vector and candidate_scores are
 * the op table's grad mode, test_gpu_ops). */
static void test_user_weights(void) {
    printf("user_vector weights:\n");
    hctx_t h;
    setup(&h, 30);
    double *all = random_all(&h, 40);
    double w[B_ * K_], u[B_ * D_];
    user_vector_d(all + h.oV, all + h.oPI, B_, K_, D_, w, u);
    for (int b = 0; b < B_; b++) {
        double s = 0;
        for (int k = 0; k < K_; k++) s += w[b * K_ + k];
        CHECK_CLOSE(s, 1.0, 1e-14);
    }
    free(all);
}

/* ---- ranking loss ---- */

/* The reference's direct form, for moderate scores. */
static double naive_rank(const double *s, int B, int C) {
    double tot = 0;
    for (int b = 0; b < B; b++) {
        const double *r = s + b * C;
        double z = 0, acc = 0;
        for (int j = 1; j < C; j++) z += exp(r[j]);
        for (int j = 1; j < C; j++) acc += exp(r[j]) / z / (1 + exp(-(r[0] - r[j])));
        tot += -log(acc);
    }
    return tot / B;
}

static void test_ranking(void) {
    printf("ranking_loss:\n");
    int shapes[][2] = {{4, 6}, {3, 2}, {2, 31}};
    for (int si = 0; si < 3; si++) {
        int B = shapes[si][0], C = shapes[si][1];
        double *s = malloc(sizeof(double) * (size_t)(B * C)), *ds = malloc(sizeof(double) * (size_t)(B * C));
        for (int e = 0; e < B * C; e++) s[e] = 3.0 * urand(50 + (uint32_t)si, (uint64_t)e);
        double L = ranking_loss_d(s, B, C, 0, ds);
        CHECK_CLOSE(L, naive_rank(s, B, C), 1e-12);
        printf("  B %d, C %d: %.15g equals the direct form\n", B, C, L);
        /* float agrees */
        float *sf = malloc(sizeof(float) * (size_t)(B * C)), *dsf = malloc(sizeof(float) * (size_t)(B * C));
        for (int e = 0; e < B * C; e++) sf[e] = (float)s[e];
        float Lf = ranking_loss_f(sf, B, C, 0, dsf);
        CHECK_CLOSE(Lf, L, 1e-5);
        for (int e = 0; e < B * C; e++) CHECK_CLOSE(dsf[e], ds[e], 1e-5);
        free(sf);
        free(dsf);
        free(s);
        free(ds);
    }
    /* C = 2 is BPR: -mean log sigmoid(pos - neg). */
    {
        double s[8] = {0.3, -1.2, 2.5, 2.7, -4.0, 1.0, 0.0, 0.0}, ds[8];
        double L = ranking_loss_d(s, 4, 2, 0, ds), want = 0;
        for (int b = 0; b < 4; b++) want += log1p(exp(-(s[2 * b] - s[2 * b + 1])));
        want /= 4;
        CHECK_CLOSE(L, want, 1e-14);
        for (int b = 0; b < 4; b++) {
            double sg = 1 / (1 + exp(s[2 * b] - s[2 * b + 1])); /* sigmoid(neg - pos) */
            CHECK_CLOSE(ds[2 * b], -sg / 4, 1e-15);
            CHECK_CLOSE(ds[2 * b + 1], sg / 4, 1e-15);
        }
        printf("  C = 2 equals BPR: %.15g\n", L);
    }
    /* Hand case: scores [2, 1, 0]: w = softmax(1, 0), loss = -log(w1 sig(1) + w2 sig(2)). */
    {
        double s[3] = {2, 1, 0}, ds[3];
        double L = ranking_loss_d(s, 1, 3, 0, ds);
        CHECK_CLOSE(L, 0.25963967700718, 1e-13);
        printf("  hand case [2, 1, 0]: %.15g (want 0.25963967700718)\n", L);
    }
    /* Huge gaps: finite, right values, finite gradients (float too). */
    {
        double s[3 * 4] = {1000, -1000, -1000, -1000, -1000, 1000, 1000, 1000,
                           0,    800,   -800,  5};
        double ds[12];
        double L0, L1, L2, L;
        L = ranking_loss_d(s, 3, 4, 0, ds);
        L0 = ranking_loss_d(s, 1, 4, 0, ds);
        L1 = ranking_loss_d(s + 4, 1, 4, 0, ds);
        L2 = ranking_loss_d(s + 8, 1, 4, 0, ds);
        CHECK(isfinite(L) && isfinite(L0) && isfinite(L1) && isfinite(L2), "non-finite loss");
        CHECK_CLOSE(L0, 0.0, 1e-12);
        CHECK_CLOSE(L1, 2000.0, 1e-9);
        /* row 2: w ~ (1, e^-1600, e^-795): loss = 800 - log(1 + e^5 sigmoid(-5)) (+ O(e^-795)) */
        CHECK_CLOSE(L2, 800.0 - log1p(exp(5.0) / (1.0 + exp(5.0))), 1e-9);
        L = ranking_loss_d(s, 3, 4, 0, ds);
        CHECK_CLOSE(L, (L0 + L1 + L2) / 3, 1e-9);
        for (int e = 0; e < 12; e++) CHECK(isfinite(ds[e]), "ds[%d] = %g", e, ds[e]);
        float sf[12], dsf[12];
        for (int e = 0; e < 12; e++) sf[e] = (float)s[e];
        float Lf = ranking_loss_f(sf, 3, 4, 0, dsf);
        CHECK(isfinite(Lf), "float loss %g", Lf);
        CHECK_CLOSE(Lf, L, 1e-3);
        for (int e = 0; e < 12; e++) CHECK(isfinite(dsf[e]), "float ds[%d] = %g", e, dsf[e]);
        printf("  gaps of 2000: loss %.6g, gradients finite\n", L);
    }
}

/* ---- distillation ---- */

static void test_distill(void) {
    printf("distill_loss:\n");
    /* Hand case: d 4, K 2, V = (1,0,0,0), (0,2,0,0), target item (3,4,0,0): cos 0.6, 0.8;
     * pred_intent (0.3, -0.2). numpy: temp 1 -> 0.0608219129172494, temp 0.5 -> 0.0596022898189257. */
    {
        model_layout_t lay;
        make_layout(&lay, 3, 4, 2);
        double *params = calloc((size_t)lay.total, sizeof(double));
        double *E = params + model_offset(&lay, P_EXT_ITEM_EMB);
        for (int e = 0; e < 3 * 4; e++) E[e] = 0.1 * (e + 1);
        E[2 * 4 + 0] = 3;
        E[2 * 4 + 1] = 4;
        E[2 * 4 + 2] = 0;
        E[2 * 4 + 3] = 0;
        double V[8] = {1, 0, 0, 0, 0, 2, 0, 0}, pi[2] = {0.3, -0.2}, ti[2], dpi[2] = {0, 0};
        int32_t cand[2] = {2, 1};
        double temps[2] = {1.0, 0.5}, want[2] = {0.0608219129172494, 0.0596022898189257};
        for (int i = 0; i < 2; i++) {
            double L = distill_loss_d(&lay, params, V, cand, pi, 1, 2, 0, temps[i], ti, dpi);
            CHECK_CLOSE(ti[0], 0.6, 1e-15);
            CHECK_CLOSE(ti[1], 0.8, 1e-15);
            CHECK_CLOSE(L, want[i], 1e-14);
            printf("  hand case temp %.1f: %.15g (want %.15g)\n", temps[i], L, want[i]);
        }
        /* A zero vector: cos = 0 (norm clamped at 1e-12), no NaN. */
        double Vz[8] = {0, 0, 0, 0, 0, 2, 0, 0};
        double L = distill_loss_d(&lay, params, Vz, cand, pi, 1, 2, 0, 1.0, ti, NULL);
        CHECK(ti[0] == 0 && isfinite(L), "zero interest: target %g, loss %g", ti[0], L);
        free(params);
    }
    /* Values at temp 0.5 and 1 (the finite differences: the op table's distill_loss). */
    double temps[2] = {0.5, 1.0};
    for (int i = 0; i < 2; i++) {
        hctx_t h;
        setup(&h, 60);
        h.temp = temps[i];
        double *all = random_all(&h, 70);
        double target[B_ * K_], dpi[B_ * K_], pi[B_ * K_];
        for (int e = 0; e < B_ * K_; e++) dpi[e] = 0.25; /* ADD semantics: offset removed below */
        memcpy(pi, all + h.oPI, sizeof pi);
        double L = distill_loss_d(&h.lay, all, all + h.oV, h.cand, pi, B_, C_, 0, h.temp, target, dpi);
        for (int e = 0; e < B_ * K_; e++) dpi[e] -= 0.25;
        CHECK(isfinite(L) && L >= 0, "distill loss %g", L);
        /* The target is cos(V, E[target]) in [-1, 1]. */
        for (int e = 0; e < B_ * K_; e++)
            CHECK(target[e] >= -1 && target[e] <= 1, "target_intent %g", target[e]);
        /* distill_loss_from_target with the written target gives the same value and gradient. */
        double dpi2[B_ * K_] = {0};
        double L2 = distill_loss_from_target_d(target, pi, B_, K_, 0, h.temp, dpi2);
        CHECK(L2 == L, "distill_loss_from_target %.17g vs distill_loss %.17g", L2, L);
        for (int e = 0; e < B_ * K_; e++) CHECK_CLOSE(dpi2[e], dpi[e], 1e-15);
        /* float agrees */
        float *allf = malloc(sizeof(float) * (size_t)h.n_all), tf[B_ * K_], pif[B_ * K_];
        for (int64_t j = 0; j < h.n_all; j++) allf[j] = (float)all[j];
        for (int e = 0; e < B_ * K_; e++) pif[e] = (float)pi[e];
        float Lf = distill_loss_f(&h.lay, allf, allf + h.oV, h.cand, pif, B_, C_, 0, h.temp, tf, NULL);
        CHECK_CLOSE(Lf, L, 1e-5);
        free(allf);
        free(all);
    }
}

/* ---- the composed finetune chain ---- */

static double chain_loss(void *vctx, const double *all) {
    hctx_t *h = vctx;
    double w[B_ * K_], u[B_ * D_], s[B_ * C_], ds[B_ * C_], ti[B_ * K_];
    user_vector_d(all + h->oV, all + h->oPI, B_, K_, D_, w, u);
    candidate_scores_d(&h->lay, all, u, h->cand, B_, C_, s);
    double L = ranking_loss_d(s, B_, C_, 0, ds);
    /* The target uses the unperturbed V and E: it is detached in the reference. */
    L += distill_loss_d(&h->lay, h->base, h->base + h->oV, h->cand, all + h->oPI, B_, C_, 0, h->temp,
                        ti, NULL);
    return L;
}

static void test_chain(void) {
    printf("composed chain: ranking(candidate_scores(user_vector(V, pi))) + distill (temp 0.5):\n");
    hctx_t h;
    setup(&h, 80);
    h.temp = 0.5;
    double *all = random_all(&h, 90), *grad = calloc((size_t)h.n_all, sizeof(double));
    h.base = malloc(sizeof(double) * (size_t)h.n_all);
    memcpy(h.base, all, sizeof(double) * (size_t)h.n_all);
    double w[B_ * K_], u[B_ * D_], s[B_ * C_], ds[B_ * C_], ti[B_ * K_], du[B_ * D_] = {0};
    user_vector_d(all + h.oV, all + h.oPI, B_, K_, D_, w, u);
    candidate_scores_d(&h.lay, all, u, h.cand, B_, C_, s);
    double L = ranking_loss_d(s, B_, C_, 0, ds);
    candidate_scores_backward_d(&h.lay, all, u, h.cand, B_, C_, ds, du, grad);
    user_vector_backward_d(all + h.oV, w, du, B_, K_, D_, grad + h.oV, grad + h.oPI);
    L += distill_loss_d(&h.lay, all, all + h.oV, h.cand, all + h.oPI, B_, C_, 0, h.temp, ti, grad + h.oPI);
    CHECK(isfinite(L), "chain loss %g", L);
    CHECK_CLOSE(L, chain_loss(&h, all), 1e-14);
    check_tensor("chain: V (B,K,d)", chain_loss, &h, all, h.oV, B_ * K_ * D_, grad);
    check_tensor("chain: pred_intent (B,K)", chain_loss, &h, all, h.oPI, B_ * K_, grad);
    check_tensor("chain: interest_extractor.i_embeddings.weight", chain_loss, &h, all,
                 model_offset(&h.lay, P_EXT_ITEM_EMB), (int64_t)N_ * D_, grad);
    free(h.base);
    free(all);
    free(grad);
}

int main(void) {
    test_pretrain();
    test_user_weights();
    test_ranking();
    test_distill();
    test_chain();
    return tu_finish("test_grad_heads");
}
