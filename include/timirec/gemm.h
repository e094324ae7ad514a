/* The CPU's one matrix product, row-major:
 *   C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C
 * op(X) = X or X^T; lda/ldb/ldc are row strides of the stored matrices. beta == 0 overwrites C
 * (NaN in C does not propagate, as in BLAS).
 *
 * Two implementations behind it: a built-in register-tiled OpenMP kernel (always there, the
 * default) and OpenBLAS's cblas_sgemm when the build found OpenBLAS (TIMIREC_OPENBLAS). The
 * built-in one sums over k in ascending order for every element (one fused multiply-add chain
 * where the target has FMA), whatever the thread count, so its results are reproducible bit
 * for bit. */
#ifndef TIMIREC_GEMM_H
#define TIMIREC_GEMM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { GEMM_BUILTIN = 0, GEMM_OPENBLAS = 1 } gemm_impl_t;

void tmr_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
               int64_t ldc);

/* The same in double precision: gradient checks run the model in double. */
void tmr_dgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
               const double *A, int64_t lda, const double *B, int64_t ldb, double beta, double *C,
               int64_t ldc);

/* C (M, N) = alpha * op(A) op(B) + bias, bias (N) added to every row (beta must be 0): the
 * bias is added in the kernel's epilogue instead of a separate pass over C. bias NULL: as
 * tmr_sgemm. */
void tmr_sgemm_bias(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                    const float *bias, float *C, int64_t ldc);
void tmr_dgemm_bias(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                    const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
                    const double *bias, double *C, int64_t ldc);

/* Choose the implementation (OpenBLAS only if built in). Returns the one now in use.
 * The default is the built-in one; TIMIREC_GEMM=openblas in the environment selects OpenBLAS. */
gemm_impl_t tmr_gemm_use(gemm_impl_t impl);
gemm_impl_t tmr_gemm_current(void);
const char *tmr_gemm_name(gemm_impl_t impl);
int tmr_gemm_have_openblas(void);

#ifdef __cplusplus
}
#endif
#endif
