/* GPU interest attention (kernels/interest.cu: cuBLAS products, masked softmax over the
 * history, weighted sum into K interests) forward and backward against ext_interest_forward /
 * ext_interest_backward (src/cpu/extractor.inc). Right-padded histories with an all-padding row
 * (its alpha and V must be exactly 0), random weights and inputs (never zeros), outputs poisoned
 * with NaN, parameter gradients accumulated into random buffers. The products sum in cuBLAS's
 * order, so the tolerance is relative to the largest value of each output (normalised error).
 * SKIP without a CUDA build or without a visible GPU. */
#include "test_util.h"
#include "timirec/cpu_ops.h"
#ifdef TIMIREC_CUDA
#include "gpu_test_util.h"

#define F(n) ((size_t)(n) * sizeof(float))

static void run_case(void *blas, int B, int L, int d, int a, int K) {
    const int64_t n = (int64_t)B * L, nd = n * d, na = n * a, nK = n * K;
    const int64_t BKL = (int64_t)B * K * L, BKd = (int64_t)B * K * d;
    printf("B %d L %d d %d a %d K %d\n", B, L, d, a, K);
    int32_t *hist = malloc((size_t)n * sizeof *hist);
    for (int b = 0; b < B; b++) {
        int len = b == 0 ? L : (b % 5 == 2 ? 0 : 1 + gt_below(L));
        for (int l = 0; l < L; l++) hist[(int64_t)b * L + l] = l < len ? 1 + gt_below(1000) : 0;
    }
    float *x = malloc(F(nd)), *W1 = malloc(F(a * d)), *b1 = malloc(F(a)), *W2 = malloc(F(K * a));
    float *b2 = malloc(F(K)), *t = malloc(F(na)), *e = malloc(F(nK)), *alpha = malloc(F(BKL));
    float *V = malloc(F(BKd)), *dV = malloc(F(BKd)), *dx = malloc(F(nd)), *de = malloc(F(nK));
    float *dt = malloc(F(na)), *dW1 = malloc(F(a * d)), *db1 = malloc(F(a));
    float *dW2 = malloc(F(K * a)), *db2 = malloc(F(K));
    float *g_t = malloc(F(na)), *g_e = malloc(F(nK)), *g_alpha = malloc(F(BKL));
    float *g_V = malloc(F(BKd)), *g_dx = malloc(F(nd)), *g_dW1 = malloc(F(a * d));
    float *g_db1 = malloc(F(a)), *g_dW2 = malloc(F(K * a)), *g_db2 = malloc(F(K));
    gt_fill(x, nd, 1.0f);
    gt_fill(W1, (int64_t)a * d, 0.3f);
    gt_fill(b1, a, 0.3f);
    gt_fill(W2, (int64_t)K * a, 1.0f);
    gt_fill(b2, K, 0.3f);
    gt_fill(dV, BKd, 1.0f);
    gt_fill(dW1, (int64_t)a * d, 0.1f);
    gt_fill(db1, a, 0.1f);
    gt_fill(dW2, (int64_t)K * a, 0.1f);
    gt_fill(db2, K, 0.1f);

    int32_t *d_hist = gt_dev_copy(hist, (size_t)n * sizeof *hist);
    float *d_x = gt_dev_copy(x, F(nd)), *d_W1 = gt_dev_copy(W1, F(a * d));
    float *d_b1 = gt_dev_copy(b1, F(a)), *d_W2 = gt_dev_copy(W2, F(K * a));
    float *d_b2 = gt_dev_copy(b2, F(K)), *d_dV = gt_dev_copy(dV, F(BKd));
    float *d_dW1 = gt_dev_copy(dW1, F(a * d)), *d_db1 = gt_dev_copy(db1, F(a));
    float *d_dW2 = gt_dev_copy(dW2, F(K * a)), *d_db2 = gt_dev_copy(db2, F(K));
    float *d_t = gt_dev(F(na)), *d_e = gt_dev(F(nK)), *d_alpha = gt_dev(F(BKL));
    float *d_V = gt_dev(F(BKd)), *d_dx = gt_dev(F(nd)), *d_de = gt_dev(F(nK));
    float *d_dt = gt_dev(F(na));

    ext_interest_forward_f(x, hist, W1, b1, W2, b2, B, L, d, a, K, t, e, alpha, V);
    gt_poison(d_t, na);
    gt_poison(d_e, nK);
    gt_poison(d_alpha, BKL);
    gt_poison(d_V, BKd);
    GT_TRY(tmr_gpu_interest_forward(blas, d_x, d_hist, d_W1, d_b1, d_W2, d_b2, B, L, d, a, K, d_t,
                                    d_e, d_alpha, d_V, NULL, gt_err, sizeof gt_err));
    gt_get(g_t, d_t, F(na));
    gt_get(g_e, d_e, F(nK));
    gt_get(g_alpha, d_alpha, F(BKL));
    gt_get(g_V, d_V, F(BKd));
    gt_compare("t = tanh(x W1^T + b1)", g_t, t, na, 0, 1e-4);
    gt_compare("e = t W2^T + b2", g_e, e, nK, 0, 1e-4);
    gt_compare("alpha", g_alpha, alpha, BKL, 0, 1e-4);
    gt_compare("V", g_V, V, BKd, 0, 1e-4);
    int64_t masked_nonzero = 0;
    for (int64_t bk = 0; bk < (int64_t)B * K; bk++)
        for (int l = 0; l < L; l++)
            masked_nonzero += hist[(bk / K) * L + l] <= 0 && g_alpha[bk * L + l] != 0.0f;
    CHECK(masked_nonzero == 0, "%lld masked positions have alpha != 0", (long long)masked_nonzero);

    /* The backward from the CPU's saved activations, so only the backward is compared. */
    GT_TRY(tmr_gpu_upload(d_t, t, F(na), gt_err, sizeof gt_err));
    GT_TRY(tmr_gpu_upload(d_alpha, alpha, F(BKL), gt_err, sizeof gt_err));
    ext_interest_backward_f(x, t, alpha, W1, W2, dV, B, L, d, a, K, dx, dW1, db1, dW2, db2, de,
                            dt);
    gt_poison(d_dx, nd);
    gt_poison(d_de, nK);
    gt_poison(d_dt, na);
    GT_TRY(tmr_gpu_interest_backward(blas, d_x, d_t, d_alpha, d_W1, d_W2, d_dV, B, L, d, a, K,
                                     d_dx, d_dW1, d_db1, d_dW2, d_db2, d_de, d_dt, NULL, gt_err,
                                     sizeof gt_err));
    gt_get(g_dx, d_dx, F(nd));
    gt_get(g_dW1, d_dW1, F(a * d));
    gt_get(g_db1, d_db1, F(a));
    gt_get(g_dW2, d_dW2, F(K * a));
    gt_get(g_db2, d_db2, F(K));
    gt_compare("dx", g_dx, dx, nd, 0, 1e-4);
    gt_compare("dW1", g_dW1, dW1, (int64_t)a * d, 0, 1e-4);
    gt_compare("db1", g_db1, db1, a, 0, 1e-4);
    gt_compare("dW2", g_dW2, dW2, (int64_t)K * a, 0, 1e-4);
    /* db2's true increment is 0 (de sums to 0 over l: a softmax shift); what is added is the
     * rounding noise of n terms of de, so its tolerance is absolute. */
    gt_compare("db2", g_db2, db2, K, 1e-4, 1e-4);

    gt_free(d_hist), gt_free(d_x), gt_free(d_W1), gt_free(d_b1), gt_free(d_W2), gt_free(d_b2);
    gt_free(d_dV), gt_free(d_dW1), gt_free(d_db1), gt_free(d_dW2), gt_free(d_db2), gt_free(d_t);
    gt_free(d_e), gt_free(d_alpha), gt_free(d_V), gt_free(d_dx), gt_free(d_de), gt_free(d_dt);
    free(hist), free(x), free(W1), free(b1), free(W2), free(b2), free(t), free(e), free(alpha);
    free(V), free(dV), free(dx), free(de), free(dt), free(dW1), free(db1), free(dW2), free(db2);
    free(g_t), free(g_e), free(g_alpha), free(g_V), free(g_dx), free(g_dW1), free(g_db1);
    free(g_dW2), free(g_db2);
}
#endif

int main(void) {
#ifndef TIMIREC_CUDA
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
#else
    if (!gt_have_gpu()) return TU_SKIP;
    void *blas;
    GT_TRY(tmr_gpu_blas_create(&blas, gt_err, sizeof gt_err));
    run_case(blas, 1, 1, 16, 8, 1);
    run_case(blas, 3, 20, 64, 8, 4);
    run_case(blas, 256, 20, 64, 32, 4);
    run_case(blas, 64, 200, 256, 64, 8);
    run_case(blas, 7, 50, 16, 5, 2); /* sizes that are not multiples of anything */
    GT_TRY(tmr_gpu_blas_destroy(blas, gt_err, sizeof gt_err));
    return tu_finish("test_gpu_interest");
#endif
}
