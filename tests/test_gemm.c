/* tmr_sgemm against a double-precision triple loop, all four transpose cases, odd shapes,
 * padded strides, alpha/beta, for every implementation built in; the built-in one must give
 * identical bits with 1 and many threads. */
#include "test_util.h"
#include "timirec/gemm.h"
#include "timirec/rng.h"

#include <omp.h>

static float rnd(uint64_t i, uint32_t salt) {
    return rng_uniform01(rng_u32(17, RNG_TEST, salt, i, 0)) * 2.0f - 1.0f;
}

static int check_case(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
                      uint32_t salt) {
    int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    int64_t rows_a = ta ? K : M, rows_b = tb ? N : K;
    float *A = malloc((size_t)(rows_a * lda) * sizeof *A);
    float *B = malloc((size_t)(rows_b * ldb) * sizeof *B);
    float *C = malloc((size_t)(M * ldc) * sizeof *C);
    double *want = malloc((size_t)(M * N) * sizeof *want);
    for (int64_t i = 0; i < rows_a * lda; i++) A[i] = rnd((uint64_t)i, salt);
    for (int64_t i = 0; i < rows_b * ldb; i++) B[i] = rnd((uint64_t)i, salt + 1000);
    for (int64_t i = 0; i < M * ldc; i++) C[i] = beta == 0.0f ? NAN : rnd((uint64_t)i, salt + 2000);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) *
                     (double)(tb ? B[j * ldb + k] : B[k * ldb + j]);
            want[i * N + j] = alpha * s + (beta == 0.0f ? 0.0 : beta * (double)C[i * ldc + j]);
        }
    tmr_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    int bad = 0;
    double worst = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double got = C[i * ldc + j], diff = fabs(got - want[i * N + j]);
            double tol = 1e-5 * (1.0 + (double)K) * (fabs(alpha) + fabs(beta));
            if (!(diff <= tol)) bad++;
            if (diff > worst || isnan(diff)) worst = diff;
        }
    CHECK(bad == 0, "%s ta=%d tb=%d M=%lld N=%lld K=%lld: %d wrong, worst %.3g",
          tmr_gemm_name(tmr_gemm_current()), ta, tb, (long long)M, (long long)N, (long long)K, bad,
          worst);
    free(A);
    free(B);
    free(C);
    free(want);
    return bad;
}

int main(void) {
    int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 65, 17}, {200, 64, 64}, {64, 1100, 8},
                           {3, 2, 0}, {513, 9, 130}};
    for (int impl = 0; impl < 2; impl++) {
        if (tmr_gemm_use((gemm_impl_t)impl) != (gemm_impl_t)impl) {
            printf("(OpenBLAS not built in: built-in implementation only)\n");
            continue;
        }
        uint32_t salt = 1;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++, salt++) {
                    check_case(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f, salt);
                    check_case(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], -0.5f, 1.5f, salt);
                }
    }
    /* Double precision (gradient checks use it), every transpose case, both implementations. */
    for (int impl = 0; impl < 2; impl++) {
        if (tmr_gemm_use((gemm_impl_t)impl) != (gemm_impl_t)impl) continue;
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int64_t m = 37, n = 29, k = 71;
                double *a = malloc((size_t)(m * k) * sizeof *a), *b = malloc((size_t)(k * n) * sizeof *b);
                double *c = malloc((size_t)(m * n) * sizeof *c);
                for (int64_t i = 0; i < m * k; i++) a[i] = rnd((uint64_t)i, 90) * 1.0000001;
                for (int64_t i = 0; i < k * n; i++) b[i] = rnd((uint64_t)i, 91) * 0.9999999;
                for (int64_t i = 0; i < m * n; i++) c[i] = rnd((uint64_t)i, 92);
                tmr_dgemm(ta, tb, m, n, k, 0.75, a, ta ? m : k, b, tb ? k : n, -2.0, c, n);
                int bad = 0;
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) {
                        double want = -2.0 * rnd((uint64_t)(i * n + j), 92);
                        for (int64_t q = 0; q < k; q++)
                            want += 0.75 * (ta ? a[q * m + i] : a[i * k + q]) * (tb ? b[j * k + q] : b[q * n + j]);
                        if (!(fabs(c[i * n + j] - want) <= 1e-12)) bad++;
                    }
                CHECK(bad == 0, "dgemm %s ta=%d tb=%d: %d wrong", tmr_gemm_name((gemm_impl_t)impl), ta, tb, bad);
                free(a);
                free(b);
                free(c);
            }
    }

    /* Built-in: same bits with 1 thread and with all threads. */
    tmr_gemm_use(GEMM_BUILTIN);
    int64_t M = 300, N = 200, K = 70;
    float *A = malloc((size_t)(M * K) * sizeof *A), *B = malloc((size_t)(N * K) * sizeof *B);
    float *C1 = malloc((size_t)(M * N) * sizeof *C1), *C2 = malloc((size_t)(M * N) * sizeof *C2);
    for (int64_t i = 0; i < M * K; i++) A[i] = rnd((uint64_t)i, 77);
    for (int64_t i = 0; i < N * K; i++) B[i] = rnd((uint64_t)i, 78);
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    tmr_sgemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C1, N);
    omp_set_num_threads(threads > 1 ? threads : 4);
    tmr_sgemm(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C2, N);
    CHECK(memcmp(C1, C2, (size_t)(M * N) * sizeof *C1) == 0, "built-in result depends on threads");
    free(A);
    free(B);
    free(C1);
    free(C2);
    return tu_finish("test_gemm");
}
