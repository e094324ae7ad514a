/* heads: declarations for one precision (no include guard: cpu_ops.h includes this file once
 * per precision with REAL and R(name) defined).
 *
 * Scores and losses (docs/MODEL.md, "Pretrain head" to "Distillation loss"). E =
 * interest_extractor.i_embeddings.weight [N, d] gives the candidate vectors; V (B, K, d) are the
 * extractor's interests; cand (B, C) int32 item ids in 0..N-1 (fatal otherwise), column 0 the
 * target. K and d come from lay->cfg. Backward functions ADD into their outputs. */

/* Pretrain. training: kstar[b] = argmax_k V[b,k]·E[cand[b,0]] (first max on ties),
 * scores[b,c] = V[b,kstar[b]]·E[cand[b,c]]; eval: scores[b,c] = max_k V[b,k]·E[cand[b,c]]
 * (kstar unused, may be NULL). */
void R(pretrain_scores)(const model_layout_t *lay, const REAL *params, const REAL *V,
                        const int32_t *cand, int B, int C, int training, int32_t *kstar,
                        REAL *scores);
/* Training-mode backward (the argmax is piecewise constant): dV (B, K, d) and E's rows in grads. */
void R(pretrain_scores_backward)(const model_layout_t *lay, const REAL *params, const REAL *V,
                                 const int32_t *cand, int B, int C, const int32_t *kstar,
                                 const REAL *dscores, REAL *dV, REAL *grads);

/* Finetune user vector: w = softmax_k(pred_intent) (B, K), u[b] = sum_k w[b,k] V[b,k] (B, d). */
void R(user_vector)(const REAL *V, const REAL *pred_intent, int B, int K, int d, REAL *w, REAL *u);
/* du (B, d) -> dV (B, K, d) ADD, d_pred_intent (B, K) ADD; w as written by user_vector. */
void R(user_vector_backward)(const REAL *V, const REAL *w, const REAL *du, int B, int K, int d,
                             REAL *dV, REAL *d_pred_intent);

/* scores[b,c] = u[b]·E[cand[b,c]]. */
void R(candidate_scores)(const model_layout_t *lay, const REAL *params, const REAL *u,
                         const int32_t *cand, int B, int C, REAL *scores);
void R(candidate_scores_backward)(const model_layout_t *lay, const REAL *params, const REAL *u,
                                  const int32_t *cand, int B, int C, const REAL *dscores,
                                  REAL *du, REAL *grads);

/* The losses' means over batch rows divide by B_all, the rows of the whole batch these B rows
 * are a slice of (B_all 0: B, a whole batch), so the slices' losses and gradients sum to the
 * whole batch's (docs/MODEL.md, "Batch slices (data-parallel ranks)"). */

/* Ranking loss (docs/MODEL.md, "Ranking loss"; BaseModel.loss): pos = scores[:,0], neg =
 * scores[:,1:] (C >= 2), w = softmax(neg) per row (not detached); loss = -(1/B_all) sum_b
 * log(sum_j w_j sigmoid(pos - neg_j)). Evaluated in double as LSE_j(neg_j) - LSE_j(neg_j + log
 * sigmoid(pos - neg_j)), finite for any finite scores. Returns the loss; writes dscores (B, C)
 * = d loss / d scores (overwrites). */
REAL R(ranking_loss)(const REAL *scores, int B, int C, int B_all, REAL *dscores);

/* Distillation (docs/MODEL.md, "Distillation loss"): cand (B, C) as above (only column 0, the
 * target, is read). target_intent[b,k] = cos(V[b,k], E[cand[b,0]]), each vector divided by
 * max(norm, 1e-12), written out (B, K) and treated as a constant; p = softmax(target_intent /
 * temp), log q = log_softmax(pred_intent / temp); returns temp^2 * (1/B_all) sum_b sum_k p (log p
 * - log q) (p log p = 0 where p = 0) and ADDS d/d pred_intent = temp / B_all * (q - p) into
 * d_pred_intent (B, K) (may be NULL: value only). No gradient flows into V or E. */
REAL R(distill_loss)(const model_layout_t *lay, const REAL *params, const REAL *V,
                     const int32_t *cand, const REAL *pred_intent, int B, int C, int B_all,
                     double temp, REAL *target_intent, REAL *d_pred_intent);

/* The same KL term for a given target_intent (B, K) (held constant): returns
 * temp^2 * (1/B_all) sum_b KL(softmax(target/temp) || softmax(pred/temp)) and ADDS
 * temp / B_all * (q - p) into d_pred_intent (may be NULL). distill_loss = cosine targets + this. */
REAL R(distill_loss_from_target)(const REAL *target_intent, const REAL *pred_intent, int B,
                                 int K, int B_all, double temp, REAL *d_pred_intent);
