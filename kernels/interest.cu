/* Interest attention + weighted sum (cpu/extractor_decl.h ext_interest_*): the two Linear
 * layers through cuBLAS, the masked softmax over the history one thread per (b, k), and the
 * weighted sums one thread per output element, restating src/cpu/extractor.inc. */
#include "common.cuh"

__global__ void tanh_kernel(int64_t n, float *__restrict__ x) {
    THREAD_INDEX(i, n);
    x[i] = tanhf(x[i]);
}

/* alpha[b, k, :] = softmax over valid l of e[b, :, k]; all masked: all 0. */
__global__ void interest_softmax_kernel(int64_t n, int L, int K, const int32_t *__restrict__ hist,
                                        const float *__restrict__ e, float *__restrict__ alpha) {
    THREAD_INDEX(bk, n);
    const int64_t b = bk / K;
    const int k = (int)(bk % K);
    const int32_t *m = hist + b * L;
    const float *eb = e + b * L * K;
    float *al = alpha + bk * L;
    float mx = 0;
    int any = 0;
    for (int l = 0; l < L; l++)
        if (m[l] > 0) {
            const float s = eb[(int64_t)l * K + k];
            if (!any || s > mx) mx = s;
            any = 1;
        }
    float sum = 0;
    for (int l = 0; l < L; l++) {
        al[l] = m[l] > 0 ? expf(eb[(int64_t)l * K + k] - mx) : 0.0f;
        sum += al[l];
    }
    if (!any) return;
    const float inv = 1.0f / sum;
    for (int l = 0; l < L; l++)
        if (m[l] > 0) al[l] *= inv;
}

/* V[b, k, c] = sum over valid l (ascending) of alpha[b, k, l] x[b, l, c]. */
__global__ void interest_sum_kernel(int64_t n, int L, int K, int d,
                                    const int32_t *__restrict__ hist,
                                    const float *__restrict__ alpha, const float *__restrict__ x,
                                    float *__restrict__ V) {
    THREAD_INDEX(i, n);
    const int64_t bk = i / d;
    const int c = (int)(i % d);
    const int64_t b = bk / K;
    const int32_t *m = hist + b * L;
    const float *al = alpha + bk * L, *xb = x + b * L * d;
    float acc = 0;
    for (int l = 0; l < L; l++)
        if (m[l] > 0) acc += al[l] * xb[(int64_t)l * d + c];
    V[i] = acc;
}

/* On entry de[b, l, k] = dalpha = dV[b, k] . x[b, l]; softmax backward in place for column k:
 * de = alpha (dalpha - sum_l alpha dalpha), 0 where alpha is 0 (masked). */
__global__ void interest_softmax_backward_kernel(int64_t n, int L, int K,
                                                 const float *__restrict__ alpha,
                                                 float *__restrict__ de) {
    THREAD_INDEX(bk, n);
    const int64_t b = bk / K;
    const int k = (int)(bk % K);
    const float *al = alpha + bk * L;
    float *eb = de + b * L * K;
    float dot = 0;
    for (int l = 0; l < L; l++) {
        const float g = al[l] != 0 ? eb[(int64_t)l * K + k] : 0.0f;
        eb[(int64_t)l * K + k] = g;
        dot += al[l] * g;
    }
    for (int l = 0; l < L; l++) eb[(int64_t)l * K + k] = al[l] * (eb[(int64_t)l * K + k] - dot);
}

/* dx[b, l, c] = sum_k alpha[b, k, l] dV[b, k, c] (overwrites; the weighted-sum path). */
__global__ void interest_dx_kernel(int64_t n, int L, int K, int d,
                                   const float *__restrict__ alpha, const float *__restrict__ dV,
                                   float *__restrict__ dx) {
    THREAD_INDEX(i, n);
    const int64_t r = i / d;
    const int c = (int)(i % d);
    const int64_t b = r / L;
    const int l = (int)(r % L);
    float acc = 0;
    for (int k = 0; k < K; k++) {
        const float w = alpha[(b * K + k) * L + l];
        if (w == 0) continue;
        acc += w * dV[(b * K + k) * d + c];
    }
    dx[i] = acc;
}

/* dt[i] *= 1 - t[i]^2 (tanh'). */
__global__ void tanh_backward_kernel(int64_t n, const float *__restrict__ t,
                                     float *__restrict__ dt) {
    THREAD_INDEX(i, n);
    dt[i] *= 1.0f - t[i] * t[i];
}

extern "C" void gpu_ext_interest_forward(gpu_ctx_t *ctx, const float *x, const int32_t *hist,
                                         const float *W1, const float *b1, const float *W2,
                                         const float *b2, int B, int L, int d, int a, int K,
                                         float *t, float *e, float *alpha, float *V) {
    const int64_t n = (int64_t)B * L;
    gpu_ext_linear_forward(ctx, x, W1, b1, n, d, a, t);
    LAUNCH(tanh_kernel, n * a, t);
    gpu_ext_linear_forward(ctx, t, W2, b2, n, a, K, e);
    LAUNCH(interest_softmax_kernel, (int64_t)B * K, L, K, hist, e, alpha);
    LAUNCH(interest_sum_kernel, (int64_t)B * K * d, L, K, d, hist, alpha, x, V);
}

extern "C" void gpu_ext_interest_backward(gpu_ctx_t *ctx, const float *x, const float *t,
                                          const float *alpha, const float *W1, const float *W2,
                                          const float *dV, int B, int L, int d, int a, int K,
                                          float *dx, float *dW1, float *db1, float *dW2,
                                          float *db2, float *de, float *dt) {
    const int64_t n = (int64_t)B * L;
    /* de_b (L, K) = x_b (L, d) dV_b^T, then the softmax backward per (b, k). */
    gpu_gemm_batched(ctx, 0, 1, L, K, d, 1.0f, x, d, (int64_t)L * d, dV, d, (int64_t)K * d, 0.0f,
                     de, K, (int64_t)L * K, B);
    LAUNCH(interest_softmax_backward_kernel, (int64_t)B * K, L, K, alpha, de);
    LAUNCH(interest_dx_kernel, n * d, L, K, d, alpha, dV, dx);
    /* Score path: e = t W2^T + b2, t = tanh(x W1^T + b1). */
    gpu_zero(dt, (size_t)(n * a) * sizeof(float));
    gpu_ext_linear_backward(ctx, t, W2, de, n, a, K, dt, dW2, db2);
    LAUNCH(tanh_backward_kernel, n * a, t, dt);
    gpu_ext_linear_backward(ctx, x, W1, dt, n, d, a, dx, dW1, db1);
}
