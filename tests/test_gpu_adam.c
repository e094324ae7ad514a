/* GPU-vs-CPU parity of Adam (model.h adam_step against gpu_adam_update): three steps on the
 * flat buffer of a finetune layout (every kind of tensor: embeddings, Linear and GRU weights,
 * biases, LayerNorm gains and shifts), with a large l2 so that a wrong weight-decay flag
 * shows, from random parameters, gradients and moments. Both sides run math_hd.h's element
 * update; the device may fuse multiply-adds, hence 1e-6 normalised rather than exact.
 * SKIP without CUDA or a GPU (test_emu_adam: the host emulation). */
#include "test_util.h"

#ifndef TIMIREC_CUDA
int main(void) {
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
}
#else
#include "gpu_test_util.h"
#include "timirec/cpu_ops.h"

int main(void) {
    gpu_ctx_t *ctx = gt_start("test_gpu_adam");
    model_config_t cfg = {.stage = STAGE_FINETUNE, .n_items = 501, .emb_size = 64, .attn_size = 8,
                          .K = 2, .history_max = 20, .add_pos = 1, .add_trm = 1, .n_layers = 3,
                          .temp = 0.5, .dropout = 0.5};
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    const int64_t n = lay.total;
    float *p = gt_rand(n, 1, -1, 1), *m = gt_rand(n, 2, -0.1f, 0.1f), *v = gt_rand(n, 3, 0, 0.01f);
    float *d_p = gt_up(p, n), *d_m = gt_up(m, n), *d_v = gt_up(v, n);
    adam_t cpu, gpu;
    adam_init(&cpu, 1e-2, 0.1);
    adam_init(&gpu, 1e-2, 0.1);
    for (int step = 0; step < 3; step++) {
        float *g = gt_rand(n, 10 + (uint32_t)step, -1, 1), *d_g = gt_up(g, n);
        adam_step(&cpu, &lay, p, g, m, v);
        gpu_adam_update(ctx, &gpu, &lay, d_p, d_g, d_m, d_v);
        printf("step %d\n", step + 1);
        CHECK(gpu.step == cpu.step, "step counter %lld vs %lld", (long long)gpu.step,
              (long long)cpu.step);
        gt_compare("Adam parameters", d_p, p, n, 1e-6);
        gt_compare("Adam first moments", d_m, m, n, 1e-6);
        gt_compare("Adam second moments", d_v, v, n, 1e-6);
        free(g);
        gpu_free(d_g);
    }
    /* Per tensor after the last step (a wrong decay flag would stand out in one tensor). */
    float *h = (float *)malloc((size_t)n * sizeof(float));
    gpu_to_host(h, d_p, (size_t)n * sizeof(float));
    for (int t = 0; t < lay.n_tensors; t++) {
        const param_t *pt = &lay.t[t];
        char label[200];
        snprintf(label, sizeof label, "%s (%s)", pt->name, pt->decay ? "decay" : "no decay");
        gt_compare_host(label, h + pt->offset, p + pt->offset, pt->size, 1e-6);
    }
    free(h), free(p), free(m), free(v);
    gpu_free(d_p), gpu_free(d_m), gpu_free(d_v);
    gpu_ctx_free(ctx);
    return gt_finish("test_gpu_adam");
}
#endif
