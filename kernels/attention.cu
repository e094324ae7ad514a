/* Masked single-head scaled dot-product attention (cpu/extractor_decl.h ext_attn_*): the
 * L x L products per batch row through cuBLAS's strided batched product, the masked softmax
 * and its backward one thread per query row, restating the CPU loop of src/cpu/extractor.inc
 * (same operations in the same order). */
#include "common.cuh"

/* Row r = b * L + i of att (B, L, L) holds the raw scores q_i . k_j on entry. Scale by 1/sqrt(d)
 * (a division, as the CPU), mask keys with hist <= 0, subtract the max of the valid scores,
 * exponentiate, normalise; no valid key: the row stays all 0. */
__global__ void attn_softmax_kernel(int64_t n, int L, float sq, const int32_t *__restrict__ hist,
                                    float *__restrict__ att) {
    THREAD_INDEX(r, n);
    const int64_t b = r / L;
    const int32_t *m = hist + b * L;
    float *ar = att + r * L;
    float mx = 0;
    int any = 0;
    for (int j = 0; j < L; j++) {
        if (m[j] > 0) {
            ar[j] = ar[j] / sq;
            if (!any || ar[j] > mx) mx = ar[j];
            any = 1;
        } else {
            ar[j] = 0;
        }
    }
    if (!any) return;
    float sum = 0;
    for (int j = 0; j < L; j++)
        if (m[j] > 0) {
            ar[j] = expf(ar[j] - mx);
            sum += ar[j];
        }
    const float inv = 1.0f / sum;
    for (int j = 0; j < L; j++)
        if (m[j] > 0) ar[j] *= inv;
}

/* Row r of ds holds g = dctx_i . v_j on entry; ds = att * (g - sum_j att g). */
__global__ void attn_softmax_backward_kernel(int64_t n, int L, const float *__restrict__ att,
                                             float *__restrict__ ds) {
    THREAD_INDEX(r, n);
    const float *ai = att + r * L;
    float *si = ds + r * L;
    float dot = 0;
    for (int j = 0; j < L; j++) dot += ai[j] * si[j];
    for (int j = 0; j < L; j++) si[j] = ai[j] * (si[j] - dot);
}

/* x[i] /= s for i < n. */
__global__ void divide_kernel(int64_t n, float s, float *__restrict__ x) {
    THREAD_INDEX(i, n);
    x[i] = x[i] / s;
}

extern "C" void gpu_ext_attn_forward(gpu_ctx_t *ctx, const float *q, const float *k,
                                     const float *v, const int32_t *hist, int B, int L, int d,
                                     float *att, float *ctx_out) {
    const int64_t Ld = (int64_t)L * d, LL = (int64_t)L * L;
    const float sq = sqrtf((float)d);
    /* att_b (L, L) = q_b k_b^T, then the masked softmax in place, then ctx_b = att_b v_b. */
    gpu_gemm_batched(ctx, 0, 1, L, L, d, 1.0f, q, d, Ld, k, d, Ld, 0.0f, att, L, LL, B);
    LAUNCH(attn_softmax_kernel, (int64_t)B * L, L, sq, hist, att);
    gpu_gemm_batched(ctx, 0, 0, L, d, L, 1.0f, att, L, LL, v, d, Ld, 0.0f, ctx_out, d, Ld, B);
}

extern "C" void gpu_ext_attn_backward(gpu_ctx_t *ctx, const float *q, const float *k,
                                      const float *v, const float *att, const float *dctx,
                                      int B, int L, int d, float *dq, float *dk, float *dv,
                                      float *ds) {
    const int64_t Ld = (int64_t)L * d, LL = (int64_t)L * L;
    const float sq = sqrtf((float)d);
    /* dAtt_b = dctx_b v_b^T (into ds), then the softmax backward in place. */
    gpu_gemm_batched(ctx, 0, 1, L, L, d, 1.0f, dctx, d, Ld, v, d, Ld, 0.0f, ds, L, LL, B);
    LAUNCH(attn_softmax_backward_kernel, (int64_t)B * L, L, att, ds);
    /* dq_b = dS_b k_b / sqrt(d); dk_b = dS_b^T q_b / sqrt(d); dv_b = att_b^T dctx_b. */
    gpu_gemm_batched(ctx, 0, 0, L, d, L, 1.0f, ds, L, LL, k, d, Ld, 0.0f, dq, d, Ld, B);
    gpu_gemm_batched(ctx, 1, 0, L, d, L, 1.0f, ds, L, LL, q, d, Ld, 0.0f, dk, d, Ld, B);
    gpu_gemm_batched(ctx, 1, 0, L, d, L, 1.0f, att, L, LL, dctx, d, Ld, 0.0f, dv, d, Ld, B);
    LAUNCH(divide_kernel, (int64_t)B * Ld, sq, dq);
    LAUNCH(divide_kernel, (int64_t)B * Ld, sq, dk);
}
