/* Finiteness checks (numcheck.h) and the trainer's reaction to a non-finite value:
 *  - the scan finds the first NaN / +Inf / -Inf at any position (block edges, the parallel
 *    path), never a finite value (FLT_MAX, denormals, -0);
 *  - a parameter is named by its reference name and [row, col];
 *  - the workspace walk reads only what a step writes: every array it reads is poisoned with
 *    NaN first, a healthy step on a smaller batch then leaves none (both stages, with and
 *    without the transformer, one and three projection layers);
 *  - a NaN in W1 shows first in extractor.t, one in an item embedding row in extractor.x0;
 *  - trainer_train_epoch stops at the step with a NaN parameter, names epoch, batch, step and
 *    tensor, and leaves the other parameters and both Adam moments as they were. */
#include "test_util.h"
#include "tiny_corpus.h"
#include "timirec/numcheck.h"
#include "timirec/trainer.h"

#include <float.h>
#include <math.h>

static uint64_t rs = 12345;
static float rnd(void) { return (float)((double)(tc_next(&rs) >> 11) / 9007199254740992.0) - 0.5f; }

static void test_scan(void) {
    const int64_t sizes[] = {1, 7, 4095, 4096, 4097, 100000, 300001};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int64_t n = sizes[si];
        float *x = malloc((size_t)n * sizeof *x);
        for (int64_t i = 0; i < n; i++) x[i] = rnd();
        x[0] = -0.0f;
        if (n > 3) x[1] = FLT_MAX, x[2] = -FLT_MAX, x[3] = 1e-42f; /* denormal */
        CHECK(numcheck_first_nonfinite(x, n) == -1, "n %lld: finite data reported bad",
              (long long)n);
        const float bad[3] = {NAN, INFINITY, -INFINITY};
        int64_t at[] = {0, n - 1, n / 2, 4095, 4096};
        for (int b = 0; b < 3; b++)
            for (size_t k = 0; k < sizeof at / sizeof *at; k++) {
                if (at[k] >= n) continue;
                float keep = x[at[k]];
                x[at[k]] = bad[b];
                int64_t got = numcheck_first_nonfinite(x, n);
                CHECK(got == at[k], "n %lld: bad value %g at %lld found at %lld", (long long)n,
                      (double)bad[b], (long long)at[k], (long long)got);
                if (at[k] + 5 < n) { /* a second one later: the first is reported */
                    float keep2 = x[at[k] + 5];
                    x[at[k] + 5] = NAN;
                    CHECK(numcheck_first_nonfinite(x, n) == at[k], "first of two");
                    x[at[k] + 5] = keep2;
                }
                x[at[k]] = keep;
            }
        free(x);
    }
    CHECK(numcheck_first_nonfinite(NULL, 0) == -1, "empty");
}

static model_layout_t make_layout(int stage, int add_trm, int n_layers, int n_items) {
    model_config_t cfg = {.stage = stage, .n_items = n_items, .emb_size = 8, .attn_size = 4,
                          .K = 3, .history_max = 6, .add_pos = 1, .add_trm = add_trm,
                          .n_layers = n_layers, .temp = 0.7, .dropout = 0.5};
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    return lay;
}

static void test_tensors(void) {
    model_layout_t lay = make_layout(STAGE_FINETUNE, 1, 2, 30);
    float *p = malloc((size_t)lay.total * sizeof *p);
    for (int64_t i = 0; i < lay.total; i++) p[i] = rnd();
    char msg[256];
    CHECK(numcheck_tensors(&lay, p, msg, sizeof msg) == 0, "finite parameters reported");
    const param_t *w1 = &lay.t[lay.id[P_EXT_W1]];  /* [4, 8] */
    p[w1->offset + 2 * 8 + 5] = INFINITY;
    p[lay.t[lay.id[P_GRU_B_HH]].offset + 7] = NAN; /* later in the table */
    CHECK(numcheck_tensors(&lay, p, msg, sizeof msg) == 1 &&
              strcmp(msg, "interest_extractor.W1.weight[2, 5] = inf") == 0, "got \"%s\"", msg);
    p[w1->offset + 2 * 8 + 5] = 0;
    CHECK(numcheck_tensors(&lay, p, msg, sizeof msg) == 1 &&
              strcmp(msg, "interest_predictor.rnn.bias_hh_l0[7] = nan") == 0, "got \"%s\"", msg);
    free(p);
}

/* A random batch of B rows, lengths 1..L (at least one of length L), candidates in 1..N-1. */
static void make_batch(int B, int L, int C, int N, int32_t *hist, int32_t *pos, int32_t *len,
                       int32_t *cand) {
    for (int b = 0; b < B; b++) {
        len[b] = b == 0 ? L : 1 + (int)(tc_next(&rs) % (uint64_t)L);
        for (int l = 0; l < L; l++) {
            hist[b * L + l] = l < len[b] ? 1 + (int)(tc_next(&rs) % (uint64_t)(N - 1)) : 0;
            pos[b * L + l] = l < len[b] ? len[b] - l : 0;
        }
        for (int c = 0; c < C; c++) cand[b * C + c] = 1 + (int)(tc_next(&rs) % (uint64_t)(N - 1));
    }
}

static void test_workspace(int stage, int add_trm, int n_layers) {
    const int N = 30, max_B = 9, max_L = 6, max_C = 5, B = 5, L = 4, C = 3;
    model_layout_t lay = make_layout(stage, add_trm, n_layers, N);
    float *params = malloc((size_t)lay.total * sizeof *params);
    float *grads = calloc((size_t)lay.total, sizeof *grads);
    model_init_params(&lay, 7, params);
    model_ws_t_f ws;
    model_ws_alloc_f(&ws, &lay, max_B, max_L, max_C);
    /* Poison every array the walk can read, at the workspace's full capacity. */
    ws.ext.B = max_B;
    ws.ext.L = max_L;
    if (stage == STAGE_FINETUNE) ws.pred.T = (int64_t)max_B * max_L;
    numcheck_array_t arr[NUMCHECK_MAX_ARRAYS];
    int n = numcheck_workspace_arrays(&lay, &ws, max_C, arr, NUMCHECK_MAX_ARRAYS);
    CHECK(n >= (add_trm ? 16 : 6), "only %d arrays listed", n);
    for (int i = 0; i < n; i++)
        for (int64_t k = 0; k < arr[i].count; k++) arr[i].data[k] = NAN;
    char msg[512];
    CHECK(numcheck_workspace(&lay, &ws, max_C, msg, sizeof msg) == 1, "poison not seen");
    int32_t hist[max_B * max_L], pos[max_B * max_L], len[max_B], cand[max_B * max_C];
    make_batch(B, L, C, N, hist, pos, len, cand);
    model_batch_t mb = {B, L, C, hist, pos, len, cand, 0, 0};
    dropout_key_t key = {7, 3};
    float loss = model_train_step_f(&lay, params, &mb, key, &ws, grads);
    CHECK(isfinite(loss), "loss %g", (double)loss);
    int bad = numcheck_workspace(&lay, &ws, C, msg, sizeof msg);
    CHECK(!bad, "stage %d add_trm %d n_layers %d: healthy step reported: %s", stage, add_trm,
          n_layers, msg);
    CHECK(numcheck_tensors(&lay, grads, msg, sizeof msg) == 0, "gradient reported: %s", msg);
    /* A NaN in W1 shows first in t; one in the item row of hist[0][0] in x0 at [0, 0, 0]. */
    params[lay.t[lay.id[P_EXT_W1]].offset] = NAN;
    model_train_step_f(&lay, params, &mb, key, &ws, grads);
    bad = numcheck_workspace(&lay, &ws, C, msg, sizeof msg);
    CHECK(bad && strncmp(msg, "extractor.t = tanh(x W1^T + b1) (B, L, a)[0, 0, 0] = nan",
                         strlen("extractor.t")) == 0, "W1 NaN: got \"%s\"", bad ? msg : "");
    params[lay.t[lay.id[P_EXT_W1]].offset] = 0.01f;
    params[lay.t[lay.id[P_EXT_ITEM_EMB]].offset + (int64_t)hist[0] * 8 + 0] = NAN;
    model_train_step_f(&lay, params, &mb, key, &ws, grads);
    bad = numcheck_workspace(&lay, &ws, C, msg, sizeof msg);
    CHECK(bad && strcmp(msg, "extractor.x0 = E[hist] + P[pos] (B, L, d)[0, 0, 0] = nan") == 0,
          "E NaN: got \"%s\"", bad ? msg : "");
    model_ws_free_f(&ws);
    free(params);
    free(grads);
}

static void test_trainer_stops(const corpus_t *c) {
    model_config_t cfg = {.stage = STAGE_FINETUNE, .emb_size = 8, .attn_size = 4, .K = 2,
                          .add_pos = 1, .add_trm = 1, .n_layers = 2, .temp = 1, .dropout = 0.5};
    train_opts_t o;
    train_opts_default(&o);
    o.batch_size = 16;
    o.history_max = 6;
    char err[2048];
    trainer_t t;
    CHECK(trainer_init(&t, c, &cfg, &o, err, sizeof err) == 0, "%s", err);
    epoch_cursor_t cur = {0, 0, 0, 0};
    CHECK(trainer_train_epoch(&t, c, 0, &cur, err, sizeof err) == TRAIN_DONE, "%s", err);
    const int64_t n = t.lay.total;
    /* NaN into W2 just before step cur.n_batches + 2 (epoch 2, batch 3). */
    t.test_nan_tensor = t.lay.id[P_EXT_W2];
    t.test_nan_step = cur.n_batches + 2;
    float *before = malloc(3 * (size_t)n * sizeof *before);
    epoch_cursor_t cur2 = {0, 0, 0, 0};
    /* Run two batches (stop hook), snapshot, then go on into the fault. */
    t.test_stop_after = t.batches_run + 2;
    CHECK(trainer_train_epoch(&t, c, 1, &cur2, err, sizeof err) == TRAIN_INTERRUPTED, "%s", err);
    CHECK(cur2.batch == 2, "stopped after batch %lld", (long long)cur2.batch);
    memcpy(before, t.params, (size_t)n * sizeof *before);
    memcpy(before + n, t.adam_m, (size_t)n * sizeof *before);
    memcpy(before + 2 * n, t.adam_v, (size_t)n * sizeof *before);
    int64_t step = t.step, adam_step = t.adam.step;
    t.test_stop_after = 0;
    t.detect_anomaly = 1;
    int rc = trainer_train_epoch(&t, c, 1, &cur2, err, sizeof err);
    CHECK(rc == TRAIN_NONFINITE, "rc %d", rc);
    char want[256];
    snprintf(want, sizeof want, "non-finite value at epoch 2, batch 3 of %lld (step %lld): loss = nan",
             (long long)cur.n_batches, (long long)step);
    CHECK(strncmp(err, want, strlen(want)) == 0, "got \"%s\"\nwant \"%s...\"", err, want);
    CHECK(strstr(err, "first non-finite intermediate: extractor.e (interest scores) (B, L, K)") != NULL,
          "intermediate not named: %s", err);
    CHECK(strstr(err, "first non-finite parameter: interest_extractor.W2.weight[0, 0] = nan") != NULL,
          "parameter not named: %s", err);
    CHECK(t.step == step && t.adam.step == adam_step && cur2.batch == 2, "the step was counted");
    int same = 1;
    const int64_t w2 = t.lay.t[t.lay.id[P_EXT_W2]].offset;
    for (int64_t i = 0; i < n; i++) {
        if (i == w2) continue;
        same &= memcmp(&before[i], &t.params[i], sizeof(float)) == 0 &&
                memcmp(&before[n + i], &t.adam_m[i], sizeof(float)) == 0 &&
                memcmp(&before[2 * n + i], &t.adam_v[i], sizeof(float)) == 0;
    }
    CHECK(same, "a failed step changed the parameters or the moments");
    free(before);
    trainer_free(&t);
}

int main(void) {
    test_scan();
    test_tensors();
    for (int stage = 0; stage < 2; stage++)
        for (int trm = 0; trm < 2; trm++) {
            test_workspace(stage, trm, 1);
            if (stage == STAGE_FINETUNE) test_workspace(stage, trm, 3);
        }
    const char *dir = du_tempdir("numcheck");
    corpus_t c;
    tc_make_corpus(dir, 20, 25, 9, 5, 99, &c);
    test_trainer_stops(&c);
    corpus_free(&c);
    du_rm_rf(dir);
    return tu_finish("test_numcheck");
}
