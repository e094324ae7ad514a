/* The CUDA backend's first ops (kernels/{adam,embedding,heads,interest}.cu) at the MovieLens-1M
 * training shape (B 256, L 20, d 64, a 8, K 2, C 2, N 3707; eval C 100): each op is checked
 * against the CPU reference once (max normalised error printed; exit 1 on a mismatch), then
 * timed: median over 5 rounds of the wall time of 200 back-to-back calls, per call, launch
 * overhead included (these are the simple kernels: the baseline the fast ones must beat).
 * SKIP (exit 0, as bench_device) without a CUDA build or a visible GPU.
 * TIMIREC_BENCH_CHECK_ONLY=1: the check only (tests/emu/run.sh runs it that way). */
#include "bench_util.h"

#include <stdint.h>
#include <time.h>

#include "timirec/cpu_ops.h"
#ifdef TIMIREC_CUDA
#include "../tests/gpu_test_util.h"

#define F(n) ((size_t)(n) * sizeof(float))
enum { B = 256, L = 20, D = 64, A = 8, K = 2, C = 2, C_EVAL = 100, N = 3707 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One op call; the context holds every buffer. */
typedef struct ctx ctx_t;
typedef void (*op_fn)(ctx_t *);

struct ctx {
    model_layout_t lay;
    adam_t opt;
    void *blas, *work;
    size_t work_bytes;
    float *params, *grads, *m, *v; /* device, layout.total */
    int32_t *hist, *pos, *cand, *cand_eval, *kstar;
    float *x0, *dx0, *t, *e, *alpha, *V, *dV, *dx, *de, *dt;
    float *scores, *dscores, *scores_eval, *pi, *w, *u, *du, *dpi, *loss;
    double *row_loss;
};

#define PRM(c, id) ((c)->params + model_offset(&(c)->lay, id))
#define GRD(c, id) ((c)->grads + model_offset(&(c)->lay, id))

static void op_adam(ctx_t *c) {
    GT_TRY(tmr_gpu_adam_step(&c->opt, &c->lay, c->params, c->grads, c->m, c->v, NULL, gt_err,
                             sizeof gt_err));
}
static void op_embed_fwd(ctx_t *c) {
    GT_TRY(tmr_gpu_embed_forward(PRM(c, P_EXT_ITEM_EMB), PRM(c, P_EXT_POS_EMB), c->hist, c->pos,
                                 (int64_t)B * L, D, c->x0, NULL, gt_err, sizeof gt_err));
}
static void op_embed_bwd(ctx_t *c) {
    GT_TRY(tmr_gpu_embed_backward(c->hist, c->pos, (int64_t)B * L, D, N, L + 1, c->dx0,
                                  GRD(c, P_EXT_ITEM_EMB), GRD(c, P_EXT_POS_EMB), c->work,
                                  c->work_bytes, NULL, gt_err, sizeof gt_err));
}
static void op_interest_fwd(ctx_t *c) {
    GT_TRY(tmr_gpu_interest_forward(c->blas, c->x0, c->hist, PRM(c, P_EXT_W1), PRM(c, P_EXT_B1),
                                    PRM(c, P_EXT_W2), PRM(c, P_EXT_B2), B, L, D, A, K, c->t, c->e,
                                    c->alpha, c->V, NULL, gt_err, sizeof gt_err));
}
static void op_interest_bwd(ctx_t *c) {
    GT_TRY(tmr_gpu_interest_backward(c->blas, c->x0, c->t, c->alpha, PRM(c, P_EXT_W1),
                                     PRM(c, P_EXT_W2), c->dV, B, L, D, A, K, c->dx,
                                     GRD(c, P_EXT_W1), GRD(c, P_EXT_B1), GRD(c, P_EXT_W2),
                                     GRD(c, P_EXT_B2), c->de, c->dt, NULL, gt_err,
                                     sizeof gt_err));
}
static void op_pretrain_scores(ctx_t *c) {
    GT_TRY(tmr_gpu_pretrain_scores(PRM(c, P_EXT_ITEM_EMB), c->V, c->cand, B, C, K, D, 1, c->kstar,
                                   c->scores, NULL, gt_err, sizeof gt_err));
}
static void op_pretrain_scores_bwd(ctx_t *c) {
    GT_TRY(tmr_gpu_pretrain_scores_backward(PRM(c, P_EXT_ITEM_EMB), c->V, c->cand, B, C, K, D, N,
                                            c->kstar, c->dscores, c->dV, GRD(c, P_EXT_ITEM_EMB),
                                            c->work, c->work_bytes, NULL, gt_err, sizeof gt_err));
}
static void op_pretrain_eval(ctx_t *c) {
    GT_TRY(tmr_gpu_pretrain_scores(PRM(c, P_EXT_ITEM_EMB), c->V, c->cand_eval, B, C_EVAL, K, D, 0,
                                   NULL, c->scores_eval, NULL, gt_err, sizeof gt_err));
}
static void op_user_vector(ctx_t *c) {
    GT_TRY(tmr_gpu_user_vector(c->V, c->pi, B, K, D, c->w, c->u, NULL, gt_err, sizeof gt_err));
}
static void op_user_vector_bwd(ctx_t *c) {
    GT_TRY(tmr_gpu_user_vector_backward(c->V, c->w, c->du, B, K, D, c->dV, c->dpi, NULL, gt_err,
                                        sizeof gt_err));
}
static void op_candidate_scores(ctx_t *c) {
    GT_TRY(tmr_gpu_candidate_scores(PRM(c, P_EXT_ITEM_EMB), c->u, c->cand, B, C, D, c->scores,
                                    NULL, gt_err, sizeof gt_err));
}
static void op_candidate_scores_bwd(ctx_t *c) {
    GT_TRY(tmr_gpu_candidate_scores_backward(PRM(c, P_EXT_ITEM_EMB), c->u, c->cand, B, C, D, N,
                                             c->dscores, c->du, GRD(c, P_EXT_ITEM_EMB), c->work,
                                             c->work_bytes, NULL, gt_err, sizeof gt_err));
}
static void op_ranking_loss(ctx_t *c) {
    GT_TRY(tmr_gpu_ranking_loss(c->scores, B, C, c->dscores, c->row_loss, c->loss, NULL, gt_err,
                                sizeof gt_err));
}

static double time_op(ctx_t *c, op_fn f) {
    enum { ROUNDS = 5, CALLS = 200 };
    double t[ROUNDS];
    for (int i = 0; i < 10; i++) f(c); /* warm-up */
    GT_TRY(tmr_gpu_sync(gt_err, sizeof gt_err));
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_s();
        for (int i = 0; i < CALLS; i++) f(c);
        GT_TRY(tmr_gpu_sync(gt_err, sizeof gt_err));
        t[r] = (now_s() - t0) / CALLS;
    }
    return bench_median(t, ROUNDS) * 1e6;
}

/* Upload a fresh random host array of n floats (scale) and return the device copy. */
static float *dev_random(float *host, int64_t n, float scale) {
    gt_fill(host, n, scale);
    return gt_dev_copy(host, F(n));
}
#endif

int main(void) {
#ifndef TIMIREC_CUDA
    printf("SKIP: built without CUDA (no nvcc)\n");
    return 0;
#else
    if (!gt_have_gpu()) return 0;
    ctx_t c;
    memset(&c, 0, sizeof c);
    model_config_t cfg = {.stage = STAGE_FINETUNE, .n_items = N, .emb_size = D, .attn_size = A,
                          .K = K, .history_max = L, .add_pos = 1, .add_trm = 1, .n_layers = 2,
                          .temp = 0.5, .dropout = 0.5};
    char err[512];
    if (model_config_check(&cfg, err, sizeof err)) {
        fprintf(stderr, "bench_gpu_ops: %s\n", err);
        return 1;
    }
    model_layout_build(&cfg, &c.lay);
    const int64_t T = c.lay.total, n = (int64_t)B * L;
    /* Host copies (the CPU reference's inputs and outputs). */
    float *params = malloc(F(T)), *grads = malloc(F(T)), *m = malloc(F(T)), *v = malloc(F(T));
    float *x0 = malloc(F(n * D)), *V = malloc(F(B * K * D)), *scores = malloc(F(B * C_EVAL));
    float *t = malloc(F(n * A)), *e = malloc(F(n * K)), *alpha = malloc(F(B * K * L));
    float *got = malloc(F(T > n * D ? T : n * D)), *dx = malloc(F(n * D));
    float *dV = malloc(F(B * K * D));
    int32_t *hist = malloc((size_t)n * 4), *pos = malloc((size_t)n * 4);
    int32_t *cand = malloc((size_t)B * C_EVAL * 4);
    for (int b = 0; b < B; b++) {
        int len = 1 + gt_below(L);
        for (int l = 0; l < L; l++) {
            hist[b * L + l] = l < len ? 1 + gt_below(N - 1) : 0;
            pos[b * L + l] = l < len ? len - l : 0;
        }
    }
    for (int i = 0; i < B * C_EVAL; i++) cand[i] = 1 + gt_below(N - 1);
    c.params = dev_random(params, T, 0.3f);
    c.grads = dev_random(grads, T, 1e-2f);
    c.m = dev_random(m, T, 1e-3f);
    for (int64_t i = 0; i < T; i++) v[i] = 1e-6f + fabsf(m[i]) * 1e-2f;
    c.v = gt_dev_copy(v, F(T));
    c.hist = gt_dev_copy(hist, (size_t)n * 4);
    c.pos = gt_dev_copy(pos, (size_t)n * 4);
    c.cand = gt_dev_copy(cand, (size_t)B * C * 4); /* training: the first B*C ids */
    c.cand_eval = gt_dev_copy(cand, (size_t)B * C_EVAL * 4);
    c.kstar = gt_dev((size_t)B * 4);
    c.dx0 = dev_random(dx, n * D, 1.0f);
    c.dV = dev_random(dV, B * K * D, 1.0f);
    c.dscores = dev_random(got, B * C, 1.0f);
    c.pi = dev_random(got, B * K, 1.0f);
    c.du = dev_random(got, B * D, 1.0f);
    c.x0 = gt_dev(F(n * D)), c.t = gt_dev(F(n * A)), c.e = gt_dev(F(n * K));
    c.alpha = gt_dev(F(B * K * L)), c.V = gt_dev(F(B * K * D)), c.dx = gt_dev(F(n * D));
    c.de = gt_dev(F(n * K)), c.dt = gt_dev(F(n * A)), c.scores = gt_dev(F(B * C));
    c.scores_eval = gt_dev(F(B * C_EVAL)), c.w = gt_dev(F(B * K)), c.u = gt_dev(F(B * D));
    c.dpi = gt_dev(F(B * K)), c.loss = gt_dev(F(1)), c.row_loss = gt_dev((size_t)B * 8);
    size_t w1, w2;
    GT_TRY(tmr_gpu_scatter_work_bytes(n, N, &w1, gt_err, sizeof gt_err));
    GT_TRY(tmr_gpu_scores_backward_work_bytes(B, C, D, N, &w2, gt_err, sizeof gt_err));
    c.work_bytes = w1 > w2 ? w1 : w2;
    c.work = gt_dev(c.work_bytes);
    GT_TRY(tmr_gpu_blas_create(&c.blas, gt_err, sizeof gt_err));
    adam_init(&c.opt, 1e-4, 1e-6);

    /* Check the forward chain and Adam once against the CPU reference. */
    printf("check against the CPU reference:\n");
    const float *Eh = params + model_offset(&c.lay, P_EXT_ITEM_EMB);
    ext_embed_forward_f(Eh, params + model_offset(&c.lay, P_EXT_POS_EMB), hist, pos, n, D, x0);
    op_embed_fwd(&c);
    gt_get(got, c.x0, F(n * D));
    gt_compare("embed forward x0", got, x0, n * D, 0, 1e-6);
    ext_interest_forward_f(x0, hist, params + model_offset(&c.lay, P_EXT_W1),
                           params + model_offset(&c.lay, P_EXT_B1),
                           params + model_offset(&c.lay, P_EXT_W2),
                           params + model_offset(&c.lay, P_EXT_B2), B, L, D, A, K, t, e, alpha, V);
    op_interest_fwd(&c);
    gt_get(got, c.V, F(B * K * D));
    gt_compare("interest forward V", got, V, B * K * D, 0, 1e-4);
    GT_TRY(tmr_gpu_upload(c.V, V, F(B * K * D), gt_err, sizeof gt_err));
    pretrain_scores_f(&c.lay, params, V, cand, B, C_EVAL, 0, NULL, scores);
    op_pretrain_eval(&c);
    gt_get(got, c.scores_eval, F(B * C_EVAL));
    gt_compare("pretrain eval scores", got, scores, B * C_EVAL, 0, 1e-6);
    adam_t cpu_opt;
    adam_init(&cpu_opt, 1e-4, 1e-6);
    adam_step(&cpu_opt, &c.lay, params, grads, m, v);
    op_adam(&c);
    gt_get(got, c.params, F(T));
    gt_compare("adam params", got, params, T, 0, 1e-6);
    if (tu_failures) {
        fprintf(stderr, "bench_gpu_ops: results differ from the CPU reference; not timing\n");
        return 1;
    }
    /* (The backward ops are checked by tests/test_gpu_*; here they are only timed.) */
    if (getenv("TIMIREC_BENCH_CHECK_ONLY")) return 0; /* tests/emu: the check, no timing */

    char dev[512];
    tmr_cuda_describe(dev, sizeof dev);
    printf("GPU ops at the ml-1m training shape (B %d, L %d, d %d, a %d, K %d, C %d, N %d)\n"
           "%s\n%-34s %10s\n", B, L, D, A, K, C, N, dev, "op", "us/call");
    struct {
        const char *name;
        op_fn f;
    } ops[] = {
        {"adam (ml-1m finetune layout)", op_adam},
        {"embed forward", op_embed_fwd},
        {"embed backward (sort + scatter)", op_embed_bwd},
        {"interest forward", op_interest_fwd},
        {"interest backward", op_interest_bwd},
        {"pretrain scores (training)", op_pretrain_scores},
        {"pretrain scores backward", op_pretrain_scores_bwd},
        {"pretrain scores (eval, C 100)", op_pretrain_eval},
        {"user vector", op_user_vector},
        {"user vector backward", op_user_vector_bwd},
        {"candidate scores", op_candidate_scores},
        {"candidate scores backward", op_candidate_scores_bwd},
        {"ranking loss", op_ranking_loss},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        printf("%-34s %10.2f\n", ops[i].name, time_op(&c, ops[i].f));
    GT_TRY(tmr_gpu_blas_destroy(c.blas, gt_err, sizeof gt_err));
    return 0;
#endif
}
