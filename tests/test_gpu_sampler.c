/* The device sampler (gpu_data.h) against the CPU's (sampler.h), bit for bit, on random
 * synthetic corpora: a roomy one, one with few items (most draws are rejected, many users
 * click most items) and one with long histories cut at history_max or kept whole (0):
 * - the epoch's negatives (num_neg 1 and 3, two epochs) equal sampler_train_negatives';
 * - the epoch's order equals sampler_shuffle's;
 * - every training batch (a batch size that leaves a short last batch) assembled on the device
 *   equals batch_fill's from the CPU's order and negatives, field by field (B, L, C, user,
 *   length, hist, pos, mask, cand); so does every dev and test batch;
 * - a user with every item in train is refused with the CPU's message.
 * SKIP without CUDA or a GPU (test_emu_sampler: the emulated kernels). */
#include "test_util.h"

#ifndef TIMIREC_CUDA
int main(void) {
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
}
#else
#include "data_util.h"
#include "gpu_test_util.h"
#include "timirec/gpu_data.h"
#include "timirec/prepare.h"

static int same_i32(const char *what, const int32_t *a, const int32_t *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (a[i] != b[i]) {
            CHECK(0, "%s: element %lld: device %d, CPU %d", what, (long long)i, (int)a[i], (int)b[i]);
            return 0;
        }
    return 1;
}

static int same_batch(const char *what, const batch_t *g, const batch_t *c) {
    CHECK(g->B == c->B && g->L == c->L && g->C == c->C, "%s: shape %d x %d x %d vs %d x %d x %d",
          what, g->B, g->L, g->C, c->B, c->L, c->C);
    if (g->B != c->B || g->L != c->L || g->C != c->C) return 0;
    const int64_t bl = (int64_t)c->B * c->L;
    int ok = same_i32("user", g->user, c->user, c->B) &&
             same_i32("length", g->length, c->length, c->B) &&
             same_i32("hist", g->hist, c->hist, bl) && same_i32("pos", g->pos, c->pos, bl) &&
             same_i32("cand", g->cand, c->cand, (int64_t)c->B * c->C);
    CHECK(memcmp(g->mask, c->mask, (size_t)bl * sizeof(float)) == 0, "%s: mask differs", what);
    if (!ok) printf("  (in %s)\n", what);
    return ok;
}

static void check_corpus(const char *name, const corpus_t *c, int history_max, int num_neg,
                         int batch_size) {
    char err[512];
    printf("%s: %d users, %d items, %lld train / %lld dev instances, history_max %d, num_neg %d, "
           "largest clicked set %d\n", name, c->n_users, c->n_items,
           (long long)c->phase[PHASE_TRAIN].n_inst, (long long)c->phase[PHASE_DEV].n_inst,
           history_max, num_neg, c->max_train_clicked);
    const int64_t n = c->phase[PHASE_TRAIN].n_inst;
    gpu_data_t *d = gpu_data_create(c, history_max, num_neg);
    int32_t *neg_cpu = malloc((size_t)(n * num_neg + 1) * sizeof(int32_t));
    int32_t *neg_gpu = malloc((size_t)(n * num_neg + 1) * sizeof(int32_t));
    int64_t *ord_cpu = malloc((size_t)(n + 1) * sizeof(int64_t));
    int64_t *ord_gpu = malloc((size_t)(n + 1) * sizeof(int64_t));
    int max_L = sampler_max_history(c, history_max);
    int max_C = 1 + num_neg;
    for (int p = PHASE_DEV; p <= PHASE_TEST; p++)
        if (1 + c->phase[p].n_neg > max_C) max_C = 1 + c->phase[p].n_neg;
    batch_t bc, bg;
    batch_alloc(&bc, batch_size, max_L, max_C);
    batch_alloc(&bg, batch_size, max_L, max_C);
    for (uint32_t epoch = 0; epoch < 2; epoch++) {
        const uint64_t seed = 11 + epoch;
        CHECK(sampler_train_negatives(c, seed, epoch, num_neg, neg_cpu, err, sizeof err) == 0,
              "%s", err);
        CHECK(gpu_data_train_negatives(d, seed, epoch, err, sizeof err) == 0, "%s", err);
        gpu_data_read_negatives(d, neg_gpu);
        int64_t rejected = 0; /* draws that hit a clicked item somewhere: the test's reach */
        for (int64_t i = 0; i < n; i++) {
            const int32_t u = c->phase[PHASE_TRAIN].user[c->phase[PHASE_TRAIN].inst_row[i]];
            rejected += c->train_off[u + 1] - c->train_off[u] > c->n_items / 2;
        }
        CHECK(same_i32("negatives", neg_gpu, neg_cpu, n * num_neg), "%s epoch %u", name, epoch);
        sampler_shuffle(n, seed, epoch, ord_cpu);
        gpu_data_shuffle(d, seed, epoch);
        gpu_data_read_order(d, ord_gpu);
        int order_ok = 1;
        for (int64_t i = 0; i < n; i++) order_ok &= ord_gpu[i] == ord_cpu[i];
        CHECK(order_ok, "%s epoch %u: the device's shuffle differs from the CPU's", name, epoch);
        int64_t batches = 0, ok = 0;
        for (int64_t s = 0; s < n; s += batch_size) {
            const int B = (int)(n - s < batch_size ? n - s : batch_size);
            batch_fill(&bc, c, PHASE_TRAIN, ord_cpu + s, B, history_max, neg_cpu, num_neg, 0);
            gpu_data_fill_batch(d, PHASE_TRAIN, s, B, &bg);
            batches++;
            ok += same_batch("train batch", &bg, &bc);
        }
        CHECK(ok == batches, "%s epoch %u: %lld of %lld training batches differ", name, epoch,
              (long long)(batches - ok), (long long)batches);
        printf("  epoch %u: %lld negatives (%lld instances of users clicking over half the items), "
               "order, %lld training batches: identical\n", epoch, (long long)(n * num_neg),
               (long long)rejected, (long long)batches);
    }
    for (int p = PHASE_DEV; p <= PHASE_TEST; p++) {
        const int64_t ne = c->phase[p].n_inst;
        int64_t *idx = malloc((size_t)(ne + 1) * sizeof(int64_t));
        for (int64_t i = 0; i < ne; i++) idx[i] = i;
        int64_t batches = 0, ok = 0;
        for (int64_t s = 0; s < ne; s += batch_size) {
            const int B = (int)(ne - s < batch_size ? ne - s : batch_size);
            batch_fill(&bc, c, p, idx + s, B, history_max, NULL, 0, 0);
            gpu_data_fill_batch(d, p, s, B, &bg);
            batches++;
            ok += same_batch(corpus_phase_names[p], &bg, &bc);
        }
        CHECK(ok == batches, "%s %s: %lld of %lld batches differ", name, corpus_phase_names[p],
              (long long)(batches - ok), (long long)batches);
        printf("  %s: %lld batches identical\n", corpus_phase_names[p], (long long)batches);
        free(idx);
    }
    batch_free(&bc);
    batch_free(&bg);
    free(neg_cpu);
    free(neg_gpu);
    free(ord_cpu);
    free(ord_gpu);
    gpu_data_free(d);
}

int main(void) {
    gpu_ctx_t *probe = gt_start("test_gpu_sampler");
    gpu_ctx_free(probe);
    const int emu = gpu_is_emulated() && !getenv("TMR_EMU_FULL");
    const char *dir = du_tempdir("gpu_sampler");
    corpus_t c;
    du_synth_corpus(dir, "roomy", emu ? 200 : 2000, emu ? 300 : 3000, 12, 7, 3, &c);
    check_corpus("roomy", &c, 20, 1, 64);
    check_corpus("roomy, 3 negatives, history_max 5", &c, 5, 3, 50);
    corpus_free(&c);
    du_synth_corpus(dir, "crowded", emu ? 60 : 400, 14, 9, 7, 4, &c);
    check_corpus("crowded (14 items)", &c, 20, 2, 37);
    corpus_free(&c);
    du_synth_corpus(dir, "long", emu ? 40 : 300, emu ? 200 : 2000, emu ? 60 : 150, 7, 5, &c);
    check_corpus("long histories, whole (history_max 0)", &c, 0, 1, 33);
    check_corpus("long histories, history_max 16", &c, 16, 1, 33);
    corpus_free(&c);

    /* A user who clicked every item: refused on both sides, with the same message. */
    char full[512];
    snprintf(full, sizeof full, "%s/full", dir);
    mkdir(full, 0777);
    du_write(dir, "full/train.csv", "user_id\titem_id\ttime\n1\t1\t1\n1\t2\t2\n1\t3\t3\n2\t1\t4\n2\t2\t5\n");
    du_write(dir, "full/dev.csv", "user_id\titem_id\ttime\tneg_items\n1\t1\t6\t[2]\n");
    du_write(dir, "full/test.csv", "user_id\titem_id\ttime\tneg_items\n1\t2\t7\t[3]\n");
    char err[512], err_cpu[512], err_gpu[512];
    corpus_opts_t co = {.path = dir, .dataset = "full", .sep = '\t'};
    CHECK(corpus_load(&co, &c, err, sizeof err) == 0, "%s", err);
    int32_t neg[16];
    gpu_data_t *d = gpu_data_create(&c, 20, 1);
    const int rc_cpu = sampler_train_negatives(&c, 1, 0, 1, neg, err_cpu, sizeof err_cpu);
    const int rc_gpu = gpu_data_train_negatives(d, 1, 0, err_gpu, sizeof err_gpu);
    printf("every item clicked: CPU \"%s\", device \"%s\"\n", rc_cpu ? err_cpu : "", rc_gpu ? err_gpu : "");
    CHECK(rc_cpu == -1 && rc_gpu == -1 && strcmp(err_cpu, err_gpu) == 0,
          "a user with every item: CPU %d \"%s\", device %d \"%s\"", rc_cpu, err_cpu, rc_gpu, err_gpu);
    gpu_data_free(d);
    corpus_free(&c);
    du_rm_rf(dir);
    return gt_finish("test_gpu_sampler");
}
#endif
