/* gpu_scatter_add_rows (kernels/embedding.cu: a stable sort of the ids, then each id's run of
 * source rows summed in chunks of 32) against a double sum, and its determinism (its parity
 * with the CPU's scatter at these run lengths: the op table's scatter_runs, test_gpu_ops).
 * Source rows are random
 * and never zero (|x| in [0.5, 1.5), random sign), added into tables that already hold such
 * values; ids in random order with run lengths (how often an id occurs) 1, 31, 32, 33, 64,
 * 65, 97, ~5,000 (the padding item 0 of a 256 x 20 batch), many short runs (0..5 rows) in
 * between, long runs next to each other and at both ends of the sorted order; and one id
 * alone with 0..65 rows (the run is the whole array); d 64, 5, 1. Checked:
 * - rows with runs longer than 32: every element within the first-order error bound of the
 *   chunked order of the sum in double:
 *   gamma_k sum |terms| with k = 32 + ceil(m / 32) additions on any term's path (m rows);
 * - determinism: a second call on the same inputs, and a third with TMR_EMU_REVERSE=1
 *   (emulated blocks and threads in reverse order; read at every launch), give the same bits.
 * SKIP without a CUDA build or a GPU. */
#include "test_util.h"

#ifndef TIMIREC_CUDA
int main(void) {
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
}
#else
#include "gpu_test_util.h"
#include "timirec/cpu_ops.h"

#define CH GT_SEG_CHUNK
#define SHORT (-1) /* a run of 0..5 rows, drawn at random */

/* n values with |x| in [0.5, 1.5) and a random sign: never zero, so every row counts. */
static float *nonzero(int64_t n, uint32_t tag) {
    float *x = gt_rand(n, tag, 0.5f, 1.5f);
    for (int64_t i = 0; i < n; i++)
        if (rng_u32(9, RNG_TEST, tag, (uint64_t)i, 1) & 1u) x[i] = -x[i];
    return x;
}

/* Ids for run lengths runs[k] of key k (SHORT: 0..5 at random), in random order (Fisher-Yates
 * on Philox draws). Returns the ids (*n of them). */
static int32_t *make_ids(const int *runs, int n_keys, uint32_t tag, int64_t *n) {
    int64_t total = 0;
    int *len = (int *)malloc((size_t)n_keys * sizeof(int));
    if (!len) exit(1);
    for (int k = 0; k < n_keys; k++) {
        len[k] = runs[k] == SHORT ? (int)(rng_u32(9, RNG_TEST, tag, (uint64_t)k, 2) % 6u) : runs[k];
        total += len[k];
    }
    int32_t *ids = (int32_t *)malloc((size_t)(total > 0 ? total : 1) * sizeof(int32_t));
    if (!ids) exit(1);
    int64_t r = 0;
    for (int k = 0; k < n_keys; k++)
        for (int j = 0; j < len[k]; j++) ids[r++] = k;
    for (int64_t i = total - 1; i > 0; i--) {
        const int64_t j = (int64_t)(rng_u32(9, RNG_TEST, tag, (uint64_t)i, 3) % (uint64_t)(i + 1));
        const int32_t t = ids[i];
        ids[i] = ids[j];
        ids[j] = t;
    }
    free(len);
    *n = total;
    return ids;
}

/* Every element of the table rows whose id has more than CH rows against the exact sum (in
 * double) of the table's value and the rows: |gpu - exact| <= gamma_k sum |terms|, k = CH +
 * ceil(m / CH) (a term passes through at most CH additions in its chunk and ceil(m / CH) - 1
 * when the chunks are combined), gamma_k = k u / (1 - k u), u = 2^-24. Non-finite fails. */
static void check_long_runs(const char *label, const float *gpu, const float *table0,
                            const float *src, const int32_t *ids, int64_t n, int rows, int d) {
    int64_t *count = (int64_t *)calloc((size_t)rows, sizeof(int64_t));
    double *sum = (double *)calloc((size_t)rows * d, sizeof(double));
    double *abs_sum = (double *)calloc((size_t)rows * d, sizeof(double));
    if (!count || !sum || !abs_sum) exit(1);
    for (int64_t i = 0; i < (int64_t)rows * d; i++) {
        sum[i] = table0[i];
        abs_sum[i] = fabs((double)table0[i]);
    }
    for (int64_t r = 0; r < n; r++) {
        count[ids[r]]++;
        for (int c = 0; c < d; c++) {
            sum[(int64_t)ids[r] * d + c] += src[r * d + c];
            abs_sum[(int64_t)ids[r] * d + c] += fabs((double)src[r * d + c]);
        }
    }
    int64_t checked = 0, bad = 0, first = -1;
    double worst = 0; /* largest |gpu - exact| / bound */
    for (int t = 0; t < rows; t++) {
        if (count[t] <= CH) continue;
        const double k = CH + (double)((count[t] + CH - 1) / CH), ku = k * 0x1p-24;
        for (int c = 0; c < d; c++) {
            const int64_t i = (int64_t)t * d + c;
            const double bound = ku / (1 - ku) * abs_sum[i], diff = fabs((double)gpu[i] - sum[i]);
            checked++;
            if (!isfinite(gpu[i]) || !(diff <= bound)) {
                if (bad++ == 0) first = i;
                continue;
            }
            tu_max_err(&worst, diff / bound);
        }
    }
    printf("  %-58s n %9lld  worst %.2f of the bound\n", label, (long long)checked, worst);
    CHECK(bad == 0, "%s: %lld elements outside the bound (first: row %lld col %lld, gpu %.9g, exact %.9g)",
          label, (long long)bad, (long long)(first / d), (long long)(first % d),
          bad ? (double)gpu[first] : 0.0, bad ? sum[first] : 0.0);
    free(count), free(sum), free(abs_sum);
}

/* Scatter rows of d into a table of n_keys (+ 3 never-touched) rows three times: twice in
 * the normal order, once with TMR_EMU_REVERSE=1; compare with the double sum, and the three
 * results with each other. */
static void scatter_case(gpu_ctx_t *ctx, const char *name, const int *runs, int n_keys, int d,
                         uint32_t tag) {
    int64_t n = 0;
    int32_t *ids = make_ids(runs, n_keys, tag, &n);
    const int rows = n_keys + 3;
    const int64_t nt = (int64_t)rows * d;
    float *src = nonzero(n > 0 ? n * d : 1, tag + 1), *table0 = nonzero(nt, tag + 2);
    int32_t *d_ids = gt_upi(ids, n > 0 ? n : 1);
    float *d_src = gt_up(src, n > 0 ? n * d : 1), *d_table = gpu_malloc((size_t)nt * sizeof(float));
    float *out[3];
    for (int pass = 0; pass < 3; pass++) {
        if (pass == 2) setenv("TMR_EMU_REVERSE", "1", 1);
        gpu_to_device(d_table, table0, (size_t)nt * sizeof(float));
        gpu_scatter_add_rows(ctx, d_ids, n, d, d_src, d_table);
        out[pass] = (float *)malloc((size_t)nt * sizeof(float));
        if (!out[pass]) exit(1);
        gpu_to_host(out[pass], d_table, (size_t)nt * sizeof(float));
        if (pass == 2) unsetenv("TMR_EMU_REVERSE");
    }
    char lab[200];
    printf("%s: %lld rows of d %d into %d table rows\n", name, (long long)n, d, rows);
    snprintf(lab, sizeof lab, "%s runs > 32 vs the exact sum", name);
    check_long_runs(lab, out[0], table0, src, ids, n, rows, d);
    for (int pass = 1; pass < 3; pass++) {
        const int same = memcmp(out[0], out[pass], (size_t)nt * sizeof(float)) == 0;
        printf("  %-58s %s\n", pass == 1 ? "second call" : "third call, TMR_EMU_REVERSE=1",
               same ? "bit-identical" : "DIFFERS");
        CHECK(same, "%s: call %d differs from the first", name, pass + 1);
    }
    free(ids), free(src), free(table0), free(out[0]), free(out[1]), free(out[2]);
    gpu_free(d_ids), gpu_free(d_src), gpu_free(d_table);
}

int main(void) {
    gpu_ctx_t *ctx = gt_start("test_gpu_scatter");
    /* Key 0 like the padding item of a 256 x 20 batch (first in sorted order); every run
     * length around the chunk size; two long runs side by side (33, 65); many short runs; a
     * long run last in sorted order (2 CH + 1). */
    enum { N_FIXED = 24, N_SHORT = 400 };
    static const int fixed[N_FIXED] = {5000, SHORT, 1, SHORT, CH - 1, SHORT, SHORT, CH, CH + 1,
                                       SHORT, 2 * CH, SHORT, 3 * CH + 1, SHORT, 2, SHORT, 33, 65,
                                       SHORT, CH + 2, 1, SHORT, SHORT, 3};
    int runs[N_FIXED + N_SHORT + 1];
    int k = 0;
    for (int i = 0; i < N_FIXED; i++) runs[k++] = fixed[i];
    for (int i = 0; i < N_SHORT; i++) runs[k++] = SHORT;
    runs[k++] = 2 * CH + 1;
    static const int widths[] = {64, 5, 1};
    for (int w = 0; w < 3; w++) {
        char name[80];
        snprintf(name, sizeof name, "mixed runs, d %d", widths[w]);
        scatter_case(ctx, name, runs, k, widths[w], 100u * (uint32_t)(w + 1));
    }
    /* One id: the run is the whole sorted array (its end is the array's end); no rows. */
    static const int alone[] = {0, 1, CH - 1, CH, CH + 1, 2 * CH, 2 * CH + 1};
    for (int i = 0; i < (int)(sizeof alone / sizeof *alone); i++) {
        char name[80];
        snprintf(name, sizeof name, "one id, %d rows, d 3", alone[i]);
        scatter_case(ctx, name, &alone[i], 1, 3, 1000u + 10u * (uint32_t)i);
    }
    gpu_ctx_free(ctx);
    return gt_finish("test_gpu_scatter");
}
#endif
