/* Scores and losses (cpu/heads_decl.h): pretrain scores (argmax interest), the finetune user
 * vector and candidate scores, the ranking loss and the distillation loss, with backward.
 * Three block-per-batch-row kernels, each fusing what one row needs:
 *  - score_rank_kernel: the row's candidate scores (warp per candidate, the row's vector in
 *    shared memory: V[b, kstar] after the argmax, every interest for the evaluation max, or the
 *    user vector) and, in training, the ranking loss and d loss / d scores from the scores kept
 *    in shared memory (double, block reductions);
 *  - intent_kernel: w = softmax(pred_intent), u = sum_k w_k V[b, k], the cosine target intents
 *    (double dot products, warp per interest), the temperature softmaxes, the KL term and its
 *    gradient;
 *  - head_backward_kernel: sum_c dscores[b, c] E[cand[b, c]] (into dV[b, kstar] or du), the
 *    table-gradient rows dscores[b, c] * vector, and the user vector's backward into dV and
 *    d pred_intent.
 * Losses are evaluated in double with math_hd.h's sigmoid pieces and the per-row terms summed
 * on the host in row order; the item-table gradient goes through gpu_scatter_add_rows (stable
 * sort, rows added in a fixed order: deterministic, no float atomics). Every reduction has a fixed
 * order, so results repeat bit for bit run to run. */
#include <math.h>
#include <stdlib.h>

#include "common.cuh"
#include "timirec/math_hd.h"

#define HEAD_THREADS 256 /* score_rank_kernel and head_backward_kernel */
#define INTENT_THREADS 128
#define HEAD_MAX_K 64    /* model_config_check's bound on K */
#define FULL_MASK 0xffffffffu

__device__ __forceinline__ float warp_sum_f(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}
__device__ __forceinline__ double warp_max_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

/* Sum (is_max 0) or max (is_max 1) of v over the block, returned to every thread; a fixed
 * tree (lanes, then warps in order). red: 32 doubles of shared memory. Every thread calls. */
__device__ double block_reduce_d(double v, int is_max, double *red) {
    const int lane = (int)threadIdx.x & 31, warp = (int)threadIdx.x >> 5;
    const int nwarps = (int)(blockDim.x + 31) >> 5;
    v = is_max ? warp_max_d(v) : warp_sum_d(v);
    __syncthreads(); /* red may still be read from the previous call */
    if (lane == 0) red[warp] = v;
    __syncthreads();
    double r = red[0];
    for (int w = 1; w < nwarps; w++) r = is_max ? fmax(r, red[w]) : r + red[w];
    return r;
}

/* a . b over d elements by one warp (lanes take j = lane, lane + 32, ...), in every lane. */
__device__ __forceinline__ float warp_dot(const float *a, const float *__restrict__ b, int d) {
    const int lane = (int)threadIdx.x & 31;
    float s = 0;
    for (int j = lane; j < d; j += 32) s += a[j] * __ldg(&b[j]);
    return warp_sum_f(s);
}

/* What score_rank_kernel scores with. */
enum {
    SR_KSTAR,    /* training pretrain: kstar = argmax_k V[b,k].E[target], then V[b, kstar] */
    SR_MAX_K,    /* evaluation pretrain: max over the K interests */
    SR_VECTOR,   /* finetune: the user vector u[b] (vec, K = 1) */
    SR_GIVEN     /* scores given (read from `scores`): the ranking loss only */
};

/* score_rank_kernel's static shared memory, as one struct so the host knows its size (the
 * block's static and dynamic shared memory together must fit the device's opt-in ceiling). */
typedef struct {
    float kdot[HEAD_MAX_K];
    int kbest;
    double red[32];
} score_rank_static_t;

/* One block per batch row b. vec: V (B, K, d) or u (B, d). Writes scores (B, C) (except
 * SR_GIVEN), kstar (SR_KSTAR) and, when dscores is not NULL, dscores (B, C) and
 * rows[b] = the row's ranking-loss term (heads.inc ranking_loss; dscores divided by nb, the
 * whole batch's rows: B, or B_all for a slice).
 * Dynamic shared memory: the row's vectors (K * d or d floats), then, when scores_in_shared,
 * its C scores; without (C too large for shared memory) the loss reads the row's scores back
 * from `scores` in global memory (written by this block before the barrier that precedes
 * the loss, which makes them visible to the whole block). */
__global__ void score_rank_kernel(int mode, int scores_in_shared, int nb, int C, int K, int d,
                                  const float *__restrict__ E, const float *__restrict__ vec,
                                  const int32_t *__restrict__ cand, int32_t *__restrict__ kstar,
                                  float *scores, float *__restrict__ dscores,
                                  double *__restrict__ rows) {
    TMR_DYNAMIC_SHARED(float, smem);
    __shared__ score_rank_static_t st;
    float *const kdot = st.kdot;
    double *const red = st.red;
    const int b = (int)blockIdx.x, tid = (int)threadIdx.x, nthreads = (int)blockDim.x;
    const int lane = tid & 31, warp = tid >> 5, nwarps = nthreads >> 5;
    const int nvec = mode == SR_MAX_K ? K : 1;
    float *sv = smem;
    float *sc = scores_in_shared ? smem + (int64_t)nvec * d : scores + (int64_t)b * C;
    const int32_t *cb = cand + (int64_t)b * C;
    if (mode == SR_KSTAR) { /* first max on ties, as the CPU */
        const float *t = E + (int64_t)cb[0] * d;
        for (int k = warp; k < K; k += nwarps) {
            const float s = warp_dot(vec + ((int64_t)b * K + k) * d, t, d);
            if (lane == 0) kdot[k] = s;
        }
        __syncthreads();
        if (tid == 0) {
            int best = 0;
            for (int k = 1; k < K; k++)
                if (kdot[k] > kdot[best]) best = k;
            st.kbest = best;
            kstar[b] = best;
        }
        __syncthreads();
    }
    if (mode != SR_GIVEN) {
        const float *src = mode == SR_KSTAR  ? vec + ((int64_t)b * K + st.kbest) * d
                           : mode == SR_MAX_K ? vec + (int64_t)b * K * d
                                              : vec + (int64_t)b * d;
        for (int e = tid; e < nvec * d; e += nthreads) sv[e] = src[e];
        __syncthreads();
        for (int c = warp; c < C; c += nwarps) {
            const float *e = E + (int64_t)cb[c] * d;
            float s = warp_dot(sv, e, d);
            for (int k = 1; k < nvec; k++) {
                const float v = warp_dot(sv + (int64_t)k * d, e, d);
                if (v > s) s = v;
            }
            if (lane == 0) {
                sc[c] = s;
                scores[(int64_t)b * C + c] = s;
            }
        }
    } else if (scores_in_shared) {
        for (int c = tid; c < C; c += nthreads) sc[c] = scores[(int64_t)b * C + c];
    }
    __syncthreads();
    if (!dscores) return;
    /* loss_b = LSE_j(neg_j) - LSE_j(a_j), a_j = neg_j + log sigmoid(pos - neg_j); w = softmax(neg),
     * q = softmax(a): d/d pos = -sum_j q_j sigmoid(neg_j - pos), d/d neg_j = w_j - q_j sigmoid(pos - neg_j). */
    const double pos = (double)sc[0];
    double mn = -INFINITY, ma = -INFINITY;
    for (int j = 1 + tid; j < C; j += nthreads) {
        const double ng = (double)sc[j], a = ng + tmr_log_sigmoid(pos - ng);
        mn = fmax(mn, ng);
        ma = fmax(ma, a);
    }
    mn = block_reduce_d(mn, 1, red);
    ma = block_reduce_d(ma, 1, red);
    double sn = 0, sa = 0;
    for (int j = 1 + tid; j < C; j += nthreads) {
        const double ng = (double)sc[j], a = ng + tmr_log_sigmoid(pos - ng);
        sn += exp(ng - mn);
        sa += exp(a - ma);
    }
    sn = block_reduce_d(sn, 0, red);
    sa = block_reduce_d(sa, 0, red);
    const double lse_n = mn + log(sn), lse_a = ma + log(sa);
    double dpos = 0;
    float *ds = dscores + (int64_t)b * C;
    for (int j = 1 + tid; j < C; j += nthreads) {
        const double ng = (double)sc[j], a = ng + tmr_log_sigmoid(pos - ng);
        const double w = exp(ng - lse_n), q = exp(a - lse_a);
        dpos -= q * tmr_sigmoid(ng - pos);
        ds[j] = (float)((w - q * tmr_sigmoid(pos - ng)) / nb);
    }
    dpos = block_reduce_d(dpos, 0, red);
    if (tid == 0) {
        ds[0] = (float)(dpos / nb);
        rows[b] = lse_n - lse_a;
    }
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

/* score_rank_kernel's dynamic shared memory for nvec vectors of d and C scores, and whether the
 * scores fit in it (static + dynamic within the device's ceiling); without, only the vectors
 * are in shared memory and the loss reads the scores from global memory. */
static size_t score_rank_static_bytes(void) {
    static size_t bytes = 0;
    if (!bytes) {
        bytes = sizeof(score_rank_static_t);
#ifndef TMR_EMULATE /* what the compiler laid out, if more */
        cudaFuncAttributes fa;
        if (cudaFuncGetAttributes(&fa, score_rank_kernel) == cudaSuccess) {
            if (fa.sharedSizeBytes > bytes) bytes = fa.sharedSizeBytes;
        } else {
            cudaGetLastError();
        }
#endif
    }
    return bytes;
}

static size_t score_rank_shared(const gpu_ctx_t *ctx, int nvec, int d, int C, int *scores_in_shared) {
    const size_t vecs = (size_t)nvec * (size_t)d * sizeof(float);
    const size_t room = (size_t)ctx->smem_optin - score_rank_static_bytes();
    if (vecs > room)
        tmr_fatal("score_rank: %d vectors of %d floats need %zu bytes of shared memory (%zu at "
                  "most)", nvec, d, vecs, room);
    *scores_in_shared = vecs + (size_t)C * sizeof(float) <= room;
    return *scores_in_shared ? vecs + (size_t)C * sizeof(float) : vecs;
}

static int score_rank_allowed; /* the kernel's dynamic shared memory opt-in so far */

void gpu_heads_reserve_shared(gpu_ctx_t *ctx, int K, int d, int max_C) {
    int in_shared; /* training scores with one vector, pretrain evaluation with all K */
    gpu_allow_shared(score_rank_kernel, &score_rank_allowed,
                     score_rank_shared(ctx, 1, d, max_C, &in_shared));
    gpu_allow_shared(score_rank_kernel, &score_rank_allowed,
                     score_rank_shared(ctx, K, d, max_C, &in_shared));
}

/* Launches score_rank_kernel; returns the ranking loss (the rows' terms summed, divided by
 * B_all, or by B when B_all is 0) when dscores is given, else 0. rows_out (device, B doubles)
 * given: the per-row loss terms stay there (the epoch driver sums them on the device) and 0 is
 * returned without waiting for the device. */
static float score_rank(gpu_ctx_t *ctx, int mode, const float *E, const float *vec,
                        const int32_t *cand, int B, int C, int K, int d, int B_all,
                        int32_t *kstar, float *scores, float *dscores, double *rows_out,
                        const char *who) {
    if (B < 1 || C < 1 || K < 1 || K > HEAD_MAX_K || d < 1 || (B_all != 0 && B_all < B))
        tmr_fatal("%s: B %d, C %d, K %d, d %d, B_all %d", who, B, C, K, d, B_all);
    const int nb = model_rows_all(B, B_all);
    if (dscores && C < 2)
        tmr_fatal("%s: need a target and at least one negative (C = %d)", who, C);
    int in_shared;
    const size_t shared = score_rank_shared(ctx, mode == SR_MAX_K ? K : 1, d, C, &in_shared);
    double *rows = !dscores ? NULL : rows_out ? rows_out : gpu_ctx_rows(ctx, B);
    gpu_allow_shared(score_rank_kernel, &score_rank_allowed, shared);
    KLAUNCH(score_rank_kernel, (unsigned)B, HEAD_THREADS, shared, mode, in_shared, nb, C, K, d, E,
            vec, cand, kstar, scores, dscores, rows);
    return dscores && !rows_out ? (float)(sum_rows_on_host(rows, B) / nb) : 0.0f;
}

extern "C" void gpu_pretrain_scores(gpu_ctx_t *ctx, const float *E, const float *V,
                                    const int32_t *cand, int B, int C, int K, int d, int training,
                                    int32_t *kstar, float *scores) {
    if (training && !kstar) tmr_fatal("gpu_pretrain_scores: training needs kstar");
    score_rank(ctx, training ? SR_KSTAR : SR_MAX_K, E, V, cand, B, C, K, d, 0, kstar, scores,
               NULL, NULL, "gpu_pretrain_scores");
}

extern "C" float gpu_pretrain_rank(gpu_ctx_t *ctx, const float *E, const float *V,
                                   const int32_t *cand, int B, int C, int K, int d, int B_all,
                                   int32_t *kstar, float *scores, float *dscores) {
    return score_rank(ctx, SR_KSTAR, E, V, cand, B, C, K, d, B_all, kstar, scores, dscores, NULL,
                      "gpu_pretrain_rank");
}

extern "C" void gpu_candidate_scores(gpu_ctx_t *ctx, const float *E, const float *u,
                                     const int32_t *cand, int B, int C, int d, float *scores) {
    score_rank(ctx, SR_VECTOR, E, u, cand, B, C, 1, d, 0, NULL, scores, NULL, NULL,
               "gpu_candidate_scores");
}

extern "C" float gpu_candidate_rank(gpu_ctx_t *ctx, const float *E, const float *u,
                                    const int32_t *cand, int B, int C, int d, int B_all,
                                    float *scores, float *dscores) {
    return score_rank(ctx, SR_VECTOR, E, u, cand, B, C, 1, d, B_all, NULL, scores, dscores, NULL,
                      "gpu_candidate_rank");
}

extern "C" float gpu_ranking_loss(gpu_ctx_t *ctx, const float *scores, int B, int C, int B_all,
                                  float *dscores) {
    if (C < 2) tmr_fatal("gpu_ranking_loss: need a target and at least one negative (C = %d)", C);
    if (B < 1) tmr_fatal("gpu_ranking_loss: empty batch");
    return score_rank(ctx, SR_GIVEN, NULL, NULL, NULL, B, C, 1, 1, B_all, NULL, (float *)scores,
                      dscores, NULL, "gpu_ranking_loss");
}

/* One block per batch row b. w (B, K) = softmax(pred_intent) and u (B, d) = sum_k w_k V[b, k]
 * when u is not NULL (w may be NULL then: kept in shared memory only); with cand, the
 * distillation of heads.inc distill_loss: target_intent = the cosines (double, each norm
 * floored at 1e-12) written as floats, then from those floats the KL of the temperature
 * softmaxes, rows[b] = sum_k p (log p - log q), d_pred_intent += temp / nb (q - p) (if not
 * NULL; nb: the whole batch's rows, B or a slice's B_all). The softmaxes over K <= 64 are one thread's (the CPU's order); the dot products
 * (K + 1 of length d) are warp-parallel. */
__global__ void intent_kernel(int nb, int C, int K, int d, double temp,
                              const float *__restrict__ E, const float *__restrict__ V,
                              const int32_t *__restrict__ cand,
                              const float *__restrict__ pred_intent, float *__restrict__ w,
                              float *__restrict__ u, float *__restrict__ target_intent,
                              float *__restrict__ d_pred_intent, double *__restrict__ rows) {
    __shared__ float sw[HEAD_MAX_K];
    __shared__ double sdot[HEAD_MAX_K], svn[HEAD_MAX_K], stn;
    const int b = (int)blockIdx.x, tid = (int)threadIdx.x, nthreads = (int)blockDim.x;
    const int lane = tid & 31, warp = tid >> 5, nwarps = nthreads >> 5;
    const float *pi = pred_intent + (int64_t)b * K;
    const float *Vb = V + (int64_t)b * K * d;
    if (u) {
        if (tid == 0) { /* user_vector: float softmax, max subtracted */
            float m = pi[0];
            for (int k = 1; k < K; k++)
                if (pi[k] > m) m = pi[k];
            float s = 0;
            for (int k = 0; k < K; k++) s += (sw[k] = expf(pi[k] - m));
            for (int k = 0; k < K; k++) {
                sw[k] /= s;
                if (w) w[(int64_t)b * K + k] = sw[k];
            }
        }
        __syncthreads();
        for (int j = tid; j < d; j += nthreads) {
            float acc = 0;
            for (int k = 0; k < K; k++) acc += sw[k] * Vb[(int64_t)k * d + j];
            u[(int64_t)b * d + j] = acc;
        }
    }
    if (!cand) return;
    const float *t = E + (int64_t)cand[(int64_t)b * C] * d;
    for (int k = warp - 1; k < K; k += nwarps) { /* k = -1: the target's norm */
        double vn = 0, dot = 0;
        for (int j = lane; j < d; j += 32) {
            const double tj = (double)t[j];
            if (k < 0) {
                vn += tj * tj;
            } else {
                const double vj = (double)Vb[(int64_t)k * d + j];
                vn += vj * vj;
                dot += vj * tj;
            }
        }
        vn = warp_sum_d(vn);
        dot = warp_sum_d(dot);
        if (lane == 0) {
            if (k < 0) {
                stn = vn;
            } else {
                svn[k] = vn;
                sdot[k] = dot;
            }
        }
    }
    __syncthreads();
    if (tid != 0) return;
    float *ti = target_intent + (int64_t)b * K;
    const double tn = fmax(sqrt(stn), 1e-12);
    for (int k = 0; k < K; k++) ti[k] = (float)(sdot[k] / (fmax(sqrt(svn[k]), 1e-12) * tn));
    /* log p = log_softmax(ti / temp), log q = log_softmax(pi / temp), in double. */
    double mx = -INFINITY, my = -INFINITY, sx = 0, sy = 0;
    for (int k = 0; k < K; k++) {
        mx = fmax(mx, (double)ti[k] / temp);
        my = fmax(my, (double)pi[k] / temp);
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
        if (p > 0) total += p * (lp - lq); /* p log p = 0 where p = 0 */
        if (d_pred_intent) d_pred_intent[(int64_t)b * K + k] += (float)(temp / nb * (q - p));
    }
    rows[b] = total;
}

static float user_vector_distill(gpu_ctx_t *ctx, const float *E, const float *V,
                                 const int32_t *cand, const float *pred_intent, int B, int C,
                                 int K, int d, int B_all, double temp, float *w, float *u,
                                 float *target_intent, float *d_pred_intent, double *rows_out) {
    if (B < 1 || C < 1 || K < 1 || K > HEAD_MAX_K || d < 1 || (B_all != 0 && B_all < B))
        tmr_fatal("gpu_user_vector_distill: B %d, C %d, K %d, d %d, B_all %d", B, C, K, d, B_all);
    const int nb = model_rows_all(B, B_all);
    if (cand && !(temp > 0)) tmr_fatal("gpu_user_vector_distill: temp %g must be > 0", temp);
    if (cand && !target_intent) tmr_fatal("gpu_user_vector_distill: distillation needs target_intent");
    double *rows = !cand ? NULL : rows_out ? rows_out : gpu_ctx_rows(ctx, B);
    KLAUNCH(intent_kernel, (unsigned)B, INTENT_THREADS, 0, nb, C, K, d, temp, E, V, cand,
            pred_intent, w, u, target_intent, d_pred_intent, rows);
    return cand && !rows_out ? (float)(temp * temp * sum_rows_on_host(rows, B) / nb) : 0.0f;
}

extern "C" float gpu_user_vector_distill(gpu_ctx_t *ctx, const float *E, const float *V,
                                         const int32_t *cand, const float *pred_intent, int B,
                                         int C, int K, int d, int B_all, double temp, float *w,
                                         float *u, float *target_intent, float *d_pred_intent) {
    return user_vector_distill(ctx, E, V, cand, pred_intent, B, C, K, d, B_all, temp, w, u,
                               target_intent, d_pred_intent, NULL);
}

extern "C" void gpu_user_vector(gpu_ctx_t *ctx, const float *V, const float *pred_intent, int B,
                                int K, int d, float *w, float *u) {
    gpu_user_vector_distill(ctx, NULL, V, NULL, pred_intent, B, 1, K, d, 0, 0, w, u, NULL, NULL);
}

extern "C" float gpu_distill_loss(gpu_ctx_t *ctx, const float *E, const float *V,
                                  const int32_t *cand, const float *pred_intent, int B, int C,
                                  int K, int d, int B_all, double temp, float *target_intent,
                                  float *d_pred_intent) {
    if (!(temp > 0)) tmr_fatal("gpu_distill_loss: temp %g must be > 0", temp);
    return gpu_user_vector_distill(ctx, E, V, cand, pred_intent, B, C, K, d, B_all, temp, NULL,
                                   NULL, target_intent, d_pred_intent);
}

/* One block per batch row b (HEAD_THREADS threads; groups of d threads, thread (j, grp)).
 * With cand: acc[j] = sum_c dscores[b, c] E[cand[b, c], j] (each group takes c = grp,
 * grp + ngrp, ..., the groups' partial sums then added in group order) and the table-gradient
 * rows work[(b, c), j] = dscores[b, c] * vec[j], vec = V[b, kstar[b]] (kstar given: pretrain;
 * acc added into dV[b, kstar]; a kstar out of range poisons the row's dV with NaN) or u[b]
 * (acc added into du). With w (finetune): the user vector's backward from du[b] (after the
 * above): dV[b, k] += w_k du, d_pred_intent[b, k] += w_k dw_k, then -= w_k sum_j w_j dw_j,
 * dw_k = V[b, k] . du (heads.inc user_vector_backward's order). */
__global__ void head_backward_kernel(int C, int K, int d, const float *__restrict__ E,
                                     const float *__restrict__ V, const float *__restrict__ u,
                                     const float *__restrict__ w,
                                     const int32_t *__restrict__ kstar,
                                     const int32_t *__restrict__ cand,
                                     const float *__restrict__ dscores, float *__restrict__ du,
                                     float *__restrict__ dV, float *__restrict__ d_pred_intent,
                                     float *__restrict__ work) {
    __shared__ float part[HEAD_THREADS], sdu[256], sdw[HEAD_MAX_K];
    __shared__ float dot_sum;
    const int b = (int)blockIdx.x, tid = (int)threadIdx.x, nthreads = (int)blockDim.x;
    const int lane = tid & 31, warp = tid >> 5, nwarps = nthreads >> 5;
    const int ngrp = nthreads / d, j = tid % d, grp = tid / d;
    int ks = 0;
    if (kstar) {
        ks = kstar[b];
        if (ks < 0 || ks >= K) { /* cannot come from score_rank_kernel: make it visible */
            for (int e = tid; e < K * d; e += nthreads) dV[(int64_t)b * K * d + e] = NAN;
            return;
        }
    }
    if (cand) {
        const float *vec = kstar ? V + ((int64_t)b * K + ks) * d : u + (int64_t)b * d;
        if (grp < ngrp) {
            const float vj = vec[j];
            float acc = 0;
            for (int c = grp; c < C; c += ngrp) {
                const int64_t bc = (int64_t)b * C + c;
                const float g = dscores[bc];
                acc += g * __ldg(&E[(int64_t)cand[bc] * d + j]);
                work[bc * d + j] = g * vj;
            }
            part[grp * d + j] = acc;
        }
        __syncthreads();
        if (grp == 0) {
            float acc = part[j];
            for (int g = 1; g < ngrp; g++) acc += part[g * d + j];
            if (kstar) {
                dV[((int64_t)b * K + ks) * d + j] += acc;
            } else {
                const float v = du[(int64_t)b * d + j] + acc;
                du[(int64_t)b * d + j] = v;
                sdu[j] = v;
            }
        }
    } else if (grp == 0) {
        sdu[j] = du[(int64_t)b * d + j];
    }
    if (!w) return;
    __syncthreads();
    const float *Vb = V + (int64_t)b * K * d;
    for (int e = tid; e < K * d; e += nthreads)
        dV[(int64_t)b * K * d + e] += w[(int64_t)b * K + e / d] * sdu[e % d];
    for (int k = warp; k < K; k += nwarps) {
        float s = 0;
        for (int jj = lane; jj < d; jj += 32) s += Vb[(int64_t)k * d + jj] * sdu[jj];
        s = warp_sum_f(s);
        if (lane == 0) sdw[k] = s;
    }
    __syncthreads();
    if (tid == 0) {
        float s = 0;
        for (int k = 0; k < K; k++) s += w[(int64_t)b * K + k] * sdw[k];
        dot_sum = s;
    }
    __syncthreads();
    if (tid < K) {
        const float wk = w[(int64_t)b * K + tid];
        float *dpi = d_pred_intent + (int64_t)b * K + tid;
        *dpi += wk * sdw[tid];
        *dpi -= wk * dot_sum;
    }
}

static void head_backward(gpu_ctx_t *ctx, const float *E, const float *V, const float *u,
                          const float *w, const int32_t *kstar, const int32_t *cand, int B, int C,
                          int K, int d, const float *dscores, float *du, float *dV,
                          float *d_pred_intent, float *dE, float *work, const char *who) {
    if (B < 1 || C < 1 || K < 1 || K > HEAD_MAX_K || d < 1 || d > 256)
        tmr_fatal("%s: B %d, C %d, K %d, d %d", who, B, C, K, d);
    KLAUNCH(head_backward_kernel, (unsigned)B, HEAD_THREADS, 0, C, K, d, E, V, u, w, kstar, cand,
            dscores, du, dV, d_pred_intent, work);
    if (cand) gpu_scatter_add_rows(ctx, cand, (int64_t)B * C, d, work, dE);
}

extern "C" void gpu_pretrain_scores_backward(gpu_ctx_t *ctx, const float *E, const float *V,
                                             const int32_t *cand, int B, int C, int K, int d,
                                             const int32_t *kstar, const float *dscores,
                                             float *dV, float *dE, float *work) {
    head_backward(ctx, E, V, NULL, NULL, kstar, cand, B, C, K, d, dscores, NULL, dV, NULL, dE,
                  work, "gpu_pretrain_scores_backward");
}

extern "C" void gpu_candidate_scores_backward(gpu_ctx_t *ctx, const float *E, const float *u,
                                              const int32_t *cand, int B, int C, int d,
                                              const float *dscores, float *du, float *dE,
                                              float *work) {
    head_backward(ctx, E, NULL, u, NULL, NULL, cand, B, C, 1, d, dscores, du, NULL, NULL, dE,
                  work, "gpu_candidate_scores_backward");
}

extern "C" void gpu_user_vector_backward(gpu_ctx_t *ctx, const float *V, const float *w,
                                         const float *du, int B, int K, int d, float *dV,
                                         float *d_pred_intent) {
    head_backward(ctx, NULL, V, NULL, w, NULL, NULL, B, 1, K, d, NULL, (float *)du, dV,
                  d_pred_intent, NULL, NULL, "gpu_user_vector_backward");
}

extern "C" void gpu_finetune_head_backward(gpu_ctx_t *ctx, const float *E, const float *V,
                                           const float *u, const float *w, const int32_t *cand,
                                           int B, int C, int K, int d, const float *dscores,
                                           float *du, float *dV, float *d_pred_intent,
                                           float *dE, float *work) {
    head_backward(ctx, E, V, u, w, NULL, cand, B, C, K, d, dscores, du, dV, d_pred_intent, dE,
                  work, "gpu_finetune_head_backward");
}

/* ---- for the epoch driver (kernels/epoch.cu; declared in kernels/data.cuh) -----------------
 * The fused launchers with the per-row loss terms left in caller-owned device rows instead of
 * summed on the host: the driver sums them on the device (loss_accumulate_kernel) in the same
 * order, so nothing waits for the device between steps. */
void gpu_pretrain_rank_rows(gpu_ctx_t *ctx, const float *E, const float *V, const int32_t *cand,
                            int B, int C, int K, int d, int B_all, int32_t *kstar, float *scores,
                            float *dscores, double *rows) {
    score_rank(ctx, SR_KSTAR, E, V, cand, B, C, K, d, B_all, kstar, scores, dscores, rows,
               "gpu_pretrain_rank_rows");
}

void gpu_candidate_rank_rows(gpu_ctx_t *ctx, const float *E, const float *u, const int32_t *cand,
                             int B, int C, int d, int B_all, float *scores, float *dscores,
                             double *rows) {
    score_rank(ctx, SR_VECTOR, E, u, cand, B, C, 1, d, B_all, NULL, scores, dscores, rows,
               "gpu_candidate_rank_rows");
}

void gpu_user_vector_distill_rows(gpu_ctx_t *ctx, const float *E, const float *V,
                                  const int32_t *cand, const float *pred_intent, int B, int C,
                                  int K, int d, int B_all, double temp, float *w, float *u,
                                  float *target_intent, float *d_pred_intent, double *rows) {
    user_vector_distill(ctx, E, V, cand, pred_intent, B, C, K, d, B_all, temp, w, u,
                        target_intent, d_pred_intent, rows);
}
