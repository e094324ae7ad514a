/* The full training loss of both stages against central finite differences in double
 * precision: every tensor of the parameter table, random weights, random batches with
 * history lengths from 1 to L, several configurations (K 1..5, add_pos/add_trm both ways,
 * n_layers 1..3 with dropout). In finetune the distillation target is held at its value for
 * the unperturbed weights, as the reference detaches it. */
#include "test_util.h"
#include "gradcheck.h"
#include "timirec/cpu_ops.h"
#include "timirec/model.h"
#include "timirec/rng.h"

#include <stdlib.h>

typedef struct {
    const model_layout_t *lay;
    model_batch_t batch;
    dropout_key_t key;
    model_ws_t_d *ws;
} ctx_t;

static double loss_fn(void *p, const double *params) {
    ctx_t *c = p;
    return model_train_step_d(c->lay, params, &c->batch, c->key, c->ws, NULL);
}

static double rnd(uint32_t salt, uint64_t i) {
    return rng_uniform01(rng_u32(99, RNG_TEST, salt, i, 0)) * 2.0 - 1.0;
}

static int check_config(const char *label, model_config_t cfg, int B, int L, int C, uint32_t salt,
                        int max_samples) {
    char err[256];
    if (model_config_check(&cfg, err, sizeof err)) {
        CHECK(0, "%s: %s", label, err);
        return 1;
    }
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    printf("%s (%lld parameters)\n", label, (long long)lay.total);
    double *params = malloc((size_t)lay.total * sizeof *params);
    double *grads = calloc((size_t)lay.total, sizeof *grads);
    for (int t = 0; t < lay.n_tensors; t++) {
        const param_t *pt = &lay.t[t];
        for (int64_t i = 0; i < pt->size; i++) {
            double r = rnd(salt + (uint32_t)t, (uint64_t)i);
            params[pt->offset + i] = pt->init == INIT_ONES ? 1.0 + 0.2 * r : 0.5 * r;
        }
    }
    int32_t *hist = calloc((size_t)B * L, sizeof *hist), *pos = calloc((size_t)B * L, sizeof *pos);
    int32_t *length = malloc((size_t)B * sizeof *length), *cand = malloc((size_t)B * C * sizeof *cand);
    for (int b = 0; b < B; b++) {
        length[b] = b == 0 ? 1 : b == B - 1 ? L : 1 + (int)(rng_u32(7, RNG_TEST, salt, (uint64_t)b, 0) % (uint32_t)L);
        for (int l = 0; l < length[b]; l++) {
            hist[b * L + l] = 1 + (int)(rng_u32(7, RNG_TEST, salt, (uint64_t)(b * 100 + l), 1) % (uint32_t)(cfg.n_items - 1));
            pos[b * L + l] = length[b] - l;
        }
        for (int c = 0; c < C; c++)
            cand[b * C + c] = 1 + (int)(rng_u32(7, RNG_TEST, salt, (uint64_t)(b * 100 + c), 2) % (uint32_t)(cfg.n_items - 1));
    }
    model_ws_t_d ws;
    model_ws_alloc_d(&ws, &lay, B, L, C);
    ctx_t ctx = {&lay, {B, L, C, hist, pos, length, cand, 0, 0}, {77, 5}, &ws};
    double loss = model_train_step_d(&lay, params, &ctx.batch, ctx.key, &ws, grads);
    CHECK(isfinite(loss), "%s: loss %g", label, loss);
    ws.freeze_target = 1; /* the target intents stay those of the unperturbed weights */
    gc_opts_t o = gc_default_opts();
    o.max_samples = max_samples;
    int bad = 0;
    for (int t = 0; t < lay.n_tensors; t++)
        bad += gc_check(lay.t[t].name, loss_fn, &ctx, params, lay.t[t].offset, lay.t[t].size,
                        grads, &o);
    CHECK(bad == 0, "%s: %d gradient elements disagree with finite differences", label, bad);
    /* The float model computes the same loss. */
    float *pf = malloc((size_t)lay.total * sizeof *pf);
    for (int64_t i = 0; i < lay.total; i++) pf[i] = (float)params[i];
    model_ws_t_f wsf;
    model_ws_alloc_f(&wsf, &lay, B, L, C);
    float lf = model_train_step_f(&lay, pf, &ctx.batch, ctx.key, &wsf, NULL);
    CHECK(tu_close(lf, loss, 1e-5 * (1 + fabs(loss))), "%s: float loss %.8g vs double %.8g", label,
          lf, loss);
    model_ws_free_f(&wsf);
    free(pf);
    model_ws_free_d(&ws);
    free(params);
    free(grads);
    free(hist);
    free(pos);
    free(length);
    free(cand);
    return bad;
}

int main(void) {
    model_config_t base = {.stage = STAGE_PRETRAIN, .n_items = 13, .emb_size = 8, .attn_size = 4,
                           .K = 3, .history_max = 5, .add_pos = 1, .add_trm = 1, .n_layers = 1,
                           .temp = 1.0, .dropout = 0.5};
    model_config_t c = base;
    check_config("pretrain, K 3, positions + transformer", c, 4, 5, 3, 1, 0);
    c.add_trm = 0;
    check_config("pretrain, K 3, positions only", c, 4, 5, 3, 2, 0);
    c.add_pos = 0;
    c.K = 1;
    check_config("pretrain, K 1, bare extractor", c, 3, 4, 2, 3, 0);
    c = base;
    c.stage = STAGE_FINETUNE;
    c.temp = 0.5;
    c.n_layers = 2;
    check_config("finetune, K 3, n_layers 2 (dropout), temp 0.5", c, 4, 5, 3, 4, 0);
    c.n_layers = 1;
    c.add_pos = 0;
    c.K = 2;
    check_config("finetune, K 2, n_layers 1, no positions", c, 3, 5, 2, 5, 0);
    c = base;
    c.stage = STAGE_FINETUNE;
    c.n_layers = 3;
    c.K = 5;
    c.emb_size = 12;
    c.history_max = 7;
    check_config("finetune, K 5, d 12, n_layers 3 (sampled elements)", c, 5, 7, 4, 6, 40);
    return tu_finish("test_grad_model");
}
