/* The device-resident corpus (include/timirec/gpu_data.h), shared by kernels/sampler.cu (which
 * builds it and draws/assembles from it) and kernels/epoch.cu (the epoch driver). */
#ifndef TIMIREC_KERNELS_DATA_CUH
#define TIMIREC_KERNELS_DATA_CUH

#include "common.cuh"
#include "timirec/gpu_data.h"
#include "timirec/math_hd.h"

/* One phase's instances, in file order. */
typedef struct {
    int64_t n_inst;
    int64_t *start;     /* (n_inst) device: first history item's index in seq_item */
    int32_t *len;       /* (n_inst) device: history length (<= history_max) */
    int32_t *user;      /* (n_inst) device */
    int32_t *target;    /* (n_inst) device */
    int32_t n_neg;      /* negatives per instance: num_neg (train) or the file's count */
    int32_t *neg;       /* (n_inst, n_neg) device: train: this epoch's draw; dev/test: the file's */
    int32_t *h_len;     /* (n_inst) host copy of len (batch shapes and GRU packing) */
    int32_t max_len;    /* longest history of the phase */
} gpu_phase_t;

struct gpu_data {
    const corpus_t *c;  /* host corpus (the negatives' check) */
    int32_t n_items;
    int history_max, num_neg;
    int32_t *seq_item;          /* device: every user's sequence, concatenated */
    int64_t *train_off;         /* (n_users + 1) device */
    int32_t *train_items;       /* device: sorted clicked lists */
    gpu_phase_t ph[N_PHASES];
    /* the shuffle */
    uint64_t *keys, *keys_sorted;   /* (n_train) */
    int64_t *index, *order;         /* (n_train) 0..n-1, and the sorted order */
    void *sort_temp;
    size_t sort_temp_bytes;
};

/* Write the device batch of instances [start, start + B) of phase into device arrays (rows
 * of L and C = 1 + ph.n_neg); order: the instance of batch slot i is order[start + i] (NULL:
 * start + i). batch_ctr (device) given: start = *batch_ctr * bs, read when the kernels run
 * (graph replays). mask and user may be NULL. L must be >= the longest history in the
 * batch. */
void gpu_data_assemble(gpu_data_t *d, int phase, const int64_t *order, int64_t start,
                       const int64_t *batch_ctr, int bs, int B, int L, int32_t *user,
                       int32_t *length, int32_t *hist, int32_t *pos, float *mask,
                       int32_t *cand);

/* Launchers the epoch driver adds to the op families (heads.cu, adam.cu). */
/* The fused head launchers (gpu_pretrain_rank, gpu_candidate_rank, gpu_user_vector_distill)
 * with the per-row loss terms left in rows (B doubles, device) and no host sum (row b: the
 * ranking term; the KL term before temp^2 / B; B_all as theirs). */
void gpu_pretrain_rank_rows(gpu_ctx_t *ctx, const float *E, const float *V, const int32_t *cand,
                            int B, int C, int K, int d, int B_all, int32_t *kstar, float *scores,
                            float *dscores, double *rows);
void gpu_candidate_rank_rows(gpu_ctx_t *ctx, const float *E, const float *u, const int32_t *cand,
                             int B, int C, int d, int B_all, float *scores, float *dscores,
                             double *rows);
void gpu_user_vector_distill_rows(gpu_ctx_t *ctx, const float *E, const float *V,
                                  const int32_t *cand, const float *pred_intent, int B, int C,
                                  int K, int d, int B_all, double temp, float *w, float *u,
                                  float *target_intent, float *d_pred_intent, double *rows);
/* gpu_adam_update (lb NULL) or gpu_adam_update_lazy (lb: the step's touched rows), skipped on
 * the device when *bad >= 0 (opt->step still advances). With
 * by_batch (device, adam_scalars_t per batch of the epoch) the step's scalars, l2 included, are
 * by_batch[*batch_ctr], read when the kernel runs (graph replays), and opt is left alone (the
 * caller advances opt->step once per batch, however the step was launched). */
void gpu_adam_update_guarded(gpu_ctx_t *ctx, adam_t *opt, const model_layout_t *lay,
                             float *params, const float *grads, float *m, float *v,
                             const int64_t *bad, const adam_scalars_t *by_batch,
                             const int64_t *batch_ctr, const gpu_lazy_batch_t *lb);

#endif
