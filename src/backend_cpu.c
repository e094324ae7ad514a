/* The CPU reference backend of the trainer (backend.h): the model's float forward, backward
 * and Adam (cpu_ops.h) on the trainer's own buffers, which are also the host copies, so there
 * is nothing to copy and no state of its own. */
#include "timirec/backend.h"

#include "timirec/dist.h"
#include "timirec/numcheck.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

static int cpu_create(trainer_t *t, int max_B, int max_L, int max_C, char *why, size_t whylen) {
    (void)max_B, (void)max_L, (void)max_C, (void)why, (void)whylen;
    snprintf(t->backend, sizeof t->backend, "CPU");
    snprintf(t->device, sizeof t->device, "cpu (%d threads)", omp_get_max_threads());
    return 0;
}

static void cpu_nothing(trainer_t *t) { (void)t; }

static int cpu_train_epoch(trainer_t *t, const corpus_t *c, uint32_t epoch, epoch_cursor_t *cur,
                           char *err, size_t errlen) {
    (void)t, (void)c, (void)epoch, (void)cur, (void)err, (void)errlen;
    return TRAIN_PER_STEP;
}

/* Zero the gradients for a step. With LazyAdam the backward writes only the rows of the item
 * tables its batch touches, so besides the dense tensors only the rows the last step wrote
 * (t->lazy_rows) can be non-zero: a catalog-size memset per step avoided. Then mb's rows
 * become the ones to clear next time. */
static void cpu_zero_grads(trainer_t *t, const model_batch_t *mb) {
    if (!t->row_step) {
        memset(t->grads, 0, (size_t)t->lay.total * sizeof *t->grads);
        return;
    }
    int ids[2] = {-1, -1};
    adam_lazy_tensors(&t->lay, ids);
    for (int k = 0; k < t->lay.n_tensors; k++)
        if (k != ids[0] && k != ids[1])
            memset(t->grads + t->lay.t[k].offset, 0, (size_t)t->lay.t[k].size * sizeof(float));
    const size_t row_bytes = (size_t)t->lay.cfg.emb_size * sizeof(float);
    for (int64_t i = 0; i < t->n_lazy_rows; i++)
        memset(t->grads + adam_lazy_row_offset(&t->lay, ids, t->lazy_rows[i], NULL), 0, row_bytes);
    t->n_lazy_rows = adam_lazy_touched(&t->lay, mb, t->row_step, t->lazy_rows);
}

/* Whether the update left a non-finite parameter. Under LazyAdam only the dense tensors and
 * the rows the step touched changed, so only those are read: a scan of the whole item tables
 * (875 MB at Taobao size) would be most of the step. */
static int cpu_params_nonfinite(const trainer_t *t) {
    if (!t->row_step) return numcheck_first_nonfinite(t->params, t->lay.total) >= 0;
    int ids[2] = {-1, -1};
    adam_lazy_tensors(&t->lay, ids);
    for (int k = 0; k < t->lay.n_tensors; k++)
        if (k != ids[0] && k != ids[1] &&
            numcheck_first_nonfinite(t->params + t->lay.t[k].offset, t->lay.t[k].size) >= 0)
            return 1;
    const int64_t d = t->lay.cfg.emb_size;
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (t->n_lazy_rows * d > 262144)
    for (int64_t i = 0; i < t->n_lazy_rows; i++) {
        const float *row = t->params + adam_lazy_row_offset(&t->lay, ids, t->lazy_rows[i], NULL);
        for (int64_t j = 0; j < d; j++) bad |= !isfinite(row[j]);
    }
    return bad;
}

static int cpu_train_step(trainer_t *t, const model_batch_t *mb, dropout_key_t key,
                          double *loss) {
    cpu_zero_grads(t, mb);
    /* A data-parallel rank's slice may be empty (a last batch smaller than the ranks). */
    *loss = mb->B > 0 ? model_train_step_f(&t->lay, t->params, mb, key, &t->ws, t->grads) : 0.0;
    /* Checked before the update, so that a bad step leaves the parameters as they were. */
    int bad = !isfinite(*loss);
    if (!bad && t->detect_anomaly && mb->B > 0) {
        char what[8];
        bad = numcheck_workspace(&t->lay, &t->ws, mb->C, what, sizeof what) ||
              numcheck_tensors(&t->lay, t->grads, what, sizeof what);
    }
    if (t->comm) bad = dist_agree(t, loss, bad); /* the batch's loss, one verdict for all */
    if (bad) return 1;
    dist_sum_grads(t, mb);
    if (t->row_step)
        adam_step_lazy_rows(&t->adam, &t->lay, t->lazy_rows, t->n_lazy_rows, t->params,
                            t->grads, t->adam_m, t->adam_v, t->row_step);
    else adam_step(&t->adam, &t->lay, t->params, t->grads, t->adam_m, t->adam_v);
    return cpu_params_nonfinite(t);
}

static void cpu_read_intents(trainer_t *t, float *pred, float *target) {
    const size_t n = (size_t)t->last_B * (size_t)t->lay.cfg.K;
    memcpy(pred, t->ws.pred_intent, n * sizeof *pred);
    memcpy(target, t->ws.target_intent, n * sizeof *target);
}

static int cpu_eval_ranks(trainer_t *t, const corpus_t *c, int phase) {
    (void)t, (void)c, (void)phase;
    return 1;
}

static void cpu_eval_scores(trainer_t *t, const model_batch_t *mb) {
    model_eval_scores_f(&t->lay, t->params, mb, &t->ws);
}

const trainer_backend_t trainer_backend_cpu = {
    "cpu",          cpu_create,     cpu_nothing,      cpu_nothing,    cpu_nothing,
    cpu_train_epoch, cpu_train_step, cpu_read_intents, cpu_eval_ranks, cpu_eval_scores,
};
