/* Scores and losses (cpu/heads_decl.h): pretrain scores (argmax interest), the finetune user
 * vector and candidate scores, the ranking loss and the distillation loss, with backward.
 * One thread per output element or per batch row, restating src/cpu/heads.inc; the losses
 * are evaluated in double per row with math_hd.h's sigmoid pieces, and the row terms are
 * summed on the host in row order. Table-gradient rows go through gpu_scatter_add_rows. */
#include <math.h>
#include <stdlib.h>

#include "common.cuh"
#include "timirec/math_hd.h"

/* a . b over d elements, ascending (heads_dot). */
__device__ __forceinline__ float heads_dot(const float *a, const float *b, int d) {
    float s = 0;
    for (int j = 0; j < d; j++) s += a[j] * b[j];
    return s;
}

/* kstar[b] = argmax_k V[b, k] . E[cand[b, 0]] (first max on ties). */
__global__ void pretrain_kstar_kernel(int64_t n, int C, int K, int d, const float *__restrict__ E,
                                      const float *__restrict__ V,
                                      const int32_t *__restrict__ cand,
                                      int32_t *__restrict__ kstar) {
    THREAD_INDEX(b, n);
    const float *Vb = V + b * K * d;
    const float *t = E + (int64_t)cand[b * C] * d;
    int best = 0;
    float best_v = heads_dot(Vb, t, d);
    for (int k = 1; k < K; k++) {
        const float v = heads_dot(Vb + (int64_t)k * d, t, d);
        if (v > best_v) {
            best_v = v;
            best = k;
        }
    }
    kstar[b] = best;
}

/* training: scores[b, c] = V[b, kstar[b]] . E[cand[b, c]]; eval (kstar NULL): the max over k. */
__global__ void pretrain_scores_kernel(int64_t n, int C, int K, int d,
                                       const float *__restrict__ E, const float *__restrict__ V,
                                       const int32_t *__restrict__ cand,
                                       const int32_t *__restrict__ kstar,
                                       float *__restrict__ scores) {
    THREAD_INDEX(i, n);
    const int64_t b = i / C;
    const float *Vb = V + b * K * d;
    const float *e = E + (int64_t)cand[i] * d;
    if (kstar) {
        scores[i] = heads_dot(Vb + (int64_t)kstar[b] * d, e, d);
        return;
    }
    float m = heads_dot(Vb, e, d);
    for (int k = 1; k < K; k++) {
        const float v = heads_dot(Vb + (int64_t)k * d, e, d);
        if (v > m) m = v;
    }
    scores[i] = m;
}

extern "C" void gpu_pretrain_scores(gpu_ctx_t *ctx, const float *E, const float *V,
                                    const int32_t *cand, int B, int C, int K, int d, int training,
                                    int32_t *kstar, float *scores) {
    (void)ctx;
    if (training) {
        if (!kstar) tmr_fatal("gpu_pretrain_scores: training needs kstar");
        LAUNCH(pretrain_kstar_kernel, (int64_t)B, C, K, d, E, V, cand, kstar);
    }
    LAUNCH(pretrain_scores_kernel, (int64_t)B * C, C, K, d, E, V, cand,
           training ? (const int32_t *)kstar : (const int32_t *)NULL, scores);
}

/* dV[b, kstar[b], j] += sum_c dscores[b, c] E[cand[b, c], j] (c ascending); a kstar out of
 * range poisons the row with NaN (it cannot come from pretrain_kstar_kernel). */
__global__ void pretrain_dv_kernel(int64_t n, int C, int K, int d, const float *__restrict__ E,
                                   const int32_t *__restrict__ cand,
                                   const int32_t *__restrict__ kstar,
                                   const float *__restrict__ dscores, float *__restrict__ dV) {
    THREAD_INDEX(i, n);
    const int64_t b = i / d;
    const int j = (int)(i % d);
    const int ks = kstar[b];
    if (ks < 0 || ks >= K) {
        for (int k = 0; k < K; k++) dV[(b * K + k) * d + j] = NAN;
        return;
    }
    float *dv = dV + (b * K + ks) * d + j;
    float acc = *dv;
    for (int c = 0; c < C; c++)
        acc += dscores[b * C + c] * E[(int64_t)cand[b * C + c] * d + j];
    *dv = acc;
}

/* work[(b, c), j] = dscores[b, c] * vec[b, j], vec = V[b, kstar[b]] (pretrain) or u[b]
 * (finetune: kstar NULL, K = 1): the rows added into E's gradient at cand[b, c]. */
__global__ void score_rows_kernel(int64_t n, int C, int K, int d,
                                  const float *__restrict__ vec, const int32_t *__restrict__ kstar,
                                  const float *__restrict__ dscores, float *__restrict__ work) {
    THREAD_INDEX(i, n);
    const int64_t bc = i / d;
    const int j = (int)(i % d);
    const int64_t b = bc / C;
    const int k = kstar ? kstar[b] : 0;
    work[i] = dscores[bc] * vec[(b * K + k) * d + j];
}

extern "C" void gpu_pretrain_scores_backward(gpu_ctx_t *ctx, const float *E, const float *V,
                                             const int32_t *cand, int B, int C, int K, int d,
                                             const int32_t *kstar, const float *dscores,
                                             float *dV, float *dE, float *work) {
    LAUNCH(pretrain_dv_kernel, (int64_t)B * d, C, K, d, E, cand, kstar, dscores, dV);
    LAUNCH(score_rows_kernel, (int64_t)B * C * d, C, K, d, V, kstar, dscores, work);
    gpu_scatter_add_rows(ctx, cand, (int64_t)B * C, d, work, dE);
}

/* w[b] = softmax(pred_intent[b]) (max subtracted). */
__global__ void user_weights_kernel(int64_t n, int K, const float *__restrict__ pred_intent,
                                    float *__restrict__ w) {
    THREAD_INDEX(b, n);
    const float *pi = pred_intent + b * K;
    float *wb = w + b * K;
    float m = pi[0];
    for (int k = 1; k < K; k++)
        if (pi[k] > m) m = pi[k];
    float s = 0;
    for (int k = 0; k < K; k++) s += (wb[k] = expf(pi[k] - m));
    for (int k = 0; k < K; k++) wb[k] /= s;
}

/* u[b, j] = sum_k w[b, k] V[b, k, j]. */
__global__ void user_vector_kernel(int64_t n, int K, int d, const float *__restrict__ V,
                                   const float *__restrict__ w, float *__restrict__ u) {
    THREAD_INDEX(i, n);
    const int64_t b = i / d;
    const int j = (int)(i % d);
    float acc = 0;
    for (int k = 0; k < K; k++) acc += w[b * K + k] * V[(b * K + k) * d + j];
    u[i] = acc;
}

extern "C" void gpu_user_vector(gpu_ctx_t *ctx, const float *V, const float *pred_intent, int B,
                                int K, int d, float *w, float *u) {
    (void)ctx;
    LAUNCH(user_weights_kernel, (int64_t)B, K, pred_intent, w);
    LAUNCH(user_vector_kernel, (int64_t)B * d, K, d, V, w, u);
}

/* d_pred_intent[b, k] += w_k (dw_k - sum_j w_j dw_j), dw_k = V[b, k] . du[b]. */
__global__ void user_weights_backward_kernel(int64_t n, int K, int d, const float *__restrict__ V,
                                             const float *__restrict__ w,
                                             const float *__restrict__ du,
                                             float *__restrict__ d_pred_intent) {
    THREAD_INDEX(b, n);
    const float *wb = w + b * K, *dub = du + b * d;
    float *dpi = d_pred_intent + b * K;
    float dot_sum = 0;
    for (int k = 0; k < K; k++) {
        const float dw = heads_dot(V + (b * K + k) * d, dub, d);
        dot_sum += wb[k] * dw;
        dpi[k] += wb[k] * dw;
    }
    for (int k = 0; k < K; k++) dpi[k] -= wb[k] * dot_sum;
}

/* dV[b, k, j] += w[b, k] du[b, j]. */
__global__ void user_vector_dv_kernel(int64_t n, int K, int d, const float *__restrict__ w,
                                      const float *__restrict__ du, float *__restrict__ dV) {
    THREAD_INDEX(i, n);
    const int64_t bk = i / d;
    const int j = (int)(i % d);
    const int64_t b = bk / K;
    dV[i] += w[bk] * du[b * d + j];
}

extern "C" void gpu_user_vector_backward(gpu_ctx_t *ctx, const float *V, const float *w,
                                         const float *du, int B, int K, int d, float *dV,
                                         float *d_pred_intent) {
    (void)ctx;
    LAUNCH(user_weights_backward_kernel, (int64_t)B, K, d, V, w, du, d_pred_intent);
    LAUNCH(user_vector_dv_kernel, (int64_t)B * K * d, K, d, w, du, dV);
}

/* scores[b, c] = u[b] . E[cand[b, c]]. */
__global__ void candidate_scores_kernel(int64_t n, int C, int d, const float *__restrict__ E,
                                        const float *__restrict__ u,
                                        const int32_t *__restrict__ cand,
                                        float *__restrict__ scores) {
    THREAD_INDEX(i, n);
    const int64_t b = i / C;
    scores[i] = heads_dot(u + b * d, E + (int64_t)cand[i] * d, d);
}

extern "C" void gpu_candidate_scores(gpu_ctx_t *ctx, const float *E, const float *u,
                                     const int32_t *cand, int B, int C, int d, float *scores) {
    (void)ctx;
    LAUNCH(candidate_scores_kernel, (int64_t)B * C, C, d, E, u, cand, scores);
}

/* du[b, j] += sum_c dscores[b, c] E[cand[b, c], j] (c ascending). */
__global__ void candidate_du_kernel(int64_t n, int C, int d, const float *__restrict__ E,
                                    const int32_t *__restrict__ cand,
                                    const float *__restrict__ dscores, float *__restrict__ du) {
    THREAD_INDEX(i, n);
    const int64_t b = i / d;
    const int j = (int)(i % d);
    float acc = du[i];
    for (int c = 0; c < C; c++) acc += dscores[b * C + c] * E[(int64_t)cand[b * C + c] * d + j];
    du[i] = acc;
}

extern "C" void gpu_candidate_scores_backward(gpu_ctx_t *ctx, const float *E, const float *u,
                                              const int32_t *cand, int B, int C, int d,
                                              const float *dscores, float *du, float *dE,
                                              float *work) {
    LAUNCH(candidate_du_kernel, (int64_t)B * d, C, d, E, cand, dscores, du);
    LAUNCH(score_rows_kernel, (int64_t)B * C * d, C, 1, d, u, (const int32_t *)NULL, dscores,
           work);
    gpu_scatter_add_rows(ctx, cand, (int64_t)B * C, d, work, dE);
}

/* One row of the ranking loss (SPEC section 5) in double, as ranking_loss in heads.inc:
 * row[b] = LSE_j(neg_j) - LSE_j(neg_j + log sigmoid(pos - neg_j)); ds = d loss / d scores
 * for the batch mean (divided by B). */
__global__ void ranking_loss_kernel(int64_t n, int C, int B, const float *__restrict__ scores,
                                    float *__restrict__ dscores, double *__restrict__ row) {
    THREAD_INDEX(b, n);
    const float *s = scores + b * C;
    float *ds = dscores + b * C;
    const double pos = (double)s[0];
    double mn = -INFINITY, ma = -INFINITY;
    for (int j = 1; j < C; j++) {
        const double ng = (double)s[j], a = ng + tmr_log_sigmoid(pos - ng);
        if (ng > mn) mn = ng;
        if (a > ma) ma = a;
    }
    double sn = 0, sa = 0;
    for (int j = 1; j < C; j++) {
        const double ng = (double)s[j], a = ng + tmr_log_sigmoid(pos - ng);
        sn += exp(ng - mn);
        sa += exp(a - ma);
    }
    const double lse_n = mn + log(sn), lse_a = ma + log(sa);
    row[b] = lse_n - lse_a;
    double dpos = 0;
    for (int j = 1; j < C; j++) {
        const double ng = (double)s[j], a = ng + tmr_log_sigmoid(pos - ng);
        const double w = exp(ng - lse_n), q = exp(a - lse_a);
        dpos -= q * tmr_sigmoid(ng - pos);
        ds[j] = (float)((w - q * tmr_sigmoid(pos - ng)) / B);
    }
    ds[0] = (float)(dpos / B);
}

/* Sum of rows[0..B) in row order, on the host (B doubles come back). */
static double sum_rows_on_host(const double *rows, int B) {
    double *h = (double *)malloc((size_t)B * sizeof(double));
    if (!h) tmr_fatal("gpu losses: out of host memory");
    gpu_to_host(h, rows, (size_t)B * sizeof(double));
    double total = 0;
    for (int b = 0; b < B; b++) total += h[b];
    free(h);
    return total;
}

extern "C" float gpu_ranking_loss(gpu_ctx_t *ctx, const float *scores, int B, int C,
                                  float *dscores) {
    if (C < 2) tmr_fatal("gpu_ranking_loss: need a target and at least one negative (C = %d)", C);
    if (B < 1) tmr_fatal("gpu_ranking_loss: empty batch");
    double *rows = gpu_ctx_rows(ctx, B);
    LAUNCH(ranking_loss_kernel, (int64_t)B, C, B, scores, dscores, rows);
    return (float)(sum_rows_on_host(rows, B) / B);
}

/* One row of the distillation (SPEC section 4), as distill_loss in heads.inc: the cosine
 * targets (in double, each norm floored at 1e-12) written as floats, then the KL of the
 * temperature softmaxes from those floats; row[b] = sum_k p (log p - log q); d_pred_intent
 * += temp / B (q - p) when not NULL. */
__global__ void distill_kernel(int64_t n, int C, int K, int d, int B, double temp,
                               const float *__restrict__ E, const float *__restrict__ V,
                               const int32_t *__restrict__ cand,
                               const float *__restrict__ pred_intent,
                               float *__restrict__ target_intent,
                               float *__restrict__ d_pred_intent, double *__restrict__ row) {
    THREAD_INDEX(b, n);
    const float *t = E + (int64_t)cand[b * C] * d;
    float *ti = target_intent + b * K;
    double tn = 0;
    for (int j = 0; j < d; j++) tn += (double)t[j] * t[j];
    tn = fmax(sqrt(tn), 1e-12);
    for (int k = 0; k < K; k++) {
        const float *v = V + (b * K + k) * d;
        double vn = 0, dot = 0;
        for (int j = 0; j < d; j++) {
            vn += (double)v[j] * v[j];
            dot += (double)v[j] * t[j];
        }
        vn = fmax(sqrt(vn), 1e-12);
        ti[k] = (float)(dot / (vn * tn));
    }
    /* log p = log_softmax(ti / temp), log q = log_softmax(pi / temp), in double; the scaled
     * logits are recomputed where needed (same values as the CPU's arrays, no local arrays). */
    const float *pi = pred_intent + b * K;
    double mx = -INFINITY, my = -INFINITY, sx = 0, sy = 0;
    for (int k = 0; k < K; k++) {
        if ((double)ti[k] / temp > mx) mx = (double)ti[k] / temp;
        if ((double)pi[k] / temp > my) my = (double)pi[k] / temp;
    }
    for (int k = 0; k < K; k++) {
        sx += exp((double)ti[k] / temp - mx);
        sy += exp((double)pi[k] / temp - my);
    }
    const double lsx = mx + log(sx), lsy = my + log(sy);
    double total = 0;
    for (int k = 0; k < K; k++) {
        const double lp = (double)ti[k] / temp - lsx, lq = (double)pi[k] / temp - lsy;
        const double p = exp(lp), q = exp(lq);
        if (p > 0) total += p * (lp - lq);
        if (d_pred_intent) d_pred_intent[b * K + k] += (float)(temp / B * (q - p));
    }
    row[b] = total;
}

extern "C" float gpu_distill_loss(gpu_ctx_t *ctx, const float *E, const float *V,
                                  const int32_t *cand, const float *pred_intent, int B, int C,
                                  int K, int d, double temp, float *target_intent,
                                  float *d_pred_intent) {
    if (!(temp > 0)) tmr_fatal("gpu_distill_loss: temp %g must be > 0", temp);
    if (B < 1 || C < 1 || K < 1 || K > 64) tmr_fatal("gpu_distill_loss: B %d, C %d, K %d", B, C, K);
    double *rows = gpu_ctx_rows(ctx, B);
    LAUNCH(distill_kernel, (int64_t)B, C, K, d, B, temp, E, V, cand, pred_intent, target_intent,
           d_pred_intent, rows);
    return (float)(temp * temp * sum_rows_on_host(rows, B) / B);
}
