/* Matrix products through cuBLAS with the CPU's row-major contract (gemm.h), column sums, and
 * the Linear layer (PyTorch layout, W [out, in]) forward and backward. */
#include <limits.h>

#include "common.cuh"

static int as_int(int64_t v, const char *what) {
    if (v < 0 || v > INT_MAX) tmr_fatal("gpu_gemm: %s = %lld outside cuBLAS's int range", what, (long long)v);
    return (int)v;
}

/* Row-major C (M, N) = op(A) op(B) is column-major C^T (N, M) = op(B)^T op(A)^T, and a
 * row-major matrix with row stride ld is the column-major transpose with leading dimension
 * ld: so cuBLAS gets (B, A) swapped, each with its own transpose flag, and m = N, n = M. */
extern "C" void gpu_gemm(gpu_ctx_t *ctx, int trans_a, int trans_b, int64_t M, int64_t N,
                         int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                         int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    CUBLAS_CHECK(cublasSgemm(ctx->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                             trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, as_int(N, "N"), as_int(M, "M"),
                             as_int(K, "K"), &alpha, B, as_int(ldb, "ldb"), A, as_int(lda, "lda"),
                             &beta, C, as_int(ldc, "ldc")));
}

extern "C" void gpu_gemm_batched(gpu_ctx_t *ctx, int trans_a, int trans_b, int64_t M, int64_t N,
                                 int64_t K, float alpha, const float *A, int64_t lda,
                                 int64_t stride_a, const float *B, int64_t ldb, int64_t stride_b,
                                 float beta, float *C, int64_t ldc, int64_t stride_c,
                                 int64_t batch) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    CUBLAS_CHECK(cublasSgemmStridedBatched(
        ctx->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
        as_int(N, "N"), as_int(M, "M"), as_int(K, "K"), &alpha, B, as_int(ldb, "ldb"),
        (long long)stride_b, A, as_int(lda, "lda"), (long long)stride_a, &beta, C,
        as_int(ldc, "ldc"), (long long)stride_c, as_int(batch, "batch")));
}

/* db (cols) += y^T 1: y row-major (n, cols) is the column-major (cols, n) matrix. */
extern "C" void gpu_colsum_add(gpu_ctx_t *ctx, const float *y, int64_t n, int cols, float *db) {
    if (n <= 0 || cols <= 0) return;
    const float one = 1.0f;
    const float *ones = gpu_ctx_ones(ctx, n);
    CUBLAS_CHECK(cublasSgemv(ctx->blas, CUBLAS_OP_N, cols, as_int(n, "n"), &one, y, cols, ones, 1,
                             &one, db, 1));
}

/* y[r, o] = b[o] for r < rows (n = rows * out). */
__global__ void broadcast_rows_kernel(int64_t n, const float *__restrict__ b, int out,
                                      float *__restrict__ y) {
    THREAD_INDEX(i, n);
    y[i] = b[i % out];
}

extern "C" void gpu_layer_linear_forward(gpu_ctx_t *ctx, const float *x, const float *W,
                                       const float *b, int64_t n, int in, int out, float *y) {
    if (n <= 0) return;
    /* As the CPU: y = b first, then y += x W^T (beta 1); without a bias y = x W^T. */
    if (b) LAUNCH(broadcast_rows_kernel, n * out, b, out, y);
    gpu_gemm(ctx, 0, 1, n, out, in, 1.0f, x, in, W, in, b ? 1.0f : 0.0f, y, out);
}

extern "C" void gpu_layer_linear_backward(gpu_ctx_t *ctx, const float *x, const float *W,
                                        const float *dy, int64_t n, int in, int out, float *dx,
                                        float *dW, float *db) {
    if (n <= 0) return;
    gpu_gemm(ctx, 1, 0, out, in, n, 1.0f, dy, out, x, in, 1.0f, dW, in);  /* dW += dy^T x */
    if (db) gpu_colsum_add(ctx, dy, n, out, db);
    if (dx) gpu_gemm(ctx, 0, 0, n, in, out, 1.0f, dy, out, W, in, 1.0f, dx, in); /* dx += dy W */
}
