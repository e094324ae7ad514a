/* CPU emulation of the cuBLAS calls kernels/interest.cu makes (see cuda_runtime.h here). */
#pragma once
#include "cuda_runtime.h"

typedef void *cublasHandle_t;
enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_DEFAULT_MATH = 0 };
static inline int cublasCreate(cublasHandle_t *h) {
    *h = (void *)1;
    return 0;
}
static inline int cublasDestroy(cublasHandle_t) { return 0; }
static inline int cublasSetMathMode(cublasHandle_t, int) { return 0; }
static inline int cublasSetStream(cublasHandle_t, cudaStream_t) { return 0; }

/* Column-major C (m, n) = alpha op(A) op(B) + beta C, each sum in double. */
static inline int cublasSgemm(cublasHandle_t, int ta, int tb, int m, int n, int k,
                              const float *alpha, const float *A, int lda, const float *B,
                              int ldb, const float *beta, float *C, int ldc) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                double a = ta ? A[p + (size_t)i * lda] : A[i + (size_t)p * lda];
                double b = tb ? B[j + (size_t)p * ldb] : B[p + (size_t)j * ldb];
                s += a * b;
            }
            float *c = &C[i + (size_t)j * ldc];
            *c = (float)(*alpha * s + (*beta == 0 ? 0.0 : *beta * (double)*c));
        }
    return 0;
}
