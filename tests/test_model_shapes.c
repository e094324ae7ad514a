/* The model at the edges of its supported shapes (K 1..64, history up to 512, emb_size up to
 * 256, n_layers 1..4, add_pos/add_trm both ways): a training step in float agrees with the
 * same step in double (loss, scores and every gradient tensor, relative to the tensor's
 * largest magnitude), everything finite. The finite-difference checks of test_grad_model
 * cover the math on small shapes; this covers indexing and buffer sizes on large ones. */
#include "test_util.h"
#include "timirec/cpu_ops.h"
#include "timirec/model.h"
#include "timirec/rng.h"

#include <stdlib.h>

static void run(const char *label, model_config_t cfg, int B, int L, int C) {
    char err[256];
    if (model_config_check(&cfg, err, sizeof err)) {
        CHECK(0, "%s: %s", label, err);
        return;
    }
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    size_t n = (size_t)lay.total;
    float *pf = malloc(n * sizeof *pf), *gf = calloc(n, sizeof *gf);
    double *pd = malloc(n * sizeof *pd), *gd = calloc(n, sizeof *gd);
    model_init_params(&lay, 3, pf);
    for (size_t i = 0; i < n; i++) { /* larger than the 0.01 init: non-trivial gradients */
        pf[i] = pf[i] * 5.0f; /* x20 makes the GRU chaotic: float and double then part */
        pd[i] = pf[i];
    }
    int32_t *hist = calloc((size_t)B * L, sizeof *hist), *pos = calloc((size_t)B * L, sizeof *pos);
    int32_t *length = malloc((size_t)B * sizeof *length), *cand = malloc((size_t)B * C * sizeof *cand);
    for (int b = 0; b < B; b++) {
        length[b] = b == 0 ? 1 : b == B - 1 ? L : 1 + (int)(rng_u32(5, RNG_TEST, 0, (uint64_t)b, 0) % (uint32_t)L);
        for (int l = 0; l < length[b]; l++) {
            hist[b * L + l] = 1 + (int)(rng_u32(5, RNG_TEST, 1, (uint64_t)(b * L + l), 0) % (uint32_t)(cfg.n_items - 1));
            pos[b * L + l] = length[b] - l;
        }
        for (int c = 0; c < C; c++)
            cand[b * C + c] = 1 + (int)(rng_u32(5, RNG_TEST, 2, (uint64_t)(b * C + c), 0) % (uint32_t)(cfg.n_items - 1));
    }
    model_batch_t mb = {B, L, C, hist, pos, length, cand, 0, 0};
    dropout_key_t key = {11, 4};
    model_ws_t_f wf;
    model_ws_t_d wd;
    model_ws_alloc_f(&wf, &lay, B, L, C);
    model_ws_alloc_d(&wd, &lay, B, L, C);
    double t0 = tmr_now();
    float lf = model_train_step_f(&lay, pf, &mb, key, &wf, gf);
    double ld = model_train_step_d(&lay, pd, &mb, key, &wd, gd);
    printf("%-52s loss %.6f (float %.6f), %.2f s\n", label, ld, lf, tmr_now() - t0);
    CHECK(isfinite(ld) && tu_close(lf, ld, 1e-4 * (1 + fabs(ld))), "%s: loss %g vs %g", label,
          lf, ld);
    /* Relative to the tensor's largest gradient, floored at 1e-3 of the model's largest: a
     * tensor whose whole gradient is a cancellation residue is compared on the model's scale. */
    double global = 0;
    for (size_t i = 0; i < n; i++) tu_max_err(&global, fabs(gd[i]));
    double worst = 0;
    const char *worst_name = "";
    for (int t = 0; t < lay.n_tensors; t++) {
        const param_t *p = &lay.t[t];
        double md = 0, mx = 0;
        for (int64_t i = p->offset; i < p->offset + p->size; i++) {
            double d = fabs((double)gf[i] - gd[i]);
            tu_max_err(&md, d);
            tu_max_err(&mx, fabs(gd[i]));
        }
        double rel = md / fmax(mx, 1e-3 * global);
        if (tu_max_err(&worst, rel)) worst_name = p->name;
    }
    printf("  worst float-vs-double gradient: %.2e (%s)\n", worst, worst_name);
    CHECK(worst <= 2e-3, "%s: float and double gradients differ by %.3g in %s", label, worst,
          worst_name);
    model_ws_free_f(&wf);
    model_ws_free_d(&wd);
    free(pf);
    free(gf);
    free(pd);
    free(gd);
    free(hist);
    free(pos);
    free(length);
    free(cand);
}

int main(void) {
    model_config_t c = {.stage = STAGE_PRETRAIN, .n_items = 500, .emb_size = 64, .attn_size = 8,
                        .K = 64, .history_max = 512, .add_pos = 1, .add_trm = 1, .n_layers = 1,
                        .temp = 1, .dropout = 0.5};
    run("pretrain K 64, history 512, emb 64", c, 3, 512, 4);
    c.stage = STAGE_FINETUNE;
    c.n_layers = 4;
    c.temp = 0.3;
    run("finetune K 64, history 512, emb 64, n_layers 4", c, 3, 512, 4);
    c.emb_size = 256;
    c.attn_size = 32;
    c.K = 16;
    c.history_max = 200;
    run("finetune K 16, history 200, emb 256, attn 32", c, 4, 200, 3);
    c.add_trm = 0;
    c.add_pos = 0;
    c.K = 1;
    c.emb_size = 4;
    c.attn_size = 1;
    c.n_layers = 1;
    run("finetune K 1, emb 4, attn 1, no transformer/positions", c, 5, 512, 101);
    return tu_finish("test_model_shapes");
}
