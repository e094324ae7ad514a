/* tmr_sgemm against a double-precision triple loop, all four transpose cases, odd shapes,
 * padded strides, alpha/beta, for every implementation built in; the built-in one must give
 * identical bits with 1 and many threads, and called from inside a parallel region.
 *
 * The shapes reach every path of the built-in kernel (4-row x 4-vector tiles): row tails of 1-3
 * rows; 1-4 vectors of columns read in place (N a multiple of the vector width: 16, 48, 80, 192)
 * and ragged N through the packed, zero-padded panels (N = 1, 5, 9, 65, 1100); K = 0, K in one
 * slice and K over several 256-deep slices (257, 600, 5120), where beta applies once.
 * (tests/test_step_threads.c checks whole training steps the same way.) */
#include "test_util.h"
#include "timirec/cpu_ops.h"
#include "timirec/gemm.h"
#include "timirec/model.h"
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
            tu_max_err(&worst, diff);
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
    int64_t shapes[][3] = {{1, 1, 1},    {7, 5, 3},    {33, 65, 17},  {200, 64, 64},
                           {64, 1100, 8}, {3, 2, 0},    {513, 9, 130}, {37, 48, 33},
                           {22, 80, 257}, {6, 192, 600}, {5, 16, 1},   {66, 64, 5120}};
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

    /* The bias epilogue: C = alpha op(A) op(B) + bias equals C = bias then the product added
     * with beta = 1, bit for bit, on both implementations; ragged N and K past one slice. */
    int64_t bshapes[][3] = {{5, 7, 3}, {130, 64, 64}, {9, 192, 300}, {33, 70, 600}};
    for (int impl = 0; impl < 2; impl++) {
        if (tmr_gemm_use((gemm_impl_t)impl) != (gemm_impl_t)impl) continue;
        for (size_t s = 0; s < sizeof bshapes / sizeof bshapes[0]; s++)
            for (int tb = 0; tb < 2; tb++) {
                int64_t M = bshapes[s][0], N = bshapes[s][1], K = bshapes[s][2];
                float *A = malloc((size_t)(M * K) * sizeof *A), *B = malloc((size_t)(N * K) * sizeof *B);
                float *bias = malloc((size_t)N * sizeof *bias);
                float *C1 = malloc((size_t)(M * N) * sizeof *C1), *C2 = malloc((size_t)(M * N) * sizeof *C2);
                for (int64_t i = 0; i < M * K; i++) A[i] = rnd((uint64_t)i, 60);
                for (int64_t i = 0; i < N * K; i++) B[i] = rnd((uint64_t)i, 61);
                for (int64_t j = 0; j < N; j++) bias[j] = rnd((uint64_t)j, 62) * 3.0f;
                for (int64_t i = 0; i < M * N; i++) {
                    C1[i] = NAN; /* beta = 0: never read */
                    C2[i] = bias[i % N];
                }
                tmr_sgemm_bias(0, tb, M, N, K, 1.0f, A, K, B, tb ? K : N, 0.0f, bias, C1, N);
                tmr_sgemm(0, tb, M, N, K, 1.0f, A, K, B, tb ? K : N, 1.0f, C2, N);
                int finite = 1;
                for (int64_t i = 0; i < M * N; i++) finite &= isfinite(C1[i]) != 0;
                CHECK(finite && memcmp(C1, C2, (size_t)(M * N) * sizeof *C1) == 0,
                      "sgemm_bias %s tb=%d %lldx%lldx%lld differs from bias + product",
                      tmr_gemm_name((gemm_impl_t)impl), tb, (long long)M, (long long)N, (long long)K);
                free(A);
                free(B);
                free(bias);
                free(C1);
                free(C2);
            }
    }

    /* Built-in: same bits with 1 thread, with 2, 3 and all threads, and from inside a parallel
     * region (each thread its own product, run on that thread): tiles split between threads
     * differently in each case, and K = 700 and 5120 span several slices. */
    tmr_gemm_use(GEMM_BUILTIN);
    int64_t same[][5] = {{0, 1, 300, 200, 70}, {1, 0, 64, 64, 5120}, {0, 0, 129, 80, 700},
                         {1, 1, 70, 37, 300}};
    int threads = omp_get_max_threads();
    for (size_t s = 0; s < sizeof same / sizeof same[0]; s++) {
        int ta = (int)same[s][0], tb = (int)same[s][1];
        int64_t M = same[s][2], N = same[s][3], K = same[s][4];
        int64_t lda = ta ? M : K, ldb = tb ? K : N;
        float *A = malloc((size_t)(M * K) * sizeof *A), *B = malloc((size_t)(N * K) * sizeof *B);
        float *C1 = malloc((size_t)(M * N) * sizeof *C1), *C2 = malloc((size_t)(M * N) * sizeof *C2);
        for (int64_t i = 0; i < M * K; i++) A[i] = rnd((uint64_t)i, 77);
        for (int64_t i = 0; i < N * K; i++) B[i] = rnd((uint64_t)i, 78);
        omp_set_num_threads(1);
        for (int64_t i = 0; i < M * N; i++) C1[i] = rnd((uint64_t)i, 79);
        tmr_sgemm(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C1, N);
        int counts[] = {2, 3, threads > 1 ? threads : 4};
        for (int c = 0; c < 3; c++) {
            omp_set_num_threads(counts[c]);
            for (int64_t i = 0; i < M * N; i++) C2[i] = rnd((uint64_t)i, 79);
            tmr_sgemm(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, C2, N);
            CHECK(memcmp(C1, C2, (size_t)(M * N) * sizeof *C1) == 0,
                  "built-in ta=%d tb=%d %lldx%lldx%lld: 1 and %d threads differ", ta, tb,
                  (long long)M, (long long)N, (long long)K, counts[c]);
        }
        omp_set_num_threads(threads > 1 ? threads : 4);
        int differ = 0;
#pragma omp parallel reduction(+ : differ)
        {
            float *Ct = malloc((size_t)(M * N) * sizeof *Ct);
            for (int64_t i = 0; i < M * N; i++) Ct[i] = rnd((uint64_t)i, 79);
            tmr_sgemm(ta, tb, M, N, K, 0.75f, A, lda, B, ldb, 0.5f, Ct, N);
            differ += memcmp(C1, Ct, (size_t)(M * N) * sizeof *Ct) != 0;
            free(Ct);
        }
        CHECK(differ == 0, "built-in ta=%d tb=%d %lldx%lldx%lld: %d threads' in-region products "
              "differ from the serial one", ta, tb, (long long)M, (long long)N, (long long)K, differ);
        free(A);
        free(B);
        free(C1);
        free(C2);
    }
    omp_set_num_threads(threads);
    return tu_finish("test_gemm");
}
