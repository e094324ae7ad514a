/* Training and evaluation over a corpus with the CPU reference backend, or the CUDA backend
 * when opts.use_gpu finds a GPU and the build links one (backend.h; docs/MODEL.md "Training loop"):
 * per epoch, Philox negatives and shuffle, every batch through forward, backward and Adam;
 * evaluation ranks each dev/test instance's candidates. The command line, checkpoints and
 * early stopping build on this. */
#ifndef TIMIREC_TRAINER_H
#define TIMIREC_TRAINER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "timirec/corpus.h"
#include "timirec/cpu_ops.h"
#include "timirec/metrics.h"
#include "timirec/model.h"
#include "timirec/sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int batch_size;       /* 256 */
    int eval_batch_size;  /* 256 */
    int history_max;      /* 20 (also the model's position table) */
    int num_neg;          /* 1 */
    double lr;            /* 1e-3 */
    double l2;            /* 0 */
    uint64_t seed;        /* random_seed */
    int use_gpu;          /* 1: the CUDA backend (device 0) when a GPU is usable, else the CPU */
    int64_t eval_users;   /* 0: evaluate every instance; > 0 with test_all: the instances of a
                             seeded sample of this many users (sampler_eval_users) */
    int lazy_adam;        /* 0: Adam (dense); 1: LazyAdam on the item tables (model.h) */
} train_opts_t;

void train_opts_default(train_opts_t *o);

typedef struct trainer_backend trainer_backend_t; /* backend.h */

typedef struct {
    train_opts_t opts;
    model_layout_t lay;
    float *params, *grads, *adam_m, *adam_v; /* (lay.total) each, one layout */
    adam_t adam;
    int64_t *row_step;     /* (adam_lazy_rows(&lay)) LazyAdam's per-row step counts; NULL
                              with Adam */
    int64_t *lazy_rows;    /* LazyAdam, (adam_lazy_cap(batch_size, max history, 1 + num_neg)):
                              the lazy rows the last training step's backward wrote ... */
    int64_t n_lazy_rows;   /* ... and how many: the CPU zeroes only those and the dense
                              tensors' gradients before a step, not the whole tables */
    model_ws_t_f ws;
    batch_t batch;
    int32_t *train_neg;    /* (n_train_instances, num_neg) this epoch's negatives */
    int64_t *order;        /* (n_train_instances) this epoch's shuffle */
    int64_t *eval_index;   /* (max instances of dev/test) the instances the last
                              trainer_evaluate ranked (n_eval of them), ascending */
    int64_t n_eval;
    int64_t *ranks;        /* (max instances of dev/test) the last trainer_evaluate's, one per
                              eval_index entry (--per_user_metrics writes them) */
    int64_t step;          /* optimisation steps taken (dropout stream) */
    /* Called after every training batch when set (a progress bar): done and total instances. */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
    /* The backend doing the work (backend.h) and its state: the CPU reference, or the CUDA
     * backend when opts.use_gpu found a GPU. A backend that keeps its own copy of the
     * parameters and Adam moments takes the host copies above when an epoch or an evaluation
     * starts and gives them back when the epoch returns, so params stay authoritative between
     * trainer calls (checkpoints read and write them). */
    const trainer_backend_t *be;
    void *be_state;
    int last_B;            /* instances in the last training batch (trainer_last_intents) */
    char backend[512];     /* "CPU", or "CUDA: <device>", or why use_gpu fell back to the CPU */
    char device[320];      /* what does the work: "cuda:0, <device>" or "cpu (N threads)" */
    /* Robustness (see trainer_train_epoch). */
    const volatile sig_atomic_t *stop; /* non-zero: stop after the current batch */
    int detect_anomaly;    /* also check gradients and the workspace after every step */
    int64_t batches_run;   /* batches trained by this process */
    /* Test hooks (run.c reads them from the environment; see tests/cli_resume.sh). */
    int64_t test_stop_after;  /* > 0: act as if stopped once batches_run reaches it */
    int test_nan_tensor;      /* table index, -1 none: write NaN into its first element ... */
    int64_t test_nan_step;    /* ... just before this step (0-based) */
} trainer_t;

/* The model's view of a sampler batch. */
static inline model_batch_t trainer_model_batch(const batch_t *b) {
    model_batch_t mb = {b->B, b->L, b->C, b->hist, b->pos, b->length, b->cand, 0, 0};
    return mb;
}

/* Set up the model for the corpus: cfg's n_items and history_max are taken from the corpus
 * and opts; parameters initialised from opts.seed. Returns 0 or -1 with a message. */
int trainer_init(trainer_t *t, const corpus_t *c, const model_config_t *cfg,
                 const train_opts_t *opts, char *err, size_t errlen);
void trainer_free(trainer_t *t);

/* Where an epoch stands. In: the batch to start from and the summed loss of the batches before
 * it (0 and 0 for a fresh epoch; a resumed one continues bit for bit, as the epoch's shuffle
 * and negatives are pure functions of (seed, epoch)). Out: where it stopped. */
typedef struct {
    int64_t batch;      /* batches of the epoch done */
    double loss_sum;    /* sum of their losses */
    int64_t n_batches;  /* out: batches in the epoch */
    int64_t samples;    /* out: training instances in the epoch */
} epoch_cursor_t;

enum {
    TRAIN_ERROR = -1,       /* err says why */
    TRAIN_DONE = 0,         /* every batch of the epoch trained */
    TRAIN_INTERRUPTED = 1,  /* *t->stop was raised: stopped after batch cur->batch - 1, more remain */
    TRAIN_NONFINITE = 2     /* a NaN or Inf: err names the step and the first bad tensor */
};

/* Train the epoch's batches from cur->batch on (0-based `epoch` keys the negatives and the
 * shuffle). After every batch: the loss must be finite; with detect_anomaly every
 * intermediate output of the step and every gradient too (numcheck.h); after the Adam update
 * every parameter. The first failure stops at once, without the update when the loss or a
 * gradient is bad: TRAIN_NONFINITE with a message naming the epoch, the batch, the step and
 * the first non-finite tensor by its reference name. Then, when *t->stop is set and batches
 * remain, TRAIN_INTERRUPTED (the last batch always completes the epoch). */
int trainer_train_epoch(trainer_t *t, const corpus_t *c, uint32_t epoch, epoch_cursor_t *cur,
                        char *err, size_t errlen);

/* A whole epoch from its start (trainer_train_epoch from batch 0). Returns the mean batch
 * loss; *samples gets the number of training instances. -1 when it did not complete (an
 * error or a non-finite value: message in err). */
double trainer_epoch(trainer_t *t, const corpus_t *c, uint32_t epoch, int64_t *samples,
                     char *err, size_t errlen);

/* Rank every instance of phase (PHASE_DEV or PHASE_TEST) among its candidates (the file's
 * negatives; test_all: every item, the user's other items excluded, scored block by block
 * by topk_rank_cpu) and fill values[kind * n_topk + t] as metrics_compute does; t->ranks keeps
 * each instance's rank. With test_all and opts.eval_users > 0 only the instances of that
 * seeded sample of users (sampler_eval_users(c, phase, opts.seed, ...)) are ranked;
 * t->eval_index and t->n_eval say which. */
void trainer_evaluate(trainer_t *t, const corpus_t *c, int phase, int test_all,
                      const metric_spec_t *spec, double *values);

/* The finetune intents of the last training batch (the reference's check_epoch view): pred
 * and target get (B, K) each, room for (opts.batch_size, K); returns B (0: no batch trained
 * yet). Read it before trainer_evaluate, which reuses the model's buffers. */
int trainer_last_intents(trainer_t *t, float *pred, float *target);

#ifdef __cplusplus
}
#endif
#endif
