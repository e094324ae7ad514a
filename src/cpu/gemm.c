#include "timirec/gemm.h"

#include "timirec/common.h"

#include <stdlib.h>
#include <string.h>

#ifdef TIMIREC_OPENBLAS
#include <cblas.h>
#endif

static int impl_chosen = -1;

int tmr_gemm_have_openblas(void) {
#ifdef TIMIREC_OPENBLAS
    return 1;
#else
    return 0;
#endif
}

gemm_impl_t tmr_gemm_use(gemm_impl_t impl) {
    impl_chosen = impl == GEMM_OPENBLAS && tmr_gemm_have_openblas() ? GEMM_OPENBLAS : GEMM_BUILTIN;
    return (gemm_impl_t)impl_chosen;
}

gemm_impl_t tmr_gemm_current(void) {
    if (impl_chosen < 0) {
        const char *env = getenv("TIMIREC_GEMM");
        tmr_gemm_use(env && strcmp(env, "builtin") == 0 ? GEMM_BUILTIN : GEMM_OPENBLAS);
    }
    return (gemm_impl_t)impl_chosen;
}

const char *tmr_gemm_name(gemm_impl_t impl) {
    return impl == GEMM_OPENBLAS ? "openblas" : "builtin";
}

enum { GEMM_JB = 512 };

#define REAL float
#define GEMM_NAME sgemm_builtin
#include "gemm_builtin.inc"
#undef REAL
#undef GEMM_NAME
#define REAL double
#define GEMM_NAME dgemm_builtin
#include "gemm_builtin.inc"
#undef REAL
#undef GEMM_NAME

void tmr_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
               int64_t ldc) {
    if (M <= 0 || N <= 0) return;
#ifdef TIMIREC_OPENBLAS
    if (tmr_gemm_current() == GEMM_OPENBLAS && M < INT32_MAX && N < INT32_MAX && K < INT32_MAX &&
        lda < INT32_MAX && ldb < INT32_MAX && ldc < INT32_MAX) {
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A, (int)lda,
                    B, (int)ldb, beta, C, (int)ldc);
        return;
    }
#endif
    sgemm_builtin(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void tmr_dgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
               const double *A, int64_t lda, const double *B, int64_t ldb, double beta, double *C,
               int64_t ldc) {
    if (M <= 0 || N <= 0) return;
#ifdef TIMIREC_OPENBLAS
    if (tmr_gemm_current() == GEMM_OPENBLAS && M < INT32_MAX && N < INT32_MAX && K < INT32_MAX &&
        lda < INT32_MAX && ldb < INT32_MAX && ldc < INT32_MAX) {
        cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A, (int)lda,
                    B, (int)ldb, beta, C, (int)ldc);
        return;
    }
#endif
    dgemm_builtin(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
