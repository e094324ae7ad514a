/* The corpus resident on the device and the CUDA backend's epoch drivers (kernels/sampler.cu,
 * kernels/epoch.cu, kernels/epoch_staged.cu): the GPU twin of sampler.h. The training set's
 * histories, targets and sorted clicked lists (CSR), and dev/test's histories and candidates,
 * are uploaded once; each epoch's negatives are drawn on the device with the same Philox
 * streams and the same rejection rule as sampler_train_negatives, the shuffle is the same sort
 * of the same Philox keys as sampler_shuffle (CUB's stable radix sort), and batches are
 * assembled on the device exactly as batch_fill assembles them on the host
 * (tests/test_gpu_sampler.c compares all three bit for bit). Only declared for CUDA builds
 * (TIMIREC_CUDA). */
#ifndef TIMIREC_GPU_DATA_H
#define TIMIREC_GPU_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "timirec/corpus.h"
#include "timirec/gpu.h"
#include "timirec/model.h"
#include "timirec/sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpu_data gpu_data_t;

/* Upload what training and (file-candidate) evaluation read: every instance's history (as an
 * offset into the uploaded sequences, histories cut at history_max as corpus_history does),
 * target and, for dev/test, the file's negatives; the train clicked lists. num_neg: training
 * negatives per instance. Fatal on a CUDA failure. */
gpu_data_t *gpu_data_create(const corpus_t *c, int history_max, int num_neg);
void gpu_data_free(gpu_data_t *d);

/* The epoch's negatives (device, kept in d) as sampler_train_negatives draws them; -1 with
 * the same message when some user has every item in train. */
int gpu_data_train_negatives(gpu_data_t *d, uint64_t seed, uint32_t epoch, char *err,
                             size_t errlen);
/* The epoch's order (device, kept in d) as sampler_shuffle computes it. */
void gpu_data_shuffle(gpu_data_t *d, uint64_t seed, uint32_t epoch);
/* Copies back for tests: neg (n_train_instances * num_neg), perm (n_train_instances). */
void gpu_data_read_negatives(gpu_data_t *d, int32_t *neg);
void gpu_data_read_order(gpu_data_t *d, int64_t *perm);

/* Assemble on the device the batch of instances [start, start + B) of `phase` (train: in the
 * last shuffled order, with the last drawn negatives; dev/test: in file order, candidates the
 * target and the file's negatives), then copy it into the host batch b (user, length, hist,
 * pos, mask, cand as batch_fill writes them). For tests and benchmarks. */
void gpu_data_fill_batch(gpu_data_t *d, int phase, int64_t start, int B, batch_t *b);

/* ---- the epoch driver --------------------------------------------------------------------- */

/* One training epoch on the device from batch `first_batch` on: negatives, shuffle, every
 * batch assembled on the device, the step, Adam; the losses summed on the device (no
 * synchronisation per step) and read once when the epoch stops. A step whose loss is not
 * finite is not applied, nor is any after it: the driver reports it in bad_batch and the
 * caller reruns that batch the per-step way to say what went wrong. */
typedef struct {
    uint64_t seed;          /* random_seed: negatives, shuffle, dropout */
    uint32_t epoch;         /* 0-based */
    int batch_size;
    int64_t first_batch;    /* in: resume from this batch (0: a fresh epoch) */
    double loss_sum;        /* in: the summed loss of the batches before first_batch;
                               out: through the last batch applied */
    int64_t step;           /* in: optimiser steps so far (the dropout key of the first batch);
                               out: after the last batch applied */
    /* Called after each batch is queued (batch 0-based, n_batches): non-zero stops after it.
     * May be NULL. */
    int (*after_batch)(void *ctx, int64_t batch, int64_t n_batches);
    void *ctx;
    /* out */
    int64_t n_batches;
    int64_t next_batch;     /* the first batch not applied */
    int64_t bad_batch;      /* -1, or the first batch whose loss was not finite */
    float bad_loss;         /* its loss */
    float last_loss;        /* the last applied batch's loss */
    /* host wall-clock seconds (benchmarks): from the call to the first step queued
     * (negatives, shuffle, order read back, batch plan and its upload), and queueing the
     * steps; the rest of the epoch the host waits for the device */
    double prepare_s, queue_s;
    int64_t graph_replays;  /* steps launched as a CUDA graph (pretrain; see epoch.cu) */
    int64_t graph_captures; /* graphs captured this epoch (a shape's second batch, or again) */
    int64_t graph_stale;    /* of those, graphs captured again because they had gone stale */
} gpu_epoch_t;

/* Returns 0, or -1 with a message (a user without any negative left, a corpus the model does
 * not fit). opt->step advances by the batches applied. Pretrain steps are captured as CUDA
 * graphs, one per batch shape, and replayed (TIMIREC_GPU_GRAPHS=0: launched one by one; the
 * results are the same bit for bit). */
int gpu_train_epoch(gpu_model_t *g, gpu_data_t *d, adam_t *opt, gpu_epoch_t *e, char *err,
                    size_t errlen);

/* The same epoch with host-built batches (the alternative, kept for measurement): the
 * caller draws the negatives and the order on the host (sampler.h); each batch is built by
 * batch_fill into one of two pinned slots, its GRU packing computed on the host beside it, and
 * copied asynchronously on a copy stream of its own into one of two device slots (events order
 * the copies after the step that last read the slot, and the step after its copies), so the
 * host builds batch i+1 while the device trains on batch i. No graphs. Same results as
 * gpu_train_epoch bit for bit. */
int gpu_train_epoch_staged(gpu_model_t *g, const corpus_t *c, int history_max,
                           const int32_t *train_neg, int num_neg, const int64_t *order,
                           adam_t *opt, gpu_epoch_t *e, char *err, size_t errlen);

/* NULL while CUDA graphs may still be used, else why they were turned off for this model's
 * run (a capture failed: the line also went to stderr). */
const char *gpu_model_graphs_off_why(const gpu_model_t *g);
/* Test hook: make the next graph capture fail, as a real capture fails when a call inside it
 * is refused (GPU_CAPTURE_FAIL_SYNC: a synchronous memset, which a capture does not allow) or
 * when scratch would have to grow inside it (GPU_CAPTURE_FAIL_GROW). */
enum { GPU_CAPTURE_FAIL_SYNC = 1, GPU_CAPTURE_FAIL_GROW = 2 };
void gpu_model_test_capture_failure(gpu_model_t *g, int how);

/* Ranks (1 + candidates scored at least as high as the target, as metrics_rank) of every
 * instance of phase (PHASE_DEV or PHASE_TEST; the file's candidates) with the device's
 * parameters, in batches of eval_batch (<= the model's max_B) assembled on the device, ranks
 * computed on the device and copied back once: ranks (n_inst of the phase). */
void gpu_eval_phase(gpu_model_t *g, gpu_data_t *d, int phase, int eval_batch, int64_t *ranks);

#ifdef __cplusplus
}
#endif
#endif
