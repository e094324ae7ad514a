/* The CUDA backend's layer operations on device pointers (kernels/, one .cu per op family):
 * the GPU twin of cpu_ops.h, one launcher per CPU function with the same argument order,
 * shapes and accumulate/overwrite contract (see the CPU declarations in
 * include/timirec/cpu/), so the parity tests run
 * each op on the same inputs on both sides. Only declared for CUDA builds (TIMIREC_CUDA);
 * gpu.h composes them into the model's training step.
 *
 * Conventions: every pointer argument is device memory unless its comment says "host";
 * row-major; int32 ids. A failing CUDA or cuBLAS call is fatal (file:line, the call, the
 * runtime's message), except inside a graph capture, where it abandons the capture
 * (kernels/common.cuh). Launches go to one stream in order (the legacy default stream, or the
 * stream a graph is captured on), so results are ready for the next op; copies to the host
 * synchronise.
 *
 * No synchronisation inside a training step: the launchers of a step (and of an evaluation
 * batch) only queue work. None of them copies to or from pageable host memory, allocates,
 * frees or waits for the device: scratch buffers are sized when the model is created, host
 * tables a kernel needs (the GRU's step offsets) are on the device before the step. The epoch
 * drivers mark each step as a no-sync region (gpu_nosync_begin): there the synchronous
 * helpers below are fatal, and the host emulation aborts on any synchronous CUDA call, so a
 * regression fails the emulated tests. The per-step path (gpu_train_step) is the exception
 * by design: it returns the step's loss, so it waits once, for that.
 *
 * Everything is deterministic run to run: each
 * output element is summed in a fixed order (one thread's loop, or a fixed tree of shuffles
 * and shared memory inside one block), or by cuBLAS (deterministic for a given GPU and
 * toolkit); table gradients with repeated rows are added in a fixed order after a stable
 * sort, no atomics (gpu_scatter_add_rows: the CPU's order for rows of at most 32 source rows,
 * fixed chunks of 32 for longer ones). */
#ifndef TIMIREC_GPU_OPS_H
#define TIMIREC_GPU_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "timirec/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpu_ctx gpu_ctx_t;

/* Visible GPUs (0: none, or no usable driver) and a line describing device 0 (or why none)
 * into desc. The emulated build (build/emu) reports one "emulated" device. */
int gpu_device_count(char *desc, size_t desclen);

/* Device 0 and a cuBLAS handle; NULL with a message in err when no GPU is usable. */
gpu_ctx_t *gpu_ctx_create(char *err, size_t errlen);
void gpu_ctx_free(gpu_ctx_t *ctx);

/* 1: synchronise and check after every kernel launch (tests; slower). Process-wide. */
void gpu_debug_sync(int on);
/* 1 when this build runs the kernels on the host (emu/emulate.h), not a GPU. */
int gpu_is_emulated(void);

/* Device memory (fatal on failure; gpu_malloc(0) returns a valid pointer). */
void *gpu_malloc(size_t bytes);
void gpu_free(void *p);
void gpu_to_device(void *dst, const void *host_src, size_t bytes);
void gpu_to_host(void *host_dst, const void *src, size_t bytes);
void gpu_copy(void *dst, const void *src, size_t bytes);  /* device to device */
void gpu_zero(void *p, size_t bytes);
/* Fill with 0xFF bytes: NaN as float, -1 as int32 (poison before a test's run). */
void gpu_poison(void *p, size_t bytes);
void gpu_sync(void);

/* The no-sync region (see the header comment): gpu_nosync_begin(name) enters it, gpu_nosync_end
 * leaves it. Inside, gpu_to_device, gpu_to_host, gpu_malloc, gpu_free, gpu_poison and gpu_sync
 * are fatal, naming the region, and the emulation aborts on any synchronous CUDA call.
 * Regions do not nest. */
void gpu_nosync_begin(const char *region);
void gpu_nosync_end(void);

/* Timing with CUDA events on the default stream (host clock in the emulated build):
 * gpu_timer_start records the start; gpu_timer_stop_ms records the end, waits for it and
 * returns the milliseconds between the two. */
typedef struct gpu_timer gpu_timer_t;
gpu_timer_t *gpu_timer_create(void);
void gpu_timer_start(gpu_timer_t *t);
float gpu_timer_stop_ms(gpu_timer_t *t);
void gpu_timer_free(gpu_timer_t *t);

/* ---- matrix products (cuBLAS, FP32, no TF32), same contract as tmr_sgemm (gemm.h) ---- */

void gpu_gemm(gpu_ctx_t *ctx, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
              float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
              float *C, int64_t ldc);
/* batch independent products, matrix b at A + b * stride_a etc. */
void gpu_gemm_batched(gpu_ctx_t *ctx, int trans_a, int trans_b, int64_t M, int64_t N,
                      int64_t K, float alpha, const float *A, int64_t lda, int64_t stride_a,
                      const float *B, int64_t ldb, int64_t stride_b, float beta, float *C,
                      int64_t ldc, int64_t stride_c, int64_t batch);
/* db[c] += sum_r y[r, c]. y (n, cols). */
void gpu_colsum_add(gpu_ctx_t *ctx, const float *y, int64_t n, int cols, float *db);
/* table[ids[r], :] += src[r, :] for r < n, rows of d. A stable radix sort of the ids puts each
 * table row's source rows in ascending r; then, per column:
 * - a table row with at most 32 source rows (SEG_CHUNK, kernels/embedding.cu): one thread
 *   sums the table's value, then the rows in ascending r: the CPU's order (layer_scatter_add),
 *   so the result is the CPU's bit for bit;
 * - a longer one (the padding item 0, the position table): chunks of 32 consecutive rows in
 *   ascending r, chunk 0 starting from the table's value, the others from 0, then the chunk
 *   sums added in chunk order: a fixed order too (the same bits every run), within float
 *   rounding of the CPU's serial sum but not bit-identical to it.
 * Scratch: the context's sort buffers and 2 ceil(n / 32) x d floats of chunk sums. */
void gpu_scatter_add_rows(gpu_ctx_t *ctx, const int32_t *ids, int64_t n, int d, const float *src,
                          float *table);

/* ---- extractor (cpu/extractor_decl.h) ---- */

void gpu_layer_embed_forward(gpu_ctx_t *ctx, const float *E, const float *P, const int32_t *hist,
                           const int32_t *pos, int64_t n, int d, float *x0);
void gpu_layer_embed_backward(gpu_ctx_t *ctx, const int32_t *hist, const int32_t *pos, int64_t n,
                            int d, const float *dx0, float *dE, float *dP);
void gpu_layer_linear_forward(gpu_ctx_t *ctx, const float *x, const float *W, const float *b,
                            int64_t n, int in, int out, float *y);
void gpu_layer_linear_backward(gpu_ctx_t *ctx, const float *x, const float *W, const float *dy,
                             int64_t n, int in, int out, float *dx, float *dW, float *db);
/* Fused attention (kernels/attention.cu): ctx as ext_attn_forward, but instead of the (B, L, L)
 * weights it saves stats (B, L, 2): per query row the max of its valid scaled scores and
 * 1 / the sum of their exponentials ((0, 0) without a valid key); the weights are
 * recomputed from them in the backward. d <= 256. */
void gpu_ext_attn_forward(gpu_ctx_t *ctx, const float *q, const float *k, const float *v,
                          const int32_t *hist, int B, int L, int d, float *stats, float *ctx_out);
/* ext_attn_backward from the forward's stats: dq, dk, dv (B, L, d) overwritten;
 * D (B, L) scratch (per query row sum_j att dAtt). */
void gpu_ext_attn_backward(gpu_ctx_t *ctx, const float *q, const float *k, const float *v,
                           const int32_t *hist, const float *stats, const float *dctx, int B,
                           int L, int d, float *dq, float *dk, float *dv, float *D);
void gpu_layer_add_layernorm_forward(gpu_ctx_t *ctx, const float *a, const float *b,
                                   const float *gamma, const float *beta,
                                   const int32_t *rowmask, int64_t n, int d, float *y,
                                   float *xhat, float *rstd);
/* work: (n, d) scratch (per-block partial sums of dgamma and dbeta, added up in a second pass:
 * deterministic, no atomics). d <= 256. */
void gpu_layer_add_layernorm_backward(gpu_ctx_t *ctx, const float *dy, const float *xhat,
                                    const float *rstd, const float *gamma,
                                    const int32_t *rowmask, int64_t n, int d, float *dz,
                                    float *dgamma, float *dbeta, float *work);
void gpu_ext_ffn_forward(gpu_ctx_t *ctx, const float *h, const float *W1, const float *b1,
                         const float *W2, const float *b2, int64_t n, int d, int dff, float *r,
                         float *f);
void gpu_ext_ffn_backward(gpu_ctx_t *ctx, const float *h, const float *r, const float *W1,
                          const float *W2, const float *df, int64_t n, int d, int dff, float *dh,
                          float *dW1, float *db1, float *dW2, float *db2, float *dr);
void gpu_ext_interest_forward(gpu_ctx_t *ctx, const float *x, const int32_t *hist,
                              const float *W1, const float *b1, const float *W2, const float *b2,
                              int B, int L, int d, int a, int K, float *t, float *e,
                              float *alpha, float *V);
void gpu_ext_interest_backward(gpu_ctx_t *ctx, const float *x, const float *t,
                               const float *alpha, const float *W1, const float *W2,
                               const float *dV, int B, int L, int d, int a, int K, float *dx,
                               float *dW1, float *db1, float *dW2, float *db2, float *de,
                               float *dt);

/* ---- heads (cpu/heads_decl.h; E = the extractor's item table, device) ----
 * Block-per-batch-row kernels (kernels/heads.cu): the launchers below that name one CPU op
 * run that op alone; the fused ones (gpu_pretrain_rank, gpu_candidate_rank,
 * gpu_user_vector_distill, gpu_finetune_head_backward) run what the training step needs of a
 * row in one kernel. K <= 64, d <= 256. */

void gpu_pretrain_scores(gpu_ctx_t *ctx, const float *E, const float *V, const int32_t *cand,
                         int B, int C, int K, int d, int training, int32_t *kstar,
                         float *scores);
/* Training pretrain head fused: kstar, scores (as gpu_pretrain_scores with training = 1),
 * the ranking loss (returned, as gpu_ranking_loss) and dscores (overwritten). B_all: as the
 * CPU losses' (heads_decl.h): the rows the mean divides by, 0 for B (a whole batch). */
float gpu_pretrain_rank(gpu_ctx_t *ctx, const float *E, const float *V, const int32_t *cand,
                        int B, int C, int K, int d, int B_all, int32_t *kstar, float *scores,
                        float *dscores);
/* dV and dE ADD. work: (B * C, d) scratch. */
void gpu_pretrain_scores_backward(gpu_ctx_t *ctx, const float *E, const float *V,
                                  const int32_t *cand, int B, int C, int K, int d,
                                  const int32_t *kstar, const float *dscores, float *dV,
                                  float *dE, float *work);
void gpu_user_vector(gpu_ctx_t *ctx, const float *V, const float *pred_intent, int B, int K,
                     int d, float *w, float *u);
void gpu_user_vector_backward(gpu_ctx_t *ctx, const float *V, const float *w, const float *du,
                              int B, int K, int d, float *dV, float *d_pred_intent);
void gpu_candidate_scores(gpu_ctx_t *ctx, const float *E, const float *u, const int32_t *cand,
                          int B, int C, int d, float *scores);
/* Finetune scores and ranking loss fused: scores = u . E[cand] (as gpu_candidate_scores), the
 * loss (returned) and dscores (overwritten). */
float gpu_candidate_rank(gpu_ctx_t *ctx, const float *E, const float *u, const int32_t *cand,
                         int B, int C, int d, int B_all, float *scores, float *dscores);
/* du and dE ADD. work: (B * C, d) scratch. */
void gpu_candidate_scores_backward(gpu_ctx_t *ctx, const float *E, const float *u,
                                   const int32_t *cand, int B, int C, int d,
                                   const float *dscores, float *du, float *dE, float *work);
/* Finetune head backward fused: gpu_candidate_scores_backward (du, dE ADD) then
 * gpu_user_vector_backward from the resulting du (dV, d_pred_intent ADD). */
void gpu_finetune_head_backward(gpu_ctx_t *ctx, const float *E, const float *V, const float *u,
                                const float *w, const int32_t *cand, int B, int C, int K, int d,
                                const float *dscores, float *du, float *dV,
                                float *d_pred_intent, float *dE, float *work);
/* Returns the loss (the per-row terms summed on the host in row order, as the CPU does);
 * dscores overwritten. */
float gpu_ranking_loss(gpu_ctx_t *ctx, const float *scores, int B, int C, int B_all,
                       float *dscores);
/* target_intent written, d_pred_intent ADDED (may be NULL); returns the KL term. */
float gpu_distill_loss(gpu_ctx_t *ctx, const float *E, const float *V, const int32_t *cand,
                       const float *pred_intent, int B, int C, int K, int d, int B_all,
                       double temp, float *target_intent, float *d_pred_intent);
/* The user vector and the distillation fused, one block per row: w, u as gpu_user_vector
 * (u NULL: skipped, w then unused), and with cand (NULL: skipped, returns 0) target_intent,
 * d_pred_intent ADD and the KL term returned as gpu_distill_loss. */
float gpu_user_vector_distill(gpu_ctx_t *ctx, const float *E, const float *V,
                              const int32_t *cand, const float *pred_intent, int B, int C, int K,
                              int d, int B_all, double temp, float *w, float *u,
                              float *target_intent, float *d_pred_intent);

/* ---- predictor (cpu/predictor_decl.h) ---- */

/* The GRU's packed rows (predictor_decl.h "Packed order", as gru_pack computes them): the
 * sizes the launchers shape their launches and products with are host values; the step
 * offsets the recurrence kernels read are already on the DEVICE (the epoch driver plans them
 * for a whole epoch, the staged path copies them with the batch), so a step uploads nothing. */
typedef struct {
    int n_steps;              /* time steps: the longest sequence */
    int n0;                   /* packed rows at step 0: the sequences with at least one item */
    int64_t T;                /* packed rows in all (= step_off[n_steps]) */
    const int64_t *step_off;  /* DEVICE (n_steps + 1): the first packed row of each step */
} gpu_gru_pack_t;

/* The GRU on packed rows; the rest as gru_forward / gru_backward, except: the forward needs
 * no work buffer (the recurrence is one kernel keeping the state on chip, d <= 256), and the
 * backward reads dh without destroying it and uses dx as scratch before writing it. */
void gpu_gru_forward(gpu_ctx_t *ctx, int d, const float *w_ih, const float *w_hh,
                     const float *b_ih, const float *b_hh, const gpu_gru_pack_t *pack,
                     const float *x, float *gates, float *ghn, float *h);
/* dgi, dgh (T, 3d) written (the per-row gate gradients; dW_ih, dW_hh, db_* then come from
 * single products over all rows), dx (T, d) overwritten, the weight gradients ADDED. */
void gpu_gru_backward(gpu_ctx_t *ctx, int d, const float *w_ih, const float *w_hh,
                      const gpu_gru_pack_t *pack, const float *x, const float *gates,
                      const float *ghn, const float *h, const float *dh, float *dgi, float *dgh,
                      float *dx, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh);
/* params/grads: the device flat buffers (lay's offsets). row0, B_all: where the rows sit in
 * the whole batch, for the dropout (proj_forward's; B_all 0: a whole batch). */
void gpu_proj_forward(gpu_ctx_t *ctx, const model_layout_t *lay, const float *params,
                      const float *g, int B, int training, dropout_key_t key, int row0,
                      int B_all, float *acts, float *out);
void gpu_proj_backward(gpu_ctx_t *ctx, const model_layout_t *lay, const float *params,
                       const float *g, const float *acts, int B, int training,
                       const float *dout, float *dg, float *work, float *grads);
/* keep[(layer * B + b) * d + j] = 1 if the dropout rule keeps that element, else 0
 * (layers 0..n_layers-1), computed on the device: the test compares it with
 * proj_dropout_keep bit for bit. keep: (n_layers, B, d) int32. The B rows are rows row0 ..
 * row0 + B - 1 of a batch of B_all rows (B_all 0: a whole batch), drawn at those places. */
void gpu_proj_dropout_mask(gpu_ctx_t *ctx, dropout_key_t key, int n_layers, int B, int row0,
                           int B_all, int d, float p, int32_t *keep);

/* ---- optimiser ---- */

/* adam_step (model.h) on the device's flat buffers: opt->step advances as there. */
void gpu_adam_update(gpu_ctx_t *ctx, adam_t *opt, const model_layout_t *lay, float *params,
                     const float *grads, float *m, float *v);

/* LazyAdam's device state (model.h adam_step_lazy): the lazy tables' per-row step counts, a
 * mark per row (zero between steps), and the bias-correction scalars by count, formed on the
 * host by tmr_adam_scalars as the CPU forms them (so both sides use the same floats; the
 * device computes no pow). by_count must cover every count a step can reach before the step
 * is launched: gpu_lazy_adam_reserve, outside the step (it may allocate and copy). */
typedef struct {
    float step_size, bc2_sqrt;  /* tmr_adam_scalars(..., count)'s */
} adam_count_t;

typedef struct {
    int64_t n_rows;          /* adam_lazy_rows */
    int64_t rows0;           /* rows of the first lazy table (the extractor's) */
    int64_t *row_step;       /* DEVICE (n_rows) */
    int32_t *mark;           /* DEVICE (n_rows) */
    adam_count_t *by_count;  /* DEVICE (cap): count c at [c - 1] */
    adam_count_t *h_by_count;
    int64_t cap;
} gpu_lazy_adam_t;

/* Zero counts for lay's lazy tables; nothing covered yet. */
void gpu_lazy_adam_init(gpu_lazy_adam_t *z, const model_layout_t *lay);
void gpu_lazy_adam_free(gpu_lazy_adam_t *z);
/* by_count covers counts 1..max_count (grown by doubling). */
void gpu_lazy_adam_reserve(gpu_lazy_adam_t *z, const adam_t *opt, int64_t max_count);

/* The rows one step touches (model.h adam_step_lazy), DEVICE ids: of the extractor's table
 * hist (B * L, padding included) and cand (B * C); of the predictor's (finetune) ids (T: the
 * GRU's packed rows, the ids its scatter adds into). Sizes are host values. */
typedef struct {
    gpu_lazy_adam_t *z;
    const int32_t *hist, *cand, *ids;
    int64_t BL, BC, T;
} gpu_lazy_batch_t;

/* adam_step_lazy on the device: the dense tensors as gpu_adam_update, the touched rows of the
 * lazy tables with their own counts (one thread per id, the first to claim a row's mark
 * updates it: the result does not depend on which). opt->step advances. */
void gpu_adam_update_lazy(gpu_ctx_t *ctx, adam_t *opt, const model_layout_t *lay,
                          const gpu_lazy_batch_t *lb, float *params, const float *grads,
                          float *m, float *v);

#ifdef __cplusplus
}
#endif
#endif
