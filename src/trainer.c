/* Epochs and evaluation with the CPU reference backend, or the CUDA backend (gpu.h). */
#include "timirec/trainer.h"

#include "timirec/common.h"
#include "timirec/numcheck.h"
#include "timirec/topk.h"
#ifdef TIMIREC_CUDA
#include <omp.h>

#include "timirec/gpu.h"
#include "timirec/gpu_data.h"
#endif

#include <math.h>
#include <omp.h>
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
    snprintf(t->device, sizeof t->device, "cpu (%d threads)", omp_get_max_threads());
#ifdef TIMIREC_CUDA
    /* device 0 of the devices CUDA_VISIBLE_DEVICES lets the process see (--gpu) */
    if (t->gpu) snprintf(t->device, sizeof t->device, "cuda:0, %s", gpu_model_device(t->gpu));
#endif
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
    gpu_data_free(t->gpu_data);
    gpu_model_free(t->gpu);
#endif
    memset(t, 0, sizeof *t);
}

static model_batch_t as_model_batch(const batch_t *b) {
    model_batch_t mb = {b->B, b->L, b->C, b->hist, b->pos, b->length, b->cand};
    return mb;
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

/* With the CUDA backend the device holds the parameters and Adam moments while an epoch runs;
 * the host copies are authoritative between trainer calls (checkpoints, resume state, the
 * CPU evaluation), so they go up when an epoch starts and come back whenever it returns. */
static void gpu_sync_to_device(trainer_t *t) {
#ifdef TIMIREC_CUDA
    if (!t->gpu) return;
    gpu_model_upload_params(t->gpu, t->params);
    gpu_model_upload_adam(t->gpu, t->adam_m, t->adam_v);
#else
    (void)t;
#endif
}

/* last_batch: also the finetune intents of the last batch into the workspace, where the CPU
 * step leaves them (the run log prints them). */
static void gpu_sync_to_host(trainer_t *t, int last_batch) {
#ifdef TIMIREC_CUDA
    if (!t->gpu) return;
    gpu_model_download_params(t->gpu, t->params);
    gpu_model_download_adam(t->gpu, t->adam_m, t->adam_v);
    if (last_batch && t->step > 0 && t->lay.cfg.stage == STAGE_FINETUNE) {
        gpu_model_read(t->gpu, GPU_T_PRED_INTENT, t->ws.pred_intent);
        gpu_model_read(t->gpu, GPU_T_TARGET_INTENT, t->ws.target_intent);
    }
#else
    (void)t;
    (void)last_batch;
#endif
}

#ifdef TIMIREC_CUDA
/* How a GPU training epoch runs (TIMIREC_GPU_EPOCH): "staged", host-built batches (batch_fill,
 * as the per-step path builds them) staged through pinned memory into the epoch driver;
 * "device" (or "1"), the epoch driver on the device-resident corpus (device negatives,
 * shuffle and batches; pretrain steps replayed from CUDA graphs); "0", the per-step path (one
 * synchronisation per step). All three give the same results bit for bit (test_gpu_epoch).
 * The default stays on host-built batches until bench_gpu_epoch has measured the device path
 * on a GPU (bench/results/epoch.csv): then set GPU_EPOCH_DEFAULT to the faster.
 * detect_anomaly and the NaN test hook need the per-step path. Evaluation on the GPU always
 * goes through gpu_eval_phase (device batches and ranks) unless TIMIREC_GPU_EPOCH=0. */
enum { GPU_EPOCH_STEP = 0, GPU_EPOCH_DEVICE = 1, GPU_EPOCH_STAGED = 2 };
#define GPU_EPOCH_DEFAULT GPU_EPOCH_STAGED
static int gpu_epoch_mode(const trainer_t *t, int training) {
    if (!t->gpu) return GPU_EPOCH_STEP;
    const char *env = getenv("TIMIREC_GPU_EPOCH");
    if (env && env[0] == '0') return GPU_EPOCH_STEP;
    if (!training) return GPU_EPOCH_DEVICE;
    if (t->detect_anomaly || t->test_nan_tensor >= 0) return GPU_EPOCH_STEP;
    if (env && (strcmp(env, "device") == 0 || strcmp(env, "1") == 0)) return GPU_EPOCH_DEVICE;
    if (env && strcmp(env, "staged") == 0) return GPU_EPOCH_STAGED;
    return GPU_EPOCH_DEFAULT;
}

/* The device-resident corpus for c, when the epoch driver is to use it (see trainer_t). */
static struct gpu_data *device_data(trainer_t *t, const corpus_t *c, int training) {
    if (gpu_epoch_mode(t, training) != GPU_EPOCH_DEVICE) return NULL;
    if (t->gpu_data && t->gpu_data_corpus != c) {
        gpu_data_free(t->gpu_data);
        t->gpu_data = NULL;
    }
    if (!t->gpu_data) {
        t->gpu_data = gpu_data_create(c, t->opts.history_max, t->opts.num_neg);
        t->gpu_data_corpus = c;
    }
    return t->gpu_data;
}

/* After every queued batch of the device epoch: the progress bar and the stop flag, as the
 * per-step loop does them. */
typedef struct {
    trainer_t *t;
    int64_t n;  /* training instances */
} device_progress_t;

static int device_after_batch(void *ctx, int64_t batch, int64_t n_batches) {
    const device_progress_t *p = ctx;
    trainer_t *t = p->t;
    const int64_t n = p->n;
    const int64_t done = (batch + 1) * t->opts.batch_size;
    (void)n_batches;
    t->batches_run++;
    if (t->progress) t->progress(t->progress_ctx, done < n ? done : n, n);
    return (t->stop && *t->stop) ||
           (t->test_stop_after > 0 && t->batches_run >= t->test_stop_after);
}

enum { DEVICE_EPOCH_RERUN = 100 };

/* The epoch through gpu_train_epoch. A non-finite loss: the parameters are those before that
 * batch and cur points at it; DEVICE_EPOCH_RERUN asks the caller to run it the per-step way,
 * which reports it exactly as it always has. */
static int device_epoch(trainer_t *t, const corpus_t *c, struct gpu_data *d, uint32_t epoch,
                        epoch_cursor_t *cur, char *err, size_t errlen) {
    gpu_sync_to_device(t);
    gpu_epoch_t e;
    memset(&e, 0, sizeof e);
    e.seed = t->opts.seed;
    e.epoch = epoch;
    e.batch_size = t->opts.batch_size;
    e.first_batch = cur->batch;
    e.loss_sum = cur->loss_sum;
    e.step = t->step;
    device_progress_t prog = {t, c->phase[PHASE_TRAIN].n_inst};
    e.after_batch = device_after_batch;
    e.ctx = &prog;
    const int64_t runs0 = t->batches_run;
    const int rc = d ? gpu_train_epoch(t->gpu, d, &t->adam, &e, err, errlen)
                     : gpu_train_epoch_staged(t->gpu, c, t->opts.history_max, t->train_neg,
                                              t->opts.num_neg, t->order, &t->adam, &e, err,
                                              errlen);
    if (rc) {
        gpu_sync_to_host(t, 0);
        return TRAIN_ERROR;
    }
    t->batches_run = runs0 + (e.next_batch - cur->batch);
    t->step = e.step;
    cur->batch = e.next_batch;
    if (cur->batch > 0) { /* the last batch's size, where the per-step loop leaves it (run.c) */
        const int64_t left = cur->samples - (cur->batch - 1) * t->opts.batch_size;
        t->batch.B = (int)(left < t->opts.batch_size ? left : t->opts.batch_size);
    }
    cur->loss_sum = e.loss_sum;
    if (e.bad_batch >= 0) {
        gpu_sync_to_host(t, 0);
        return DEVICE_EPOCH_RERUN;
    }
    gpu_sync_to_host(t, 1);
    return cur->batch < cur->n_batches ? TRAIN_INTERRUPTED : TRAIN_DONE;
}
#endif

int trainer_train_epoch(trainer_t *t, const corpus_t *c, uint32_t epoch, epoch_cursor_t *cur,
                        char *err, size_t errlen) {
    const train_opts_t *o = &t->opts;
    const int64_t n = c->phase[PHASE_TRAIN].n_inst;
    const int64_t n_batches = (n + o->batch_size - 1) / o->batch_size;
    cur->n_batches = n_batches;
    cur->samples = n;
    if (cur->batch < 0 || cur->batch > n_batches)
        return tmr_error(err, errlen, "epoch %u: cannot start at batch %lld of %lld", epoch + 1,
                         (long long)cur->batch, (long long)n_batches); /* TRAIN_ERROR */
#ifdef TIMIREC_CUDA
    const int mode = gpu_epoch_mode(t, 1);
    if (mode == GPU_EPOCH_DEVICE) {
        int rc = device_epoch(t, c, device_data(t, c, 1), epoch, cur, err, errlen);
        if (rc != DEVICE_EPOCH_RERUN) return rc;
        /* the per-step loop below meets the non-finite batch first and reports it */
    }
#endif
    if (sampler_train_negatives(c, o->seed, epoch, o->num_neg, t->train_neg, err, errlen))
        return TRAIN_ERROR;
    sampler_shuffle(n, o->seed, epoch, t->order);
#ifdef TIMIREC_CUDA
    if (mode == GPU_EPOCH_STAGED) {
        int rc = device_epoch(t, c, NULL, epoch, cur, err, errlen);
        if (rc != DEVICE_EPOCH_RERUN) return rc;
    }
#endif
    gpu_sync_to_device(t);
    for (; cur->batch < n_batches; cur->batch++) {
        const int64_t s = cur->batch * o->batch_size;
        const int B = (int)(n - s < o->batch_size ? n - s : o->batch_size);
        batch_fill(&t->batch, c, PHASE_TRAIN, t->order + s, B, o->history_max, t->train_neg,
                   o->num_neg, 0);
        model_batch_t mb = as_model_batch(&t->batch);
        if (t->test_nan_tensor >= 0 && t->step == t->test_nan_step) {
            gpu_sync_to_host(t, 0);
            t->params[t->lay.t[t->test_nan_tensor].offset] = NAN;
            gpu_sync_to_device(t);
        }
        dropout_key_t key = {o->seed, (uint32_t)t->step};
        double loss;
        int bad;
#ifdef TIMIREC_CUDA
        if (t->gpu) {
            loss = gpu_train_step(t->gpu, &mb, key);
            bad = !isfinite(loss);
            if (!bad && t->detect_anomaly) { /* the gradients only: the workspace stays there */
                char what[8];
                gpu_model_read(t->gpu, GPU_T_GRADS, t->grads);
                bad = numcheck_tensors(&t->lay, t->grads, what, sizeof what);
            }
            if (bad) {
                gpu_sync_to_host(t, 0);
                gpu_model_read(t->gpu, GPU_T_GRADS, t->grads);
                return report_nonfinite(t, epoch, cur->batch, n_batches, loss, mb.C, err, errlen);
            }
            gpu_adam_step(t->gpu, &t->adam);
        } else
#endif
        {
            memset(t->grads, 0, (size_t)t->lay.total * sizeof *t->grads);
            loss = model_train_step_f(&t->lay, t->params, &mb, key, &t->ws, t->grads);
            /* Checked before the update, so that a bad step leaves the parameters as they were. */
            bad = !isfinite(loss);
            if (!bad && t->detect_anomaly) {
                char what[8];
                bad = numcheck_workspace(&t->lay, &t->ws, mb.C, what, sizeof what) ||
                      numcheck_tensors(&t->lay, t->grads, what, sizeof what);
            }
            if (bad) return report_nonfinite(t, epoch, cur->batch, n_batches, loss, mb.C, err, errlen);
            adam_step(&t->adam, &t->lay, t->params, t->grads, t->adam_m, t->adam_v);
            if (numcheck_first_nonfinite(t->params, t->lay.total) >= 0)
                return report_nonfinite(t, epoch, cur->batch, n_batches, loss, mb.C, err, errlen);
        }
        cur->loss_sum += loss;
        t->step++;
        t->batches_run++;
        if (t->progress) t->progress(t->progress_ctx, s + B, n);
        const int stop = (t->stop && *t->stop) ||
                         (t->test_stop_after > 0 && t->batches_run >= t->test_stop_after);
        if (stop && cur->batch + 1 < n_batches) {
            cur->batch++;
            gpu_sync_to_host(t, 1);
            return TRAIN_INTERRUPTED;
        }
    }
    gpu_sync_to_host(t, 1);
    return TRAIN_DONE;
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
    int32_t *targets = test_all ? tmr_malloc((size_t)eb * sizeof *targets) : NULL;
    /* Full ranking (test_all) stays on the CPU: the model's forward here for the user vectors,
     * then the blocked top-K pass (topk.h). */
    int on_gpu = 0;
#ifdef TIMIREC_CUDA
    on_gpu = t->gpu && !test_all;
    if (on_gpu) gpu_model_upload_params(t->gpu, t->params);
    struct gpu_data *d = on_gpu ? device_data(t, c, 0) : NULL;
    if (d) { /* batches assembled and ranked on the device, the ranks read once */
        gpu_eval_phase(t->gpu, d, phase, eb, t->ranks);
        metrics_compute(spec, t->ranks, ph->n_inst, values);
        return;
    }
#endif
    for (int64_t s = 0; s < ph->n_inst; s += eb) {
        int B = (int)(ph->n_inst - s < eb ? ph->n_inst - s : eb);
        /* test_all: the file's candidates (or the target alone) give the user vectors; the
         * catalog is then scored block by block (topk.h), never as a (B, N) matrix. */
        batch_fill(batch, c, phase, t->eval_index + s, B, t->opts.history_max, NULL, 0, 0);
        model_batch_t mb = as_model_batch(batch);
#ifdef TIMIREC_CUDA
        if (on_gpu) gpu_eval_scores(t->gpu, &mb, t->ws.scores);
        else
#endif
            model_eval_scores_f(&t->lay, t->params, &mb, &t->ws);
        (void)on_gpu;
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
    metrics_compute(spec, t->ranks, ph->n_inst, values);
}
