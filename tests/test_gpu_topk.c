/* GPU top-K (kernels/topk.cu) against the CPU top-K (topk.h), itself proven against a brute-force
 * sort by test_topk: random problems of many shapes, 1..4 vectors per row, excluded lists,
 * padding on and off, k from 1 to 1024 and above the unseen count, several user and item chunks
 * (TIMIREC_TOPK_GPU_USERS / _ITEMS made small). Quantised embeddings make every product exact,
 * so whatever order cuBLAS sums in, the lists must be identical item for item, ties included;
 * with continuous values only rounding-level near-ties may swap. The benchmark's baseline
 * (product + full segmented sort) is checked the same way. SKIP without a GPU; the Makefile
 * also builds it as test_emu_topk against the host emulation (emu/emulate.h).
 * Top-K shares the backend's context (cuBLAS handle): a TF32 top-K call (TIMIREC_TOPK_TF32=1)
 * must leave the handle's default FP32 math for the next training product (checked on a GPU
 * through gpu_gemm's error; the emulation has one math mode). */
#include "test_util.h"
#include "timirec/topk.h"

#include <stdint.h>

#ifndef TIMIREC_CUDA
int main(void) {
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
}
#else
#include "timirec/gemm.h"
#include "timirec/gpu_ops.h"

static char err[512];
static uint64_t rng = 0x853c49e6748fea9bull;
static uint32_t u32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static int below(int n) { return (int)(u32() % (uint32_t)n); }
static float value(int quantised) { /* never zero */
    float sign = u32() & 1 ? 1.0f : -1.0f;
    if (quantised) return sign * (float)(1 + below(4)) * 0.25f;
    return sign * (0.05f + 0.95f * (float)(u32() & 0xffffff) / 16777216.0f);
}

#define TRY(call)                                                               \
    do {                                                                        \
        if ((call) != 0) {                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, err); \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

static void *upload(const void *host, size_t bytes) {
    void *d = NULL;
    TRY(topk_gpu_malloc(&d, bytes, err, sizeof err));
    if (bytes) TRY(topk_gpu_copy(d, host, bytes, 1, err, sizeof err));
    return d;
}

/* Rows where the lists differ beyond what rounding explains (exact: any difference). */
static int differing_rows(int64_t U, int k, const int32_t *ic, const float *sc, const int32_t *cc,
                          const int32_t *ig, const float *sg, const int32_t *cg, int exact) {
    int bad = 0;
    for (int64_t r = 0; r < U; r++) {
        int ok = cc[r] == cg[r];
        for (int i = 0; i < k && ok; i++) {
            const int64_t x = r * k + i;
            if (i >= cc[r]) {
                ok = ig[x] == -1 && isnan(sg[x]);
                continue;
            }
            const float tol = 2e-5f * (fabsf(sc[x]) + 1.0f);
            if (exact) {
                ok = ic[x] == ig[x] && sc[x] == sg[x];
            } else if (!(fabsf(sc[x] - sg[x]) <= tol)) {
                ok = 0;
            } else if (ic[x] != ig[x]) { /* a swap among near-equal scores, or at the cut */
                ok = (i > 0 && fabsf(sc[x] - sc[x - 1]) <= tol) ||
                     (i + 1 < cc[r] && fabsf(sc[x] - sc[x + 1]) <= tol) || i == cc[r] - 1;
            }
        }
        if (!ok && bad++ == 0)
            fprintf(stderr, "row %lld: count cpu %d gpu %d; first items cpu %d gpu %d\n", (long long)r,
                    cc[r], cg[r], ic[r * k], ig[r * k]);
    }
    return bad;
}

static void one_case(gpu_ctx_t *ctx, int64_t U, int V, int D, int32_t N, int k, int quantised,
                     int pad, int shared, int small_chunks) {
    float *vecs = malloc(sizeof(float) * (size_t)(U * V * D)), *items = malloc(sizeof(float) * (size_t)N * D);
    for (int64_t i = 0; i < U * V * D; i++) vecs[i] = value(quantised);
    for (int64_t i = 0; i < (int64_t)N * D; i++) items[i] = value(quantised);
    int64_t lists = shared ? 1 + U / 3 : U;
    int64_t *off = malloc(sizeof(int64_t) * (size_t)(lists + 1));
    int32_t *seen = malloc(sizeof(int32_t) * (size_t)(lists * (N + 4) + 1)), *index = NULL;
    off[0] = 0;
    for (int64_t l = 0; l < lists; l++) {
        int64_t n = off[l];
        int mode = below(4); /* none, a few, most, with duplicates */
        for (int32_t it = 0; it < N; it++) {
            int take = mode == 1 ? below(10) == 0 : mode == 2 ? below(10) != 0 : mode == 3 ? below(3) == 0 : 0;
            if (!take) continue;
            seen[n++] = it;
            if (mode == 3 && below(2)) seen[n++] = it;
        }
        off[l + 1] = n;
    }
    if (shared) {
        index = malloc(sizeof(int32_t) * (size_t)U);
        for (int64_t r = 0; r < U; r++) index[r] = below((int)lists);
    }
    topk_problem_t hp = {U, V, D, vecs, N, items, off, seen, index, pad};
    size_t n_out = (size_t)(U * k);
    int32_t *ic = malloc(n_out * 4), *cc = malloc((size_t)U * 4), *ig = malloc(n_out * 4), *cg = malloc((size_t)U * 4);
    float *sc = malloc(n_out * 4), *sg = malloc(n_out * 4);
    topk_cpu(&hp, k, ic, sc, cc);

    topk_problem_t dp = hp;
    dp.vecs = upload(vecs, sizeof(float) * (size_t)(U * V * D));
    dp.items = upload(items, sizeof(float) * (size_t)N * D);
    dp.seen_off = upload(off, sizeof(int64_t) * (size_t)(lists + 1));
    dp.seen = upload(seen, sizeof(int32_t) * (size_t)(off[lists] + 1));
    dp.seen_index = shared ? upload(index, sizeof(int32_t) * (size_t)U) : NULL;
    int32_t *d_items, *d_counts;
    float *d_scores;
    TRY(topk_gpu_malloc((void **)&d_items, n_out * 4, err, sizeof err));
    TRY(topk_gpu_malloc((void **)&d_scores, n_out * 4, err, sizeof err));
    TRY(topk_gpu_malloc((void **)&d_counts, (size_t)U * 4, err, sizeof err));
    if (small_chunks) {
        setenv("TIMIREC_TOPK_GPU_USERS", "7", 1);
        setenv("TIMIREC_TOPK_GPU_ITEMS", "300", 1);
    }
    TRY(topk_gpu(ctx, &dp, k, d_items, d_scores, d_counts, err, sizeof err));
    unsetenv("TIMIREC_TOPK_GPU_USERS");
    unsetenv("TIMIREC_TOPK_GPU_ITEMS");
    TRY(topk_gpu_copy(ig, d_items, n_out * 4, 0, err, sizeof err));
    TRY(topk_gpu_copy(sg, d_scores, n_out * 4, 0, err, sizeof err));
    TRY(topk_gpu_copy(cg, d_counts, (size_t)U * 4, 0, err, sizeof err));
    char what[160];
    snprintf(what, sizeof what, "U=%lld V=%d D=%d N=%d k=%d q=%d pad=%d shared=%d small=%d",
             (long long)U, V, D, (int)N, k, quantised, pad, shared, small_chunks);
    int bad = differing_rows(U, k, ic, sc, cc, ig, sg, cg, quantised);
    CHECK(bad == 0, "%s: %d rows differ from the CPU top-k", what, bad);
    printf("%s: %s\n", bad ? "FAIL" : "ok", what);
    if (U * N <= 4000000) { /* the benchmark's baseline, on the shapes it can hold */
        memset(ig, 0, n_out * 4);
        TRY(topk_gpu_baseline(ctx, &dp, k, d_items, d_scores, d_counts, err, sizeof err));
        TRY(topk_gpu_copy(ig, d_items, n_out * 4, 0, err, sizeof err));
        TRY(topk_gpu_copy(sg, d_scores, n_out * 4, 0, err, sizeof err));
        TRY(topk_gpu_copy(cg, d_counts, (size_t)U * 4, 0, err, sizeof err));
        bad = differing_rows(U, k, ic, sc, cc, ig, sg, cg, quantised);
        CHECK(bad == 0, "%s: baseline: %d rows differ from the CPU top-k", what, bad);
    }
    topk_gpu_free((void *)dp.vecs), topk_gpu_free((void *)dp.items), topk_gpu_free((void *)dp.seen_off);
    topk_gpu_free((void *)dp.seen), topk_gpu_free((void *)dp.seen_index);
    topk_gpu_free(d_items), topk_gpu_free(d_scores), topk_gpu_free(d_counts);
    free(vecs), free(items), free(off), free(seen), free(index);
    free(ic), free(cc), free(ig), free(cg), free(sc), free(sg);
}

/* After a TF32 top-K call, a training product on the same handle (gpu_gemm) must still be
 * FP32: C (M, N) = A (M, K) B (K, N) on continuous values against tmr_sgemm. TF32 inputs
 * (10-bit mantissas) would put the normalised error near 1e-4; FP32 stays below 1e-6. */
static void fp32_after_tf32(gpu_ctx_t *ctx) {
    enum { M = 64, N = 64, K = 512 };
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
    float *want = malloc(sizeof(float) * M * N), *got = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) a[i] = value(0);
    for (int i = 0; i < K * N; i++) b[i] = value(0);
    tmr_sgemm(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, want, N);
    float *da = gpu_malloc(sizeof(float) * M * K), *db = gpu_malloc(sizeof(float) * K * N);
    float *dc = gpu_malloc(sizeof(float) * M * N);
    gpu_to_device(da, a, sizeof(float) * M * K);
    gpu_to_device(db, b, sizeof(float) * K * N);
    gpu_gemm(ctx, 0, 0, M, N, K, 1.0f, da, K, db, N, 0.0f, dc, N);
    gpu_to_host(got, dc, sizeof(float) * M * N);
    double num = 0, den = 0;
    for (int i = 0; i < M * N; i++) {
        num += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        den += (double)want[i] * want[i];
    }
    const double e = sqrt(num / den);
    CHECK(e < 1e-5, "gpu_gemm after a TF32 top-K call: normalised error %.2e (TF32 left on?)", e);
    printf("%s: gpu_gemm after a TF32 top-K call: normalised error %.2e\n", e < 1e-5 ? "ok" : "FAIL", e);
    gpu_free(da), gpu_free(db), gpu_free(dc);
    free(a), free(b), free(want), free(got);
}

int main(void) {
    char desc[256];
    int n = topk_gpu_devices(desc, sizeof desc);
    printf("%s: %s\n", n > 0 ? "device" : "SKIP", desc);
    if (n < 1) return TU_SKIP;
    gpu_ctx_t *ctx = gpu_ctx_create(err, sizeof err);
    if (!ctx) {
        printf("SKIP: %s\n", err);
        return TU_SKIP;
    }
    /* The host emulation (test_emu_topk, emu/emulate.h): fewer and smaller problems. */
    const int quick = strstr(desc, "emulation") != NULL;
    one_case(ctx, 3, 1, 4, 1, 5, 1, 1, 0, 0);        /* only the padding row */
    one_case(ctx, 5, 2, 3, 7, 20, 1, 0, 0, 0);       /* k above the catalog */
    one_case(ctx, 9, 1, 16, 700, 50, 1, 1, 0, 1);    /* 3 item chunks, 2 user chunks */
    one_case(ctx, 20, 3, 8, 900, 1024, 1, 1, 1, 1);  /* k = 1024 across chunks, ties */
    one_case(ctx, 12, 2, 64, 1500, 300, 0, 1, 0, 1); /* continuous values */
    one_case(ctx, 30, 1, 33, 2000, 1, 1, 0, 1, 0);
    static const int dims[] = {1, 2, 5, 16, 64};
    for (int t = 0; t < (quick ? 6 : 60); t++) {
        int64_t U = 1 + below(quick ? 12 : 200);
        int V = 1 + below(4), D = dims[below(5)];
        int32_t N = 1 + below(quick ? 800 : (t % 4 == 0 ? 40000 : 3000));
        int k = t % 5 == 0 ? 1 + below(1024) : 1 + below(100);
        one_case(ctx, U, V, D, N, k, t % 3 != 0, below(4) != 0, below(3) == 0, below(2));
    }
    /* TF32 products: quantised values (multiples of 1/4 up to 1) are exact in TF32, so the
     * lists must still equal the CPU's; then the handle must be back to FP32. */
    setenv("TIMIREC_TOPK_TF32", "1", 1);
    one_case(ctx, 9, 2, 16, 700, 50, 1, 1, 0, 1);
    unsetenv("TIMIREC_TOPK_TF32");
    fp32_after_tf32(ctx);
    gpu_ctx_free(ctx);
    return tu_finish("test_gpu_topk");
}
#endif
