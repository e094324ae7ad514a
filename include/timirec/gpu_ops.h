/* The CUDA training backend's layer operations as the host calls them (kernels/, one .cu per
 * op family). Only declared when the build found nvcc (TIMIREC_CUDA); callers guard with
 * #ifdef TIMIREC_CUDA.
 *
 * Conventions: every pointer to data is a DEVICE pointer unless the comment says host; shapes
 * in the comments, row-major; `stream` is a cudaStream_t (NULL: the default stream). Launches
 * are asynchronous: a call returns after queueing its kernels (cudaGetLastError checked after
 * each), so a fault inside a kernel shows up at the next synchronising call
 * (tmr_gpu_sync). Every function returns 0, or -1 with "file:line: what failed" in err.
 * Each op is the GPU port of the CPU reference named in its comment (include/timirec/cpu/) and
 * has the same contract; backward functions ADD into their gradient outputs as the CPU's do.
 * Ops that need scratch memory take (work, work_bytes), sized by their *_work_bytes query. */
#ifndef TIMIREC_GPU_OPS_H
#define TIMIREC_GPU_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "timirec/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- device memory (kernels/gpu_util.cu): what the C tests and the backend need ---------- */

int tmr_gpu_malloc(void **p, size_t bytes, char *err, size_t errlen);
int tmr_gpu_free(void *p, char *err, size_t errlen);
/* Host -> device and device -> host copies (synchronous). */
int tmr_gpu_upload(void *dst, const void *host_src, size_t bytes, char *err, size_t errlen);
int tmr_gpu_download(void *host_dst, const void *src, size_t bytes, char *err, size_t errlen);
/* Fill n floats with NaN: tests poison every output before a run, so an element the kernel
 * forgets to write is caught. */
int tmr_gpu_fill_nan(float *x, int64_t n, void *stream, char *err, size_t errlen);
/* Wait for the device; reports an error raised inside any earlier kernel. */
int tmr_gpu_sync(char *err, size_t errlen);

/* ---- Adam (kernels/adam.cu) ----------------------------------------------------------------- */

/* adam_step of model.h on the device: opt->step++ (host), then one kernel over every tensor of
 * lay (host pointer) updating params, m, v (layout.total floats each) from grads, with the
 * CPU's scalars and rounding (weight decay on tensors with decay only). */
int tmr_gpu_adam_step(adam_t *opt, const model_layout_t *lay, float *params, const float *grads,
                      float *m, float *v, void *stream, char *err, size_t errlen);

/* ---- embedding gather and deterministic scatter (kernels/embedding.cu) -------------------- */

/* ext_embed_forward: x0[r,:] = E[hist[r],:] + (P ? P[pos[r],:] : 0) for r < n.
 * E (rows_E, d), P (rows_P, d) or NULL, hist (n), pos (n) (ignored when P is NULL), x0 (n, d).
 * Ids must be in range (not checked on the device). */
int tmr_gpu_embed_forward(const float *E, const float *P, const int32_t *hist, const int32_t *pos,
                          int64_t n, int d, float *x0, void *stream, char *err, size_t errlen);

/* Scratch bytes for tmr_gpu_scatter_add_rows / tmr_gpu_embed_backward with n source rows and
 * ids below `rows` (the larger table). Needs a visible GPU (it asks CUB). */
int tmr_gpu_scatter_work_bytes(int64_t n, int64_t rows, size_t *bytes, char *err, size_t errlen);

/* table[ids[i],:] += src[i,:] for i ascending (rows of d), without atomics: the (id, i) pairs are
 * sorted by id with a stable radix sort, then one thread per (id, column) adds its rows in
 * ascending i, exactly the CPU's order (ext_scatter_add), so the result is deterministic.
 * ids (n) in 0..rows-1; src (n, d); table (rows, d). */
int tmr_gpu_scatter_add_rows(const int32_t *ids, int64_t n, int d, int64_t rows, const float *src,
                             float *table, void *work, size_t work_bytes, void *stream, char *err,
                             size_t errlen);

/* ext_embed_backward: dE[hist[r],:] += dx0[r,:], dP[pos[r],:] += dx0[r,:] (dP NULL: skipped).
 * dx0 (n, d); dE (rows_E, d); dP (rows_P, d). Work sized for max(rows_E, rows_P). */
int tmr_gpu_embed_backward(const int32_t *hist, const int32_t *pos, int64_t n, int d,
                           int64_t rows_E, int64_t rows_P, const float *dx0, float *dE, float *dP,
                           void *work, size_t work_bytes, void *stream, char *err, size_t errlen);

/* ---- scores and losses (kernels/heads.cu; CPU: include/timirec/cpu/heads_decl.h) ----------- */
/* E is interest_extractor.i_embeddings.weight (N, d); cand (B, C) ids in 0..N-1 (not checked on
 * the device), column 0 the target. Dot products are summed in the CPU's order and rounding. */

/* pretrain_scores: training: kstar (B) = first argmax_k V[b,k]·E[cand[b,0]],
 * scores[b,c] = V[b,kstar]·E[cand[b,c]]; eval (training 0):
 * scores[b,c] = max_k V[b,k]·E[cand[b,c]] (kstar unused, may be NULL).
 * V (B, K, d), scores (B, C). */
int tmr_gpu_pretrain_scores(const float *E, const float *V, const int32_t *cand, int B, int C,
                            int K, int d, int training, int32_t *kstar, float *scores,
                            void *stream, char *err, size_t errlen);

/* Scratch for the two score backwards (B*C*d floats plus the scatter's work for N rows). */
int tmr_gpu_scores_backward_work_bytes(int B, int C, int d, int64_t N, size_t *bytes, char *err,
                                       size_t errlen);

/* pretrain_scores_backward (training mode): dV[b,kstar[b]] += sum_c dscores[b,c] E[cand[b,c]],
 * dE[cand[b,c]] += dscores[b,c] V[b,kstar[b]]. dscores (B, C), dV (B, K, d), dE (N, d). */
int tmr_gpu_pretrain_scores_backward(const float *E, const float *V, const int32_t *cand, int B,
                                     int C, int K, int d, int64_t N, const int32_t *kstar,
                                     const float *dscores, float *dV, float *dE, void *work,
                                     size_t work_bytes, void *stream, char *err, size_t errlen);

/* user_vector: w (B, K) = softmax_k(pred_intent (B, K)), u[b] (B, d) = sum_k w[b,k] V[b,k]. */
int tmr_gpu_user_vector(const float *V, const float *pred_intent, int B, int K, int d, float *w,
                        float *u, void *stream, char *err, size_t errlen);
/* user_vector_backward: du (B, d) -> dV (B, K, d) ADD, d_pred_intent (B, K) ADD. */
int tmr_gpu_user_vector_backward(const float *V, const float *w, const float *du, int B, int K,
                                 int d, float *dV, float *d_pred_intent, void *stream, char *err,
                                 size_t errlen);

/* candidate_scores: scores[b,c] = u[b]·E[cand[b,c]]. u (B, d), scores (B, C). */
int tmr_gpu_candidate_scores(const float *E, const float *u, const int32_t *cand, int B, int C,
                             int d, float *scores, void *stream, char *err, size_t errlen);
/* candidate_scores_backward: du[b] += sum_c dscores[b,c] E[cand[b,c]],
 * dE[cand[b,c]] += dscores[b,c] u[b]. */
int tmr_gpu_candidate_scores_backward(const float *E, const float *u, const int32_t *cand, int B,
                                      int C, int d, int64_t N, const float *dscores, float *du,
                                      float *dE, void *work, size_t work_bytes, void *stream,
                                      char *err, size_t errlen);

/* ranking_loss (C >= 2, B >= 1, checked on the host): per row in double as the CPU does;
 * dscores (B, C) overwritten; row_loss (B) scratch; *loss (one float on the device) =
 * mean over b of the row losses, summed in ascending b. */
int tmr_gpu_ranking_loss(const float *scores, int B, int C, float *dscores, double *row_loss,
                         float *loss, void *stream, char *err, size_t errlen);

/* ---- interest attention + weighted sum (kernels/interest.cu) ------------------------------ */

/* A cuBLAS handle for the ops that multiply matrices (FP32 math, no TF32). */
int tmr_gpu_blas_create(void **blas, char *err, size_t errlen);
int tmr_gpu_blas_destroy(void *blas, char *err, size_t errlen);

/* ext_interest_forward: t = tanh(x W1^T + b1); e = t W2^T + b2 (unmasked);
 * alpha[b,k,:] = softmax over valid l (hist[b,l] > 0; none valid: all 0) of e[b,:,k];
 * V[b,k,:] = sum_l alpha[b,k,l] x[b,l,:].
 * x (B, L, d); hist (B, L); W1 (a, d), b1 (a); W2 (K, a), b2 (K);
 * t (B, L, a), e (B, L, K), alpha (B, K, L), V (B, K, d) overwritten. */
int tmr_gpu_interest_forward(void *blas, const float *x, const int32_t *hist, const float *W1,
                             const float *b1, const float *W2, const float *b2, int B, int L,
                             int d, int a, int K, float *t, float *e, float *alpha, float *V,
                             void *stream, char *err, size_t errlen);
/* ext_interest_backward: dx (B, L, d) overwritten; dW1, db1, dW2, db2 accumulated; dV (B, K, d).
 * Scratch: de (B, L, K), dt (B, L, a). Bias gradients sum rows in ascending order; the matrix
 * products are cuBLAS's (its summation order, deterministic on one device). */
int tmr_gpu_interest_backward(void *blas, const float *x, const float *t, const float *alpha,
                              const float *W1, const float *W2, const float *dV, int B, int L,
                              int d, int a, int K, float *dx, float *dW1, float *db1, float *dW2,
                              float *db2, float *de, float *dt, void *stream, char *err,
                              size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
