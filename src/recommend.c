/* timirec recommend: top-K item lists for every user with a history, from a checkpoint, as
 * TSV with a header "user_id\trec_items\tscores" (the reference's rec- file shape plus scores).
 * A user's history is the end of their whole sequence (train, dev and test rows); every item of
 * those rows is excluded; ties go to the lower item id. The model's shape is read from the
 * checkpoint's tensors, so a checkpoint exported from PyTorch works as well. Plain CPU version:
 * each user scores the whole catalog. */
#include "timirec/checkpoint.h"
#include "timirec/common.h"
#include "timirec/corpus.h"
#include "timirec/cpu_ops.h"
#include "timirec/model.h"
#include "timirec/options.h"
#include "timirec/run.h"
#include "timirec/safetensors.h"

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

/* Keep the k best (score, item) of a stream: a min-heap on (score, -item). */
typedef struct {
    float score;
    int32_t item;
} scored_t;

static int worse(scored_t a, scored_t b) { /* a ranks below b */
    return a.score < b.score || (a.score == b.score && a.item > b.item);
}

static void heap_push(scored_t *h, int *n, int k, scored_t x) {
    if (*n < k) {
        int i = (*n)++;
        h[i] = x;
        while (i > 0 && worse(h[i], h[(i - 1) / 2])) {
            scored_t t = h[i];
            h[i] = h[(i - 1) / 2];
            h[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
        return;
    }
    if (!worse(h[0], x)) return;
    h[0] = x;
    for (int i = 0;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && worse(h[l], h[m])) m = l;
        if (r < *n && worse(h[r], h[m])) m = r;
        if (m == i) break;
        scored_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int cmp_best_first(const void *a, const void *b) {
    scored_t x = *(const scored_t *)a, y = *(const scored_t *)b;
    return worse(x, y) ? 1 : worse(y, x) ? -1 : 0;
}

int recommend_main(int argc, char **argv) {
    const char *model_path = "", *path = "../data/", *dataset = "", *out_path = "recs.tsv",
               *sep = "\t";
    int64_t topk = 50, batch_size = 256;
    opt_t table[] = {
        {"model_path", OPT_STR, &model_path, 0, 0, "checkpoint (safetensors) of either stage"},
        {"path", OPT_STR, &path, 0, 0, "input data dir"},
        {"dataset", OPT_STR, &dataset, 0, 0, "dataset folder"},
        {"sep", OPT_STR, &sep, 0, 0, "column separator of the csv files"},
        {"topk", OPT_INT, &topk, 1, 100000, "items per user"},
        {"out", OPT_STR, &out_path, 0, 0, "output TSV"},
        {"eval_batch_size", OPT_INT, &batch_size, 1, 1 << 16, "users scored together"},
    };
    int n_opts = (int)(sizeof table / sizeof table[0]);
    char err[2048];
    int rc = options_parse(table, n_opts, argc, argv, 1, NULL, 0, NULL, err, sizeof err);
    if (rc == 1) {
        options_usage("usage: timirec recommend --model_path FILE --path DIR --dataset NAME "
                      "[--topk 50] [--out recs.tsv]\nTop-K lists for every user with a history "
                      "(their train/dev/test items excluded; ties to the lower item id).",
                      table, n_opts, stdout);
        return 0;
    }
    if (rc || !*model_path || !*dataset) {
        fprintf(stderr, "timirec recommend: %s\n", rc ? err : "--model_path and --dataset are required");
        return 2;
    }
    model_config_t cfg;
    if (config_from_checkpoint(model_path, &cfg, err, sizeof err)) {
        fprintf(stderr, "timirec: error: %s\n", err);
        return 1;
    }
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
    int B = (int)batch_size, L = cfg.history_max, C = c.n_items, k = (int)topk;
    model_ws_t_f ws;
    model_ws_alloc_f(&ws, &lay, B, L, C);
    int32_t *hist = tmr_malloc((size_t)B * L * sizeof *hist), *pos = tmr_malloc((size_t)B * L * sizeof *pos);
    int32_t *length = tmr_malloc((size_t)B * sizeof *length), *users = tmr_malloc((size_t)B * sizeof *users);
    int32_t *cand = tmr_malloc(tmr_mul_size((size_t)B * C, sizeof *cand));
    for (int b = 0; b < B; b++)
        for (int j = 0; j < C; j++) cand[(size_t)b * C + j] = j ? j : 1; /* column j = item j */
    scored_t *heap = tmr_malloc((size_t)B * k * sizeof *heap);
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
        int nb = 0, maxlen = 1;
        for (; u0 < c.n_users && nb < B; u0++) {
            int64_t n = c.seq_off[u0 + 1] - c.seq_off[u0];
            if (n == 0) continue;
            users[nb++] = u0;
            if (n > maxlen) maxlen = (int)(n < L ? n : L);
        }
        if (nb == 0) break;
        int Lb = maxlen;
        for (int b = 0; b < nb; b++) {
            int32_t u = users[b];
            int64_t n = c.seq_off[u + 1] - c.seq_off[u];
            int len = (int)(n < Lb ? n : Lb);
            const int32_t *items = c.seq_item + c.seq_off[u + 1] - len;
            length[b] = len;
            for (int l = 0; l < Lb; l++) {
                hist[b * Lb + l] = l < len ? items[l] : 0;
                pos[b * Lb + l] = l < len ? len - l : 0;
            }
        }
        model_batch_t mb = {nb, Lb, C, hist, pos, length, cand};
        model_eval_scores_f(&lay, params, &mb, &ws);
#pragma omp parallel for schedule(dynamic, 8)
        for (int b = 0; b < nb; b++) {
            int32_t u = users[b];
            const int32_t *ex = c.all_items + c.all_off[u];
            int64_t n_ex = c.all_off[u + 1] - c.all_off[u], e = 0;
            scored_t *h = heap + (size_t)b * k;
            int hn = 0;
            const float *row = ws.scores + (size_t)b * C;
            for (int32_t it = 1; it < C; it++) {
                while (e < n_ex && ex[e] < it) e++;
                if (e < n_ex && ex[e] == it) continue;
                heap_push(h, &hn, k, (scored_t){row[it], it});
            }
            qsort(h, (size_t)hn, sizeof *h, cmp_best_first);
            length[b] = hn; /* reuse: how many were kept */
        }
        for (int b = 0; b < nb; b++) {
            const scored_t *h = heap + (size_t)b * k;
            fprintf(out, "%d\t[", users[b]);
            for (int i = 0; i < length[b]; i++) fprintf(out, i ? ", %d" : "%d", h[i].item);
            fprintf(out, "]\t[");
            for (int i = 0; i < length[b]; i++) fprintf(out, i ? ", %.6g" : "%.6g", h[i].score);
            fprintf(out, "]\n");
            written++;
        }
    }
    if (fclose(out) != 0 || rename(tmp_path, out_path) != 0) {
        fprintf(stderr, "timirec: error: writing %s failed\n", out_path);
        return 1;
    }
    printf("recommend: %lld users, top %d of %d items each, written to %s [%.2f s]\n",
           (long long)written, k, c.n_items - 1, out_path, tmr_now() - t0);
    model_ws_free_f(&ws);
    free(hist);
    free(pos);
    free(length);
    free(users);
    free(cand);
    free(heap);
    free(params);
    corpus_free(&c);
    return 0;
}
