/* The resumable state of a training run: everything a run needs to continue after an
 * interruption exactly as if it had not stopped (bit for bit), written beside the model
 * checkpoint as <model_path>.state.
 *
 * What is saved: the parameters and both Adam moments (per tensor, the reference's names
 * prefixed "param.", "adam.exp_avg.", "adam.exp_avg_sq."), Adam's step count (with LazyAdam
 * also the item tables' per-row step counts, "adam.row_step."), the trainer's
 * step counter (it keys the dropout masks), the epoch in progress and the number of its
 * batches already trained with their summed loss, the dev metrics of every finished epoch
 * (what early stopping and the best-checkpoint rule read), a fingerprint of the dataset, and
 * every option of the run ("option.<name>" metadata). What is not saved, because it is a pure
 * function of (seed, epoch): the epoch's shuffle and training negatives (sampler.h).
 *
 * The file is safetensors (safetensors.h; Python reads it with safetensors.numpy.load_file),
 * written atomically by st_write: a temporary file, fflush + fsync, rename, fsync of the
 * folder. A kill -9 at any moment leaves the previous state or the new one, never a torn one. */
#ifndef TIMIREC_TRAIN_STATE_H
#define TIMIREC_TRAIN_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "timirec/corpus.h"
#include "timirec/model.h"
#include "timirec/options.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TRAIN_STATE_FORMAT "timirec-train-state-1"

typedef struct {
    int64_t epoch;      /* 0-based epoch in progress (= epochs finished when batch is 0) */
    int64_t batch;      /* batches of that epoch already trained */
    double loss_sum;    /* the sum of their losses (the epoch's mean loss continues exactly) */
    int64_t step;       /* trainer step counter (keys the dropout masks) */
    int64_t adam_step;  /* Adam's step count (its bias corrections) */
    int64_t n_dev;      /* finished epochs, each evaluated on dev */
    int n_values;       /* dev values per epoch (>= 1) */
    double *dev;        /* (n_dev, n_values) dev metrics per finished epoch; column 0 is the
                           main metric that early stopping and the best checkpoint follow */
    uint64_t data_fingerprint; /* train_state_fingerprint of the dataset */
    int64_t *row_step;  /* LazyAdam (model.h adam_step_lazy): (adam_lazy_rows) the item tables'
                           per-row step counts, saved as I64 "adam.row_step.<table name>";
                           NULL with Adam. train_state_load allocates it when the state has
                           them (train_progress_free) */
} train_progress_t;

void train_progress_free(train_progress_t *p);

/* A 64-bit hash of the dataset as loaded (ids, times, negatives of the three files): resuming
 * on other data is refused. */
uint64_t train_state_fingerprint(const corpus_t *c);

/* Write the state atomically to path. opts: the run's option table (every value is saved).
 * Returns 0 or -1 with a message. */
int train_state_save(const char *path, const model_layout_t *lay, const float *params,
                     const float *adam_m, const float *adam_v, const train_progress_t *p,
                     const opt_t *opts, int n_opts, char *err, size_t errlen);

/* Read a state written by train_state_save. Refused, with a message naming every option
 * whose value differs (as "--lr 0.001 in the state, 0.002 now"): a state whose options differ
 * from opts, except the options listed in may_differ (NULL-terminated; those that do not
 * change the training, such as threads or log paths); a state of another dataset
 * (fingerprint); a state whose tensors do not match lay. On success fills params, adam_m,
 * adam_v (lay.total floats each) and *p (p->dev allocated: train_progress_free). Returns 0 or
 * -1 with a message. */
int train_state_load(const char *path, const model_layout_t *lay, float *params, float *adam_m,
                     float *adam_v, train_progress_t *p, uint64_t data_fingerprint,
                     const opt_t *opts, int n_opts, const char *const *may_differ, char *err,
                     size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
