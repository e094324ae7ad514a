/* Epochs and evaluation: batches assembled on the host, the compute through the trainer's
 * backend (backend.h: the CPU reference, or the CUDA backend when asked for and usable). */
#include "timirec/trainer.h"

#include "timirec/backend.h"
#include "timirec/common.h"
#include "timirec/dist.h"
#include "timirec/numcheck.h"
#include "timirec/topk.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void train_opts_default(train_opts_t *o) {
    o->batch_size = 256;
    o->eval_batch_size = 256;
    o->history_max = 20;
    o->num_neg = 1;
    o->lr = 1e-3;
    o->l2 = 0;
    o->seed = 0;
    o->use_gpu = 0;
    o->eval_users = 0;
}

int trainer_init(trainer_t *t, const corpus_t *c, const model_config_t *cfg_in,
                 const train_opts_t *opts, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    t->test_nan_tensor = -1;
    t->opts = *opts;
    model_config_t cfg = *cfg_in;
    cfg.n_items = c->n_items;
    cfg.history_max = opts->history_max;
    if (opts->batch_size < 1 || opts->eval_batch_size < 1 || opts->num_neg < 1)
        return tmr_error(err, errlen, "batch_size, eval_batch_size and num_neg must be >= 1");
    if (model_config_check(&cfg, err, errlen)) return -1;
    model_layout_build(&cfg, &t->lay);
    size_t n = (size_t)t->lay.total;
    t->params = tmr_malloc(tmr_mul_size(n, sizeof(float)));
    t->grads = tmr_zeroed_resident(n, sizeof(float));
    t->adam_m = tmr_zeroed_resident(n, sizeof(float));
    t->adam_v = tmr_zeroed_resident(n, sizeof(float));
    model_init_params(&t->lay, opts->seed, t->params);
    adam_init(&t->adam, opts->lr, opts->l2);
    if (opts->lazy_adam)
        t->row_step = tmr_zeroed_resident((size_t)adam_lazy_rows(&t->lay), sizeof *t->row_step);

    int max_L = sampler_max_history(c, opts->history_max);
    if (max_L < 1) max_L = 1;
    int max_B = opts->batch_size > opts->eval_batch_size ? opts->batch_size : opts->eval_batch_size;
    int max_C = 1 + opts->num_neg;
    int64_t max_eval = 1;
    for (int p = PHASE_DEV; p <= PHASE_TEST; p++) {
        if (1 + c->phase[p].n_neg > max_C) max_C = 1 + c->phase[p].n_neg;
        if (c->phase[p].n_inst > max_eval) max_eval = c->phase[p].n_inst;
    }
    model_ws_alloc_f(&t->ws, &t->lay, max_B, max_L, max_C);
    t->touched_cap = adam_lazy_cap(opts->batch_size, max_L, 1 + (int64_t)opts->num_neg);
    if (opts->lazy_adam) /* the training batches' touched rows (n_lazy_rows 0: grads all zero) */
        t->lazy_rows = tmr_malloc(tmr_mul_size((size_t)t->touched_cap, sizeof *t->lazy_rows));
    batch_alloc(&t->batch, max_B, max_L, max_C);
    int64_t n_train = c->phase[PHASE_TRAIN].n_inst;
    t->train_neg = tmr_malloc(tmr_mul_size((size_t)n_train * opts->num_neg + 1, sizeof(int32_t)));
    t->order = tmr_malloc(tmr_mul_size((size_t)n_train + 1, sizeof(int64_t)));
    t->eval_index = tmr_malloc(tmr_mul_size((size_t)max_eval, sizeof(int64_t)));
    t->ranks = tmr_malloc(tmr_mul_size((size_t)max_eval, sizeof(int64_t)));
    char why[320];
    t->be = &trainer_backend_cpu;
    if (t->be->create(t, max_B, max_L, max_C, why, sizeof why))
        return tmr_error(err, errlen, "%s", why);
    if (opts->use_gpu) {
        const trainer_backend_t *cuda = trainer_backend_cuda(why, sizeof why);
        if (cuda && cuda->create(t, max_B, max_L, max_C, why, sizeof why) == 0) t->be = cuda;
        else snprintf(t->backend, sizeof t->backend, "CPU (CUDA asked for, but %s)", why);
    }
    return 0;
}

void trainer_free(trainer_t *t) {
    free(t->params);
    free(t->grads);
    free(t->adam_m);
    free(t->adam_v);
    free(t->row_step);
    free(t->lazy_rows);
    free(t->dist_rows);
    free(t->dist_marks);
    model_ws_free_f(&t->ws);
    batch_free(&t->batch);
    free(t->train_neg);
    free(t->order);
    free(t->eval_index);
    free(t->ranks);
    if (t->be) t->be->destroy(t);
    memset(t, 0, sizeof *t);
}

/* A non-finite value at this step: the message names the epoch, the batch, the step, the
 * loss, and the first non-finite intermediate (detect_anomaly), gradient and parameter. */
static int report_nonfinite(trainer_t *t, uint32_t epoch, int64_t batch, int64_t n_batches,
                            double loss, int C, char *err, size_t errlen) {
    char what[512];
    size_t k = (size_t)snprintf(err, errlen, "non-finite value at epoch %u, batch %lld of %lld "
                                "(step %lld): loss = %g", epoch + 1, (long long)batch + 1,
                                (long long)n_batches, (long long)t->step, loss);
    if (t->detect_anomaly && k < errlen && numcheck_workspace(&t->lay, &t->ws, C, what, sizeof what))
        k += (size_t)snprintf(err + k, errlen - k, "; first non-finite intermediate: %s", what);
    if (k < errlen && numcheck_tensors(&t->lay, t->grads, what, sizeof what))
        k += (size_t)snprintf(err + k, errlen - k, "; first non-finite gradient: %s", what);
    if (k < errlen) {
        if (numcheck_tensors(&t->lay, t->params, what, sizeof what))
            snprintf(err + k, errlen - k, "; first non-finite parameter: %s", what);
        else snprintf(err + k, errlen - k, "; every parameter is finite");
    }
    return TRAIN_NONFINITE;
}

/* The size of batch `batch` (0-based) of an epoch of n instances. */
static int batch_size_of(const trainer_t *t, int64_t n, int64_t batch) {
    const int64_t left = n - batch * t->opts.batch_size;
    return (int)(left < t->opts.batch_size ? left : t->opts.batch_size);
}

/* The epoch from cur->batch on, batch by batch: built on the host (batch_fill), each step
 * through the backend, the stop flag and the test hooks read after every batch. */
static int per_step_epoch(trainer_t *t, const corpus_t *c, uint32_t epoch, epoch_cursor_t *cur,
                          char *err, size_t errlen) {
    const train_opts_t *o = &t->opts;
    const int64_t n = cur->samples, n_batches = cur->n_batches;
    if (sampler_train_negatives(c, o->seed, epoch, o->num_neg, t->train_neg, err, errlen))
        return TRAIN_ERROR;
    sampler_shuffle(n, o->seed, epoch, t->order);
    t->be->to_device(t);
    const int n_ranks = comm_size(t->comm), rank = comm_rank(t->comm);
    for (; cur->batch < n_batches; cur->batch++) {
        const int64_t s = cur->batch * o->batch_size;
        const int B = batch_size_of(t, n, cur->batch);
        int64_t lo, hi; /* this rank's slice of the batch (dist.h); all of it for one process */
        dist_slice(B, rank, n_ranks, &lo, &hi);
        batch_fill(&t->batch, c, PHASE_TRAIN, t->order + s + lo, (int)(hi - lo), o->history_max,
                   t->train_neg, o->num_neg, 0);
        t->last_B = (int)(hi - lo);
        model_batch_t mb = trainer_model_batch(&t->batch);
        if (n_ranks > 1) {
            mb.row0 = (int)lo;
            mb.B_all = B;
        }
        if (t->test_nan_tensor >= 0 && t->step == t->test_nan_step) {
            t->be->to_host(t);
            t->params[t->lay.t[t->test_nan_tensor].offset] = NAN;
            t->be->to_device(t);
        }
        dropout_key_t key = {o->seed, (uint32_t)t->step};
        double loss;
        if (t->be->train_step(t, &mb, key, &loss))
            return report_nonfinite(t, epoch, cur->batch, n_batches, loss, mb.C, err, errlen);
        cur->loss_sum += loss;
        t->step++;
        t->batches_run++;
        if (t->progress) t->progress(t->progress_ctx, s + B, n);
        int64_t stop = (t->stop && *t->stop) ||
                       (t->test_stop_after > 0 && t->batches_run >= t->test_stop_after);
        if (n_ranks > 1) /* a signal reaches the ranks at different batches: stop together */
            comm_max_i64(t->comm, &stop, 1, "stop flag");
        if (stop && cur->batch + 1 < n_batches) {
            cur->batch++;
            t->be->to_host(t);
            return TRAIN_INTERRUPTED;
        }
    }
    t->be->to_host(t);
    return TRAIN_DONE;
}

int trainer_train_epoch(trainer_t *t, const corpus_t *c, uint32_t epoch, epoch_cursor_t *cur,
                        char *err, size_t errlen) {
    const int64_t n = c->phase[PHASE_TRAIN].n_inst;
    const int64_t n_batches = (n + t->opts.batch_size - 1) / t->opts.batch_size;
    cur->n_batches = n_batches;
    cur->samples = n;
    if (cur->batch < 0 || cur->batch > n_batches)
        return tmr_error(err, errlen, "epoch %u: cannot start at batch %lld of %lld", epoch + 1,
                         (long long)cur->batch, (long long)n_batches); /* TRAIN_ERROR */
    const int rc = t->be->train_epoch(t, c, epoch, cur, err, errlen);
    if (rc == TRAIN_PER_STEP) return per_step_epoch(t, c, epoch, cur, err, errlen);
    if (rc != TRAIN_ERROR && cur->batch > 0) t->last_B = batch_size_of(t, n, cur->batch - 1);
    return rc;
}

double trainer_epoch(trainer_t *t, const corpus_t *c, uint32_t epoch, int64_t *samples, char *err,
                     size_t errlen) {
    epoch_cursor_t cur = {0, 0, 0, 0};
    int rc = trainer_train_epoch(t, c, epoch, &cur, err, errlen);
    if (samples) *samples = cur.samples;
    if (rc == TRAIN_INTERRUPTED)
        tmr_error(err, errlen, "epoch %u interrupted after batch %lld", epoch + 1, (long long)cur.batch);
    if (rc != TRAIN_DONE) return -1;
    return cur.n_batches ? cur.loss_sum / (double)cur.n_batches : 0.0;
}

/* The model's user rows for full ranking, after model_eval_scores_f: pretrain scores with
 * every interest (max over K), finetune with the weighted user vector. */
static void user_rows(const trainer_t *t, const corpus_t *c, const batch_t *b, topk_problem_t *p) {
    const model_config_t *cfg = &t->lay.cfg;
    const int pre = cfg->stage == STAGE_PRETRAIN;
    *p = (topk_problem_t){b->B, pre ? cfg->K : 1, cfg->emb_size, pre ? t->ws.V : t->ws.u,
                          c->n_items, t->params + model_offset(&t->lay, P_EXT_ITEM_EMB),
                          c->all_off, c->all_items, b->user, 1};
}

void trainer_evaluate(trainer_t *t, const corpus_t *c, int phase, int test_all,
                      const metric_spec_t *spec, double *values) {
    const corpus_phase_t *ph = &c->phase[phase];
    int eb = t->opts.eval_batch_size;
    batch_t *batch = &t->batch;
    /* Full ranking (test_all) stays on the CPU: the model's forward here for the user vectors,
     * then the blocked top-K pass (topk.h). */
    const trainer_backend_t *be = test_all ? &trainer_backend_cpu : t->be;
    int64_t n = ph->n_inst;
    if (test_all && t->opts.eval_users > 0)
        n = sampler_eval_users(c, phase, t->opts.seed, t->opts.eval_users, t->eval_index);
    else
        for (int64_t i = 0; i < n; i++) t->eval_index[i] = i;
    t->n_eval = n;
    const int n_ranks = comm_size(t->comm);
    if (n_ranks == 1 && be->eval_ranks(t, c, phase) == 0) {
        metrics_compute(spec, t->ranks, n, values);
        return;
    }
    int64_t lo, hi; /* this rank's share of the instances (dist.h); all for one process */
    dist_slice(n, comm_rank(t->comm), n_ranks, &lo, &hi);
    int32_t *targets = test_all ? tmr_malloc((size_t)eb * sizeof *targets) : NULL;
    for (int64_t s = lo; s < hi; s += eb) {
        int B = (int)(hi - s < eb ? hi - s : eb);
        /* test_all: the file's candidates (or the target alone) give the user vectors; the
         * catalog is then scored block by block (topk.h), never as a (B, N) matrix. */
        batch_fill(batch, c, phase, t->eval_index + s, B, t->opts.history_max, NULL, 0, 0);
        model_batch_t mb = trainer_model_batch(batch);
        be->eval_scores(t, &mb);
        if (!test_all) {
            metrics_rank_rows(t->ws.scores, B, batch->C, t->ranks + s);
            continue;
        }
        for (int i = 0; i < B; i++) targets[i] = batch->cand[(size_t)i * batch->C];
        topk_problem_t p;
        user_rows(t, c, batch, &p);
        topk_rank_cpu(&p, targets, t->ranks + s);
    }
    free(targets);
    if (n_ranks > 1) { /* every rank's share, in rank order = instance order */
        int64_t *counts = tmr_malloc((size_t)n_ranks * sizeof *counts);
        void *all;
        comm_allgather(t->comm, t->ranks + lo, hi - lo, sizeof *t->ranks, &all, counts,
                       "evaluation ranks");
        memcpy(t->ranks, all, (size_t)n * sizeof *t->ranks);
        free(all);
        free(counts);
    }
    metrics_compute(spec, t->ranks, n, values);
}

int trainer_last_intents(trainer_t *t, float *pred, float *target) {
    if (t->last_B == 0 || t->step == 0) return 0;
    t->be->read_intents(t, pred, target);
    return t->last_B;
}
