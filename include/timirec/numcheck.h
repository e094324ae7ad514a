/* Finiteness checks for training (NaN / Inf): the parameter table, the gradients and the
 * intermediate outputs that one training step leaves in the CPU model workspace. The
 * workspace is walked through the activation table (model.h): the entries the table marks as
 * scanned whose condition (enum act_scan) says the last step wrote them in full, over the
 * region of that step's batch shape, so a healthy step never reports stale or unwritten
 * memory (tests/test_numcheck.c poisons the whole workspace with NaN first and checks exactly
 * that). */
#ifndef TIMIREC_NUMCHECK_H
#define TIMIREC_NUMCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "timirec/cpu_ops.h"
#include "timirec/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Index of the first NaN or +-Inf in x[0 .. n), -1 when every element is finite. */
int64_t numcheck_first_nonfinite(const float *x, int64_t n);

/* First tensor (table order) of a flat buffer with the layout's shape (parameters, gradients
 * or an Adam moment) holding a non-finite element. Returns 1 and writes "NAME[i, j] = nan"
 * (the reference state_dict name, element as row and column) into out; 0 when all finite. */
int numcheck_tensors(const model_layout_t *lay, const float *buf, char *out, size_t outlen);

/* One intermediate array of the workspace. */
typedef struct {
    const char *name;   /* the table's name, e.g. "extractor.t = tanh(x W1^T + b1)" */
    char shape[40];     /* e.g. "(B, L, a)" */
    float *data;
    int64_t count;      /* elements the last step wrote */
    int64_t dims[3];    /* the shape's values, for naming an element (unused dims 0) */
} numcheck_array_t;

#define NUMCHECK_MAX_ARRAYS 48

/* The arrays one training step (model_train_step_f with gradients) writes, in the activation
 * table's order (forward, then backward): extractor (x0, q, k, v, att, LayerNorm statistics, h1, ffn_r, x, t, e, alpha), the
 * interests V, the predictor (packed GRU inputs, gates, states, g, projection activations,
 * pred_intent), the user vector, target_intent, scores, then dscores, du, dV, d_pred_intent
 * and the predictor's input gradients. B, L come from the last forward (ws->ext.B, .L); C is
 * the batch's candidate count. Returns the number of entries written to out. */
int numcheck_workspace_arrays(const model_layout_t *lay, model_ws_t_f *ws, int C,
                              numcheck_array_t *out, int max_out);

/* The first non-finite element of those arrays, in that order: returns 1 and writes
 * "NAME SHAPE[i, j, k] = nan" into out; 0 when all finite. */
int numcheck_workspace(const model_layout_t *lay, model_ws_t_f *ws, int C, char *out,
                       size_t outlen);

#ifdef __cplusplus
}
#endif
#endif
