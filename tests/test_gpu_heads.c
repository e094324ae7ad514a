/* GPU scores and losses (kernels/heads.cu) against src/cpu/heads.inc: pretrain scores (training:
 * argmax interest of the target, then its scores; eval: max over interests) and their backward,
 * the finetune user vector and its backward, candidate scores and their backward, the ranking
 * loss and its gradient. Several shapes, including tables so small that candidates repeat within
 * and across rows (the deterministic scatter into dE). Random inputs, never zeros; outputs
 * poisoned with NaN before each run; gradients accumulate into random buffers as on the CPU.
 * SKIP without a CUDA build or without a visible GPU. */
#include "test_util.h"
#include "timirec/cpu_ops.h"
#ifdef TIMIREC_CUDA
#include "gpu_test_util.h"

#define F(n) ((size_t)(n) * sizeof(float))

static void run_case(int B, int C, int K, int d, int N, float score_scale) {
    model_config_t cfg = {.stage = STAGE_PRETRAIN, .n_items = N, .emb_size = d, .attn_size = 8,
                          .K = K, .history_max = 20, .add_pos = 1, .add_trm = 0, .n_layers = 1,
                          .temp = 0.5, .dropout = 0.5};
    char err[512];
    if (model_config_check(&cfg, err, sizeof err) != 0) {
        CHECK(0, "config: %s", err);
        return;
    }
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    const int64_t off = model_offset(&lay, P_EXT_ITEM_EMB), Nd = (int64_t)N * d;
    const int64_t BC = (int64_t)B * C, BK = (int64_t)B * K, BKd = BK * d, Bd = (int64_t)B * d;
    printf("B %d C %d K %d d %d N %d (scores x%g)\n", B, C, K, d, N, (double)score_scale);

    float *params = malloc(F(lay.total)), *grads = malloc(F(lay.total));
    gt_fill(params, lay.total, 0.5f);
    gt_fill(grads, lay.total, 0.1f);
    const float *E = params + off;
    float *dE = grads + off;
    int32_t *cand = malloc((size_t)BC * sizeof *cand), *kstar = malloc((size_t)B * sizeof *kstar);
    int32_t *gkstar = malloc((size_t)B * sizeof *gkstar);
    for (int64_t i = 0; i < BC; i++) cand[i] = gt_below(N);
    float *V = malloc(F(BKd)), *scores = malloc(F(BC)), *gscores = malloc(F(BC));
    float *dscores = malloc(F(BC)), *gdscores = malloc(F(BC));
    float *dV = malloc(F(BKd)), *gdV = malloc(F(BKd)), *gdE = malloc(F(Nd));
    float *pi = malloc(F(BK)), *w = malloc(F(BK)), *gw = malloc(F(BK));
    float *dpi = malloc(F(BK)), *gdpi = malloc(F(BK));
    float *u = malloc(F(Bd)), *gu = malloc(F(Bd)), *du = malloc(F(Bd)), *gdu = malloc(F(Bd));
    gt_fill(V, BKd, 0.5f);
    gt_fill(pi, BK, 2.0f);

    float *d_E = gt_dev_copy(E, F(Nd)), *d_dE = gt_dev(F(Nd)), *d_V = gt_dev_copy(V, F(BKd));
    int32_t *d_cand = gt_dev_copy(cand, (size_t)BC * sizeof *cand);
    int32_t *d_kstar = gt_dev((size_t)B * sizeof *d_kstar);
    float *d_scores = gt_dev(F(BC)), *d_dscores = gt_dev(F(BC)), *d_dV = gt_dev(F(BKd));
    float *d_pi = gt_dev_copy(pi, F(BK)), *d_w = gt_dev(F(BK)), *d_dpi = gt_dev(F(BK));
    float *d_u = gt_dev(F(Bd)), *d_du = gt_dev(F(Bd)), *d_loss = gt_dev(sizeof(float));
    double *d_row_loss = gt_dev((size_t)B * sizeof(double));
    size_t work_bytes;
    GT_TRY(tmr_gpu_scores_backward_work_bytes(B, C, d, N, &work_bytes, gt_err, sizeof gt_err));
    void *d_work = gt_dev(work_bytes);

    /* pretrain, training mode: the same argmax (same rounding), then the same scores */
    pretrain_scores_f(&lay, params, V, cand, B, C, 1, kstar, scores);
    for (int b = 0; b < B; b++) gkstar[b] = -1;
    GT_TRY(tmr_gpu_upload(d_kstar, gkstar, (size_t)B * sizeof *gkstar, gt_err, sizeof gt_err));
    gt_poison(d_scores, BC);
    GT_TRY(tmr_gpu_pretrain_scores(d_E, d_V, d_cand, B, C, K, d, 1, d_kstar, d_scores, NULL,
                                   gt_err, sizeof gt_err));
    gt_get(gkstar, d_kstar, (size_t)B * sizeof *gkstar);
    gt_get(gscores, d_scores, F(BC));
    int kdiff = 0;
    for (int b = 0; b < B; b++) kdiff += gkstar[b] != kstar[b];
    CHECK(kdiff == 0, "kstar differs in %d of %d rows", kdiff, B);
    gt_compare("pretrain scores (training)", gscores, scores, BC, 0, 1e-6);

    /* pretrain backward (training mode) */
    gt_fill(dscores, BC, 1.0f);
    gt_fill(dV, BKd, 0.1f);
    GT_TRY(tmr_gpu_upload(d_dscores, dscores, F(BC), gt_err, sizeof gt_err));
    GT_TRY(tmr_gpu_upload(d_dV, dV, F(BKd), gt_err, sizeof gt_err));
    GT_TRY(tmr_gpu_upload(d_dE, dE, F(Nd), gt_err, sizeof gt_err));
    pretrain_scores_backward_f(&lay, params, V, cand, B, C, kstar, dscores, dV, grads);
    GT_TRY(tmr_gpu_pretrain_scores_backward(d_E, d_V, d_cand, B, C, K, d, N, d_kstar, d_dscores,
                                            d_dV, d_dE, d_work, work_bytes, NULL, gt_err,
                                            sizeof gt_err));
    gt_get(gdV, d_dV, F(BKd));
    gt_get(gdE, d_dE, F(Nd));
    gt_compare("pretrain backward dV", gdV, dV, BKd, 0, 1e-6);
    gt_compare("pretrain backward dE", gdE, dE, Nd, 0, 1e-6);

    /* pretrain, eval mode: max over interests */
    pretrain_scores_f(&lay, params, V, cand, B, C, 0, NULL, scores);
    gt_poison(d_scores, BC);
    GT_TRY(tmr_gpu_pretrain_scores(d_E, d_V, d_cand, B, C, K, d, 0, NULL, d_scores, NULL, gt_err,
                                   sizeof gt_err));
    gt_get(gscores, d_scores, F(BC));
    gt_compare("pretrain scores (eval)", gscores, scores, BC, 0, 1e-6);

    /* user vector: expf may differ by an ulp between libm and CUDA */
    user_vector_f(V, pi, B, K, d, w, u);
    gt_poison(d_w, BK);
    gt_poison(d_u, Bd);
    GT_TRY(tmr_gpu_user_vector(d_V, d_pi, B, K, d, d_w, d_u, NULL, gt_err, sizeof gt_err));
    gt_get(gw, d_w, F(BK));
    gt_get(gu, d_u, F(Bd));
    gt_compare("user vector w", gw, w, BK, 0, 1e-5);
    gt_compare("user vector u", gu, u, Bd, 0, 1e-5);

    /* user vector backward, from the CPU's w (uploaded) so only the backward is compared */
    gt_fill(du, Bd, 1.0f);
    gt_fill(dV, BKd, 0.1f);
    gt_fill(dpi, BK, 0.1f);
    GT_TRY(tmr_gpu_upload(d_w, w, F(BK), gt_err, sizeof gt_err));
    GT_TRY(tmr_gpu_upload(d_du, du, F(Bd), gt_err, sizeof gt_err));
    GT_TRY(tmr_gpu_upload(d_dV, dV, F(BKd), gt_err, sizeof gt_err));
    GT_TRY(tmr_gpu_upload(d_dpi, dpi, F(BK), gt_err, sizeof gt_err));
    user_vector_backward_f(V, w, du, B, K, d, dV, dpi);
    GT_TRY(tmr_gpu_user_vector_backward(d_V, d_w, d_du, B, K, d, d_dV, d_dpi, NULL, gt_err,
                                        sizeof gt_err));
    gt_get(gdV, d_dV, F(BKd));
    gt_get(gdpi, d_dpi, F(BK));
    gt_compare("user vector backward dV", gdV, dV, BKd, 0, 1e-6);
    gt_compare("user vector backward d_pred_intent", gdpi, dpi, BK, 0, 1e-6);

    /* candidate scores from the CPU's u */
    GT_TRY(tmr_gpu_upload(d_u, u, F(Bd), gt_err, sizeof gt_err));
    candidate_scores_f(&lay, params, u, cand, B, C, scores);
    gt_poison(d_scores, BC);
    GT_TRY(tmr_gpu_candidate_scores(d_E, d_u, d_cand, B, C, d, d_scores, NULL, gt_err,
                                    sizeof gt_err));
    gt_get(gscores, d_scores, F(BC));
    gt_compare("candidate scores", gscores, scores, BC, 0, 1e-6);

    gt_fill(dscores, BC, 1.0f);
    gt_fill(du, Bd, 0.1f);
    GT_TRY(tmr_gpu_upload(d_dscores, dscores, F(BC), gt_err, sizeof gt_err));
    GT_TRY(tmr_gpu_upload(d_du, du, F(Bd), gt_err, sizeof gt_err));
    GT_TRY(tmr_gpu_upload(d_dE, dE, F(Nd), gt_err, sizeof gt_err));
    candidate_scores_backward_f(&lay, params, u, cand, B, C, dscores, du, grads);
    GT_TRY(tmr_gpu_candidate_scores_backward(d_E, d_u, d_cand, B, C, d, N, d_dscores, d_du, d_dE,
                                             d_work, work_bytes, NULL, gt_err, sizeof gt_err));
    gt_get(gdu, d_du, F(Bd));
    gt_get(gdE, d_dE, F(Nd));
    gt_compare("candidate backward du", gdu, du, Bd, 0, 1e-6);
    gt_compare("candidate backward dE", gdE, dE, Nd, 0, 1e-6);

    /* ranking loss on random scores (C >= 2) */
    if (C >= 2) {
        gt_fill(scores, BC, score_scale);
        GT_TRY(tmr_gpu_upload(d_scores, scores, F(BC), gt_err, sizeof gt_err));
        float loss = ranking_loss_f(scores, B, C, dscores), gloss;
        gt_poison(d_dscores, BC);
        gt_poison(d_loss, 1);
        GT_TRY(tmr_gpu_ranking_loss(d_scores, B, C, d_dscores, d_row_loss, d_loss, NULL, gt_err,
                                    sizeof gt_err));
        gt_get(gdscores, d_dscores, F(BC));
        gt_get(&gloss, d_loss, sizeof gloss);
        gt_compare("ranking loss", &gloss, &loss, 1, 0, 1e-6);
        gt_compare("ranking loss dscores", gdscores, dscores, BC, 0, 1e-6);
    }

    gt_free(d_E), gt_free(d_dE), gt_free(d_V), gt_free(d_cand), gt_free(d_kstar);
    gt_free(d_scores), gt_free(d_dscores), gt_free(d_dV), gt_free(d_pi), gt_free(d_w);
    gt_free(d_dpi), gt_free(d_u), gt_free(d_du), gt_free(d_loss), gt_free(d_row_loss);
    gt_free(d_work);
    free(params), free(grads), free(cand), free(kstar), free(gkstar), free(V), free(scores);
    free(gscores), free(dscores), free(gdscores), free(dV), free(gdV), free(gdE), free(pi);
    free(w), free(gw), free(dpi), free(gdpi), free(u), free(gu), free(du), free(gdu);
}
#endif

int main(void) {
#ifndef TIMIREC_CUDA
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
#else
    if (!gt_have_gpu()) return TU_SKIP;
    run_case(1, 2, 1, 16, 50, 3.0f);
    run_case(3, 101, 4, 64, 200, 3.0f);
    run_case(256, 100, 4, 64, 3000, 3.0f);
    run_case(64, 10, 8, 256, 20, 30.0f);   /* candidates repeat across rows; large scores */
    run_case(200, 5, 2, 16, 3, 3.0f);      /* three items: long runs in the scatter */
    return tu_finish("test_gpu_heads");
#endif
}
