/* Candidate scores of both stages, the user vector and the ranking loss, forward and backward:
 * the device twins of src/cpu/heads.inc. One thread per output element (or per batch row where
 * the CPU's loop carries a row-wide value: argmax, softmax, loss). Products and sums use
 * explicit round-to-nearest intrinsics in the CPU's order: the CPU build (-std=c11) never fuses
 * a multiply into an add, so the GPU gives the CPU's exact floats (and the same argmax). */
#include <math.h>

#include "common.cuh"
#include "timirec/gpu_ops.h"

/* heads_dot: s = 0; s += a[j] * b[j] for j ascending, each product and sum rounded. */
__device__ __forceinline__ float dot_seq(const float *a, const float *b, int d) {
    float s = 0.0f;
    for (int j = 0; j < d; j++) s = __fadd_rn(s, __fmul_rn(a[j], b[j]));
    return s;
}

/* acc + g * x with the product rounded first (the CPU's `acc += g * x`). */
__device__ __forceinline__ float add_prod(float acc, float g, float x) {
    return __fadd_rn(acc, __fmul_rn(g, x));
}

/* ---- pretrain scores --------------------------------------------------------------------- */

/* One thread per batch row: kstar[b] = first argmax_k V[b,k]·E[cand[b,0]]. */
__global__ void pretrain_kstar_kernel(const float *E, const float *V, const int32_t *cand, int B,
                                      int C, int K, int d, int32_t *kstar) {
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) return;
    const float *Vb = V + (int64_t)b * K * d;
    const float *t = E + (int64_t)cand[(int64_t)b * C] * d;
    int best = 0;
    float best_v = dot_seq(Vb, t, d);
    for (int k = 1; k < K; k++) {
        float v = dot_seq(Vb + (int64_t)k * d, t, d);
        if (v > best_v) {
            best_v = v;
            best = k;
        }
    }
    kstar[b] = best;
}

/* One thread per (b, c). training: V[b,kstar[b]]·E[cand]; eval: max_k V[b,k]·E[cand]. */
__global__ void pretrain_scores_kernel(const float *E, const float *V, const int32_t *cand, int B,
                                       int C, int K, int d, int training, const int32_t *kstar,
                                       float *scores) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)B * C) return;
    const int64_t b = i / C;
    const float *Vb = V + b * K * d;
    const float *e = E + (int64_t)cand[i] * d;
    if (training) {
        scores[i] = dot_seq(Vb + (int64_t)kstar[b] * d, e, d);
    } else {
        float m = dot_seq(Vb, e, d);
        for (int k = 1; k < K; k++) {
            float v = dot_seq(Vb + (int64_t)k * d, e, d);
            if (v > m) m = v;
        }
        scores[i] = m;
    }
}

extern "C" int tmr_gpu_pretrain_scores(const float *E, const float *V, const int32_t *cand, int B,
                                       int C, int K, int d, int training, int32_t *kstar,
                                       float *scores, void *stream, char *err, size_t errlen) {
    GPU_CHECK_SIZE(B >= 1 && C >= 1 && K >= 1 && d >= 1);
    GPU_CHECK_SIZE(!training || kstar != NULL);
    cudaStream_t st = (cudaStream_t)stream;
    if (training) {
        pretrain_kstar_kernel<<<tmr_blocks_for(B, 128), 128, 0, st>>>(E, V, cand, B, C, K, d,
                                                                      kstar);
        CUDA_TRY(cudaGetLastError());
    }
    pretrain_scores_kernel<<<tmr_blocks_for((int64_t)B * C, 128), 128, 0, st>>>(
        E, V, cand, B, C, K, d, training, kstar, scores);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

/* ---- score backwards: the vector side per (b, j), the table side through the scatter ------- */

/* vec[b] = V[b, kstar[b]] (kstar given, rows of K) or u[b] (kstar NULL, K = 1).
 * One thread per (b, j): dvec[b,j] += sum_c dscores[b,c] E[cand[b,c], j], c ascending. */
__global__ void score_vec_backward_kernel(const float *E, const int32_t *cand, int B, int C,
                                          int K, int d, const int32_t *kstar,
                                          const float *dscores, float *dvec) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)B * d) return;
    const int64_t b = i / d;
    const int j = (int)(i % d);
    float *dv = dvec + (b * K + (kstar ? kstar[b] : 0)) * d + j;
    float acc = *dv;
    for (int c = 0; c < C; c++)
        acc = add_prod(acc, dscores[b * C + c], E[(int64_t)cand[b * C + c] * d + j]);
    *dv = acc;
}

/* One thread per (b, c, j): rows[b*C+c, j] = dscores[b,c] * vec[b, j] (the rows the scatter adds
 * into dE[cand[b,c]], in source order b*C+c as the CPU's loop). */
__global__ void score_rows_kernel(const float *vec, int B, int C, int K, int d,
                                  const int32_t *kstar, const float *dscores, float *rows) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)B * C * d) return;
    const int64_t bc = i / d;
    const int j = (int)(i % d);
    const int64_t b = bc / C;
    const float *v = vec + (b * K + (kstar ? kstar[b] : 0)) * d;
    rows[i] = __fmul_rn(dscores[bc], v[j]);
}

static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

extern "C" int tmr_gpu_scores_backward_work_bytes(int B, int C, int d, int64_t N, size_t *bytes,
                                                  char *err, size_t errlen) {
    GPU_CHECK_SIZE(B >= 1 && C >= 1 && d >= 1 && N >= 1);
    size_t scatter;
    if (tmr_gpu_scatter_work_bytes((int64_t)B * C, N, &scatter, err, errlen)) return -1;
    *bytes = align256((size_t)B * C * d * sizeof(float)) + scatter;
    return 0;
}

/* Both backwards: dvec (rows of K, the kstar-th; or u's gradient) and dE via rows + scatter. */
static int score_backward(const float *E, const float *vec, const int32_t *cand, int B, int C,
                          int K, int d, int64_t N, const int32_t *kstar, const float *dscores,
                          float *dvec, float *dE, void *work, size_t work_bytes,
                          cudaStream_t st, char *err, size_t errlen) {
    GPU_CHECK_SIZE(B >= 1 && C >= 1 && K >= 1 && d >= 1 && N >= 1);
    const size_t rows_bytes = align256((size_t)B * C * d * sizeof(float));
    GPU_CHECK_SIZE(work_bytes >= rows_bytes);
    float *rows = (float *)work;
    score_vec_backward_kernel<<<tmr_blocks_for((int64_t)B * d, 128), 128, 0, st>>>(
        E, cand, B, C, K, d, kstar, dscores, dvec);
    CUDA_TRY(cudaGetLastError());
    score_rows_kernel<<<tmr_blocks_for((int64_t)B * C * d, 256), 256, 0, st>>>(
        vec, B, C, K, d, kstar, dscores, rows);
    CUDA_TRY(cudaGetLastError());
    return tmr_gpu_scatter_add_rows(cand, (int64_t)B * C, d, N, rows, dE,
                                    (char *)work + rows_bytes, work_bytes - rows_bytes, st, err,
                                    errlen);
}

extern "C" int tmr_gpu_pretrain_scores_backward(const float *E, const float *V,
                                                const int32_t *cand, int B, int C, int K, int d,
                                                int64_t N, const int32_t *kstar,
                                                const float *dscores, float *dV, float *dE,
                                                void *work, size_t work_bytes, void *stream,
                                                char *err, size_t errlen) {
    GPU_CHECK_SIZE(kstar != NULL);
    return score_backward(E, V, cand, B, C, K, d, N, kstar, dscores, dV, dE, work, work_bytes,
                          (cudaStream_t)stream, err, errlen);
}

/* ---- candidate scores (finetune) --------------------------------------------------------- */

/* One thread per (b, c): scores[b,c] = u[b]·E[cand[b,c]]. */
__global__ void candidate_scores_kernel(const float *E, const float *u, const int32_t *cand,
                                        int B, int C, int d, float *scores) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)B * C) return;
    scores[i] = dot_seq(u + (i / C) * d, E + (int64_t)cand[i] * d, d);
}

extern "C" int tmr_gpu_candidate_scores(const float *E, const float *u, const int32_t *cand,
                                        int B, int C, int d, float *scores, void *stream,
                                        char *err, size_t errlen) {
    GPU_CHECK_SIZE(B >= 1 && C >= 1 && d >= 1);
    candidate_scores_kernel<<<tmr_blocks_for((int64_t)B * C, 128), 128, 0,
                              (cudaStream_t)stream>>>(E, u, cand, B, C, d, scores);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

extern "C" int tmr_gpu_candidate_scores_backward(const float *E, const float *u,
                                                 const int32_t *cand, int B, int C, int d,
                                                 int64_t N, const float *dscores, float *du,
                                                 float *dE, void *work, size_t work_bytes,
                                                 void *stream, char *err, size_t errlen) {
    return score_backward(E, u, cand, B, C, 1, d, N, NULL, dscores, du, dE, work, work_bytes,
                          (cudaStream_t)stream, err, errlen);
}

/* ---- user vector (finetune) -------------------------------------------------------------- */

/* One thread per batch row: w[b,:] = softmax(pred_intent[b,:]) as the CPU computes it. */
__global__ void user_softmax_kernel(const float *pred_intent, int B, int K, float *w) {
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) return;
    const float *pi = pred_intent + (int64_t)b * K;
    float *wb = w + (int64_t)b * K;
    float m = pi[0];
    for (int k = 1; k < K; k++)
        if (pi[k] > m) m = pi[k];
    float s = 0.0f;
    for (int k = 0; k < K; k++) s = __fadd_rn(s, (wb[k] = expf(pi[k] - m)));
    for (int k = 0; k < K; k++) wb[k] = __fdiv_rn(wb[k], s);
}

/* One thread per (b, j): u[b,j] = sum_k w[b,k] V[b,k,j], k ascending. */
__global__ void user_sum_kernel(const float *V, const float *w, int B, int K, int d, float *u) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)B * d) return;
    const int64_t b = i / d;
    const int j = (int)(i % d);
    float acc = 0.0f;
    for (int k = 0; k < K; k++) acc = add_prod(acc, w[b * K + k], V[(b * K + k) * d + j]);
    u[i] = acc;
}

extern "C" int tmr_gpu_user_vector(const float *V, const float *pred_intent, int B, int K, int d,
                                   float *w, float *u, void *stream, char *err, size_t errlen) {
    GPU_CHECK_SIZE(B >= 1 && K >= 1 && d >= 1);
    cudaStream_t st = (cudaStream_t)stream;
    user_softmax_kernel<<<tmr_blocks_for(B, 128), 128, 0, st>>>(pred_intent, B, K, w);
    CUDA_TRY(cudaGetLastError());
    user_sum_kernel<<<tmr_blocks_for((int64_t)B * d, 256), 256, 0, st>>>(V, w, B, K, d, u);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

/* One thread per batch row: dw_k = V[b,k]·du[b]; dpi_k += w_k dw_k - w_k sum_j w_j dw_j, in the
 * CPU's two passes. */
__global__ void user_intent_backward_kernel(const float *V, const float *w, const float *du,
                                            int B, int K, int d, float *d_pred_intent) {
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) return;
    const float *wb = w + (int64_t)b * K, *dub = du + (int64_t)b * d;
    float *dpi = d_pred_intent + (int64_t)b * K;
    float dot_sum = 0.0f;
    for (int k = 0; k < K; k++) {
        float dw = dot_seq(V + ((int64_t)b * K + k) * d, dub, d);
        dot_sum = add_prod(dot_sum, wb[k], dw);
        dpi[k] = add_prod(dpi[k], wb[k], dw);
    }
    for (int k = 0; k < K; k++) dpi[k] = __fsub_rn(dpi[k], __fmul_rn(wb[k], dot_sum));
}

/* One thread per (b, k, j): dV[b,k,j] += w[b,k] du[b,j]. */
__global__ void user_v_backward_kernel(const float *w, const float *du, int B, int K, int d,
                                       float *dV) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)B * K * d) return;
    const int64_t bk = i / d;
    const int j = (int)(i % d);
    dV[i] = add_prod(dV[i], w[bk], du[(bk / K) * d + j]);
}

extern "C" int tmr_gpu_user_vector_backward(const float *V, const float *w, const float *du,
                                            int B, int K, int d, float *dV, float *d_pred_intent,
                                            void *stream, char *err, size_t errlen) {
    GPU_CHECK_SIZE(B >= 1 && K >= 1 && d >= 1);
    cudaStream_t st = (cudaStream_t)stream;
    user_intent_backward_kernel<<<tmr_blocks_for(B, 128), 128, 0, st>>>(V, w, du, B, K, d,
                                                                        d_pred_intent);
    CUDA_TRY(cudaGetLastError());
    user_v_backward_kernel<<<tmr_blocks_for((int64_t)B * K * d, 256), 256, 0, st>>>(w, du, B, K,
                                                                                   d, dV);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

/* ---- ranking loss ------------------------------------------------------------------------ */

/* log(sigmoid(x)) and sigmoid, finite for finite x (heads.inc's helpers). */
__device__ __forceinline__ double log_sigmoid_d(double x) {
    return fmin(x, 0.0) - log1p(exp(-fabs(x)));
}
__device__ __forceinline__ double sigmoid_d(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* One thread per batch row, in double, as ranking_loss: row_loss[b] = LSE(neg) - LSE(a),
 * a_j = neg_j + log sigmoid(pos - neg_j); dscores[b,:] = the row's gradient / B. */
__global__ void ranking_loss_rows_kernel(const float *scores, int B, int C, float *dscores,
                                         double *row_loss) {
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) return;
    const float *s = scores + (int64_t)b * C;
    float *ds = dscores + (int64_t)b * C;
    const double pos = (double)s[0];
    double mn = -INFINITY, ma = -INFINITY;
    for (int j = 1; j < C; j++) {
        double n = (double)s[j], a = n + log_sigmoid_d(pos - n);
        if (n > mn) mn = n;
        if (a > ma) ma = a;
    }
    double sn = 0, sa = 0;
    for (int j = 1; j < C; j++) {
        double n = (double)s[j], a = n + log_sigmoid_d(pos - n);
        sn += exp(n - mn);
        sa += exp(a - ma);
    }
    double lse_n = mn + log(sn), lse_a = ma + log(sa);
    row_loss[b] = lse_n - lse_a;
    double dpos = 0;
    for (int j = 1; j < C; j++) {
        double n = (double)s[j], a = n + log_sigmoid_d(pos - n);
        double w = exp(n - lse_n), q = exp(a - lse_a);
        dpos -= q * sigmoid_d(n - pos);
        ds[j] = (float)((w - q * sigmoid_d(pos - n)) / B);
    }
    ds[0] = (float)(dpos / B);
}

/* One thread: the mean of the row losses, summed in ascending b. */
__global__ void ranking_loss_mean_kernel(const double *row_loss, int B, float *loss) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double total = 0;
    for (int b = 0; b < B; b++) total += row_loss[b];
    *loss = (float)(total / B);
}

extern "C" int tmr_gpu_ranking_loss(const float *scores, int B, int C, float *dscores,
                                    double *row_loss, float *loss, void *stream, char *err,
                                    size_t errlen) {
    GPU_CHECK_SIZE(B >= 1 && C >= 2);
    cudaStream_t st = (cudaStream_t)stream;
    ranking_loss_rows_kernel<<<tmr_blocks_for(B, 128), 128, 0, st>>>(scores, B, C, dscores,
                                                                     row_loss);
    CUDA_TRY(cudaGetLastError());
    ranking_loss_mean_kernel<<<1, 1, 0, st>>>(row_loss, B, loss);
    CUDA_TRY(cudaGetLastError());
    return 0;
}
