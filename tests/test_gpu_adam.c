/* GPU Adam (kernels/adam.cu) against adam_step (src/cpu/model.c): a finetune layout (tensors
 * with and without weight decay), random parameters, moments and gradients (never zeros),
 * several chained steps on each side, params/m/v compared after every step. The update is in
 * place, so an element the kernel skipped keeps its old value and fails the comparison.
 * SKIP without a CUDA build or without a visible GPU. */
#include "test_util.h"
#include "timirec/model.h"
#ifdef TIMIREC_CUDA
#include "gpu_test_util.h"
#endif

int main(void) {
#ifndef TIMIREC_CUDA
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
#else
    if (!gt_have_gpu()) return TU_SKIP;
    model_config_t cfg = {.stage = STAGE_FINETUNE, .n_items = 3001, .emb_size = 48,
                          .attn_size = 12, .K = 4, .history_max = 30, .add_pos = 1, .add_trm = 1,
                          .n_layers = 3, .temp = 0.5, .dropout = 0.5};
    char err[512];
    CHECK(model_config_check(&cfg, err, sizeof err) == 0, "config: %s", err);
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    int n_decay = 0;
    for (int t = 0; t < lay.n_tensors; t++) n_decay += lay.t[t].decay != 0;
    printf("layout: %d tensors (%d with weight decay), %lld elements\n", lay.n_tensors, n_decay,
           (long long)lay.total);
    CHECK(n_decay > 0 && n_decay < lay.n_tensors, "need tensors with and without decay");

    const int64_t n = lay.total;
    const size_t bytes = (size_t)n * sizeof(float);
    float *x = malloc(bytes), *g = malloc(bytes), *m = malloc(bytes), *v = malloc(bytes);
    float *gx = malloc(bytes), *gm = malloc(bytes), *gv = malloc(bytes);
    gt_fill(x, n, 0.1f);
    gt_fill(m, n, 1e-3f);
    gt_fill(v, n, 1e-5f);
    for (int64_t i = 0; i < n; i++) v[i] = fabsf(v[i]); /* a second moment is >= 0 */
    float *d_x = gt_dev_copy(x, bytes), *d_m = gt_dev_copy(m, bytes), *d_v = gt_dev_copy(v, bytes);
    float *d_g = gt_dev(bytes);

    /* l2 large enough that a wrong decay flag moves m far beyond the tolerance. */
    adam_t cpu, gpu;
    adam_init(&cpu, 1e-3, 1e-2);
    adam_init(&gpu, 1e-3, 1e-2);
    for (int step = 1; step <= 5; step++) {
        gt_fill(g, n, 1e-2f);
        GT_TRY(tmr_gpu_upload(d_g, g, bytes, gt_err, sizeof gt_err));
        adam_step(&cpu, &lay, x, g, m, v);
        GT_TRY(tmr_gpu_adam_step(&gpu, &lay, d_x, d_g, d_m, d_v, NULL, gt_err, sizeof gt_err));
        CHECK(gpu.step == cpu.step, "step counter %lld vs %lld", (long long)gpu.step,
              (long long)cpu.step);
        gt_get(gx, d_x, bytes);
        gt_get(gm, d_m, bytes);
        gt_get(gv, d_v, bytes);
        printf("step %d\n", step);
        /* Same scalars, same rounding (no fused multiply-add): expected bit-identical. */
        gt_compare("params", gx, x, n, 0, 1e-6);
        gt_compare("m", gm, m, n, 0, 1e-6);
        gt_compare("v", gv, v, n, 0, 1e-6);
    }
    gt_free(d_x);
    gt_free(d_m);
    gt_free(d_v);
    gt_free(d_g);
    free(x), free(g), free(m), free(v), free(gx), free(gm), free(gv);
    return tu_finish("test_gpu_adam");
#endif
}
