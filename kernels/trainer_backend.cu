/* The trainer's CUDA backend (backend.h): the model, the Adam moments and, when needed, the
 * corpus on the device (gpu.h, gpu_data.h); only their public API is used here. Device 0 of
 * the devices CUDA_VISIBLE_DEVICES lets the process see (--gpu).
 *
 * How a training epoch runs (TIMIREC_GPU_EPOCH): "staged", host-built batches (batch_fill, as
 * the per-step path builds them) staged through pinned memory into the epoch driver;
 * "device" (or "1"), the epoch driver on the device-resident corpus (device negatives,
 * shuffle and batches; pretrain steps replayed from CUDA graphs); "0", the trainer's per-step
 * loop (one synchronisation per step). All three give the same results bit for bit
 * (test_gpu_epoch). The default stays on host-built batches until bench_gpu_epoch has
 * measured the device path on a GPU (bench/results/epoch.csv): then set GPU_EPOCH_DEFAULT to
 * the faster. detect_anomaly and the NaN test hook need the per-step loop. Evaluation always
 * goes through gpu_eval_phase (device batches and ranks) unless TIMIREC_GPU_EPOCH=0. */
#include "timirec/backend.h"
#include "timirec/common.h"
#include "timirec/dist.h"
#include "timirec/gpu.h"
#include "timirec/gpu_data.h"
#include "timirec/numcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    gpu_model_t *gpu;
    /* The corpus resident on the device, made when first needed for data_corpus: dev/test
     * evaluation runs on it, and so do training epochs with TIMIREC_GPU_EPOCH=device. */
    gpu_data_t *data;
    const corpus_t *data_corpus;
} cuda_state_t;

static cuda_state_t *state(const trainer_t *t) { return (cuda_state_t *)t->be_state; }

enum { GPU_EPOCH_STEP = 0, GPU_EPOCH_DEVICE = 1, GPU_EPOCH_STAGED = 2 };
#define GPU_EPOCH_DEFAULT GPU_EPOCH_STAGED
static int gpu_epoch_mode(const trainer_t *t, int training) {
    const char *env = getenv("TIMIREC_GPU_EPOCH");
    if (env && env[0] == '0') return GPU_EPOCH_STEP;
    if (!training) return GPU_EPOCH_DEVICE;
    if (t->detect_anomaly || t->test_nan_tensor >= 0) return GPU_EPOCH_STEP;
    if (env && (strcmp(env, "device") == 0 || strcmp(env, "1") == 0)) return GPU_EPOCH_DEVICE;
    if (env && strcmp(env, "staged") == 0) return GPU_EPOCH_STAGED;
    return GPU_EPOCH_DEFAULT;
}

/* The device-resident corpus for c, when the epoch driver or the evaluation is to use it. */
static gpu_data_t *device_data(trainer_t *t, const corpus_t *c, int training) {
    cuda_state_t *s = state(t);
    if (gpu_epoch_mode(t, training) != GPU_EPOCH_DEVICE) return NULL;
    if (s->data && s->data_corpus != c) {
        gpu_data_free(s->data);
        s->data = NULL;
    }
    if (!s->data) {
        s->data = gpu_data_create(c, t->opts.history_max, t->opts.num_neg);
        s->data_corpus = c;
    }
    return s->data;
}

static int cuda_create(trainer_t *t, int max_B, int max_L, int max_C, char *why,
                       size_t whylen) {
    char gpu_why[256];
    gpu_model_t *g = gpu_model_create(&t->lay, t->params, max_B, max_L, max_C, gpu_why,
                                      sizeof gpu_why);
    if (!g) {
        snprintf(why, whylen, "no usable GPU: %s", gpu_why);
        return -1;
    }
    if (t->row_step) gpu_model_lazy_adam(g);
    cuda_state_t *s = (cuda_state_t *)tmr_calloc(1, sizeof *s);
    s->gpu = g;
    t->be_state = s;
    snprintf(t->backend, sizeof t->backend, "CUDA: %s", gpu_model_device(g));
    snprintf(t->device, sizeof t->device, "cuda:0, %s", gpu_model_device(g));
    return 0;
}

static void cuda_destroy(trainer_t *t) {
    cuda_state_t *s = state(t);
    gpu_data_free(s->data);
    gpu_model_free(s->gpu);
    free(s);
    t->be_state = NULL;
}

static void cuda_to_device(trainer_t *t) {
    gpu_model_upload_params(state(t)->gpu, t->params);
    gpu_model_upload_adam(state(t)->gpu, t->adam_m, t->adam_v);
    if (t->row_step) gpu_model_upload_row_step(state(t)->gpu, t->row_step);
}

static void cuda_to_host(trainer_t *t) {
    gpu_model_download_params(state(t)->gpu, t->params);
    gpu_model_download_adam(state(t)->gpu, t->adam_m, t->adam_v);
    if (t->row_step) gpu_model_download_row_step(state(t)->gpu, t->row_step);
}

/* After every queued batch of the epoch driver: the progress bar and the stop flag, as the
 * per-step loop does them. */
typedef struct {
    trainer_t *t;
    int64_t n; /* training instances */
} driver_progress_t;

static int driver_after_batch(void *ctx, int64_t batch, int64_t n_batches) {
    const driver_progress_t *p = (const driver_progress_t *)ctx;
    trainer_t *t = p->t;
    const int64_t n = p->n;
    const int64_t done = (batch + 1) * t->opts.batch_size;
    (void)n_batches;
    t->batches_run++;
    if (t->progress) t->progress(t->progress_ctx, done < n ? done : n, n);
    return (t->stop && *t->stop) ||
           (t->test_stop_after > 0 && t->batches_run >= t->test_stop_after);
}

/* The epoch through the epoch driver: gpu_train_epoch on d, or with d NULL
 * gpu_train_epoch_staged on the host's negatives and order. A non-finite loss: the parameters
 * are those before that batch and cur points at it; TRAIN_PER_STEP then asks the trainer to
 * run it the per-step way, which reports it exactly as it always has. */
static int driver_epoch(trainer_t *t, const corpus_t *c, gpu_data_t *d, uint32_t epoch,
                        epoch_cursor_t *cur, char *err, size_t errlen) {
    gpu_model_t *g = state(t)->gpu;
    cuda_to_device(t);
    gpu_epoch_t e;
    memset(&e, 0, sizeof e);
    e.seed = t->opts.seed;
    e.epoch = epoch;
    e.batch_size = t->opts.batch_size;
    e.first_batch = cur->batch;
    e.loss_sum = cur->loss_sum;
    e.step = t->step;
    driver_progress_t prog = {t, c->phase[PHASE_TRAIN].n_inst};
    e.after_batch = driver_after_batch;
    e.ctx = &prog;
    const int64_t runs0 = t->batches_run;
    const int rc = d ? gpu_train_epoch(g, d, &t->adam, &e, err, errlen)
                     : gpu_train_epoch_staged(g, c, t->opts.history_max, t->train_neg,
                                              t->opts.num_neg, t->order, &t->adam, &e, err,
                                              errlen);
    cuda_to_host(t);
    if (rc) return TRAIN_ERROR;
    t->batches_run = runs0 + (e.next_batch - cur->batch);
    t->step = e.step;
    cur->batch = e.next_batch;
    cur->loss_sum = e.loss_sum;
    if (e.bad_batch >= 0) return TRAIN_PER_STEP;
    return cur->batch < cur->n_batches ? TRAIN_INTERRUPTED : TRAIN_DONE;
}

static int cuda_train_epoch(trainer_t *t, const corpus_t *c, uint32_t epoch, epoch_cursor_t *cur,
                            char *err, size_t errlen) {
    const int mode = gpu_epoch_mode(t, 1);
    /* A data-parallel rank (dist.h) steps batch by batch: its gradients meet the others'. */
    if (mode == GPU_EPOCH_STEP || t->comm) return TRAIN_PER_STEP;
    if (mode == GPU_EPOCH_DEVICE) return driver_epoch(t, c, device_data(t, c, 1), epoch, cur, err, errlen);
    const train_opts_t *o = &t->opts;
    if (sampler_train_negatives(c, o->seed, epoch, o->num_neg, t->train_neg, err, errlen))
        return TRAIN_ERROR;
    sampler_shuffle(cur->samples, o->seed, epoch, t->order);
    return driver_epoch(t, c, NULL, epoch, cur, err, errlen);
}

/* A data-parallel rank's step (t->comm set): the slice's gradients through the host, summed
 * over the ranks there (dist_sum_grads, the CPU backend's exchange over MPI), and back; every
 * rank then applies the same update. The NCCL transport (comm_nccl.h) would keep them on the
 * device; it is not wired in yet. An empty slice (a last batch smaller than the ranks)
 * contributes zero gradients. Dense Adam only (run.c refuses LazyAdam here). */
static int cuda_dist_step(trainer_t *t, const model_batch_t *mb, dropout_key_t key,
                          double *loss) {
    gpu_model_t *g = state(t)->gpu;
    *loss = mb->B > 0 ? gpu_train_step(g, mb, key) : 0.0;
    if (mb->B > 0) gpu_model_read(g, GPU_T_GRADS, t->grads);
    else memset(t->grads, 0, (size_t)t->lay.total * sizeof *t->grads);
    int bad = !isfinite(*loss);
    if (!bad && t->detect_anomaly) {
        char what[8];
        bad = numcheck_tensors(&t->lay, t->grads, what, sizeof what);
    }
    if (dist_agree(t, loss, bad)) { /* the batch's loss, one verdict for all ranks */
        cuda_to_host(t);
        return 1;
    }
    dist_sum_grads(t, mb);
    gpu_model_upload_grads(g, t->grads);
    gpu_adam_step(g, &t->adam);
    return 0;
}

static int cuda_train_step(trainer_t *t, const model_batch_t *mb, dropout_key_t key,
                           double *loss) {
    if (t->comm) return cuda_dist_step(t, mb, key, loss);
    gpu_model_t *g = state(t)->gpu;
    *loss = gpu_train_step(g, mb, key);
    int bad = !isfinite(*loss);
    if (!bad && t->detect_anomaly) { /* the gradients only: the workspace stays there */
        char what[8];
        gpu_model_read(g, GPU_T_GRADS, t->grads);
        bad = numcheck_tensors(&t->lay, t->grads, what, sizeof what);
    }
    if (bad) {
        cuda_to_host(t);
        gpu_model_read(g, GPU_T_GRADS, t->grads);
        return 1;
    }
    gpu_adam_step(g, &t->adam);
    return 0;
}

static void cuda_read_intents(trainer_t *t, float *pred, float *target) {
    gpu_model_read(state(t)->gpu, GPU_T_PRED_INTENT, pred);
    gpu_model_read(state(t)->gpu, GPU_T_TARGET_INTENT, target);
}

static int cuda_eval_ranks(trainer_t *t, const corpus_t *c, int phase) {
    gpu_model_upload_params(state(t)->gpu, t->params);
    gpu_data_t *d = device_data(t, c, 0);
    if (!d) return 1;
    /* batches assembled and ranked on the device, the ranks read once */
    gpu_eval_phase(state(t)->gpu, d, phase, t->opts.eval_batch_size, t->ranks);
    return 0;
}

static void cuda_eval_scores(trainer_t *t, const model_batch_t *mb) {
    gpu_eval_scores(state(t)->gpu, mb, t->ws.scores);
}

static const trainer_backend_t cuda_backend = {
    "cuda",           cuda_create,     cuda_destroy,      cuda_to_device,  cuda_to_host,
    cuda_train_epoch, cuda_train_step, cuda_read_intents, cuda_eval_ranks, cuda_eval_scores,
};

const trainer_backend_t *trainer_backend_cuda(char *why, size_t whylen) {
    (void)why, (void)whylen;
    return &cuda_backend;
}

struct gpu_model *trainer_gpu_model(const trainer_t *t) {
    return t->be == &cuda_backend ? state(t)->gpu : NULL;
}
