/* timirec recommend: top-K item lists for every user with a history, from a checkpoint, as
 * TSV with a header "user_id\trec_items\tscores" (the reference's rec- file shape plus scores).
 * A user's history is the end of their whole sequence (train, dev and test rows); every item of
 * those rows is excluded; ties go to the lower item id. The model's shape is read from the
 * checkpoint's tensors, so a checkpoint exported from PyTorch works as well. The model runs in
 * batches of users; their vectors then go through the blocked top-K (topk.h) in chunks. */
#include "timirec/checkpoint.h"
#include "timirec/common.h"
#include "timirec/corpus.h"
#include "timirec/cpu_ops.h"
#include "timirec/model.h"
#include "timirec/options.h"
#include "timirec/run.h"
#include "timirec/safetensors.h"
#include "timirec/topk.h"

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

int recommend_main(int argc, char **argv) {
    const char *model_path = "", *path = "../data/", *dataset = "", *out_path = "recs.tsv",
               *sep = "\t", *stage = "", *retrieval = "score";
    int64_t topk = 50, batch_size = 256;
    opt_t table[] = {
        {"model_path", OPT_STR, &model_path, 0, 0, "checkpoint (safetensors) of either stage"},
        {"path", OPT_STR, &path, 0, 0, "input data dir"},
        {"dataset", OPT_STR, &dataset, 0, 0, "dataset folder"},
        {"sep", OPT_STR, &sep, 0, 0, "column separator of the csv files"},
        {"stage", OPT_STR, &stage, 0, 0, "score as this stage: pretrain (max over the interests; "
         "any checkpoint) or finetune (weighted user vector; finetune checkpoints); default: the "
         "checkpoint's stage"},
        {"retrieval", OPT_STR, &retrieval, 0, 0, "score: rank by the stage's score (the "
         "reference's); interests: ComiRec's multi-interest retrieval, top-k of every interest "
         "vector alone, merged by best score (equals score for pretrain)"},
        {"topk", OPT_INT, &topk, 1, TOPK_MAX_K, "items per user"},
        {"out", OPT_STR, &out_path, 0, 0, "output TSV"},
        {"eval_batch_size", OPT_INT, &batch_size, 1, 1 << 16, "users through the model together"},
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
        return 0;
    }
    if (rc || !*model_path || !*dataset) {
        fprintf(stderr, "timirec recommend: %s\n", rc ? err : "--model_path and --dataset are required");
        return 2;
    }
    const int per_interest = strcmp(retrieval, "interests") == 0;
    if (!per_interest && strcmp(retrieval, "score") != 0) {
        fprintf(stderr, "timirec recommend: --retrieval '%s': expected score or interests\n", retrieval);
        return 2;
    }
    if (*stage && strcmp(stage, "pretrain") != 0 && strcmp(stage, "finetune") != 0) {
        fprintf(stderr, "timirec recommend: --stage '%s': expected pretrain or finetune\n", stage);
        return 2;
    }
    model_config_t cfg;
    if (config_from_checkpoint(model_path, &cfg, err, sizeof err)) {
        fprintf(stderr, "timirec: error: %s\n", err);
        return 1;
    }
    if (strcmp(stage, "finetune") == 0 && cfg.stage != STAGE_FINETUNE) {
        fprintf(stderr, "timirec: error: --stage finetune: %s is a pretrain checkpoint (no "
                "interest predictor); use --stage pretrain\n", model_path);
        return 1;
    }
    const int score_pretrain = cfg.stage == STAGE_PRETRAIN || strcmp(stage, "pretrain") == 0;
    corpus_t c;
    corpus_opts_t co = {.path = path, .dataset = dataset, .sep = strcmp(sep, "\\t") == 0 ? '\t' : sep[0]};
    if (corpus_load(&co, &c, err, sizeof err)) {
        fprintf(stderr, "timirec: error: %s\n", err);
        return 1;
    }
    if (c.n_items != cfg.n_items) {
        fprintf(stderr, "timirec: error: %s has %d item rows but dataset %s has n_items %d\n",
                model_path, cfg.n_items, dataset, c.n_items);
        return 1;
    }
    model_layout_t lay;
    if (model_config_check(&cfg, err, sizeof err)) {
        fprintf(stderr, "timirec: error: %s: %s\n", model_path, err);
        return 1;
    }
    model_layout_build(&cfg, &lay);
    float *params = tmr_malloc(tmr_mul_size((size_t)lay.total, sizeof *params));
    if (checkpoint_load(model_path, &lay, params, 1, NULL, err, sizeof err)) {
        fprintf(stderr, "timirec: error: %s\n", err);
        return 1;
    }
    const int B = (int)batch_size, L = cfg.history_max, k = (int)topk, K = cfg.K, d = cfg.emb_size;
    /* Rows of the top-K problem: the K interests (pretrain score, or per-interest retrieval),
     * or the one finetune user vector. */
    const int V = score_pretrain || per_interest ? K : 1;
    const int64_t chunk = RECOMMEND_CHUNK;
    model_ws_t_f ws;
    model_ws_alloc_f(&ws, &lay, B, L, 1);
    int32_t *hist = tmr_malloc((size_t)B * L * sizeof *hist), *pos = tmr_malloc((size_t)B * L * sizeof *pos);
    int32_t *length = tmr_malloc((size_t)B * sizeof *length), *cand = tmr_malloc((size_t)B * sizeof *cand);
    int32_t *users = tmr_malloc((size_t)chunk * sizeof *users);
    float *vecs = tmr_malloc(tmr_mul_size((size_t)chunk * V * d, sizeof *vecs));
    const int lists = per_interest ? K : 1;
    int32_t *items = tmr_malloc(tmr_mul_size((size_t)chunk * lists * k, sizeof *items));
    float *scores = tmr_malloc(tmr_mul_size((size_t)chunk * lists * k, sizeof *scores));
    int32_t *counts = tmr_malloc(tmr_mul_size((size_t)chunk * lists, sizeof *counts));
    int32_t *m_items = per_interest ? tmr_malloc(tmr_mul_size((size_t)chunk * k, sizeof *m_items)) : NULL;
    float *m_scores = per_interest ? tmr_malloc(tmr_mul_size((size_t)chunk * k, sizeof *m_scores)) : NULL;
    int32_t *m_counts = per_interest ? tmr_malloc((size_t)chunk * sizeof *m_counts) : NULL;
    for (int b = 0; b < B; b++) cand[b] = 1; /* one candidate: the forward pass wants one */
    char tmp_path[4096];
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", out_path);
    FILE *out = fopen(tmp_path, "w");
    if (!out) {
        fprintf(stderr, "timirec: error: cannot write %s\n", out_path);
        return 1;
    }
    fprintf(out, "user_id\trec_items\tscores\n");
    int64_t written = 0;
    double t0 = tmr_now();
    for (int32_t u0 = 1; u0 < c.n_users;) {
        int64_t nc = 0; /* users in this chunk */
        while (u0 < c.n_users && nc < chunk) {
            /* One model batch: up to B users with a history. */
            int nb = 0, Lb = 1;
            int32_t *bu = users + nc;
            for (; u0 < c.n_users && nb < B && nc + nb < chunk; u0++) {
                int64_t n = c.seq_off[u0 + 1] - c.seq_off[u0];
                if (n == 0) continue;
                bu[nb++] = u0;
                if (n > Lb) Lb = (int)(n < L ? n : L);
            }
            if (nb == 0) break;
            for (int b = 0; b < nb; b++) {
                int64_t n = c.seq_off[bu[b] + 1] - c.seq_off[bu[b]];
                int len = (int)(n < Lb ? n : Lb);
                const int32_t *hi = c.seq_item + c.seq_off[bu[b] + 1] - len;
                length[b] = len;
                for (int l = 0; l < Lb; l++) {
                    hist[b * Lb + l] = l < len ? hi[l] : 0;
                    pos[b * Lb + l] = l < len ? len - l : 0;
                }
            }
            model_batch_t mb = {nb, Lb, 1, hist, pos, length, cand};
            model_eval_scores_f(&lay, params, &mb, &ws);
            const float *src = score_pretrain || per_interest ? ws.V : ws.u; /* (nb, K, d) or (nb, d) */
            memcpy(vecs + nc * V * d, src, sizeof *vecs * (size_t)nb * V * d);
            nc += nb;
        }
        if (nc == 0) break;
        topk_problem_t p = {nc, V, d, vecs, c.n_items, params + model_offset(&lay, P_EXT_ITEM_EMB),
                            c.all_off, c.all_items, users, 1};
        if (per_interest) {
            topk_cpu_per_vec(&p, k, items, scores, counts);
            topk_merge_lists(nc, K, k, items, scores, counts, k, m_items, m_scores, m_counts);
            write_lists(out, users, nc, k, m_items, m_scores, m_counts);
        } else {
            topk_cpu(&p, k, items, scores, counts);
            write_lists(out, users, nc, k, items, scores, counts);
        }
        written += nc;
    }
    if (fclose(out) != 0 || rename(tmp_path, out_path) != 0) {
        fprintf(stderr, "timirec: error: writing %s failed\n", out_path);
        return 1;
    }
    printf("recommend: %lld users, top %d of %d items each (%s, %s), written to %s [%.2f s]\n",
           (long long)written, k, c.n_items - 1, score_pretrain ? "pretrain score" : "finetune score",
           per_interest ? "per-interest lists merged" : "one list", out_path, tmr_now() - t0);
    model_ws_free_f(&ws);
    free(hist);
    free(pos);
    free(length);
    free(cand);
    free(users);
    free(vecs);
    free(items);
    free(scores);
    free(counts);
    free(m_items);
    free(m_scores);
    free(m_counts);
    free(params);
    corpus_free(&c);
    return 0;
}
