/* Data-parallel training: the gradient exchange (dist.h). */
#include "timirec/dist.h"

#include "timirec/common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dist_choose_exchange(const model_layout_t *lay, int64_t touched_cap, int n_ranks,
                         char *why, size_t whylen) {
    const double d = lay->cfg.emb_size, P = n_ranks;
    /* Bytes a rank sends per step for the item tables: the ordered sum sends 2 (P - 1) / P of
     * the tables; the rows exchange sends its rows and ids to P - 1 ranks (at most
     * touched_cap of them). */
    const double dense = 2.0 * (P - 1) / P * (double)adam_lazy_rows(lay) * d * 4;
    const double rows = (P - 1) * (double)touched_cap * (d * 4 + 8);
    int ex = rows < dense ? DIST_EXCHANGE_ROWS : DIST_EXCHANGE_DENSE;
    const char *env = getenv("TIMIREC_GRAD_EXCHANGE"), *how = "chosen by size";
    if (env && strcmp(env, "dense") == 0) ex = DIST_EXCHANGE_DENSE, how = "TIMIREC_GRAD_EXCHANGE";
    if (env && strcmp(env, "rows") == 0) ex = DIST_EXCHANGE_ROWS, how = "TIMIREC_GRAD_EXCHANGE";
    snprintf(why, whylen, "%s (%s: item tables %.3g MB a step summed whole, at most %.3g MB as "
             "touched rows)", ex == DIST_EXCHANGE_ROWS ? "touched rows" : "dense", how,
             dense / 1e6, rows / 1e6);
    return ex;
}

int dist_attach(trainer_t *t, comm_t *comm, char *why, size_t whylen) {
    if (whylen) why[0] = 0;
    if (comm_size(comm) < 2) return 0;
    t->comm = comm;
    t->exchange = dist_choose_exchange(&t->lay, t->touched_cap, comm_size(comm), why, whylen);
    const size_t all = tmr_mul_size((size_t)t->touched_cap, (size_t)comm_size(comm));
    if (t->lazy_rows) /* the union of every rank's touched rows */
        t->lazy_rows = tmr_realloc(t->lazy_rows, tmr_mul_size(all, sizeof *t->lazy_rows));
    else if (t->exchange == DIST_EXCHANGE_ROWS) {
        t->dist_rows = tmr_malloc(tmr_mul_size((size_t)t->touched_cap, sizeof *t->dist_rows));
        t->dist_marks = tmr_zeroed_resident((size_t)adam_lazy_rows(&t->lay), sizeof *t->dist_marks);
    }
    return 0;
}

static int cmp_i64(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sum every gradient but the item tables' (at most three runs of the flat buffer). */
static void sum_dense_tensors(trainer_t *t) {
    int ids[2] = {-1, -1};
    const int n_lazy = adam_lazy_tensors(&t->lay, ids);
    int64_t at = 0;
    for (;;) {
        int64_t next = t->lay.total, skip = 0; /* the next item table at or after `at` */
        for (int k = 0; k < n_lazy; k++) {
            const param_t *p = &t->lay.t[ids[k]];
            if (p->offset >= at && p->offset < next) next = p->offset, skip = p->size;
        }
        comm_sum_f32(t->comm, t->grads + at, next - at, "gradients (dense tensors)");
        if (next >= t->lay.total) break;
        at = next + skip;
    }
}

/* The rows exchange: this slice's touched rows (rows, n) out, the union's sums back in. */
static int64_t sum_touched_rows(trainer_t *t, const int64_t *rows, int64_t n, int64_t *union_out) {
    const int d = t->lay.cfg.emb_size;
    int lazy[2] = {-1, -1};
    adam_lazy_tensors(&t->lay, lazy);
    float *mine = tmr_malloc(tmr_mul_size(tmr_mul_size((size_t)(n > 0 ? n : 1), (size_t)d),
                                          sizeof *mine));
    for (int64_t i = 0; i < n; i++)
        memcpy(mine + i * d, t->grads + adam_lazy_row_offset(&t->lay, lazy, rows[i], NULL),
               (size_t)d * sizeof *mine);
    int64_t *ids;
    float *sums;
    const int64_t u = comm_sum_rows(t->comm, rows, mine, n, d, &ids, &sums,
                                    "gradients (touched item rows)");
    for (int64_t i = 0; i < u; i++)
        memcpy(t->grads + adam_lazy_row_offset(&t->lay, lazy, ids[i], NULL), sums + i * d,
               (size_t)d * sizeof *sums);
    if (union_out) memcpy(union_out, ids, (size_t)u * sizeof *ids);
    free(mine);
    free(ids);
    free(sums);
    return u;
}

/* LazyAdam with the dense exchange: the union of the ranks' touched rows, ascending. */
static int64_t union_of_rows(trainer_t *t, const int64_t *rows, int64_t n, int64_t *out) {
    int64_t *counts = tmr_malloc((size_t)comm_size(t->comm) * sizeof *counts);
    void *all;
    const int64_t m = comm_allgather(t->comm, rows, n, sizeof *rows, &all, counts,
                                     "touched item rows");
    int64_t *a = all, u = 0;
    qsort(a, (size_t)m, sizeof *a, cmp_i64);
    for (int64_t i = 0; i < m; i++)
        if (i == 0 || a[i] != a[i - 1]) out[u++] = a[i];
    free(all);
    free(counts);
    return u;
}

int dist_agree(trainer_t *t, double *loss, int bad) {
    double ctl[2] = {*loss, bad};
    comm_sum_f64(t->comm, ctl, 2, "loss");
    *loss = ctl[0];
    return ctl[1] != 0 || !isfinite(ctl[0]);
}

void dist_sum_grads(trainer_t *t, const model_batch_t *mb) {
    if (!t->comm) return;
    if (t->exchange == DIST_EXCHANGE_DENSE) {
        comm_sum_f32(t->comm, t->grads, t->lay.total, "gradients");
        if (t->row_step)
            t->n_lazy_rows = union_of_rows(t, t->lazy_rows, t->n_lazy_rows, t->lazy_rows);
        return;
    }
    sum_dense_tensors(t);
    if (t->row_step) {
        t->n_lazy_rows = sum_touched_rows(t, t->lazy_rows, t->n_lazy_rows, t->lazy_rows);
        return;
    }
    /* the dense Adam: this slice's touched rows from the batch (marks undone inside) */
    const int64_t n = mb->B > 0 ? adam_lazy_touched(&t->lay, mb, t->dist_marks, t->dist_rows) : 0;
    sum_touched_rows(t, t->dist_rows, n, NULL);
}
