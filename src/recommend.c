/* timirec recommend: top-K item lists for every user with a history, from a checkpoint, as
 * TSV with a header "user_id\trec_items\tscores" (the reference's rec- file shape plus scores).
 * A user's history is the end of their whole sequence (train, dev and test rows); every item of
 * those rows is excluded; ties go to the lower item id. The model's shape is read from the
 * checkpoint's tensors, so a checkpoint exported from PyTorch works as well. The model runs in
 * batches of users assembled as the trainer's (batch_fill_users, sampler.h); their vectors
 * then go through the blocked top-K (topk.h) in chunks. */
#include "timirec/checkpoint.h"
#include "timirec/common.h"
#include "timirec/corpus.h"
#include "timirec/cpu_ops.h"
#include "timirec/model.h"
#include "timirec/options.h"
#include "timirec/run.h"
#include "timirec/safetensors.h"
#include "timirec/sampler.h"
#include "timirec/topk.h"
#include "timirec/trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rebuild the configuration from the tensors a checkpoint holds. */
static int config_from_checkpoint(const char *path, model_config_t *cfg, char *err, size_t errlen) {
    st_file_t f;
    if (st_read(path, &f, err, errlen)) return -1;
    memset(cfg, 0, sizeof *cfg);
    const st_tensor_t *e = st_find(&f, "interest_extractor.i_embeddings.weight");
    const st_tensor_t *w1 = st_find(&f, "interest_extractor.W1.weight");
    const st_tensor_t *w2 = st_find(&f, "interest_extractor.W2.weight");
    const st_tensor_t *p = st_find(&f, "interest_extractor.p_embeddings.weight");
    int rc = 0;
    if (!e || !w1 || !w2 || e->ndim != 2 || w1->ndim != 2 || w2->ndim != 2 ||
        (p && p->ndim != 2)) {
        rc = tmr_error(err, errlen, "%s: not a TiMiRec checkpoint (no interest_extractor "
                       "i_embeddings/W1/W2 matrices)", path);
    } else if (e->shape[0] < 1 || e->shape[0] > INT32_MAX || e->shape[1] < 1 ||
               e->shape[1] > 4096 || w1->shape[0] < 1 || w1->shape[0] > 4096 ||
               w2->shape[0] < 1 || w2->shape[0] > 4096 ||
               (p && (p->shape[0] < 2 || p->shape[0] > 1 << 20))) {
        /* Sizes that no model has (a [huge, 0] tensor holds no bytes, so the reader passes it);
         * model_config_check names the exact limits of the plausible ones. */
        rc = tmr_error(err, errlen, "%s: tensor shapes out of range for a TiMiRec model "
                       "(i_embeddings [%lld, %lld], W1 [%lld, ...], W2 [%lld, ...])", path,
                       (long long)e->shape[0], (long long)e->shape[1], (long long)w1->shape[0],
                       (long long)w2->shape[0]);
    } else {
        cfg->n_items = (int)e->shape[0];
        cfg->emb_size = (int)e->shape[1];
        cfg->attn_size = (int)w1->shape[0];
        cfg->K = (int)w2->shape[0];
        cfg->add_pos = p != NULL;
        cfg->history_max = p ? (int)p->shape[0] - 1 : 20;
        cfg->add_trm = st_find(&f, "interest_extractor.transformer.layer_norm1.weight") != NULL;
        cfg->stage = st_find(&f, "interest_predictor.rnn.weight_ih_l0") ? STAGE_FINETUNE : STAGE_PRETRAIN;
        cfg->n_layers = 1;
        char name[64];
        for (int i = 0; i < MODEL_MAX_PROJ; i++) {
            snprintf(name, sizeof name, "proj.proj_%d.weight", i);
            if (st_find(&f, name)) cfg->n_layers = i + 2;
        }
        cfg->temp = 1;
        cfg->dropout = 0.5;
    }
    st_free(&f);
    return rc;
}

/* Users scored per top-K call: their vectors are kept (chunk, K, d), the item table is
 * transposed once per call. */
#define RECOMMEND_CHUNK 16384

static void write_lists(FILE *out, const int32_t *users, int64_t n, int k, const int32_t *items,
                        const float *scores, const int32_t *counts) {
    for (int64_t b = 0; b < n; b++) {
        fprintf(out, "%d\t[", users[b]);
        for (int i = 0; i < counts[b]; i++) fprintf(out, i ? ", %d" : "%d", items[b * k + i]);
        fprintf(out, "]\t[");
        for (int i = 0; i < counts[b]; i++) fprintf(out, i ? ", %.6g" : "%.6g", scores[b * k + i]);
        fprintf(out, "]\n");
    }
}

typedef struct {
    const char *model_path, *path, *dataset, *out_path, *sep, *stage, *retrieval;
    int64_t topk, batch_size, cache;
    int per_interest; /* --retrieval interests */
} rec_args_t;

/* The command line. Returns 0, -1 after --help (exit 0), or 2 (refused, said on stderr). */
static int rec_parse(rec_args_t *r, int argc, char **argv) {
    *r = (rec_args_t){"", "../data/", "", "recs.tsv", "\t", "", "score", 50, 256, 1, 0};
    opt_t table[] = {
        {"model_path", OPT_STR, &r->model_path, 0, 0, "checkpoint (safetensors) of either stage"},
        {"path", OPT_STR, &r->path, 0, 0, "input data dir"},
        {"dataset", OPT_STR, &r->dataset, 0, 0, "dataset folder"},
        {"sep", OPT_STR, &r->sep, 0, 0, "column separator of the csv files"},
        {"stage", OPT_STR, &r->stage, 0, 0, "score as this stage: pretrain (max over the "
         "interests; any checkpoint) or finetune (weighted user vector; finetune checkpoints); "
         "default: the checkpoint's stage"},
        {"retrieval", OPT_STR, &r->retrieval, 0, 0, "score: rank by the stage's score (the "
         "reference's); interests: ComiRec's multi-interest retrieval, top-k of every interest "
         "vector alone, merged by best score (equals score for pretrain)"},
        {"topk", OPT_INT, &r->topk, 1, TOPK_MAX_K, "items per user"},
        {"out", OPT_STR, &r->out_path, 0, 0, "output TSV"},
        {"eval_batch_size", OPT_INT, &r->batch_size, 1, 1 << 16, "users through the model together"},
        {"cache", OPT_INT, &r->cache, 0, 1, "read and keep the binary dataset cache beside the CSVs "
         "(0: parse them)"},
    };
    int n_opts = (int)(sizeof table / sizeof table[0]);
    char err[2048];
    int rc = options_parse(table, n_opts, argc, argv, 1, NULL, 0, NULL, err, sizeof err);
    if (rc == 1) {
        options_usage("usage: timirec recommend --model_path FILE --path DIR --dataset NAME "
                      "[--stage pretrain|finetune] [--retrieval score|interests] [--topk 50] "
                      "[--out recs.tsv]\n"
                      "Top-K lists for every user with a history, as TSV: a header\n"
                      "user_id<TAB>rec_items<TAB>scores, then one row per user, items as [i1, i2, ...]\n"
                      "best first with their scores. Every item of the user's train/dev/test rows is\n"
                      "excluded, as is the padding item 0. Order: higher score first, equal scores\n"
                      "to the lower item id. The whole catalog is scored in blocks on the CPU threads.",
                      table, n_opts, stdout);
        return -1;
    }
    if (rc || !*r->model_path || !*r->dataset) {
        fprintf(stderr, "timirec recommend: %s\n", rc ? err : "--model_path and --dataset are required");
        return 2;
    }
    r->per_interest = strcmp(r->retrieval, "interests") == 0;
    if (!r->per_interest && strcmp(r->retrieval, "score") != 0) {
        fprintf(stderr, "timirec recommend: --retrieval '%s': expected score or interests\n", r->retrieval);
        return 2;
    }
    if (*r->stage && strcmp(r->stage, "pretrain") != 0 && strcmp(r->stage, "finetune") != 0) {
        fprintf(stderr, "timirec recommend: --stage '%s': expected pretrain or finetune\n", r->stage);
        return 2;
    }
    return 0;
}

/* The model of the checkpoint and the dataset it scores: *params allocated (lay.total).
 * Returns 0, or 1 with the error on stderr (nothing left to free). */
static int rec_load(const rec_args_t *r, corpus_t *c, model_layout_t *lay, float **params) {
    char err[2048];
    model_config_t cfg;
    if (config_from_checkpoint(r->model_path, &cfg, err, sizeof err)) {
        fprintf(stderr, "timirec: error: %s\n", err);
        return 1;
    }
    if (strcmp(r->stage, "finetune") == 0 && cfg.stage != STAGE_FINETUNE) {
        fprintf(stderr, "timirec: error: --stage finetune: %s is a pretrain checkpoint (no "
                "interest predictor); use --stage pretrain\n", r->model_path);
        return 1;
    }
    corpus_opts_t co = {.path = r->path, .dataset = r->dataset,
                        .sep = strcmp(r->sep, "\\t") == 0 ? '\t' : r->sep[0],
                        .cache = r->cache ? CORPUS_CACHE_ON : CORPUS_CACHE_OFF};
    if (corpus_load(&co, c, err, sizeof err)) {
        fprintf(stderr, "timirec: error: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (c->n_items != cfg.n_items) {
        fprintf(stderr, "timirec: error: %s has %d item rows but dataset %s has n_items %d\n",
                r->model_path, cfg.n_items, r->dataset, c->n_items);
        rc = 1;
    } else if (model_config_check(&cfg, err, sizeof err)) {
        fprintf(stderr, "timirec: error: %s: %s\n", r->model_path, err);
        rc = 1;
    } else {
        model_layout_build(&cfg, lay);
        *params = tmr_malloc(tmr_mul_size((size_t)lay->total, sizeof **params));
        if (checkpoint_load(r->model_path, lay, *params, 1, NULL, err, sizeof err)) {
            fprintf(stderr, "timirec: error: %s\n", err);
            free(*params);
            *params = NULL;
            rc = 1;
        }
    }
    if (rc) corpus_free(c);
    return rc;
}

/* The top-K pass's buffers for up to RECOMMEND_CHUNK users. */
typedef struct {
    int32_t *users;              /* (chunk) */
    float *vecs;                 /* (chunk, V, d) the users' rows of the top-K problem */
    int32_t *items, *counts;     /* (chunk, lists, k), (chunk, lists) */
    float *scores;               /* (chunk, lists, k) */
    int32_t *m_items, *m_counts; /* per-interest lists merged: (chunk, k), (chunk) */
    float *m_scores;             /* (chunk, k) */
} rec_bufs_t;

/* The vectors of the next users with a history from *u0 on, at most RECOMMEND_CHUNK, through
 * the model in batches assembled as the trainer's (batch_fill_users): their K interests
 * (use_V) or their finetune user vector. Returns their number. */
static int64_t rec_user_vectors(const corpus_t *c, const model_layout_t *lay, const float *params,
                                batch_t *batch, model_ws_t_f *ws, int use_V, int32_t *u0,
                                rec_bufs_t *bf) {
    const int d = lay->cfg.emb_size, V = use_V ? lay->cfg.K : 1;
    int64_t nc = 0;
    while (*u0 < c->n_users && nc < RECOMMEND_CHUNK) {
        int nb = 0;
        int32_t *bu = bf->users + nc;
        for (; *u0 < c->n_users && nb < batch->cap_B && nc + nb < RECOMMEND_CHUNK; (*u0)++)
            if (c->seq_off[*u0 + 1] > c->seq_off[*u0]) bu[nb++] = *u0;
        if (nb == 0) break;
        batch_fill_users(batch, c, bu, nb, lay->cfg.history_max);
        model_batch_t mb = trainer_model_batch(batch);
        model_eval_scores_f(lay, params, &mb, ws);
        const float *src = use_V ? ws->V : ws->u; /* (nb, K, d) or (nb, d) */
        memcpy(bf->vecs + nc * V * d, src, sizeof *bf->vecs * (size_t)nb * V * d);
        nc += nb;
    }
    return nc;
}

int recommend_main(int argc, char **argv) {
    rec_args_t r;
    int rc = rec_parse(&r, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    corpus_t c;
    model_layout_t lay;
    float *params = NULL;
    if (rec_load(&r, &c, &lay, &params)) return 1;
    const model_config_t *cfg = &lay.cfg;
    const int score_pretrain = cfg->stage == STAGE_PRETRAIN || strcmp(r.stage, "pretrain") == 0;
    const int B = (int)r.batch_size, k = (int)r.topk, K = cfg->K, d = cfg->emb_size;
    /* Rows of the top-K problem: the K interests (pretrain score, or per-interest retrieval),
     * or the one finetune user vector. */
    const int use_V = score_pretrain || r.per_interest;
    const int V = use_V ? K : 1;
    const int64_t chunk = RECOMMEND_CHUNK;
    const int lists = r.per_interest ? K : 1;
    model_ws_t_f ws;
    model_ws_alloc_f(&ws, &lay, B, cfg->history_max, 1);
    batch_t batch;
    batch_alloc(&batch, B, cfg->history_max, 1);
    rec_bufs_t bf = {0};
    bf.users = tmr_malloc((size_t)chunk * sizeof *bf.users);
    bf.vecs = tmr_malloc(tmr_mul_size((size_t)chunk * V * d, sizeof *bf.vecs));
    bf.items = tmr_malloc(tmr_mul_size((size_t)chunk * lists * k, sizeof *bf.items));
    bf.scores = tmr_malloc(tmr_mul_size((size_t)chunk * lists * k, sizeof *bf.scores));
    bf.counts = tmr_malloc(tmr_mul_size((size_t)chunk * lists, sizeof *bf.counts));
    if (r.per_interest) {
        bf.m_items = tmr_malloc(tmr_mul_size((size_t)chunk * k, sizeof *bf.m_items));
        bf.m_scores = tmr_malloc(tmr_mul_size((size_t)chunk * k, sizeof *bf.m_scores));
        bf.m_counts = tmr_malloc((size_t)chunk * sizeof *bf.m_counts);
    }
    char tmp_path[4096];
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", r.out_path);
    FILE *out = fopen(tmp_path, "w");
    int64_t written = 0;
    double t0 = tmr_now();
    if (out) fprintf(out, "user_id\trec_items\tscores\n");
    for (int32_t u0 = 1; out && u0 < c.n_users;) {
        int64_t nc = rec_user_vectors(&c, &lay, params, &batch, &ws, use_V, &u0, &bf);
        if (nc == 0) break;
        topk_problem_t p = {nc, V, d, bf.vecs, c.n_items, params + model_offset(&lay, P_EXT_ITEM_EMB),
                            c.all_off, c.all_items, bf.users, 1};
        if (r.per_interest) {
            topk_cpu_per_vec(&p, k, bf.items, bf.scores, bf.counts);
            topk_merge_lists(nc, K, k, bf.items, bf.scores, bf.counts, k, bf.m_items,
                             bf.m_scores, bf.m_counts);
            write_lists(out, bf.users, nc, k, bf.m_items, bf.m_scores, bf.m_counts);
        } else {
            topk_cpu(&p, k, bf.items, bf.scores, bf.counts);
            write_lists(out, bf.users, nc, k, bf.items, bf.scores, bf.counts);
        }
        written += nc;
    }
    if (!out) {
        fprintf(stderr, "timirec: error: cannot write %s\n", r.out_path);
        rc = 1;
    } else if (fclose(out) != 0 || rename(tmp_path, r.out_path) != 0) {
        fprintf(stderr, "timirec: error: writing %s failed\n", r.out_path);
        rc = 1;
    } else {
        printf("recommend: %lld users, top %d of %d items each (%s, %s), written to %s [%.2f s]\n",
               (long long)written, k, c.n_items - 1,
               score_pretrain ? "pretrain score" : "finetune score",
               r.per_interest ? "per-interest lists merged" : "one list", r.out_path,
               tmr_now() - t0);
    }
    model_ws_free_f(&ws);
    batch_free(&batch);
    free(bf.users);
    free(bf.vecs);
    free(bf.items);
    free(bf.scores);
    free(bf.counts);
    free(bf.m_items);
    free(bf.m_scores);
    free(bf.m_counts);
    free(params);
    corpus_free(&c);
    return rc;
}
