/* Residual + LayerNorm (+ row mask) and the position-wise feed-forward (cpu/extractor_decl.h
 * ext_add_layernorm_*, ext_ffn_*). LayerNorm rows are one thread each, restating the CPU loop
 * of src/cpu/extractor.inc: the same statistics (biased variance, eps 1e-5, rstd = 1 / sqrt),
 * summed over columns in ascending order. The parameter sums over rows go through cuBLAS. */
#include "common.cuh"

#define LN_EPS 1e-5f

__global__ void add_layernorm_forward_kernel(int64_t n, int d, const float *__restrict__ a,
                                             const float *__restrict__ b,
                                             const float *__restrict__ gamma,
                                             const float *__restrict__ beta,
                                             const int32_t *__restrict__ rowmask,
                                             float *__restrict__ y, float *__restrict__ xhat,
                                             float *__restrict__ rstd) {
    THREAD_INDEX(r, n);
    const float *ar = a + r * d;
    float *xr = xhat + r * d, *yr = y + r * d;
    float mean = 0;
    for (int c = 0; c < d; c++) {
        xr[c] = b ? ar[c] + b[r * d + c] : ar[c];
        mean += xr[c];
    }
    mean /= (float)d;
    float var = 0;
    for (int c = 0; c < d; c++) {
        xr[c] -= mean;
        var += xr[c] * xr[c];
    }
    var /= (float)d;
    const float rs = 1.0f / sqrtf(var + LN_EPS);
    rstd[r] = rs;
    const int keep = !rowmask || rowmask[r] > 0;
    for (int c = 0; c < d; c++) {
        xr[c] *= rs;
        yr[c] = keep ? gamma[c] * xr[c] + beta[c] : 0.0f;
    }
}

/* dz row r = rstd (dy gamma - mean(dy gamma) - xhat mean(dy gamma xhat)); masked rows 0. */
__global__ void add_layernorm_backward_kernel(int64_t n, int d, const float *__restrict__ dy,
                                              const float *__restrict__ xhat,
                                              const float *__restrict__ rstd,
                                              const float *__restrict__ gamma,
                                              const int32_t *__restrict__ rowmask,
                                              float *__restrict__ dz) {
    THREAD_INDEX(r, n);
    float *zr = dz + r * d;
    if (rowmask && rowmask[r] <= 0) {
        for (int c = 0; c < d; c++) zr[c] = 0;
        return;
    }
    const float *gr = dy + r * d, *xr = xhat + r * d;
    float m1 = 0, m2 = 0;
    for (int c = 0; c < d; c++) {
        const float g = gr[c] * gamma[c];
        m1 += g;
        m2 += g * xr[c];
    }
    m1 /= (float)d;
    m2 /= (float)d;
    const float rs = rstd[r];
    for (int c = 0; c < d; c++) zr[c] = rs * (gr[c] * gamma[c] - m1 - xr[c] * m2);
}

/* work[i] = (row kept ? dy[i] * (xhat ? xhat[i] : 1) : 0): the terms of dgamma (with xhat) or
 * dbeta (without), summed over rows by gpu_colsum_add. */
__global__ void layernorm_param_terms_kernel(int64_t n, int d, const float *__restrict__ dy,
                                             const float *__restrict__ xhat,
                                             const int32_t *__restrict__ rowmask,
                                             float *__restrict__ work) {
    THREAD_INDEX(i, n);
    const int64_t r = i / d;
    if (rowmask && rowmask[r] <= 0) {
        work[i] = 0;
        return;
    }
    work[i] = xhat ? dy[i] * xhat[i] : dy[i];
}

extern "C" void gpu_ext_add_layernorm_forward(gpu_ctx_t *ctx, const float *a, const float *b,
                                              const float *gamma, const float *beta,
                                              const int32_t *rowmask, int64_t n, int d, float *y,
                                              float *xhat, float *rstd) {
    (void)ctx;
    LAUNCH(add_layernorm_forward_kernel, n, d, a, b, gamma, beta, rowmask, y, xhat, rstd);
}

extern "C" void gpu_ext_add_layernorm_backward(gpu_ctx_t *ctx, const float *dy, const float *xhat,
                                               const float *rstd, const float *gamma,
                                               const int32_t *rowmask, int64_t n, int d,
                                               float *dz, float *dgamma, float *dbeta,
                                               float *work) {
    /* Parameter sums (over rows, through cuBLAS), then dz. */
    LAUNCH(layernorm_param_terms_kernel, n * d, d, dy, xhat, rowmask, work);
    gpu_colsum_add(ctx, work, n, d, dgamma);
    LAUNCH(layernorm_param_terms_kernel, n * d, d, dy, (const float *)NULL, rowmask, work);
    gpu_colsum_add(ctx, work, n, d, dbeta);
    LAUNCH(add_layernorm_backward_kernel, n, d, dy, xhat, rstd, gamma, rowmask, dz);
}

/* x[i] = x[i] > 0 ? x[i] : 0 (NaN becomes 0, as the CPU's !(x > 0)). */
__global__ void relu_kernel(int64_t n, float *__restrict__ x) {
    THREAD_INDEX(i, n);
    if (!(x[i] > 0)) x[i] = 0;
}

/* dr[i] = 0 where r[i] <= 0 (relu'(u) = [u > 0] = [r > 0]). */
__global__ void relu_backward_kernel(int64_t n, const float *__restrict__ r,
                                     float *__restrict__ dr) {
    THREAD_INDEX(i, n);
    if (!(r[i] > 0)) dr[i] = 0;
}

extern "C" void gpu_ext_ffn_forward(gpu_ctx_t *ctx, const float *h, const float *W1,
                                    const float *b1, const float *W2, const float *b2, int64_t n,
                                    int d, int dff, float *r, float *f) {
    gpu_ext_linear_forward(ctx, h, W1, b1, n, d, dff, r);
    LAUNCH(relu_kernel, n * dff, r);
    gpu_ext_linear_forward(ctx, r, W2, b2, n, dff, d, f);
}

extern "C" void gpu_ext_ffn_backward(gpu_ctx_t *ctx, const float *h, const float *r,
                                     const float *W1, const float *W2, const float *df,
                                     int64_t n, int d, int dff, float *dh, float *dW1, float *db1,
                                     float *dW2, float *db2, float *dr) {
    gpu_zero(dr, (size_t)(n * dff) * sizeof(float));
    gpu_ext_linear_backward(ctx, r, W2, df, n, dff, d, dr, dW2, db2);
    LAUNCH(relu_backward_kernel, n * dff, r, dr);
    gpu_ext_linear_backward(ctx, h, W1, dr, n, d, dff, dh, dW1, db1);
}
