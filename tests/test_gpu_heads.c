/* GPU-vs-CPU parity of the heads (include/timirec/cpu/heads_decl.h against gpu_ops.h):
 * pretrain training scores (argmax interest, exact but for near ties, gt_kstar_check) and
 * their backward, and the fused training heads (pretrain / candidate scores with the ranking
 * loss, user vector with the distillation, the finetune head backward) against the CPU ops
 * they stand for (the single ops user vector, candidate scores, pretrain evaluation scores,
 * ranking loss and distillation: the op table, test_gpu_ops), at batch 1
 * to 256, candidates 1 to 1001 and 60,000 (more scores than shared memory holds), K 1 to 64, emb 16 to 256 (48:
 * not a multiple of the warp). Device outputs poisoned with NaN first; accumulated
 * gradients start from the same random values. Tolerances: 1e-5 normalised for tensors
 * (float32 summation order and fused multiply-adds on the device); the losses are evaluated
 * in double on both sides from the same float scores, so their values must agree to 1e-6
 * relative. SKIP without CUDA or a GPU (test_emu_heads: the host emulation, small shapes). */
#include "test_util.h"

#ifndef TIMIREC_CUDA
int main(void) {
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
}
#else
#include "gpu_test_util.h"
#include "timirec/cpu_ops.h"

#define TOL 1e-5
#define TOL_LOSS 1e-6

typedef struct {
    int B, C, K, d;
} shape_t;


static float *fresh(int64_t n) {
    float *x = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!x) exit(1);
    return x;
}

static void check_loss_tol(const char *what, float gpu, float cpu, double tol) {
    double rel = fabs((double)gpu - cpu) / fmax(fabs((double)cpu), 1e-30);
    printf("  %-58s gpu %.9g cpu %.9g  rel %.2e\n", what, gpu, cpu, rel);
    CHECK(isfinite(gpu) && rel <= tol, "%s: gpu %.9g cpu %.9g", what, gpu, cpu);
}
static void check_loss(const char *what, float gpu, float cpu) {
    check_loss_tol(what, gpu, cpu, TOL_LOSS);
}

/* Re-draw interests until every batch row's best interest for its target beats the second
 * by 1e-3 of the largest |score| (so float rounding cannot flip the argmax: d 2^-24 sum |v t|
 * is at most ~2e-5 of it here; gt_kstar_check would also accept a near tie). */
static void separate_argmax(float *V, const float *E, const int32_t *cand, int B, int C, int K,
                            int d, uint32_t tag) {
    for (int b = 0; b < B; b++) {
        for (uint32_t attempt = 0;; attempt++) {
            const float *t = E + (int64_t)cand[(int64_t)b * C] * d;
            double best = -INFINITY, second = -INFINITY, big = 0;
            for (int k = 0; k < K; k++) {
                double s = 0;
                for (int j = 0; j < d; j++) s += (double)V[((int64_t)b * K + k) * d + j] * t[j];
                if (s > best) {
                    second = best;
                    best = s;
                } else if (s > second) {
                    second = s;
                }
                big = fmax(big, fabs(s));
            }
            if (K == 1 || best - second > 1e-3 * big) break;
            gt_fill(V + (int64_t)b * K * d, (int64_t)K * d, tag + 1000 + attempt * 7919 + (uint32_t)b,
                    -1, 1);
        }
    }
}

/* kstar copied back from the device, against the CPU's (gt_kstar_check's near-tie rule; with
 * separate_argmax's margin no row is a near tie, so every row must agree). Later comparisons
 * use the CPU's kstar; a row that differed would show there too. */
static void check_kstar(const char *label, const int32_t *d_kstar, const int32_t *kstar,
                        const float *V, const float *E, const int32_t *cand, int B, int C, int K,
                        int d) {
    int32_t *h = (int32_t *)malloc((size_t)B * sizeof(int32_t));
    if (!h) exit(1);
    gpu_to_host(h, d_kstar, (size_t)B * sizeof(int32_t));
    gt_kstar_check(label, h, kstar, V, E, cand, B, C, K, d);
    free(h);
}

static void run(gpu_ctx_t *ctx, shape_t s, uint32_t tag) {
    const int B = s.B, C = s.C, K = s.K, d = s.d, N = 300;
    printf("B %d, C %d, K %d, d %d\n", B, C, K, d);
    model_config_t cfg = {.stage = STAGE_PRETRAIN, .n_items = N, .emb_size = d, .attn_size = 8,
                          .K = K, .history_max = 20, .add_pos = 1, .add_trm = 0, .n_layers = 1,
                          .temp = 1, .dropout = 0.5};
    char err[256];
    if (model_config_check(&cfg, err, sizeof err)) {
        CHECK(0, "%s", err);
        return;
    }
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    const int64_t total = lay.total, offE = model_offset(&lay, P_EXT_ITEM_EMB), nE = (int64_t)N * d;
    const int64_t nV = (int64_t)B * K * d, nS = (int64_t)B * C, nK = (int64_t)B * K;
    float *params = gt_rand(total, tag + 1, -1, 1);
    const float *E = params + offE;
    int32_t *cand = (int32_t *)malloc((size_t)nS * sizeof(int32_t));
    for (int64_t i = 0; i < nS; i++) /* repeats: E's gradient rows collect several candidates */
        cand[i] = (int32_t)(rng_u32(3, RNG_TEST, tag + 2, (uint64_t)i, 0) % (uint32_t)(N < 40 ? N : 40));
    float *V = gt_rand(nV, tag + 3, -1, 1);
    separate_argmax(V, E, cand, B, C, K, d, tag);
    float *d_E = gt_up(E, nE), *d_V = gt_up(V, nV);
    int32_t *d_cand = gt_upi(cand, nS);
    float *scores = fresh(nS), *d_scores = gt_poisoned(nS);
    int32_t *kstar = (int32_t *)malloc((size_t)B * sizeof(int32_t));
    int32_t *d_kstar = (int32_t *)gpu_malloc((size_t)B * sizeof(int32_t));
    float *work = gt_poisoned(nS * d);

    /* pretrain, training */
    gpu_poison(d_kstar, (size_t)B * sizeof(int32_t));
    pretrain_scores_f(&lay, params, V, cand, B, C, 1, kstar, scores);
    gpu_pretrain_scores(ctx, d_E, d_V, d_cand, B, C, K, d, 1, d_kstar, d_scores);
    check_kstar("pretrain training: argmax interest kstar", d_kstar, kstar, V, E, cand, B, C, K, d);
    gt_compare("pretrain training scores", d_scores, scores, nS, TOL);
    float *dsc = gt_rand(nS, tag + 4, -1, 1), *dV = gt_rand(nV, tag + 5, -1, 1);
    float *grads = gt_rand(total, tag + 6, -1, 1);
    float *d_dsc = gt_up(dsc, nS), *d_dV = gt_up(dV, nV), *d_dE = gt_up(grads + offE, nE);
    pretrain_scores_backward_f(&lay, params, V, cand, B, C, kstar, dsc, dV, grads);
    gpu_pretrain_scores_backward(ctx, d_E, d_V, d_cand, B, C, K, d, d_kstar, d_dsc, d_dV, d_dE,
                                 work);
    gt_compare("pretrain backward dV (accumulated)", d_dV, dV, nV, TOL);
    gt_compare("pretrain backward dE (accumulated)", d_dE, grads + offE, nE, TOL);

    /* The user vector (the CPU's: the single ops user_vector, candidate_scores, ranking_loss and
     * distill_loss are the op table's, test_gpu_ops) for the fused heads below. */
    float *pi = gt_rand(nK, tag + 7, -3, 3), *w = fresh(nK), *u = fresh((int64_t)B * d);
    user_vector_f(V, pi, B, K, d, w, u);
    float *d_pi = gt_up(pi, nK), *d_u = gt_up(u, (int64_t)B * d);

    /* The fused training heads against the CPU ops they stand for. */
    if (C >= 2) {
        float *ds = fresh(nS), *d_ds = gt_poisoned(nS);
        gpu_poison(d_scores, (size_t)nS * sizeof(float));
        gpu_poison(d_kstar, (size_t)B * sizeof(int32_t));
        pretrain_scores_f(&lay, params, V, cand, B, C, 1, kstar, scores);
        float lc = ranking_loss_f(scores, B, C, 0, ds);
        float lg = gpu_pretrain_rank(ctx, d_E, d_V, d_cand, B, C, K, d, 0, d_kstar, d_scores, d_ds);
        check_kstar("fused pretrain rank: kstar", d_kstar, kstar, V, E, cand, B, C, K, d);
        gt_compare("fused pretrain rank: scores", d_scores, scores, nS, TOL);
        check_loss_tol("fused pretrain rank: loss (from its own scores)", lg, lc, TOL);
        gt_compare("fused pretrain rank: d scores", d_ds, ds, nS, TOL);
        gpu_poison(d_scores, (size_t)nS * sizeof(float));
        gpu_poison(d_ds, (size_t)nS * sizeof(float));
        candidate_scores_f(&lay, params, u, cand, B, C, scores);
        lc = ranking_loss_f(scores, B, C, 0, ds);
        lg = gpu_candidate_rank(ctx, d_E, d_u, d_cand, B, C, d, 0, d_scores, d_ds);
        gt_compare("fused candidate rank: scores", d_scores, scores, nS, TOL);
        check_loss_tol("fused candidate rank: loss (from its own scores)", lg, lc, TOL);
        gt_compare("fused candidate rank: d scores", d_ds, ds, nS, TOL);
        free(ds);
        gpu_free(d_ds);
    }
    {
        const double temp = 0.7;
        float *w3 = fresh(nK), *u3 = fresh((int64_t)B * d), *tgt = fresh(nK);
        float *dpi3 = gt_rand(nK, tag + 14, -1, 1);
        float *d_w3 = gt_poisoned(nK), *d_u3 = gt_poisoned((int64_t)B * d), *d_tgt = gt_poisoned(nK);
        float *d_dpi3 = gt_up(dpi3, nK);
        user_vector_f(V, pi, B, K, d, w3, u3);
        float lc = distill_loss_f(&lay, params, V, cand, pi, B, C, 0, temp, tgt, dpi3);
        float lg = gpu_user_vector_distill(ctx, d_E, d_V, d_cand, d_pi, B, C, K, d, 0, temp,
                                           d_w3, d_u3, d_tgt, d_dpi3);
        gt_compare("fused user vector + distillation: w", d_w3, w3, nK, TOL);
        gt_compare("fused user vector + distillation: u", d_u3, u3, (int64_t)B * d, TOL);
        gt_compare("fused user vector + distillation: target_intent", d_tgt, tgt, nK, TOL);
        gt_compare("fused user vector + distillation: d pred_intent (acc.)", d_dpi3, dpi3, nK, TOL);
        check_loss("fused user vector + distillation: KL value", lg, lc);
        /* backward: du from random values, then into dV and d pred_intent */
        float *du4 = gt_rand((int64_t)B * d, tag + 15, -1, 1), *dV4 = gt_rand(nV, tag + 16, -1, 1);
        float *d_du4 = gt_up(du4, (int64_t)B * d), *d_dV4 = gt_up(dV4, nV);
        gpu_to_device(d_dE, grads + offE, (size_t)nE * sizeof(float));
        gpu_poison(work, (size_t)(nS * d) * sizeof(float));
        candidate_scores_backward_f(&lay, params, u3, cand, B, C, dsc, du4, grads);
        user_vector_backward_f(V, w3, du4, B, K, d, dV4, dpi3);
        gpu_finetune_head_backward(ctx, d_E, d_V, d_u3, d_w3, d_cand, B, C, K, d, d_dsc, d_du4,
                                   d_dV4, d_dpi3, d_dE, work);
        gt_compare("fused finetune head backward: du (accumulated)", d_du4, du4, (int64_t)B * d, TOL);
        gt_compare("fused finetune head backward: dV (accumulated)", d_dV4, dV4, nV, TOL);
        gt_compare("fused finetune head backward: d pred_intent (acc.)", d_dpi3, dpi3, nK, TOL);
        gt_compare("fused finetune head backward: dE (accumulated)", d_dE, grads + offE, nE, TOL);
        free(w3), free(u3), free(tgt), free(dpi3), free(du4), free(dV4);
        gpu_free(d_w3), gpu_free(d_u3), gpu_free(d_tgt), gpu_free(d_dpi3), gpu_free(d_du4);
        gpu_free(d_dV4);
    }

    free(params), free(cand), free(V), free(scores), free(kstar), free(dsc), free(dV), free(grads);
    free(pi), free(w), free(u);
    gpu_free(d_E), gpu_free(d_V), gpu_free(d_cand), gpu_free(d_scores), gpu_free(d_kstar);
    gpu_free(work), gpu_free(d_dsc), gpu_free(d_dV), gpu_free(d_dE), gpu_free(d_pi), gpu_free(d_u);
}

int main(void) {
    gpu_ctx_t *ctx = gt_start("test_gpu_heads");
    static const shape_t gpu_shapes[] = {
        {1, 2, 1, 16}, {3, 5, 2, 64}, {256, 2, 2, 64}, {256, 101, 7, 256}, {3, 1001, 64, 64},
        {256, 2, 64, 16}, {2, 1, 3, 16}, {256, 1001, 2, 64}, {256, 2, 16, 64},
        {64, 1001, 16, 128}, {17, 33, 5, 48}, {2, 60000, 2, 16},
    };
    static const shape_t emu_shapes[] = {
        {1, 2, 1, 16}, {3, 5, 2, 64}, {64, 2, 2, 64}, {4, 101, 7, 32}, {3, 30, 64, 16},
        {2, 1, 3, 16}, {2, 1001, 2, 16}, {2, 7, 5, 256}, {5, 13, 3, 48}, {2, 60000, 2, 16},
    };
    /* {2, 60000, 2, 16}: 60,000 scores (240 KB) do not fit in shared memory beside the vectors
     * (227 KiB a block): score_rank keeps them in global memory instead. */
    /* Small shapes in the emulation (TMR_EMU_FULL=1: the GPU's) and when asked
     * (TMR_SMALL_SHAPES=1, e.g. under compute-sanitizer). */
    const int emu = (gpu_is_emulated() && !getenv("TMR_EMU_FULL")) || getenv("TMR_SMALL_SHAPES");
    const shape_t *shapes = emu ? emu_shapes : gpu_shapes;
    const int n_shapes = emu ? (int)(sizeof emu_shapes / sizeof *emu_shapes)
                             : (int)(sizeof gpu_shapes / sizeof *gpu_shapes);
    for (int i = 0; i < n_shapes; i++) run(ctx, shapes[i], 1000u * (uint32_t)(i + 1));
    gpu_ctx_free(ctx);
    return gt_finish("test_gpu_heads");
}
#endif
