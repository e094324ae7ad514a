/* Full-ranking evaluation (--test_all 1) on ../shared/data/ml-100k against a brute-force
 * reference, both stages: the trainer's blocked ranks (topk_rank_cpu) equal, instance by
 * instance, the rank found by sorting every unseen item of the user by its score (one full
 * product per user, ties placed before the target), so HR/NDCG/MRR at every topk are equal.
 * The previous implementation (every item a candidate of the model's own scoring loop,
 * metrics_rank_all) sums the dot products in another order: its metrics agree to 1e-3.
 * A partial epoch of training first, so that the scores are not all near zero. SKIP without
 * the dataset. */
#include "test_util.h"
#include "timirec/gemm.h"
#include "timirec/topk.h"
#include "timirec/trainer.h"

#include <unistd.h>

static char err[1024];

typedef struct {
    float score;
    int32_t item;
} si_t;

/* Higher score first; among equal scores the target last (a tie counts against it). */
static int32_t sort_target;
static int cmp_rank(const void *a, const void *b) {
    const si_t *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->item == y->item) return 0;
    if (x->item == sort_target) return 1;
    if (y->item == sort_target) return -1;
    return x->item < y->item ? -1 : 1;
}

/* Brute force: the user rows of every test instance through the model, each user's full score
 * vector from one product, eligible items sorted, position of the target. */
static double old_secs; /* time of the previous implementation's part of brute_ranks */
static void brute_ranks(trainer_t *t, const corpus_t *c, int64_t *ranks, int64_t *ranks_old) {
    const corpus_phase_t *ph = &c->phase[PHASE_TEST];
    const model_config_t *cfg = &t->lay.cfg;
    const int pre = cfg->stage == STAGE_PRETRAIN, V = pre ? cfg->K : 1, d = cfg->emb_size;
    const int32_t N = c->n_items;
    const float *E = t->params + model_offset(&t->lay, P_EXT_ITEM_EMB);
    float *s = malloc(sizeof(float) * (size_t)V * N);
    si_t *all = malloc(sizeof(si_t) * (size_t)N);
    char *ex = malloc((size_t)N);
    /* The old path: every item a candidate of model_eval_scores_f. */
    batch_t ball;
    model_ws_t_f wsall;
    const int eb = 64;
    batch_alloc(&ball, eb, t->opts.history_max, N);
    model_ws_alloc_f(&wsall, &t->lay, eb, t->opts.history_max, N);
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)ph->n_inst);
    for (int64_t i = 0; i < ph->n_inst; i++) idx[i] = i;
    for (int64_t s0 = 0; s0 < ph->n_inst; s0 += eb) {
        int B = (int)(ph->n_inst - s0 < eb ? ph->n_inst - s0 : eb);
        double t0 = tmr_now();
        batch_fill(&ball, c, PHASE_TEST, idx + s0, B, t->opts.history_max, NULL, 0, 1);
        model_batch_t mb = {ball.B, ball.L, ball.C, ball.hist, ball.pos, ball.length, ball.cand, 0, 0};
        model_eval_scores_f(&t->lay, t->params, &mb, &wsall);
        for (int b = 0; b < B; b++) {
            const int64_t r = ph->inst_row[s0 + b];
            const int32_t u = ph->user[r];
            ranks_old[s0 + b] = metrics_rank_all(wsall.scores + (size_t)b * N, N, ph->item[r],
                                                 c->all_items + c->all_off[u],
                                                 c->all_off[u + 1] - c->all_off[u]);
        }
        old_secs += tmr_now() - t0;
        for (int b = 0; b < B; b++) {
            const int64_t r = ph->inst_row[s0 + b];
            const int32_t u = ph->user[r], tgt = ph->item[r];
            const float *vec = pre ? wsall.V + (size_t)b * V * d : wsall.u + (size_t)b * d;
            tmr_sgemm(0, 1, V, N, d, 1.0f, vec, d, E, d, 0.0f, s, N);
            memset(ex, 0, (size_t)N);
            for (int64_t e = c->all_off[u]; e < c->all_off[u + 1]; e++) ex[c->all_items[e]] = 1;
            ex[tgt] = 0;
            int n = 0;
            for (int32_t j = 1; j < N; j++) {
                float m = s[j];
                for (int v = 1; v < V; v++) m = s[(size_t)v * N + j] > m ? s[(size_t)v * N + j] : m;
                if (!ex[j]) all[n++] = (si_t){m, j};
            }
            sort_target = tgt;
            qsort(all, (size_t)n, sizeof *all, cmp_rank);
            int64_t pos = -1;
            for (int i = 0; i < n && pos < 0; i++)
                if (all[i].item == tgt) pos = i;
            ranks[s0 + b] = pos + 1;
        }
    }
    batch_free(&ball);
    model_ws_free_f(&wsall);
    free(idx);
    free(s);
    free(all);
    free(ex);
}

static void check_stage(trainer_t *t, const corpus_t *c, const metric_spec_t *spec, const char *name) {
    const int64_t n = c->phase[PHASE_TEST].n_inst;
    double v[METRICS_MAX_KINDS * METRICS_MAX_TOPK], vb[METRICS_MAX_KINDS * METRICS_MAX_TOPK],
        vo[METRICS_MAX_KINDS * METRICS_MAX_TOPK];
    double t0 = tmr_now();
    trainer_evaluate(t, c, PHASE_TEST, 1, spec, v);
    double secs = tmr_now() - t0;
    int64_t *brute = malloc(sizeof(int64_t) * (size_t)n), *old = malloc(sizeof(int64_t) * (size_t)n);
    t0 = tmr_now();
    old_secs = 0;
    brute_ranks(t, c, brute, old);
    double bsecs = tmr_now() - t0;
    int64_t differ = 0, differ_old = 0;
    for (int64_t i = 0; i < n; i++) {
        if (t->ranks[i] != brute[i] && differ++ == 0)
            fprintf(stderr, "%s: instance %lld rank %lld, brute force %lld\n", name, (long long)i,
                    (long long)t->ranks[i], (long long)brute[i]);
        differ_old += t->ranks[i] != old[i];
    }
    CHECK(differ == 0, "%s: %lld of %lld ranks differ from the brute-force sort", name,
          (long long)differ, (long long)n);
    metrics_compute(spec, brute, n, vb);
    metrics_compute(spec, old, n, vo);
    char line[512];
    metrics_format(spec, v, line, sizeof line);
    printf("%s test_all: %s [%.2f s; previous implementation %.2f s; brute force %.2f s; %lld of "
           "%lld ranks differ from the previous implementation's by rounding]\n", name, line, secs,
           old_secs, bsecs - old_secs, (long long)differ_old, (long long)n);
    for (int i = 0; i < spec->n_kind * spec->n_topk; i++) {
        CHECK(v[i] == vb[i], "%s: metric %d: %.17g vs brute force %.17g", name, i, v[i], vb[i]);
        CHECK_CLOSE(v[i], vo[i], 1e-3);
    }
    CHECK(v[spec->n_topk - 1] > 0, "%s: HR@50 is zero: the check would prove nothing", name);
    free(brute);
    free(old);
}

int main(void) {
    if (access("../shared/data/ml-100k/train.csv", R_OK) != 0) {
        printf("SKIP: ../shared/data/ml-100k absent\n");
        return TU_SKIP;
    }
    corpus_t c;
    corpus_opts_t co = {.path = "../shared/data", .dataset = "ml-100k", .sep = '\t'};
    if (corpus_load(&co, &c, err, sizeof err)) {
        CHECK(0, "%s", err);
        return tu_finish("test_topk_ml100k");
    }
    metric_spec_t spec;
    metrics_parse("HR,NDCG,MRR", "1,5,10,20,50", &spec, err, sizeof err);
    /* HR first with topk 50 last: v[n_topk - 1] is HR@50. */
    model_config_t cfg = {.stage = STAGE_PRETRAIN, .emb_size = 64, .attn_size = 8, .K = 2,
                          .add_pos = 1, .add_trm = 1, .n_layers = 1, .temp = 1, .dropout = 0.5};
    train_opts_t o;
    train_opts_default(&o);
    trainer_t t;
    CHECK(trainer_init(&t, &c, &cfg, &o, err, sizeof err) == 0, "%s", err);
    int64_t keep = c.phase[PHASE_TRAIN].n_inst, n;
    c.phase[PHASE_TRAIN].n_inst = 30 * o.batch_size; /* a partial epoch */
    trainer_epoch(&t, &c, 0, &n, err, sizeof err);
    c.phase[PHASE_TRAIN].n_inst = keep;
    check_stage(&t, &c, &spec, "pretrain K=2");

    model_config_t fcfg = cfg;
    fcfg.stage = STAGE_FINETUNE;
    fcfg.n_layers = 2;
    trainer_t f;
    CHECK(trainer_init(&f, &c, &fcfg, &o, err, sizeof err) == 0, "%s", err);
    model_copy_shared(&f.lay, f.params, &t.lay, t.params);
    const int64_t n_test = c.phase[PHASE_TEST].n_inst;
    int64_t *pre_ranks = malloc(sizeof(int64_t) * (size_t)n_test);
    memcpy(pre_ranks, t.ranks, sizeof(int64_t) * (size_t)n_test);
    check_stage(&f, &c, &spec, "finetune");
    /* The finetune path ranks with the weighted user vector, not the max: other ranks. */
    int64_t moved = 0;
    for (int64_t i = 0; i < n_test; i++) moved += f.ranks[i] != pre_ranks[i];
    printf("finetune vs pretrain: %lld of %lld ranks differ\n", (long long)moved, (long long)n_test);
    CHECK(moved > 0, "the finetune ranks equal the pretrain ones: the user vector was not used");
    free(pre_ranks);
    trainer_free(&f);
    trainer_free(&t);
    corpus_free(&c);
    return tu_finish("test_topk_ml100k");
}
