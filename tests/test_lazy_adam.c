/* LazyAdam (model.h adam_step_lazy) against dense Adam (adam_step) and against its own rule,
 * on random parameters, gradients and batches:
 *   1. every row of the item tables touched at every step: the same bits as adam_step;
 *   2. rows a batch does not touch: parameters, both moments and the step count unchanged,
 *      bit for bit, whatever their gradient holds; the other tensors get adam_step's update;
 *   3. a row touched at steps 1 and 3 (not 2): the bias corrections of its own counts 1 and 2,
 *      computed here from the formula of model.h, not of the global step 3;
 *   4. the CPU trainer zeroes only the dense tensors' gradients and the rows the last step
 *      wrote (src/backend_cpu.c): after an epoch, every other row's gradient is zero. */
#include "test_util.h"
#include "tiny_corpus.h"
#include "timirec/math_hd.h"
#include "timirec/model.h"
#include "timirec/trainer.h"

#include <stdint.h>
#include <string.h>

static uint64_t rs = 0x9e3779b97f4a7c15ULL;
static uint64_t next_u64(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}
static float rnd(void) { return (float)((double)(next_u64() >> 11) / 9007199254740992.0) - 0.5f; }

typedef struct {
    model_layout_t lay;
    float *p, *g, *m, *v; /* (lay.total) each */
    int64_t *rows;        /* (adam_lazy_rows) */
} state_t;

static void state_init(state_t *s, int stage, int n_items, uint64_t seed) {
    model_config_t cfg = {.stage = stage, .n_items = n_items, .emb_size = 8, .attn_size = 4,
                          .K = 2, .history_max = 5, .add_pos = 1, .add_trm = 1,
                          .n_layers = 2, .temp = 1, .dropout = 0.5};
    model_layout_build(&cfg, &s->lay);
    const size_t n = (size_t)s->lay.total;
    s->p = calloc(n, sizeof(float));
    s->g = calloc(n, sizeof(float));
    s->m = calloc(n, sizeof(float));
    s->v = calloc(n, sizeof(float));
    s->rows = calloc((size_t)adam_lazy_rows(&s->lay), sizeof(int64_t));
    model_init_params(&s->lay, seed, s->p);
}

static void state_copy(state_t *dst, const state_t *src) {
    const size_t n = (size_t)src->lay.total;
    memcpy(dst->p, src->p, n * sizeof(float));
    memcpy(dst->g, src->g, n * sizeof(float));
    memcpy(dst->m, src->m, n * sizeof(float));
    memcpy(dst->v, src->v, n * sizeof(float));
    memcpy(dst->rows, src->rows, (size_t)adam_lazy_rows(&src->lay) * sizeof(int64_t));
}

static void state_free(state_t *s) {
    free(s->p), free(s->g), free(s->m), free(s->v), free(s->rows);
}

static int same_bits(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* A batch (B x L, C candidates) of random ids in 0..n_items-1, random lengths 1..L, right
 * padded with 0; when cover, ids 0..n_items-1 all appear among the candidates and the first
 * positions of the histories (so every row of both tables is touched). */
typedef struct {
    int B, L, C;
    int32_t hist[64 * 8], pos[64 * 8], len[64], cand[64 * 4];
} batch_t_;

static model_batch_t make_batch(batch_t_ *b, int B, int L, int C, int n_items, int cover) {
    b->B = B, b->L = L, b->C = C;
    for (int i = 0; i < B; i++) {
        b->len[i] = cover ? L : 1 + (int)(next_u64() % (uint64_t)L);
        for (int l = 0; l < L; l++) {
            const int id = cover ? (i * L + l) % n_items : 1 + (int)(next_u64() % (uint64_t)(n_items - 1));
            b->hist[i * L + l] = l < b->len[i] ? id : 0;
            b->pos[i * L + l] = l < b->len[i] ? b->len[i] - l : 0;
        }
        for (int c = 0; c < C; c++)
            b->cand[i * C + c] = cover ? (i * C + c) % n_items : 1 + (int)(next_u64() % (uint64_t)(n_items - 1));
    }
    model_batch_t mb = {B, L, C, b->hist, b->pos, b->len, b->cand, 0, 0};
    return mb;
}

static void random_grads(state_t *s) {
    for (int64_t i = 0; i < s->lay.total; i++) s->g[i] = rnd();
}

/* 1: every row touched at every step, five steps with l2 > 0: bits of adam_step. In finetune
 * the predictor's table has a row N that no batch can touch (ids < N): its gradient is zero
 * and l2 0 there, where dense Adam leaves it exactly as it is too. */
static void test_all_touched(int stage, double l2) {
    const int N = 10;
    state_t a, z;
    state_init(&a, stage, N, 5);
    state_init(&z, stage, N, 5);
    adam_t oa, oz;
    adam_init(&oa, 1e-2, l2);
    adam_init(&oz, 1e-2, l2);
    batch_t_ bb;
    for (int step = 0; step < 5; step++) {
        random_grads(&a);
        if (stage == STAGE_FINETUNE) {
            const param_t *e2 = &a.lay.t[a.lay.id[P_PRED_ITEM_EMB]];
            memset(a.g + e2->offset + (e2->rows - 1) * e2->cols, 0, (size_t)e2->cols * sizeof(float));
        }
        memcpy(z.g, a.g, (size_t)a.lay.total * sizeof(float));
        model_batch_t mb = make_batch(&bb, 4, 5, 3, N, 1);
        adam_step(&oa, &a.lay, a.p, a.g, a.m, a.v);
        adam_step_lazy(&oz, &z.lay, &mb, z.p, z.g, z.m, z.v, z.rows);
    }
    CHECK(same_bits(a.p, z.p, a.lay.total) && same_bits(a.m, z.m, a.lay.total) &&
              same_bits(a.v, z.v, a.lay.total),
          "stage %d: every row touched, yet LazyAdam differs from Adam", stage);
    const int64_t n_rows = adam_lazy_rows(&z.lay);
    int64_t counted = 0;
    for (int64_t r = 0; r < n_rows; r++) counted += z.rows[r] == 5;
    CHECK(counted == n_rows - (stage == STAGE_FINETUNE), "stage %d: %lld of %lld rows counted 5 steps",
          stage, (long long)counted, (long long)n_rows);
    CHECK(oz.step == 5 && oa.step == 5, "global steps %lld, %lld", (long long)oz.step, (long long)oa.step);
    state_free(&a);
    state_free(&z);
}

/* Whether row r of a lazy table (k: 0 extractor, 1 predictor) is touched by mb. */
static int touched(const model_batch_t *mb, int k, int32_t r) {
    for (int b = 0; b < mb->B; b++)
        for (int l = 0; l < mb->L; l++)
            if (mb->hist[b * mb->L + l] == r && (k == 0 || l < mb->length[b])) return 1;
    for (int i = 0; k == 0 && i < mb->B * mb->C; i++)
        if (mb->cand[i] == r) return 1;
    return 0;
}

/* 2: a large table, a few rows per batch, random gradients everywhere (untouched rows
 * included: LazyAdam must not read them). */
static void test_untouched(int stage) {
    const int N = 200;
    state_t z, before, d;
    state_init(&z, stage, N, 9);
    state_init(&before, stage, N, 9);
    state_init(&d, stage, N, 9);
    adam_t oz, od;
    adam_init(&oz, 1e-3, 1e-2);
    batch_t_ bb;
    int lazy[2];
    const int n_lazy = adam_lazy_tensors(&z.lay, lazy);
    int64_t n_untouched = 0, n_touched = 0;
    for (int step = 0; step < 4; step++) {
        random_grads(&z);
        state_copy(&before, &z);
        state_copy(&d, &z);
        od = oz;
        model_batch_t mb = make_batch(&bb, 3, 4, 2, N, 0);
        adam_step_lazy(&oz, &z.lay, &mb, z.p, z.g, z.m, z.v, z.rows);
        adam_step(&od, &d.lay, d.p, d.g, d.m, d.v); /* the dense tensors' reference */
        int64_t base = 0;
        for (int k = 0; k < n_lazy; k++) {
            const param_t *t = &z.lay.t[lazy[k]];
            for (int32_t r = 0; r < t->rows; r++) {
                const int64_t off = t->offset + r * t->cols;
                const int hit = touched(&mb, k, r);
                const int same = same_bits(z.p + off, before.p + off, t->cols) &&
                                 same_bits(z.m + off, before.m + off, t->cols) &&
                                 same_bits(z.v + off, before.v + off, t->cols);
                const int64_t count = z.rows[base + r], was = before.rows[base + r];
                if (hit) {
                    n_touched++;
                    CHECK(!same && count == was + 1, "%s row %d touched but not updated "
                          "(count %lld, was %lld)", t->name, r, (long long)count, (long long)was);
                } else {
                    n_untouched++;
                    CHECK(same && count == was, "%s row %d untouched but changed", t->name, r);
                }
            }
            base += t->rows;
        }
        for (int t = 0; t < z.lay.n_tensors; t++) {
            if (t == lazy[0] || (n_lazy > 1 && t == lazy[1])) continue;
            const param_t *q = &z.lay.t[t];
            CHECK(same_bits(z.p + q->offset, d.p + q->offset, q->size) &&
                      same_bits(z.m + q->offset, d.m + q->offset, q->size) &&
                      same_bits(z.v + q->offset, d.v + q->offset, q->size),
                  "dense tensor %s: not adam_step's update", q->name);
        }
    }
    CHECK(n_touched > 10 && n_untouched > 100, "touched %lld, untouched %lld", (long long)n_touched,
          (long long)n_untouched);
    state_free(&z);
    state_free(&before);
    state_free(&d);
}

/* One element by the formula of model.h at the row's own count t. */
static float expect_elem(double lr, double l2, int64_t t, float g, float x, float *m, float *v) {
    const double bc1 = 1.0 - pow(0.9, (double)t), bc2 = 1.0 - pow(0.999, (double)t);
    const float gg = g + (float)l2 * x;
    *m = *m * 0.9f + (float)(1.0 - 0.9) * gg;
    *v = *v * 0.999f + (float)(1.0 - 0.999) * gg * gg;
    const float denom = sqrtf(*v) / (float)sqrt(bc2) + 1e-8f;
    return x + -(float)(lr / bc1) * *m / denom;
}

/* 3: extractor row 7 in the batches of steps 1 and 3, not 2. */
static void test_own_count(void) {
    const int N = 40, R = 7;
    const double lr = 1e-2, l2 = 1e-3;
    state_t z;
    state_init(&z, STAGE_PRETRAIN, N, 3);
    const param_t *e = &z.lay.t[z.lay.id[P_EXT_ITEM_EMB]];
    const int d = (int)e->cols;
    float x[8], m[8] = {0}, v[8] = {0}, g1[8], g3[8];
    memcpy(x, z.p + e->offset + R * d, sizeof x);
    adam_t o;
    adam_init(&o, lr, l2);
    int32_t hist[2][3] = {{R, 3, 0}, {4, 5, 0}}, pos[2][3] = {{2, 1, 0}, {2, 1, 0}};
    int32_t len[2] = {2, 2}, cand[2][2] = {{R, 11}, {12, 13}}, hist2[2][3] = {{1, 2, 0}, {4, 5, 0}};
    int32_t cand2[2][2] = {{8, 9}, {12, 13}};
    model_batch_t with = {2, 3, 2, &hist[0][0], &pos[0][0], len, &cand[0][0], 0, 0};
    model_batch_t without = {2, 3, 2, &hist2[0][0], &pos[0][0], len, &cand2[0][0], 0, 0};
    for (int step = 1; step <= 3; step++) {
        random_grads(&z);
        if (step == 1) memcpy(g1, z.g + e->offset + R * d, sizeof g1);
        if (step == 3) memcpy(g3, z.g + e->offset + R * d, sizeof g3);
        adam_step_lazy(&o, &z.lay, step == 2 ? &without : &with, z.p, z.g, z.m, z.v, z.rows);
    }
    float xg[8], mg[8] = {0}, vg[8] = {0}; /* what the global count (1, then 3) would give */
    memcpy(xg, x, sizeof xg);
    for (int j = 0; j < d; j++) {
        x[j] = expect_elem(lr, l2, 1, g1[j], x[j], &m[j], &v[j]);
        x[j] = expect_elem(lr, l2, 2, g3[j], x[j], &m[j], &v[j]);
        xg[j] = expect_elem(lr, l2, 1, g1[j], xg[j], &mg[j], &vg[j]);
        xg[j] = expect_elem(lr, l2, 3, g3[j], xg[j], &mg[j], &vg[j]);
    }
    const float *got = z.p + e->offset + R * d;
    CHECK(z.rows[R] == 2 && o.step == 3, "row count %lld, global step %lld", (long long)z.rows[R],
          (long long)o.step);
    CHECK(same_bits(got, x, d) && same_bits(z.m + e->offset + R * d, m, d) &&
              same_bits(z.v + e->offset + R * d, v, d),
          "row %d: not the update with its own counts 1 and 2 (got %.9g, want %.9g)", R, got[0], x[0]);
    CHECK(!same_bits(x, xg, d), "the row's own count and the global one give the same update: "
          "the test cannot tell them apart");
    state_free(&z);
}

static void test_trainer_zeroing(int stage) {
    const char *dir = du_tempdir("lazy_adam");
    corpus_t c;
    tc_make_corpus(dir, 40, 60, 10, 6, 3, &c);
    model_config_t cfg = {.stage = stage, .emb_size = 8, .attn_size = 4, .K = 2, .add_pos = 1,
                          .add_trm = 1, .n_layers = 2, .temp = 1, .dropout = 0.5};
    train_opts_t o;
    train_opts_default(&o);
    o.batch_size = 16;
    o.history_max = 6;
    o.lazy_adam = 1;
    trainer_t t;
    char err[512];
    CHECK(trainer_init(&t, &c, &cfg, &o, err, sizeof err) == 0, "%s", err);
    int64_t samples = 0;
    CHECK(trainer_epoch(&t, &c, 0, &samples, err, sizeof err) >= 0, "%s", err);
    int lazy[2];
    const int n_lazy = adam_lazy_tensors(&t.lay, lazy);
    char *last = calloc((size_t)adam_lazy_rows(&t.lay), 1);
    for (int64_t i = 0; i < t.n_lazy_rows; i++) last[t.lazy_rows[i]] = 1;
    int64_t base = 0, stale = 0, written = 0;
    for (int k = 0; k < n_lazy; k++) {
        const param_t *p = &t.lay.t[lazy[k]];
        for (int64_t r = 0; r < p->rows; r++) {
            int nonzero = 0;
            for (int64_t j = 0; j < p->cols; j++) nonzero |= t.grads[p->offset + r * p->cols + j] != 0;
            if (last[base + r]) written += nonzero;
            else stale += nonzero;
        }
        base += p->rows;
    }
    CHECK(stale == 0 && written > 0, "stage %d: %lld rows outside the last step's hold a gradient "
          "(%lld inside)", stage, (long long)stale, (long long)written);
    free(last);
    trainer_free(&t);
    corpus_free(&c);
    du_rm_rf(dir);
}

int main(void) {
    test_all_touched(STAGE_PRETRAIN, 0.05);
    test_all_touched(STAGE_FINETUNE, 0.0);
    test_untouched(STAGE_PRETRAIN);
    test_untouched(STAGE_FINETUNE);
    test_own_count();
    test_trainer_zeroing(STAGE_PRETRAIN);
    test_trainer_zeroing(STAGE_FINETUNE);
    return tu_finish("test_lazy_adam");
}
