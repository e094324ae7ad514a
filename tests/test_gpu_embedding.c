/* GPU embedding gather + position add and the deterministic row scatter (kernels/embedding.cu)
 * against ext_embed_forward / ext_embed_backward (src/cpu/extractor.inc) at B in {1, 3, 256},
 * L in {1, 20, 200}, d in {16, 64, 256}: right-padded histories (padding id 0, position 0),
 * ids drawn from a small table (many repeats) or a large one, with and without the position
 * table. Forward outputs are poisoned with NaN first; the backward adds into random tables
 * (rows no id touches must come back unchanged). SKIP without CUDA or a visible GPU. */
#include "test_util.h"
#include "timirec/cpu_ops.h"
#ifdef TIMIREC_CUDA
#include "gpu_test_util.h"

static void run_case(int B, int L, int d, int N, int with_pos) {
    const int64_t n = (int64_t)B * L;
    const int rows_P = L + 1;
    int32_t *hist = malloc((size_t)n * sizeof *hist), *pos = malloc((size_t)n * sizeof *pos);
    for (int b = 0; b < B; b++) {
        /* lengths 0..L: the first batch row is full, one of every 7 rows is all padding */
        int len = b == 0 ? L : (b % 7 == 3 ? 0 : 1 + gt_below(L));
        for (int l = 0; l < L; l++) {
            hist[(int64_t)b * L + l] = l < len ? 1 + gt_below(N - 1) : 0;
            pos[(int64_t)b * L + l] = l < len ? len - l : 0;
        }
    }
    const size_t nd = (size_t)n * d, Ed = (size_t)N * d, Pd = (size_t)rows_P * d;
    float *E = malloc(Ed * sizeof(float)), *P = malloc(Pd * sizeof(float));
    float *x0 = malloc(nd * sizeof(float)), *gx0 = malloc(nd * sizeof(float));
    float *dx0 = malloc(nd * sizeof(float));
    float *dE = malloc(Ed * sizeof(float)), *dP = malloc(Pd * sizeof(float));
    float *gdE = malloc(Ed * sizeof(float)), *gdP = malloc(Pd * sizeof(float));
    gt_fill(E, (int64_t)Ed, 0.5f);
    gt_fill(P, (int64_t)Pd, 0.5f);
    gt_fill(dx0, (int64_t)nd, 1.0f);
    gt_fill(dE, (int64_t)Ed, 0.1f);
    gt_fill(dP, (int64_t)Pd, 0.1f);

    int32_t *d_hist = gt_dev_copy(hist, (size_t)n * sizeof *hist);
    int32_t *d_pos = gt_dev_copy(pos, (size_t)n * sizeof *pos);
    float *d_E = gt_dev_copy(E, Ed * sizeof(float)), *d_P = gt_dev_copy(P, Pd * sizeof(float));
    float *d_x0 = gt_dev(nd * sizeof(float)), *d_dx0 = gt_dev_copy(dx0, nd * sizeof(float));
    float *d_dE = gt_dev_copy(dE, Ed * sizeof(float)), *d_dP = gt_dev_copy(dP, Pd * sizeof(float));
    size_t work_bytes;
    GT_TRY(tmr_gpu_scatter_work_bytes(n, N > rows_P ? N : rows_P, &work_bytes, gt_err,
                                      sizeof gt_err));
    void *d_work = gt_dev(work_bytes);

    char what[128];
    printf("B %d L %d d %d N %d %s\n", B, L, d, N, with_pos ? "with positions" : "no positions");
    ext_embed_forward_f(E, with_pos ? P : NULL, hist, pos, n, d, x0);
    gt_poison(d_x0, (int64_t)nd);
    GT_TRY(tmr_gpu_embed_forward(d_E, with_pos ? d_P : NULL, d_hist, d_pos, n, d, d_x0, NULL,
                                 gt_err, sizeof gt_err));
    gt_get(gx0, d_x0, nd * sizeof(float));
    snprintf(what, sizeof what, "x0 (%d, %d, %d)", B, L, d);
    gt_compare(what, gx0, x0, (int64_t)nd, 0, 1e-6);

    ext_embed_backward_f(hist, pos, n, d, dx0, dE, with_pos ? dP : NULL);
    GT_TRY(tmr_gpu_embed_backward(d_hist, d_pos, n, d, N, rows_P, d_dx0, d_dE,
                                  with_pos ? d_dP : NULL, d_work, work_bytes, NULL, gt_err,
                                  sizeof gt_err));
    gt_get(gdE, d_dE, Ed * sizeof(float));
    gt_get(gdP, d_dP, Pd * sizeof(float));
    /* Same order of the same float adds: expected bit-identical. */
    snprintf(what, sizeof what, "dE (%d, %d)", N, d);
    gt_compare(what, gdE, dE, (int64_t)Ed, 0, 1e-6);
    snprintf(what, sizeof what, "dP (%d, %d)", rows_P, d);
    gt_compare(what, gdP, dP, (int64_t)Pd, 0, 1e-6);

    gt_free(d_hist), gt_free(d_pos), gt_free(d_E), gt_free(d_P), gt_free(d_x0);
    gt_free(d_dx0), gt_free(d_dE), gt_free(d_dP), gt_free(d_work);
    free(hist), free(pos), free(E), free(P), free(x0), free(gx0), free(dx0);
    free(dE), free(dP), free(gdE), free(gdP);
}
#endif

int main(void) {
#ifndef TIMIREC_CUDA
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
#else
    if (!gt_have_gpu()) return TU_SKIP;
    const int Bs[] = {1, 3, 256}, Ls[] = {1, 20, 200}, ds[] = {16, 64, 256};
    int i = 0;
    for (int bi = 0; bi < 3; bi++)
        for (int li = 0; li < 3; li++)
            for (int di = 0; di < 3; di++, i++) {
                /* alternate a 12-row table (ids repeat everywhere) and a 5000-row one */
                int N = i % 2 ? 12 : 5000;
                run_case(Bs[bi], Ls[li], ds[di], N, i % 3 != 2);
            }
    /* A work buffer one byte short is refused with a message, and nothing is launched. */
    {
        size_t need;
        GT_TRY(tmr_gpu_scatter_work_bytes(100, 10, &need, gt_err, sizeof gt_err));
        char msg[512] = "";
        int rc = tmr_gpu_scatter_add_rows(NULL, 100, 16, 10, NULL, NULL, NULL, need - 1, NULL,
                                          msg, sizeof msg);
        CHECK(rc == -1 && strstr(msg, "work buffer") != NULL, "short work buffer: rc %d, '%s'",
              rc, msg);
    }
    /* A 2-row table: every valid id is 1 (one run of ~25000 rows), padding rows add to row 0. */
    run_case(256, 200, 16, 2, 0);
    return tu_finish("test_gpu_embedding");
#endif
}
