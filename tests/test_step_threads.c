/* The products as the model calls them (large ones split between threads, the attention's
 * per-batch-row ones inside a parallel loop, the GRU's slots owned by threads) together with the
 * layer loops around them: one training step + Adam of each stage must give the same bits with
 * 1 thread as with 2 and 3 (an uneven split). */
#include "test_util.h"
#include "timirec/cpu_ops.h"
#include "timirec/model.h"
#include "timirec/rng.h"

#include <omp.h>

/* One training step + Adam on a random batch large enough for every parallel path (B*L*d and
 * T*d above the loops' thresholds, the item table above Adam's); params and the loss. */
static void train_step(int stage, int threads, float *params_out, float *loss_out) {
    enum { B = 256, L = 20, C = 2 };
    model_config_t cfg = {.stage = stage, .n_items = 1200, .emb_size = 64, .attn_size = 8,
                          .K = 2, .history_max = L, .add_pos = 1, .add_trm = 1,
                          .n_layers = 2, .temp = 0.5, .dropout = 0.5};
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    float *grads = calloc((size_t)lay.total, sizeof *grads);
    float *m = calloc((size_t)lay.total, sizeof *m), *v = calloc((size_t)lay.total, sizeof *v);
    model_init_params(&lay, 5, params_out);
    int32_t *hist = calloc(B * L, sizeof *hist), *pos = calloc(B * L, sizeof *pos);
    int32_t *length = calloc(B, sizeof *length), *cand = calloc(B * C, sizeof *cand);
    for (int b = 0; b < B; b++) {
        length[b] = 1 + (int)(rng_u32(3, RNG_TEST, 0, (uint64_t)b, 0) % L);
        for (int l = 0; l < length[b]; l++) {
            hist[b * L + l] = 1 + (int)(rng_u32(3, RNG_TEST, 1, (uint64_t)(b * L + l), 0) % 1199);
            pos[b * L + l] = length[b] - l;
        }
        for (int c = 0; c < C; c++)
            cand[b * C + c] = 1 + (int)(rng_u32(3, RNG_TEST, 2, (uint64_t)(b * C + c), 0) % 1199);
    }
    model_batch_t batch = {B, L, C, hist, pos, length, cand, 0, 0};
    model_ws_t_f ws;
    model_ws_alloc_f(&ws, &lay, B, L, C);
    adam_t opt;
    adam_init(&opt, 1e-3, 1e-6);
    omp_set_num_threads(threads);
    dropout_key_t key = {7, 0};
    *loss_out = model_train_step_f(&lay, params_out, &batch, key, &ws, grads);
    adam_step(&opt, &lay, params_out, grads, m, v);
    model_ws_free_f(&ws);
    free(grads);
    free(m);
    free(v);
    free(hist);
    free(pos);
    free(length);
    free(cand);
}

int main(void) {
    const int threads = omp_get_max_threads();
    for (int stage = STAGE_PRETRAIN; stage <= STAGE_FINETUNE; stage++) {
        const char *stage_name = stage == STAGE_PRETRAIN ? "pretrain" : "finetune";
        model_config_t cfg = {.stage = stage, .n_items = 1200, .emb_size = 64, .attn_size = 8,
                              .K = 2, .history_max = 20, .add_pos = 1, .add_trm = 1,
                              .n_layers = 2, .temp = 0.5, .dropout = 0.5};
        model_layout_t lay;
        model_layout_build(&cfg, &lay);
        float *p1 = malloc((size_t)lay.total * sizeof *p1), *p2 = malloc((size_t)lay.total * sizeof *p2);
        float loss1, loss2;
        train_step(stage, 1, p1, &loss1);
        for (int n = 2; n <= 3; n++) {
            train_step(stage, n, p2, &loss2);
            int differ = 0;
            for (int t = 0; t < lay.n_tensors; t++)
                differ += memcmp(p1 + lay.t[t].offset, p2 + lay.t[t].offset,
                                 (size_t)lay.t[t].size * sizeof *p1) != 0;
            CHECK(differ == 0, "%s step: %d tensors differ between 1 and %d threads", stage_name,
                  differ, n);
            CHECK(memcmp(&loss1, &loss2, sizeof loss1) == 0, "loss %.9g vs %.9g", loss1, loss2);
            printf("%s step + Adam, 1 vs %d threads: %s\n", stage_name, n,
                   differ ? "DIFFER" : "same bits");
        }
        free(p1);
        free(p2);
    }
    omp_set_num_threads(threads);
    return tu_finish("test_step_threads");
}
