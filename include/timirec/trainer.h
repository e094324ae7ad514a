/* Training and evaluation over a corpus with the CPU reference backend, or the CUDA backend
 * when opts.use_gpu finds a GPU (SPEC.md section 7):
 * per epoch, Philox negatives and shuffle, every batch through forward, backward and Adam;
 * evaluation ranks each dev/test instance's candidates. The command line, checkpoints and
 * early stopping build on this. */
#ifndef TIMIREC_TRAINER_H
#define TIMIREC_TRAINER_H

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
} train_opts_t;

void train_opts_default(train_opts_t *o);

typedef struct {
    train_opts_t opts;
    model_layout_t lay;
    float *params, *grads, *adam_m, *adam_v; /* (lay.total) each, one layout */
    adam_t adam;
    model_ws_t_f ws;
    batch_t batch;
    int32_t *train_neg;    /* (n_train_instances, num_neg) this epoch's negatives */
    int64_t *order;        /* (n_train_instances) this epoch's shuffle */
    int64_t *eval_index;   /* (max instances of dev/test) 0, 1, 2, ... */
    int64_t *ranks;        /* (max instances of dev/test) */
    int64_t step;          /* optimisation steps taken (dropout stream) */
    /* Called after every training batch when set (a progress bar): done and total instances. */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
    int all_ready;         /* batch_all / ws_all allocated (full-ranking evaluation) */
    batch_t batch_all;     /* eval batch with every item as a candidate */
    model_ws_t_f ws_all;
    /* The CUDA backend (gpu.h) when opts.use_gpu found a GPU, else NULL. It keeps its own
     * copy of the parameters and the Adam moments; params above stay the authoritative copy
     * between trainer calls (uploaded when an epoch or an evaluation starts, downloaded when
     * an epoch ends), so checkpoints read and write them as with the CPU backend. */
    struct gpu_model *gpu;
    char backend[512];     /* "CPU", or "CUDA: <device>", or why use_gpu fell back to the CPU */
} trainer_t;

/* Set up the model for the corpus: cfg's n_items and history_max are taken from the corpus
 * and opts; parameters initialised from opts.seed. Returns 0 or -1 with a message. */
int trainer_init(trainer_t *t, const corpus_t *c, const model_config_t *cfg,
                 const train_opts_t *opts, char *err, size_t errlen);
void trainer_free(trainer_t *t);

/* One epoch (0-based `epoch` keys the negatives and the shuffle). Returns the mean batch loss;
 * *samples gets the number of training instances. -1 from the error path (message in err). */
double trainer_epoch(trainer_t *t, const corpus_t *c, uint32_t epoch, int64_t *samples,
                     char *err, size_t errlen);

/* Rank every instance of phase (PHASE_DEV or PHASE_TEST) among its candidates (the file's
 * negatives; test_all: every item, the user's other items excluded) and fill
 * values[kind * n_topk + t] as metrics_compute does. */
void trainer_evaluate(trainer_t *t, const corpus_t *c, int phase, int test_all,
                      const metric_spec_t *spec, double *values);

#ifdef __cplusplus
}
#endif
#endif
