#include "timirec/gemm.h"

#include "timirec/common.h"

#include <omp.h>
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

/* The built-in kernel is the default: on the development VM (AVX-512) it runs the model's
 * shapes at 110-250 GFLOP/s on 2 cores, where Debian's OpenBLAS 0.3.21 detects the CPU as
 * PRESCOTT (SSE3 kernels, 20-50 GFLOP/s) and its spinning threads fight OpenMP's
 * (bench/bench_gemm.c). TIMIREC_GEMM=openblas selects OpenBLAS. */
gemm_impl_t tmr_gemm_current(void) {
    if (impl_chosen < 0) {
        const char *env = getenv("TIMIREC_GEMM");
        tmr_gemm_use(env && strcmp(env, "openblas") == 0 ? GEMM_OPENBLAS : GEMM_BUILTIN);
    }
    return (gemm_impl_t)impl_chosen;
}

const char *tmr_gemm_name(gemm_impl_t impl) {
    return impl == GEMM_OPENBLAS ? "openblas" : "builtin";
}

/* The built-in kernel's vectors: the widest the build targets (64 bytes with AVX-512, 32 with
 * AVX, 16 otherwise); may_alias and element alignment let them load and store REAL arrays at
 * any offset. A tile is GEMM_MR rows x GEMM_NV vectors: 16 accumulators, 4 vectors of B and a
 * broadcast fit AVX-512's 32 vector registers. (With 16 registers the tile spills a little; an
 * -march=haswell build measured the same speed with a 4 x 2 tile, so one shape serves all.) */
#if defined(__AVX512F__)
#define GEMM_VBYTES 64
#elif defined(__AVX__)
#define GEMM_VBYTES 32
#else
#define GEMM_VBYTES 16
#endif
#define GEMM_MR 4
#define GEMM_NV 4
#define GEMM_KC 64 /* k slice: see gemm_builtin.inc */

/* -std=c11 makes GCC keep a * b + c as two roundings; the kernel asks for fused multiply-add
 * (where the target has it), which doubles its peak: the K = 64 products go from ~140 to
 * ~200 GFLOP/s and a finetune step from 20 to 16.6 ms on the development VM. Clang contracts
 * a * b + c within an expression by default. */
#if defined(__GNUC__) && !defined(__clang__)
#define GEMM_FMA __attribute__((optimize("fp-contract=fast")))
#else
#define GEMM_FMA
#endif
typedef float gemm_vf __attribute__((vector_size(GEMM_VBYTES), aligned(sizeof(float)), may_alias));
typedef double gemm_vd __attribute__((vector_size(GEMM_VBYTES), aligned(sizeof(double)), may_alias));

#define REAL float
#define GEMM_VEC gemm_vf
#define GEMM_VL (GEMM_VBYTES / 4)
#define GEMM_NAME sgemm_builtin
#define GEMM_TILE sgemm_tile
#define GEMM_KERNEL sgemm_kernel
#define GEMM_ARGS sgemm_args_t
#define GEMM_RUN sgemm_run
#include "gemm_builtin.inc"
#undef REAL
#undef GEMM_VEC
#undef GEMM_VL
#undef GEMM_NAME
#undef GEMM_TILE
#undef GEMM_KERNEL
#undef GEMM_ARGS
#undef GEMM_RUN
#define REAL double
#define GEMM_VEC gemm_vd
#define GEMM_VL (GEMM_VBYTES / 8)
#define GEMM_NAME dgemm_builtin
#define GEMM_TILE dgemm_tile
#define GEMM_KERNEL dgemm_kernel
#define GEMM_ARGS dgemm_args_t
#define GEMM_RUN dgemm_run
#include "gemm_builtin.inc"
#undef REAL
#undef GEMM_VEC
#undef GEMM_VL
#undef GEMM_NAME
#undef GEMM_TILE
#undef GEMM_KERNEL
#undef GEMM_ARGS
#undef GEMM_RUN

/* One dispatcher per precision: the built-in kernel, or OpenBLAS when selected (its bias goes
 * into C before the product, which then adds: the same sum as the built-in epilogue's). */
#define GEMM_DISPATCH(NAME, REALT, CBLAS, BUILTIN)                                              \
    void NAME(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, REALT alpha,              \
              const REALT *A, int64_t lda, const REALT *B, int64_t ldb, REALT beta,                \
              const REALT *bias, REALT *C, int64_t ldc) {                                          \
        if (M <= 0 || N <= 0) return;                                                           \
        if (bias && beta != 0) tmr_fatal(#NAME ": a bias needs beta = 0");                      \
        if (tmr_gemm_current() == GEMM_OPENBLAS && M < INT32_MAX && N < INT32_MAX &&            \
            K < INT32_MAX && lda < INT32_MAX && ldb < INT32_MAX && ldc < INT32_MAX) {           \
            if (bias) {                                                                         \
                for (int64_t r = 0; r < M; r++)                                                 \
                    memcpy(C + r * ldc, bias, sizeof(REALT) * (size_t)N);                       \
                beta = 1;                                                                       \
            }                                                                                   \
            CBLAS(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,                           \
                  trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A,        \
                  (int)lda, B, (int)ldb, beta, C, (int)ldc);                                    \
            return;                                                                             \
        }                                                                                       \
        BUILTIN(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, bias, C, ldc);          \
    }
#ifdef TIMIREC_OPENBLAS
GEMM_DISPATCH(tmr_sgemm_bias, float, cblas_sgemm, sgemm_builtin)
GEMM_DISPATCH(tmr_dgemm_bias, double, cblas_dgemm, dgemm_builtin)
#else
/* Without OpenBLAS tmr_gemm_current() is always GEMM_BUILTIN: the branch is dead. */
#define cblas_unavailable(...) tmr_fatal("OpenBLAS not built in")
enum { CblasRowMajor, CblasNoTrans, CblasTrans };
GEMM_DISPATCH(tmr_sgemm_bias, float, cblas_unavailable, sgemm_builtin)
GEMM_DISPATCH(tmr_dgemm_bias, double, cblas_unavailable, dgemm_builtin)
#endif

void tmr_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
               int64_t ldc) {
    tmr_sgemm_bias(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, NULL, C, ldc);
}

void tmr_dgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
               const double *A, int64_t lda, const double *B, int64_t ldb, double beta, double *C,
               int64_t ldc) {
    tmr_dgemm_bias(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, NULL, C, ldc);
}
