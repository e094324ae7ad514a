/* The trainer's compute backends (trainer.c drives them; docs/ARCHITECTURE.md): the CPU
 * reference (src/backend_cpu.c) always, and the CUDA backend when the build links it
 * (kernels/trainer_backend.cu; src/nocuda/trainer_backend.c in a build without nvcc, which
 * only says why there is none). The choice is made at link time, never by #ifdef in the
 * trainer.
 *
 * The host copies in trainer_t (params, adam_m, adam_v) are authoritative between trainer
 * calls: checkpoints and the resumable state read and write them. A backend that keeps its own
 * copy takes them in to_device and gives them back in to_host. */
#ifndef TIMIREC_BACKEND_H
#define TIMIREC_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "timirec/trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* trainer_backend_t.train_epoch: the backend leaves the epoch to the trainer's per-step loop
 * (batch_fill on the host, then train_step for every batch). */
enum { TRAIN_PER_STEP = 100 };

struct trainer_backend {
    const char *name; /* "cpu", "cuda" */
    /* Set the backend up for t (t->lay, t->params, t->opts set; batches up to max_B x max_L
     * x max_C): its state in t->be_state, its strings in t->backend and t->device. 0, or -1
     * with why (nothing kept; the trainer stays on the CPU). */
    int (*create)(trainer_t *t, int max_B, int max_L, int max_C, char *why, size_t whylen);
    void (*destroy)(trainer_t *t);
    /* The host copies of the parameters and the Adam moments to the backend, and back. */
    void (*to_device)(trainer_t *t);
    void (*to_host)(trainer_t *t);
    /* Train the epoch from cur->batch on its own way (as trainer_train_epoch specifies, the
     * host copies up to date when it returns), or return TRAIN_PER_STEP untouched. */
    int (*train_epoch)(trainer_t *t, const corpus_t *c, uint32_t epoch, epoch_cursor_t *cur,
                       char *err, size_t errlen);
    /* One optimisation step on mb: *loss, the gradients, the Adam update. Returns 0, or 1 when
     * the loss, a gradient (with t->detect_anomaly also an intermediate) or an updated
     * parameter is not finite; the update is skipped when the loss or a gradient is bad, and
     * t->params, t->grads (and t->ws with detect_anomaly) then hold what the report names. */
    int (*train_step)(trainer_t *t, const model_batch_t *mb, dropout_key_t key, double *loss);
    /* The finetune intents of the last training step into pred and target, (t->last_B, K)
     * each. */
    void (*read_intents)(trainer_t *t, float *pred, float *target);
    /* Rank every instance of phase (file candidates) into t->ranks its own way: 0, or 1 when
     * the trainer's loop is to score batch by batch through eval_scores. */
    int (*eval_ranks)(trainer_t *t, const corpus_t *c, int phase);
    /* Candidate scores of mb (host batch) into t->ws.scores (B, C). */
    void (*eval_scores)(trainer_t *t, const model_batch_t *mb);
};

extern const trainer_backend_t trainer_backend_cpu;

/* The CUDA backend this build links, or NULL with why (a build without nvcc). */
const trainer_backend_t *trainer_backend_cuda(char *why, size_t whylen);

/* CUDA builds: the trainer's device model (gpu.h) when it runs on the CUDA backend, else
 * NULL. For tests and benchmarks that drive the device directly. */
struct gpu_model *trainer_gpu_model(const trainer_t *t);

#ifdef __cplusplus
}
#endif
#endif
