/* Epochs and evaluation with the CPU reference backend, or the CUDA backend (gpu.h). */
#include "timirec/trainer.h"

#include "timirec/common.h"
#ifdef TIMIREC_CUDA
#include "timirec/gpu.h"
#endif

#include <math.h>
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
}

int trainer_init(trainer_t *t, const corpus_t *c, const model_config_t *cfg_in,
                 const train_opts_t *opts, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
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
    t->grads = tmr_calloc(n, sizeof(float));
    t->adam_m = tmr_calloc(n, sizeof(float));
    t->adam_v = tmr_calloc(n, sizeof(float));
    model_init_params(&t->lay, opts->seed, t->params);
    adam_init(&t->adam, opts->lr, opts->l2);

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
    batch_alloc(&t->batch, max_B, max_L, max_C);
    int64_t n_train = c->phase[PHASE_TRAIN].n_inst;
    t->train_neg = tmr_malloc(tmr_mul_size((size_t)n_train * opts->num_neg + 1, sizeof(int32_t)));
    t->order = tmr_malloc(tmr_mul_size((size_t)n_train + 1, sizeof(int64_t)));
    t->eval_index = tmr_malloc(tmr_mul_size((size_t)max_eval, sizeof(int64_t)));
    t->ranks = tmr_malloc(tmr_mul_size((size_t)max_eval, sizeof(int64_t)));
    for (int64_t i = 0; i < max_eval; i++) t->eval_index[i] = i;
    snprintf(t->backend, sizeof t->backend, "CPU");
    if (opts->use_gpu) {
#ifdef TIMIREC_CUDA
        char why[256];
        t->gpu = gpu_model_create(&t->lay, t->params, max_B, max_L, max_C, why, sizeof why);
        if (t->gpu) snprintf(t->backend, sizeof t->backend, "CUDA: %s", gpu_model_device(t->gpu));
        else
            snprintf(t->backend, sizeof t->backend, "CPU (CUDA asked for, but no usable GPU: %s)",
                     why);
#else
        snprintf(t->backend, sizeof t->backend,
                 "CPU (CUDA asked for, but this build has no CUDA backend: no nvcc at build time)");
#endif
    }
    return 0;
}

void trainer_free(trainer_t *t) {
    free(t->params);
    free(t->grads);
    free(t->adam_m);
    free(t->adam_v);
    model_ws_free_f(&t->ws);
    batch_free(&t->batch);
    free(t->train_neg);
    free(t->order);
    free(t->eval_index);
    free(t->ranks);
#ifdef TIMIREC_CUDA
    gpu_model_free(t->gpu);
#endif
    if (t->all_ready) {
        batch_free(&t->batch_all);
        model_ws_free_f(&t->ws_all);
    }
    memset(t, 0, sizeof *t);
}

static model_batch_t as_model_batch(const batch_t *b) {
    model_batch_t mb = {b->B, b->L, b->C, b->hist, b->pos, b->length, b->cand};
    return mb;
}

double trainer_epoch(trainer_t *t, const corpus_t *c, uint32_t epoch, int64_t *samples, char *err,
                     size_t errlen) {
    const train_opts_t *o = &t->opts;
    int64_t n = c->phase[PHASE_TRAIN].n_inst;
    if (sampler_train_negatives(c, o->seed, epoch, o->num_neg, t->train_neg, err, errlen))
        return -1;
    sampler_shuffle(n, o->seed, epoch, t->order);
#ifdef TIMIREC_CUDA
    if (t->gpu) gpu_model_upload_params(t->gpu, t->params); /* a checkpoint may have been loaded */
#endif
    double loss_sum = 0;
    int64_t n_batches = 0;
    for (int64_t s = 0; s < n; s += o->batch_size, n_batches++) {
        int B = (int)(n - s < o->batch_size ? n - s : o->batch_size);
        batch_fill(&t->batch, c, PHASE_TRAIN, t->order + s, B, o->history_max, t->train_neg,
                   o->num_neg, 0);
        model_batch_t mb = as_model_batch(&t->batch);
        dropout_key_t key = {o->seed, (uint32_t)t->step};
#ifdef TIMIREC_CUDA
        if (t->gpu) {
            loss_sum += gpu_train_step(t->gpu, &mb, key);
            gpu_adam_step(t->gpu, &t->adam);
        } else
#endif
        {
            memset(t->grads, 0, (size_t)t->lay.total * sizeof *t->grads);
            loss_sum += model_train_step_f(&t->lay, t->params, &mb, key, &t->ws, t->grads);
            adam_step(&t->adam, &t->lay, t->params, t->grads, t->adam_m, t->adam_v);
        }
        t->step++;
        if (t->progress) t->progress(t->progress_ctx, s + B, n);
    }
#ifdef TIMIREC_CUDA
    if (t->gpu) {
        gpu_model_download_params(t->gpu, t->params);
        if (n > 0 && t->lay.cfg.stage == STAGE_FINETUNE) { /* the last batch's, as the CPU's ws */
            gpu_model_read(t->gpu, GPU_T_PRED_INTENT, t->ws.pred_intent);
            gpu_model_read(t->gpu, GPU_T_TARGET_INTENT, t->ws.target_intent);
        }
    }
#endif
    if (samples) *samples = n;
    return n_batches ? loss_sum / (double)n_batches : 0.0;
}

void trainer_evaluate(trainer_t *t, const corpus_t *c, int phase, int test_all,
                      const metric_spec_t *spec, double *values) {
    const corpus_phase_t *ph = &c->phase[phase];
    int eb = t->opts.eval_batch_size;
    batch_t *batch = &t->batch;
    model_ws_t_f *ws = &t->ws;
    if (test_all && !t->all_ready) { /* candidates = every item: a wider batch, made once */
        batch_alloc(&t->batch_all, eb, t->batch.cap_L, c->n_items);
        model_ws_alloc_f(&t->ws_all, &t->lay, eb, t->batch.cap_L, c->n_items);
        t->all_ready = 1;
    }
    if (test_all) {
        batch = &t->batch_all;
        ws = &t->ws_all;
    }
    /* Full ranking (test_all) stays on the CPU: the device workspace is sized for the files'
     * candidates. */
    int on_gpu = 0;
#ifdef TIMIREC_CUDA
    on_gpu = t->gpu && !test_all;
    if (on_gpu) gpu_model_upload_params(t->gpu, t->params);
#endif
    for (int64_t s = 0; s < ph->n_inst; s += eb) {
        int B = (int)(ph->n_inst - s < eb ? ph->n_inst - s : eb);
        batch_fill(batch, c, phase, t->eval_index + s, B, t->opts.history_max, NULL, 0, test_all);
        model_batch_t mb = as_model_batch(batch);
#ifdef TIMIREC_CUDA
        if (on_gpu) gpu_eval_scores(t->gpu, &mb, ws->scores);
        else
#endif
            model_eval_scores_f(&t->lay, t->params, &mb, ws);
        (void)on_gpu;
        if (!test_all) {
            metrics_rank_rows(ws->scores, B, batch->C, t->ranks + s);
            continue;
        }
        /* Column j >= 1 of a row is item j: the row is the item-indexed score vector. */
#pragma omp parallel for schedule(static)
        for (int i = 0; i < B; i++) {
            int64_t r = ph->inst_row[s + i];
            int32_t u = ph->user[r];
            t->ranks[s + i] = metrics_rank_all(ws->scores + (size_t)i * batch->C, c->n_items,
                                               ph->item[r], c->all_items + c->all_off[u],
                                               c->all_off[u + 1] - c->all_off[u]);
        }
    }
    metrics_compute(spec, t->ranks, ph->n_inst, values);
}
