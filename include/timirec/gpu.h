/* The CUDA training backend as the host sees it (kernels/model.cu): the model's parameters,
 * gradients and Adam moments on the device in the one flat layout of model.h, and the same
 * training step, evaluation and Adam as the CPU reference (model_train_step_f,
 * model_eval_scores_f, adam_step), which defines what they compute. Only declared for CUDA
 * builds (TIMIREC_CUDA); callers guard with #ifdef TIMIREC_CUDA.
 *
 * Errors: gpu_model_create returns NULL with a message when no GPU is usable, so a caller can
 * fall back to the CPU; any other failing CUDA call (out of device memory included) or a batch
 * outside the model's ranges is fatal (file:line and what was wrong), as the CPU backend's
 * checks are. */
#ifndef TIMIREC_GPU_H
#define TIMIREC_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "timirec/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpu_model gpu_model_t;

/* Upload params (lay->total floats, host) and allocate on device 0: gradients, both Adam
 * moments (zero), and the workspace for batches up to max_B x max_L histories and max_C
 * candidates (training and evaluation alike). lay is copied. */
gpu_model_t *gpu_model_create(const model_layout_t *lay, const float *params, int max_B,
                              int max_L, int max_C, char *err, size_t errlen);
void gpu_model_free(gpu_model_t *g);

/* The device's description (for logs), e.g. "NVIDIA H200 (sm_90, 139.8 GiB, 132 SMs)". */
const char *gpu_model_device(const gpu_model_t *g);

/* Host <-> device copies of the flat buffers (lay->total floats each). */
void gpu_model_upload_params(gpu_model_t *g, const float *params);
/* The gradients of the next gpu_adam_step (a data-parallel rank's sum over the ranks). */
void gpu_model_upload_grads(gpu_model_t *g, const float *grads);
void gpu_model_download_params(gpu_model_t *g, float *params);
void gpu_model_upload_adam(gpu_model_t *g, const float *m, const float *v);
void gpu_model_download_adam(gpu_model_t *g, float *m, float *v);

/* One training batch (host arrays, copied to the device): zero the device gradients, forward,
 * loss (docs/MODEL.md, "Ranking loss", "Distillation loss"), backward into the device gradients.
 * Returns the loss, as model_train_step_f with a gradient buffer. */
float gpu_train_step(gpu_model_t *g, const model_batch_t *b, dropout_key_t key);

/* Evaluation scores (B, C) into scores (host), as model_eval_scores_f: pretrain max over
 * interests, finetune the softmax-weighted user vector; no dropout. */
void gpu_eval_scores(gpu_model_t *g, const model_batch_t *b, float *scores);

/* adam_step on the device buffers (params -= ..., moments updated; opt->step advances);
 * after gpu_model_lazy_adam, adam_step_lazy on the last training batch's rows. */
void gpu_adam_step(gpu_model_t *g, adam_t *opt);

/* From now on LazyAdam (model.h adam_step_lazy), per-row step counts zero; and their copies
 * (adam_lazy_rows int64 each, host) to and from the device. */
void gpu_model_lazy_adam(gpu_model_t *g);
void gpu_model_upload_row_step(gpu_model_t *g, const int64_t *row_step);
void gpu_model_download_row_step(gpu_model_t *g, int64_t *row_step);

/* What gpu_model_read can copy back (values of the last train step or evaluation). */
typedef enum {
    GPU_T_PARAMS,        /* (lay.total) */
    GPU_T_GRADS,         /* (lay.total) */
    GPU_T_ADAM_M,        /* (lay.total) */
    GPU_T_ADAM_V,        /* (lay.total) */
    GPU_T_X,             /* (B, L, d) the extractor's sequence output (input of the interests) */
    GPU_T_V,             /* (B, K, d) interests */
    GPU_T_SCORES,        /* (B, C) */
    GPU_T_DSCORES,       /* (B, C) d loss / d scores (training) */
    GPU_T_PRED_INTENT,   /* (B, K) finetune */
    GPU_T_TARGET_INTENT, /* (B, K) finetune training */
    GPU_T_DV,            /* (B, K, d) d loss / d V (training) */
    GPU_T_KSTAR          /* (B) int32, pretrain training */
} gpu_tensor_t;

/* Copy tensor `which` (float, or int32 for GPU_T_KSTAR) into out (host) and return its
 * element count for the last batch's shape; out NULL: the count only. */
int64_t gpu_model_read(gpu_model_t *g, gpu_tensor_t which, void *out);

#ifdef __cplusplus
}
#endif
#endif
