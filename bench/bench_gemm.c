/* CPU matrix product at the model's shapes: the built-in kernel against OpenBLAS (when built
 * in), to decide what the CPU reference backend uses. Each variant is checked against a double
 * loop on a sample of entries before it is timed; median of repeats after a warm-up. All
 * shapes run with the built-in kernel first, then with OpenBLAS (whose threads keep spinning
 * after a call and would slow the next built-in run). Appends rows to bench/results/gemm.csv.
 *
 * First prediction (axpy loop): on 2 AVX-512 cores OpenBLAS reaches 50-100 GFLOP/s on the
 * K = 64 shapes and the built-in loop 15-30 GFLOP/s. Measured: OpenBLAS 0.3.21 runs its
 * PRESCOTT (SSE3) kernels on this VM, 20-50 GFLOP/s. Second prediction (4 x 64 register tile,
 * multiply then add, 2 x 16 lanes x 2 ports at ~2.3 GHz = ~150 GFLOP/s peak on 2 cores): the
 * built-in kernel reaches 100-150 GFLOP/s at K = 64 and the weight gradient (K = 5120, in
 * 256-deep slices) ~100; measured 110-150 and 110-120. Third (the same with fused multiply-add,
 * twice the peak): 200+ at K = 64; measured 210-220, weight gradient 145. */
#include "timirec/common.h"
#include "timirec/gemm.h"
#include "timirec/rng.h"
#include "bench_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *what;
    int ta, tb;
    int64_t M, N, K;
} shape_t;

static double time_gemm(const shape_t *s, const float *A, const float *B, float *C, int reps) {
    int64_t lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    tmr_sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N); /* warm-up */
    double t[64];
    for (int r = 0; r < reps; r++) {
        double t0 = tmr_now();
        tmr_sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N);
        t[r] = tmr_now() - t0;
    }
    return bench_median(t, reps);
}

int main(void) {
    shape_t shapes[] = {
        {"q/k/v/FFN forward (B*L=5120 d=64)", 0, 1, 5120, 64, 64},
        {"weight gradient dY^T X", 1, 0, 64, 64, 5120},
        {"input gradient dY W", 0, 0, 5120, 64, 64},
        {"interest W1 (a=8)", 0, 1, 5120, 8, 64},
        {"GRU input projection (3d=192)", 0, 1, 5120, 192, 64},
        {"emb 256 projection", 0, 1, 5120, 256, 256},
        {"history 200 x batch 1024", 0, 1, 204800, 64, 64},
        {"full-catalog scores 6040 x 3706", 0, 1, 6040, 3706, 64},
        {"GRU step h W_hh^T (256 rows)", 0, 0, 256, 192, 64},
        {"attention scores, one batch row", 0, 0, 20, 32, 64},
    };
    int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    const char *commit = bench_commit(), *date = bench_date();
    char device[256];
    bench_cpu_name(device, sizeof device);
    FILE *csv = fopen("bench/results/gemm.csv", "a");
    if (csv && ftell(csv) == 0)
        fprintf(csv, "device,date,commit,shape,M,N,K,impl,ms,gflops\n");
    printf("CPU matrix products on %s\n", device);
    double gf[sizeof shapes / sizeof shapes[0]][2] = {{0}};
    for (int impl = 0; impl < 2; impl++) {
        if (tmr_gemm_use((gemm_impl_t)impl) != (gemm_impl_t)impl) continue;
        for (int si = 0; si < n_shapes; si++) {
            const shape_t *s = &shapes[si];
            size_t na = (size_t)(s->M * s->K), nb = (size_t)(s->K * s->N), nc = (size_t)(s->M * s->N);
            float *A = tmr_malloc(na * sizeof *A), *B = tmr_malloc(nb * sizeof *B);
            float *C = tmr_malloc(nc * sizeof *C);
            for (size_t i = 0; i < na; i++) A[i] = rng_uniform01(rng_u32(1, RNG_TEST, 0, i, 0)) - 0.5f;
            for (size_t i = 0; i < nb; i++) B[i] = rng_uniform01(rng_u32(1, RNG_TEST, 1, i, 0)) - 0.5f;
            for (size_t i = 0; i < nc; i++) C[i] = NAN; /* poison: beta = 0 must overwrite */
            double flops = 2.0 * (double)s->M * (double)s->N * (double)s->K;
            int reps = flops < 1e9 ? 21 : 5;
            int64_t lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
            /* Validate: a sample of entries against a double-precision dot product. */
            tmr_sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N);
            int bad = 0;
            for (int q = 0; q < 200; q++) {
                int64_t i = rng_u32(2, RNG_TEST, 0, (uint64_t)q, 0) % (uint64_t)s->M;
                int64_t j = rng_u32(2, RNG_TEST, 0, (uint64_t)q, 1) % (uint64_t)s->N;
                double want = 0;
                for (int64_t k = 0; k < s->K; k++)
                    want += (double)(s->ta ? A[k * lda + i] : A[i * lda + k]) *
                            (double)(s->tb ? B[j * ldb + k] : B[k * ldb + j]);
                if (!(fabs(want - C[i * s->N + j]) <= 1e-4 * (1 + sqrt((double)s->K)))) bad++;
            }
            if (bad) {
                fprintf(stderr, "%s: %s gives %d wrong entries; not timed\n", s->what,
                        tmr_gemm_name((gemm_impl_t)impl), bad);
                return 1;
            }
            double t = time_gemm(s, A, B, C, reps);
            gf[si][impl] = flops / t / 1e9;
            if (csv)
                fprintf(csv, "%s,%s,%s,%s,%lld,%lld,%lld,%s,%.4f,%.2f\n", device, date ? date : "",
                        commit ? commit : "", s->what, (long long)s->M, (long long)s->N,
                        (long long)s->K, tmr_gemm_name((gemm_impl_t)impl), t * 1e3, gf[si][impl]);
            free(A);
            free(B);
            free(C);
        }
    }
    tmr_gemm_use(GEMM_BUILTIN);
    printf("%-38s %8s %8s %8s  %12s %12s\n", "shape", "M", "N", "K", "builtin", "openblas");
    for (int si = 0; si < n_shapes; si++) {
        const shape_t *s = &shapes[si];
        char ob[32];
        if (gf[si][1] > 0) snprintf(ob, sizeof ob, "%6.1f GF/s", gf[si][1]);
        else snprintf(ob, sizeof ob, "%12s", "SKIP");
        printf("%-38s %8lld %8lld %8lld  %6.1f GF/s %s\n", s->what, (long long)s->M,
               (long long)s->N, (long long)s->K, gf[si][0], ob);
    }
    if (csv) fclose(csv);
    printf("(GF/s = 2*M*N*K / median time; rows appended to bench/results/gemm.csv)\n");
    return 0;
}
