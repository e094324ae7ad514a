/* GPU-vs-CPU parity of the interest predictor's projection (include/timirec/cpu/predictor_decl.h
 * against gpu_ops.h; the GRU is the op table's, test_gpu_ops): the projection MLP in training
 * (Philox dropout) and evaluation mode with 1 to 4 layers, forward and backward, and the
 * dropout mask itself, which must equal proj_dropout_keep bit for bit. Batch 1 to 256, emb 16
 * to 256, K 1 to 64. Outputs poisoned first; accumulated gradients start from the same random
 * values. Tolerance 1e-5 normalised (float32 summation order).
 * SKIP without CUDA or a GPU (test_emu_predictor: the host emulation, small shapes). */
#include "test_util.h"

#ifndef TIMIREC_CUDA
int main(void) {
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
}
#else
#include "gpu_test_util.h"
#include "timirec/cpu_ops.h"

#define TOL 1e-5

static char lab[200];
#define LABEL(...) (snprintf(lab, sizeof lab, __VA_ARGS__), lab)

static float *fresh(int64_t n) {
    float *x = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!x) exit(1);
    return x;
}

static void projection(gpu_ctx_t *ctx, int B, int d, int K, int n_layers, double p, uint32_t tag) {
    printf("projection: B %d, d %d, K %d, n_layers %d, dropout %.2f\n", B, d, K, n_layers, p);
    model_config_t cfg = {.stage = STAGE_FINETUNE, .n_items = 20, .emb_size = d, .attn_size = 8,
                          .K = K, .history_max = 20, .add_pos = 1, .add_trm = 0,
                          .n_layers = n_layers, .temp = 1, .dropout = p};
    char err[256];
    if (model_config_check(&cfg, err, sizeof err)) {
        CHECK(0, "%s", err);
        return;
    }
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    const int64_t total = lay.total, nA = (int64_t)(n_layers > 1 ? n_layers - 1 : 1) * B * d;
    const float bound = 2.0f / sqrtf((float)d);
    float *params = gt_rand(total, tag + 1, -bound, bound), *g = gt_rand((int64_t)B * d, tag + 2, -1, 1);
    float *d_params = gt_up(params, total), *d_g = gt_up(g, (int64_t)B * d);
    dropout_key_t key = {0x1234567890abcdefull + tag, 7 + tag};
    for (int training = 0; training <= 1; training++) {
        const char *m = training ? "training" : "evaluation";
        float *acts = fresh(nA), *out = fresh((int64_t)B * K);
        float *d_acts = gt_poisoned(nA), *d_out = gt_poisoned((int64_t)B * K);
        proj_forward_f(&lay, params, g, B, training, key, acts, out);
        gpu_proj_forward(ctx, &lay, d_params, d_g, B, training, key, d_acts, d_out);
        if (n_layers > 1)
            gt_compare(LABEL("projection %s hidden outputs", m), d_acts, acts,
                       (int64_t)(n_layers - 1) * B * d, TOL);
        gt_compare(LABEL("projection %s pred_intent", m), d_out, out, (int64_t)B * K, TOL);
        float *dout = gt_rand((int64_t)B * K, tag + 3, -1, 1), *dg = fresh((int64_t)B * d);
        float *work = fresh(2 * (int64_t)B * d), *grads = gt_rand(total, tag + 4, -1, 1);
        float *d_dout = gt_up(dout, (int64_t)B * K), *d_dg = gt_poisoned((int64_t)B * d);
        float *d_work = gt_poisoned(2 * (int64_t)B * d), *d_grads = gt_up(grads, total);
        proj_backward_f(&lay, params, g, acts, B, training, dout, dg, work, grads);
        gpu_proj_backward(ctx, &lay, d_params, d_g, d_acts, B, training, d_dout, d_dg, d_work,
                          d_grads);
        gt_compare(LABEL("projection %s backward dg", m), d_dg, dg, (int64_t)B * d, TOL);
        for (int l = 0; l < n_layers; l++) {
            const param_t *pw = &lay.t[lay.proj_w[l]], *pb = &lay.t[lay.proj_b[l]];
            float *hw = fresh(pw->size), *hb = fresh(pb->size);
            gpu_to_host(hw, d_grads + pw->offset, (size_t)pw->size * sizeof(float));
            gpu_to_host(hb, d_grads + pb->offset, (size_t)pb->size * sizeof(float));
            gt_compare_host(LABEL("projection %s backward %s", m, pw->name), hw, grads + pw->offset,
                            pw->size, TOL);
            gt_compare_host(LABEL("projection %s backward %s", m, pb->name), hb, grads + pb->offset,
                            pb->size, TOL);
            free(hw), free(hb);
        }
        free(acts), free(out), free(dout), free(dg), free(work), free(grads);
        gpu_free(d_acts), gpu_free(d_out), gpu_free(d_dout), gpu_free(d_dg), gpu_free(d_work);
        gpu_free(d_grads);
    }
    free(params), free(g);
    gpu_free(d_params), gpu_free(d_g);
}

static void dropout_mask(gpu_ctx_t *ctx, int n_layers, int B, int d, float p, dropout_key_t key) {
    const int64_t n = (int64_t)n_layers * B * d;
    int32_t *keep = (int32_t *)malloc((size_t)n * sizeof(int32_t));
    int64_t kept = 0;
    for (int l = 0; l < n_layers; l++)
        for (int b = 0; b < B; b++)
            for (int j = 0; j < d; j++) {
                int k = proj_dropout_keep(key.seed, key.step, l, B, b, d, j, p);
                keep[((int64_t)l * B + b) * d + j] = k;
                kept += k;
            }
    int32_t *d_keep = (int32_t *)gpu_malloc((size_t)n * sizeof(int32_t));
    gpu_poison(d_keep, (size_t)n * sizeof(int32_t));
    gpu_proj_dropout_mask(ctx, key, n_layers, B, d, p, d_keep);
    char label[160];
    snprintf(label, sizeof label, "dropout mask p %.2f (%.3f kept) vs proj_dropout_keep", p,
             (double)kept / (double)n);
    gt_compare_int(label, d_keep, keep, n);
    free(keep);
    gpu_free(d_keep);
}

int main(void) {
    gpu_ctx_t *ctx = gt_start("test_gpu_predictor");
    /* Small shapes in the emulation (TMR_EMU_FULL=1: the GPU's) and when asked
     * (TMR_SMALL_SHAPES=1, e.g. under compute-sanitizer). */
    const int emu = (gpu_is_emulated() && !getenv("TMR_EMU_FULL")) || getenv("TMR_SMALL_SHAPES");
    if (emu) {
        projection(ctx, 1, 16, 1, 1, 0.5, 400);
        projection(ctx, 5, 16, 2, 2, 0.5, 500);
        projection(ctx, 9, 32, 7, 4, 0.2, 600);
        dropout_mask(ctx, 3, 7, 16, 0.5f, (dropout_key_t){42, 3});
    } else {
        projection(ctx, 1, 16, 1, 1, 0.5, 700);
        projection(ctx, 3, 64, 2, 2, 0.5, 800);
        projection(ctx, 256, 64, 2, 2, 0.5, 900);
        projection(ctx, 256, 256, 64, 4, 0.2, 1000);
        projection(ctx, 3, 16, 7, 3, 0.0, 1100);
        dropout_mask(ctx, 3, 256, 64, 0.5f, (dropout_key_t){42, 3});
        dropout_mask(ctx, 7, 256, 256, 0.2f, (dropout_key_t){0xfedcba9876543210ull, 123456});
    }
    gpu_ctx_free(ctx);
    return gt_finish("test_gpu_predictor");
}
#endif
