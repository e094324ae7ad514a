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

/* Built-in: pack op(B) into a contiguous (K, N) panel when it is transposed, then each thread
 * owns rows of C and adds alpha * a_ik * B[k, j-block] for k ascending. Column blocks of
 * JB floats keep the C segment in L1 across the k loop. */
enum { JB = 512 };

static void sgemm_builtin(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                          float *C, int64_t ldc) {
    const float *Bp = B;
    int64_t ldbp = ldb;
    float *packed = NULL;
    if (trans_b) { /* B is stored (N, K) */
        packed = tmr_malloc(tmr_mul_size(tmr_mul_size((size_t)K, (size_t)N), sizeof *packed));
#pragma omp parallel for schedule(static) if (K * N > 65536)
        for (int64_t k = 0; k < K; k++)
            for (int64_t j = 0; j < N; j++) packed[k * N + j] = B[j * ldb + k];
        Bp = packed;
        ldbp = N;
    }
#pragma omp parallel for schedule(static) if (M * N * K > 32768)
    for (int64_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        for (int64_t j0 = 0; j0 < N; j0 += JB) {
            int64_t jn = N - j0 < JB ? N - j0 : JB;
            float *cj = c + j0;
            if (beta == 0.0f) {
                for (int64_t j = 0; j < jn; j++) cj[j] = 0.0f;
            } else if (beta != 1.0f) {
                for (int64_t j = 0; j < jn; j++) cj[j] *= beta;
            }
            for (int64_t k = 0; k < K; k++) {
                float a = alpha * (trans_a ? A[k * lda + i] : A[i * lda + k]);
                const float *b = Bp + k * ldbp + j0;
#pragma omp simd
                for (int64_t j = 0; j < jn; j++) cj[j] += a * b[j];
            }
        }
    }
    free(packed);
}

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
