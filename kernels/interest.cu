/* The interest attention and weighted sum of the extractor (device twin of ext_interest_forward
 * and ext_interest_backward, src/cpu/extractor.inc): the matrix products by cuBLAS, everything
 * else one thread per output element or per (batch row, interest). */
#include <cublas_v2.h>
#include <math.h>

#include "common.cuh"
#include "timirec/gpu_ops.h"

extern "C" int tmr_gpu_blas_create(void **blas, char *err, size_t errlen) {
    cublasHandle_t h;
    *blas = NULL;
    CUBLAS_TRY(cublasCreate(&h));
    /* Plain FP32 products: the parity tests compare with the CPU's float sums. */
    CUBLAS_TRY(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    *blas = h;
    return 0;
}

extern "C" int tmr_gpu_blas_destroy(void *blas, char *err, size_t errlen) {
    CUBLAS_TRY(cublasDestroy((cublasHandle_t)blas));
    return 0;
}

/* Row-major C (m, n) = alpha op(A) op(B) + beta C, with op(A) (m, k), op(B) (k, n) and leading
 * dimensions as row strides. cuBLAS is column-major: a row-major matrix is its transpose there,
 * so compute C^T = op(B)^T op(A)^T, i.e. swap the operands (the flags keep their meaning). */
static int gemm_rm(cublasHandle_t h, int trans_a, int trans_b, int m, int n, int k, float alpha,
                   const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc,
                   char *err, size_t errlen) {
    CUBLAS_TRY(cublasSgemm(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                           trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, B, ldb, A, lda,
                           &beta, C, ldc));
    return 0;
}

/* One thread per element of y (rows, cols): y = y + bias[col], then tanh when asked. */
__global__ void bias_act_kernel(float *y, const float *bias, int64_t rows, int cols,
                                int apply_tanh) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    float v = y[i] + bias[i % cols];
    y[i] = apply_tanh ? tanhf(v) : v;
}

/* One thread per (b, k): alpha[b,k,:] = masked softmax over l of e[b,l,k], as the CPU: the max
 * of the valid scores, exp (0 for masked), the sum over all l, then times 1/sum. */
__global__ void interest_softmax_kernel(const float *e, const int32_t *hist, int B, int L, int K,
                                        float *alpha) {
    int64_t bk = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (bk >= (int64_t)B * K) return;
    const int64_t b = bk / K;
    const int k = (int)(bk % K);
    const int32_t *m = hist + b * L;
    const float *eb = e + b * L * K;
    float *al = alpha + bk * L;
    float mx = 0.0f;
    int any = 0;
    for (int l = 0; l < L; l++)
        if (m[l] > 0) {
            const float s = eb[(int64_t)l * K + k];
            if (!any || s > mx) mx = s;
            any = 1;
        }
    float sum = 0.0f;
    for (int l = 0; l < L; l++) {
        al[l] = m[l] > 0 ? expf(eb[(int64_t)l * K + k] - mx) : 0.0f;
        sum = __fadd_rn(sum, al[l]);
    }
    if (!any) return; /* all masked: alpha stays all 0 */
    const float inv = __fdiv_rn(1.0f, sum);
    for (int l = 0; l < L; l++)
        if (m[l] > 0) al[l] = __fmul_rn(al[l], inv);
}

/* One thread per (b, k, c): V[b,k,c] = sum over valid l (alpha > 0 there) of alpha x, l
 * ascending. Masked l have alpha exactly 0 and are skipped, as on the CPU. */
__global__ void interest_sum_kernel(const float *x, const int32_t *hist, const float *alpha,
                                    int B, int L, int K, int d, float *V) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)B * K * d) return;
    const int64_t bk = i / d;
    const int c = (int)(i % d);
    const int64_t b = bk / K;
    const float *al = alpha + bk * L;
    const float *xb = x + b * L * d;
    float acc = 0.0f;
    for (int l = 0; l < L; l++)
        if (hist[b * L + l] > 0) acc = __fadd_rn(acc, __fmul_rn(al[l], xb[(int64_t)l * d + c]));
    V[i] = acc;
}

extern "C" int tmr_gpu_interest_forward(void *blas, const float *x, const int32_t *hist,
                                        const float *W1, const float *b1, const float *W2,
                                        const float *b2, int B, int L, int d, int a, int K,
                                        float *t, float *e, float *alpha, float *V, void *stream,
                                        char *err, size_t errlen) {
    GPU_CHECK_SIZE(blas != NULL && B >= 1 && L >= 1 && d >= 1 && a >= 1 && K >= 1);
    const int64_t n = (int64_t)B * L;
    GPU_CHECK_SIZE(n < ((int64_t)1 << 31));
    cublasHandle_t h = (cublasHandle_t)blas;
    cudaStream_t st = (cudaStream_t)stream;
    CUBLAS_TRY(cublasSetStream(h, st));
    /* t = tanh(x W1^T + b1): (n, d) x (d, a) */
    if (gemm_rm(h, 0, 1, (int)n, a, d, 1.0f, x, d, W1, d, 0.0f, t, a, err, errlen)) return -1;
    bias_act_kernel<<<tmr_blocks_for(n * a, 256), 256, 0, st>>>(t, b1, n, a, 1);
    CUDA_TRY(cudaGetLastError());
    /* e = t W2^T + b2: (n, a) x (a, K) */
    if (gemm_rm(h, 0, 1, (int)n, K, a, 1.0f, t, a, W2, a, 0.0f, e, K, err, errlen)) return -1;
    bias_act_kernel<<<tmr_blocks_for(n * K, 256), 256, 0, st>>>(e, b2, n, K, 0);
    CUDA_TRY(cudaGetLastError());
    interest_softmax_kernel<<<tmr_blocks_for((int64_t)B * K, 128), 128, 0, st>>>(e, hist, B, L,
                                                                               K, alpha);
    CUDA_TRY(cudaGetLastError());
    interest_sum_kernel<<<tmr_blocks_for((int64_t)B * K * d, 256), 256, 0, st>>>(x, hist, alpha,
                                                                                B, L, K, d, V);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

/* One thread per (b, k): de[b,l,k] = alpha (dalpha - sum_l alpha dalpha) with
 * dalpha[l] = dV[b,k]·x[b,l] (0 where alpha is 0: masked positions get de = 0). */
__global__ void interest_de_kernel(const float *x, const float *alpha, const float *dV, int B,
                                   int L, int K, int d, float *de) {
    int64_t bk = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (bk >= (int64_t)B * K) return;
    const int64_t b = bk / K;
    const int k = (int)(bk % K);
    const float *al = alpha + bk * L, *gv = dV + bk * d, *xb = x + b * L * d;
    float *eb = de + b * L * K;
    float dot = 0.0f;
    for (int l = 0; l < L; l++) {
        float g = 0.0f;
        if (al[l] != 0.0f) {
            const float *xl = xb + (int64_t)l * d;
            for (int c = 0; c < d; c++) g = __fadd_rn(g, __fmul_rn(gv[c], xl[c]));
        }
        eb[(int64_t)l * K + k] = g;
        dot = __fadd_rn(dot, __fmul_rn(al[l], g));
    }
    for (int l = 0; l < L; l++)
        eb[(int64_t)l * K + k] = __fmul_rn(al[l], __fsub_rn(eb[(int64_t)l * K + k], dot));
}

/* One thread per (b, l, c): dx[b,l,c] = sum_k alpha[b,k,l] dV[b,k,c] (overwrites). */
__global__ void interest_dx_kernel(const float *alpha, const float *dV, int B, int L, int K,
                                   int d, float *dx) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)B * L * d) return;
    const int64_t r = i / d;
    const int c = (int)(i % d);
    const int64_t b = r / L;
    const int l = (int)(r % L);
    float acc = 0.0f;
    for (int k = 0; k < K; k++) {
        const float w = alpha[(b * K + k) * L + l];
        if (w == 0.0f) continue;
        acc = __fadd_rn(acc, __fmul_rn(w, dV[(b * K + k) * d + c]));
    }
    dx[i] = acc;
}

/* One thread per element: dt *= 1 - t^2 (tanh'). */
__global__ void tanh_backward_kernel(const float *t, int64_t n, float *dt) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    dt[i] = __fmul_rn(dt[i], __fsub_rn(1.0f, __fmul_rn(t[i], t[i])));
}

/* One thread per column: db[c] += sum_r dy[r, c], rows ascending (deterministic, no atomics). */
__global__ void colsum_add_kernel(const float *dy, int64_t rows, int cols, float *db) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float acc = db[c];
    for (int64_t r = 0; r < rows; r++) acc = __fadd_rn(acc, dy[r * cols + c]);
    db[c] = acc;
}

extern "C" int tmr_gpu_interest_backward(void *blas, const float *x, const float *t,
                                         const float *alpha, const float *W1, const float *W2,
                                         const float *dV, int B, int L, int d, int a, int K,
                                         float *dx, float *dW1, float *db1, float *dW2,
                                         float *db2, float *de, float *dt, void *stream,
                                         char *err, size_t errlen) {
    GPU_CHECK_SIZE(blas != NULL && B >= 1 && L >= 1 && d >= 1 && a >= 1 && K >= 1);
    const int64_t n = (int64_t)B * L;
    GPU_CHECK_SIZE(n < ((int64_t)1 << 31));
    cublasHandle_t h = (cublasHandle_t)blas;
    cudaStream_t st = (cudaStream_t)stream;
    CUBLAS_TRY(cublasSetStream(h, st));
    interest_de_kernel<<<tmr_blocks_for((int64_t)B * K, 128), 128, 0, st>>>(x, alpha, dV, B, L,
                                                                           K, d, de);
    CUDA_TRY(cudaGetLastError());
    interest_dx_kernel<<<tmr_blocks_for(n * d, 256), 256, 0, st>>>(alpha, dV, B, L, K, d, dx);
    CUDA_TRY(cudaGetLastError());
    /* e = t W2^T + b2: dt = de W2 (n, K) x (K, a); dW2 += de^T t; db2 += colsum(de) */
    if (gemm_rm(h, 0, 0, (int)n, a, K, 1.0f, de, K, W2, a, 0.0f, dt, a, err, errlen)) return -1;
    if (gemm_rm(h, 1, 0, K, a, (int)n, 1.0f, de, K, t, a, 1.0f, dW2, a, err, errlen)) return -1;
    colsum_add_kernel<<<tmr_blocks_for(K, 128), 128, 0, st>>>(de, n, K, db2);
    CUDA_TRY(cudaGetLastError());
    /* t = tanh(u): du = dt (1 - t^2) */
    tanh_backward_kernel<<<tmr_blocks_for(n * a, 256), 256, 0, st>>>(t, n * a, dt);
    CUDA_TRY(cudaGetLastError());
    /* u = x W1^T + b1: dx += du W1 (n, a) x (a, d); dW1 += du^T x; db1 += colsum(du) */
    if (gemm_rm(h, 0, 0, (int)n, d, a, 1.0f, dt, a, W1, d, 1.0f, dx, d, err, errlen)) return -1;
    if (gemm_rm(h, 1, 0, a, d, (int)n, 1.0f, dt, a, x, d, 1.0f, dW1, d, err, errlen)) return -1;
    colsum_add_kernel<<<tmr_blocks_for(a, 128), 128, 0, st>>>(dt, n, a, db1);
    CUDA_TRY(cudaGetLastError());
    return 0;
}
