/* The CUDA training backend (include/timirec/gpu.h): the device copy of the model and the
 * composition of the layer operations into the training step and evaluation, restating
 * src/cpu/model_step.inc, extractor_forward/backward (src/cpu/extractor.inc) and
 * predictor_forward/backward (src/cpu/predictor.inc) call for call, on device buffers that
 * mirror the CPU caches. The batch arrives as host arrays: it is checked on the host (the CPU
 * backend's checks, same messages) and copied over; the GRU's packing is computed on the host
 * from the lengths. */
#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "timirec/gpu.h"

#define MAX_ALLOCS 96

struct gpu_model {
    model_layout_t lay;
    gpu_ctx_t *ctx;
    char device[256];
    int max_B, max_L, max_C;
    int d, a, K, dff, add_pos, add_trm, finetune;
    int B, L, C;          /* shape of the last batch */
    void *allocs[MAX_ALLOCS];
    int n_allocs;

    float *params, *grads, *adam_m, *adam_v;  /* (lay.total) */
    int32_t *hist, *pos;  /* (B, L) */
    int32_t *cand;        /* (B, C) */

    /* extractor activations and scratch, as extractor_cache_t (n = B * L rows) */
    float *x0, *q, *k, *v;          /* (n, d) */
    float *att, *gs;                /* (B, L, L) */
    float *ln1_xhat, *h1, *ln2_xhat, *x, *tmp;  /* (n, d); x = x0 without add_trm */
    float *ln1_rstd, *ln2_rstd;     /* (n) */
    float *ffn_r;                   /* (n, dff) */
    float *t, *gt;                  /* (n, a) */
    float *e, *ge;                  /* (n, K) */
    float *alpha;                   /* (B, K, L) */
    float *g0, *g1, *g2, *g3;       /* (n, d) */

    /* heads */
    float *V, *dV;                  /* (B, K, d) */
    float *pred_intent, *d_pred_intent, *target_intent, *w;  /* (B, K) */
    float *u, *du;                  /* (B, d) */
    float *scores, *dscores;        /* (B, C) */
    float *head_work;               /* (B * C, d) rows added into E's gradient */
    int32_t *kstar;                 /* (B) */

    /* predictor (finetune), as predictor_cache_t; T = packed rows <= B * L */
    int32_t *pk_ids;                /* (T) E2 row of each packed row */
    int32_t *final_row;             /* (B) packed row of each sequence's last item, -1: none */
    float *px, *ghn, *ph, *pdh, *pdx;  /* (T, d) */
    float *gates, *pdgi;            /* (T, 3d) */
    float *pg, *pdg;                /* (B, d) */
    float *acts;                    /* (n_proj - 1, B, d) */
    float *pwork;                   /* (B, 3d) */
    float *ppwork;                  /* (2, B, d) */
    /* host packing of the last batch */
    int32_t *h_perm, *h_batch_sizes, *h_ids, *h_final;
    int64_t *h_step_off;
    int n_steps;
    int64_t T;
    int training;                   /* the last predictor forward */
};

static void *take(gpu_model_t *g, size_t bytes) {
    if (g->n_allocs >= MAX_ALLOCS) tmr_fatal("gpu_model: more than %d device buffers", MAX_ALLOCS);
    void *p = gpu_malloc(bytes);
    g->allocs[g->n_allocs++] = p;
    return p;
}
static float *take_f(gpu_model_t *g, size_t count) {
    return (float *)take(g, tmr_mul_size(count, sizeof(float)));
}
static int32_t *take_i(gpu_model_t *g, size_t count) {
    return (int32_t *)take(g, tmr_mul_size(count, sizeof(int32_t)));
}

extern "C" gpu_model_t *gpu_model_create(const model_layout_t *lay, const float *params, int max_B,
                                         int max_L, int max_C, char *err, size_t errlen) {
    if (max_B < 1 || max_L < 1 || max_C < 1) {
        if (err && errlen)
            snprintf(err, errlen, "gpu_model_create: max_B %d, max_L %d, max_C %d must be >= 1",
                     max_B, max_L, max_C);
        return NULL;
    }
    gpu_ctx_t *ctx = gpu_ctx_create(err, errlen);
    if (!ctx) return NULL;
    gpu_model_t *g = (gpu_model_t *)calloc(1, sizeof *g);
    if (!g) tmr_fatal("gpu_model_create: out of host memory");
    g->lay = *lay;
    g->ctx = ctx;
    gpu_device_count(g->device, sizeof g->device);
    const model_config_t *cfg = &lay->cfg;
    g->max_B = max_B;
    g->max_L = max_L;
    g->max_C = max_C;
    g->d = cfg->emb_size;
    g->a = cfg->attn_size;
    g->K = cfg->K;
    g->dff = cfg->emb_size;
    g->add_pos = cfg->add_pos;
    g->add_trm = cfg->add_trm;
    g->finetune = cfg->stage == STAGE_FINETUNE;
    const size_t B = (size_t)max_B, L = (size_t)max_L, d = (size_t)g->d, K = (size_t)g->K;
    const size_t n = B * L, total = (size_t)lay->total;

    g->params = take_f(g, total);
    g->grads = take_f(g, total);
    g->adam_m = take_f(g, total);
    g->adam_v = take_f(g, total);
    gpu_to_device(g->params, params, total * sizeof(float));
    gpu_zero(g->grads, total * sizeof(float));
    gpu_zero(g->adam_m, total * sizeof(float));
    gpu_zero(g->adam_v, total * sizeof(float));
    g->hist = take_i(g, n);
    g->pos = take_i(g, n);
    g->cand = take_i(g, B * (size_t)max_C);

    g->x0 = take_f(g, n * d);
    g->t = take_f(g, n * (size_t)g->a);
    g->gt = take_f(g, n * (size_t)g->a);
    g->e = take_f(g, n * K);
    g->ge = take_f(g, n * K);
    g->alpha = take_f(g, n * K);
    g->g0 = take_f(g, n * d);
    if (g->add_trm) {
        g->q = take_f(g, n * d);
        g->k = take_f(g, n * d);
        g->v = take_f(g, n * d);
        g->att = take_f(g, tmr_mul_size(n, L));
        g->gs = take_f(g, tmr_mul_size(n, L));
        g->ln1_xhat = take_f(g, n * d);
        g->h1 = take_f(g, n * d);
        g->ln2_xhat = take_f(g, n * d);
        g->x = take_f(g, n * d);
        g->tmp = take_f(g, n * d);
        g->ln1_rstd = take_f(g, n);
        g->ln2_rstd = take_f(g, n);
        g->ffn_r = take_f(g, n * (size_t)g->dff);
        g->g1 = take_f(g, n * d);
        g->g2 = take_f(g, n * d);
        g->g3 = take_f(g, n * d);
    } else {
        g->x = g->x0;
    }

    g->V = take_f(g, B * K * d);
    g->dV = take_f(g, B * K * d);
    g->pred_intent = take_f(g, B * K);
    g->d_pred_intent = take_f(g, B * K);
    g->target_intent = take_f(g, B * K);
    g->w = take_f(g, B * K);
    g->u = take_f(g, B * d);
    g->du = take_f(g, B * d);
    g->scores = take_f(g, B * (size_t)max_C);
    g->dscores = take_f(g, B * (size_t)max_C);
    g->head_work = take_f(g, tmr_mul_size(B * (size_t)max_C, d));
    g->kstar = take_i(g, B);

    if (g->finetune) {
        if (!model_has(lay, P_PRED_ITEM_EMB) || lay->n_proj < 1)
            tmr_fatal("gpu_model_create: finetune layout without an interest predictor");
        g->pk_ids = take_i(g, n);
        g->final_row = take_i(g, B);
        g->px = take_f(g, n * d);
        g->ghn = take_f(g, n * d);
        g->ph = take_f(g, n * d);
        g->pdh = take_f(g, n * d);
        g->pdx = take_f(g, n * d);
        g->gates = take_f(g, n * 3 * d);
        g->pdgi = take_f(g, n * 3 * d);
        g->pg = take_f(g, B * d);
        g->pdg = take_f(g, B * d);
        g->acts = take_f(g, (size_t)(lay->n_proj > 1 ? lay->n_proj - 1 : 1) * B * d);
        g->pwork = take_f(g, B * 3 * d);
        g->ppwork = take_f(g, 2 * B * d);
        g->h_perm = (int32_t *)tmr_malloc(B * sizeof(int32_t));
        g->h_batch_sizes = (int32_t *)tmr_malloc(L * sizeof(int32_t));
        g->h_step_off = (int64_t *)tmr_malloc((L + 1) * sizeof(int64_t));
        g->h_ids = (int32_t *)tmr_malloc(n * sizeof(int32_t));
        g->h_final = (int32_t *)tmr_malloc(B * sizeof(int32_t));
    }
    gpu_sync();
    return g;
}

extern "C" void gpu_model_free(gpu_model_t *g) {
    if (!g) return;
    for (int i = 0; i < g->n_allocs; i++) gpu_free(g->allocs[i]);
    gpu_ctx_free(g->ctx);
    free(g->h_perm);
    free(g->h_batch_sizes);
    free(g->h_step_off);
    free(g->h_ids);
    free(g->h_final);
    free(g);
}

extern "C" const char *gpu_model_device(const gpu_model_t *g) { return g->device; }

extern "C" void gpu_model_upload_params(gpu_model_t *g, const float *params) {
    gpu_to_device(g->params, params, (size_t)g->lay.total * sizeof(float));
}
extern "C" void gpu_model_download_params(gpu_model_t *g, float *params) {
    gpu_to_host(params, g->params, (size_t)g->lay.total * sizeof(float));
}
extern "C" void gpu_model_upload_adam(gpu_model_t *g, const float *m, const float *v) {
    gpu_to_device(g->adam_m, m, (size_t)g->lay.total * sizeof(float));
    gpu_to_device(g->adam_v, v, (size_t)g->lay.total * sizeof(float));
}
extern "C" void gpu_model_download_adam(gpu_model_t *g, float *m, float *v) {
    gpu_to_host(m, g->adam_m, (size_t)g->lay.total * sizeof(float));
    gpu_to_host(v, g->adam_v, (size_t)g->lay.total * sizeof(float));
}

/* ---- the batch ---------------------------------------------------------------------------- */

/* The CPU backend's checks (extractor_forward, heads_check_cand, gru_pack), then the copy. */
static void upload_batch(gpu_model_t *g, const model_batch_t *b, const char *who) {
    const model_config_t *cfg = &g->lay.cfg;
    const int B = b->B, L = b->L, C = b->C;
    if (B < 1 || L < 1 || C < 1 || B > g->max_B || L > g->max_L || C > g->max_C)
        tmr_fatal("%s: batch %d x %d x %d outside the workspace %d x %d x %d", who, B, L, C,
                  g->max_B, g->max_L, g->max_C);
    if (g->add_pos && !b->pos) tmr_fatal("%s: add_pos needs position indices", who);
    const int64_t n = (int64_t)B * L;
    for (int64_t r = 0; r < n; r++) {
        if (b->hist[r] < 0 || b->hist[r] >= cfg->n_items)
            tmr_fatal("%s: item id %d at (%lld, %lld) outside 0..%d", who, (int)b->hist[r],
                      (long long)(r / L), (long long)(r % L), cfg->n_items - 1);
        if (g->add_pos && (b->pos[r] < 0 || b->pos[r] > cfg->history_max))
            tmr_fatal("%s: position %d at (%lld, %lld) outside 0..%d", who, (int)b->pos[r],
                      (long long)(r / L), (long long)(r % L), cfg->history_max);
    }
    for (int64_t e = 0; e < (int64_t)B * C; e++)
        if (b->cand[e] < 0 || b->cand[e] >= cfg->n_items)
            tmr_fatal("%s: candidate id %d at [%lld][%lld] outside 0..%d", who, (int)b->cand[e],
                      (long long)(e / C), (long long)(e % C), cfg->n_items - 1);
    gpu_to_device(g->hist, b->hist, (size_t)n * sizeof(int32_t));
    if (g->add_pos) gpu_to_device(g->pos, b->pos, (size_t)n * sizeof(int32_t));
    gpu_to_device(g->cand, b->cand, (size_t)B * C * sizeof(int32_t));
    g->B = B;
    g->L = L;
    g->C = C;
}

/* The GRU's packing (predictor_decl.h "Packed order", as gru_pack): sequences sorted by length,
 * longest first, ties in batch order; plus each packed row's E2 id and each sequence's final
 * packed row. Copies the ids and final rows to the device. */
static void pack_batch(gpu_model_t *g, const model_batch_t *b, const char *who) {
    const int B = b->B, L = b->L;
    if (!b->length) tmr_fatal("%s: the finetune stage needs the history lengths", who);
    int n_steps = 0;
    for (int i = 0; i < B; i++) {
        if (b->length[i] < 0 || b->length[i] > L)
            tmr_fatal("%s: length[%d] = %d outside 0..%d", who, i, (int)b->length[i], L);
        if (b->length[i] > n_steps) n_steps = b->length[i];
    }
    int slot = 0;
    for (int len = n_steps; len >= 0; len--)
        for (int i = 0; i < B; i++)
            if (b->length[i] == len) g->h_perm[slot++] = i;
    for (int t = 0; t < L; t++) g->h_batch_sizes[t] = 0;
    for (int i = 0; i < B; i++)
        for (int t = 0; t < b->length[i]; t++) g->h_batch_sizes[t]++;
    g->h_step_off[0] = 0;
    for (int t = 0; t < L; t++)
        g->h_step_off[t + 1] = g->h_step_off[t] + (t < n_steps ? g->h_batch_sizes[t] : 0);
    g->n_steps = n_steps;
    g->T = g->h_step_off[n_steps];
    for (int t = 0; t < n_steps; t++)
        for (int i = 0; i < g->h_batch_sizes[t]; i++)
            g->h_ids[g->h_step_off[t] + i] = b->hist[(int64_t)g->h_perm[i] * L + t];
    for (int i = 0; i < B; i++) {
        const int bi = g->h_perm[i], len = b->length[bi];
        g->h_final[bi] = len == 0 ? -1 : (int32_t)(g->h_step_off[len - 1] + i);
    }
    gpu_to_device(g->pk_ids, g->h_ids, (size_t)g->T * sizeof(int32_t));
    gpu_to_device(g->final_row, g->h_final, (size_t)B * sizeof(int32_t));
}

/* ---- extractor ---------------------------------------------------------------------------- */

#define PRM(id) (g->params + model_offset(&g->lay, (id)))
#define GRD(id) (g->grads + model_offset(&g->lay, (id)))

static void extractor_forward(gpu_model_t *g) {
    gpu_ctx_t *ctx = g->ctx;
    const int B = g->B, L = g->L, d = g->d, a = g->a, K = g->K, dff = g->dff;
    const int64_t n = (int64_t)B * L;
    gpu_ext_embed_forward(ctx, PRM(P_EXT_ITEM_EMB), g->add_pos ? PRM(P_EXT_POS_EMB) : NULL,
                          g->hist, g->pos, n, d, g->x0);
    if (g->add_trm) {
        gpu_ext_linear_forward(ctx, g->x0, PRM(P_TRM_WQ), PRM(P_TRM_BQ), n, d, d, g->q);
        gpu_ext_linear_forward(ctx, g->x0, PRM(P_TRM_WK), PRM(P_TRM_BK), n, d, d, g->k);
        gpu_ext_linear_forward(ctx, g->x0, PRM(P_TRM_WV), PRM(P_TRM_BV), n, d, d, g->v);
        gpu_ext_attn_forward(ctx, g->q, g->k, g->v, g->hist, B, L, d, g->att, g->tmp);
        gpu_ext_add_layernorm_forward(ctx, g->tmp, g->x0, PRM(P_TRM_LN1_G), PRM(P_TRM_LN1_B),
                                      NULL, n, d, g->h1, g->ln1_xhat, g->ln1_rstd);
        gpu_ext_ffn_forward(ctx, g->h1, PRM(P_TRM_FF1_W), PRM(P_TRM_FF1_B), PRM(P_TRM_FF2_W),
                            PRM(P_TRM_FF2_B), n, d, dff, g->ffn_r, g->tmp);
        gpu_ext_add_layernorm_forward(ctx, g->tmp, g->h1, PRM(P_TRM_LN2_G), PRM(P_TRM_LN2_B),
                                      g->hist, n, d, g->x, g->ln2_xhat, g->ln2_rstd);
    }
    gpu_ext_interest_forward(ctx, g->x, g->hist, PRM(P_EXT_W1), PRM(P_EXT_B1), PRM(P_EXT_W2),
                             PRM(P_EXT_B2), B, L, d, a, K, g->t, g->e, g->alpha, g->V);
}

/* dV -> every extractor tensor's gradient (W2.bias and k_linear.bias: exactly zero, left
 * untouched, as the CPU). */
static void extractor_backward(gpu_model_t *g) {
    gpu_ctx_t *ctx = g->ctx;
    const int B = g->B, L = g->L, d = g->d, a = g->a, K = g->K, dff = g->dff;
    const int64_t n = (int64_t)B * L;
    gpu_ext_interest_backward(ctx, g->x, g->t, g->alpha, PRM(P_EXT_W1), PRM(P_EXT_W2), g->dV, B,
                              L, d, a, K, g->g0, GRD(P_EXT_W1), GRD(P_EXT_B1), GRD(P_EXT_W2),
                              NULL, g->ge, g->gt);
    float *dx0 = g->g0;
    if (g->add_trm) {
        /* g0 = dx -> (LN2, row mask) -> g1 = dz2 = df and the residual's share of dh1
         * (g2 is free until the copy below: LN2's row-sum scratch) */
        gpu_ext_add_layernorm_backward(ctx, g->g0, g->ln2_xhat, g->ln2_rstd, PRM(P_TRM_LN2_G),
                                       g->hist, n, d, g->g1, GRD(P_TRM_LN2_G), GRD(P_TRM_LN2_B),
                                       g->g2);
        gpu_copy(g->g2, g->g1, (size_t)(n * d) * sizeof(float));
        gpu_ext_ffn_backward(ctx, g->h1, g->ffn_r, PRM(P_TRM_FF1_W), PRM(P_TRM_FF2_W), g->g1, n,
                             d, dff, g->g2, GRD(P_TRM_FF1_W), GRD(P_TRM_FF1_B), GRD(P_TRM_FF2_W),
                             GRD(P_TRM_FF2_B), g->g0);
        /* g2 = dh1 -> (LN1) -> g1 = dz1 = dctx and the residual's share of dx0 (g3 free: the
         * row-sum scratch) */
        gpu_ext_add_layernorm_backward(ctx, g->g2, g->ln1_xhat, g->ln1_rstd, PRM(P_TRM_LN1_G),
                                       NULL, n, d, g->g1, GRD(P_TRM_LN1_G), GRD(P_TRM_LN1_B),
                                       g->g3);
        gpu_ext_attn_backward(ctx, g->q, g->k, g->v, g->att, g->g1, B, L, d, g->g0, g->g2, g->g3,
                              g->gs);
        gpu_ext_linear_backward(ctx, g->x0, PRM(P_TRM_WQ), g->g0, n, d, d, g->g1, GRD(P_TRM_WQ),
                                GRD(P_TRM_BQ));
        gpu_ext_linear_backward(ctx, g->x0, PRM(P_TRM_WK), g->g2, n, d, d, g->g1, GRD(P_TRM_WK),
                                NULL);
        gpu_ext_linear_backward(ctx, g->x0, PRM(P_TRM_WV), g->g3, n, d, d, g->g1, GRD(P_TRM_WV),
                                GRD(P_TRM_BV));
        dx0 = g->g1;
    }
    gpu_ext_embed_backward(ctx, g->hist, g->pos, n, d, dx0, GRD(P_EXT_ITEM_EMB),
                           g->add_pos ? GRD(P_EXT_POS_EMB) : NULL);
}

/* ---- predictor ---------------------------------------------------------------------------- */

/* g[b, :] = h[final_row[b], :] (0 for an empty history). */
__global__ void gather_final_kernel(int64_t n, int d, const int32_t *__restrict__ final_row,
                                    const float *__restrict__ h, float *__restrict__ out) {
    THREAD_INDEX(i, n);
    const int64_t b = i / d;
    const int j = (int)(i % d);
    const int32_t r = final_row[b];
    out[i] = r >= 0 ? h[(int64_t)r * d + j] : 0.0f;
}

/* dh[final_row[b], :] = dg[b, :] (rows are distinct: one final row per sequence). */
__global__ void scatter_final_kernel(int64_t n, int d, const int32_t *__restrict__ final_row,
                                     const float *__restrict__ dg, float *__restrict__ dh) {
    THREAD_INDEX(i, n);
    const int64_t b = i / d;
    const int j = (int)(i % d);
    const int32_t r = final_row[b];
    if (r >= 0) dh[(int64_t)r * d + j] = dg[i];
}

static void predictor_forward(gpu_model_t *g, const model_batch_t *b, int training,
                              dropout_key_t key, const char *who) {
    gpu_ctx_t *ctx = g->ctx;
    const int B = g->B, d = g->d;
    pack_batch(g, b, who);
    g->training = training;
    /* The packed inputs from E2 (ids were checked against the extractor's smaller range). */
    gpu_ext_embed_forward(ctx, PRM(P_PRED_ITEM_EMB), NULL, g->pk_ids, NULL, g->T, d, g->px);
    gpu_gru_forward(ctx, d, PRM(P_GRU_W_IH), PRM(P_GRU_W_HH), PRM(P_GRU_B_IH), PRM(P_GRU_B_HH),
                    g->n_steps, g->h_batch_sizes, g->h_step_off, g->px, g->gates, g->ghn, g->ph,
                    g->pwork);
    LAUNCH(gather_final_kernel, (int64_t)B * d, d, g->final_row, g->ph, g->pg);
    gpu_proj_forward(ctx, &g->lay, g->params, g->pg, B, training, key, g->acts, g->pred_intent);
}

static void predictor_backward(gpu_model_t *g) {
    gpu_ctx_t *ctx = g->ctx;
    const int B = g->B, d = g->d;
    gpu_proj_backward(ctx, &g->lay, g->params, g->pg, g->acts, B, g->training, g->d_pred_intent,
                      g->pdg, g->ppwork, g->grads);
    if (g->T == 0) return;
    gpu_zero(g->pdh, (size_t)(g->T * d) * sizeof(float));
    LAUNCH(scatter_final_kernel, (int64_t)B * d, d, g->final_row, g->pdg, g->pdh);
    gpu_gru_backward(ctx, d, PRM(P_GRU_W_IH), PRM(P_GRU_W_HH), g->n_steps, g->h_batch_sizes,
                     g->h_step_off, g->px, g->gates, g->ghn, g->ph, g->pdh, g->pdgi, g->pwork,
                     g->pdx, GRD(P_GRU_W_IH), GRD(P_GRU_W_HH), GRD(P_GRU_B_IH), GRD(P_GRU_B_HH));
    gpu_scatter_add_rows(ctx, g->pk_ids, g->T, d, g->pdx, GRD(P_PRED_ITEM_EMB));
}

/* ---- the step ----------------------------------------------------------------------------- */

extern "C" float gpu_train_step(gpu_model_t *g, const model_batch_t *b, dropout_key_t key) {
    const char *who = "gpu_train_step";
    upload_batch(g, b, who);
    gpu_ctx_t *ctx = g->ctx;
    const model_config_t *cfg = &g->lay.cfg;
    const int B = g->B, C = g->C, K = g->K, d = g->d;
    const float *E = PRM(P_EXT_ITEM_EMB);
    float *dE = GRD(P_EXT_ITEM_EMB);
    gpu_zero(g->grads, (size_t)g->lay.total * sizeof(float));
    extractor_forward(g);
    float loss;
    gpu_zero(g->dV, (size_t)B * K * d * sizeof(float));
    if (cfg->stage == STAGE_PRETRAIN) {
        gpu_pretrain_scores(ctx, E, g->V, g->cand, B, C, K, d, 1, g->kstar, g->scores);
        loss = gpu_ranking_loss(ctx, g->scores, B, C, g->dscores);
        gpu_pretrain_scores_backward(ctx, E, g->V, g->cand, B, C, K, d, g->kstar, g->dscores,
                                     g->dV, dE, g->head_work);
    } else {
        predictor_forward(g, b, 1, key, who);
        gpu_user_vector(ctx, g->V, g->pred_intent, B, K, d, g->w, g->u);
        gpu_candidate_scores(ctx, E, g->u, g->cand, B, C, d, g->scores);
        loss = gpu_ranking_loss(ctx, g->scores, B, C, g->dscores);
        gpu_zero(g->d_pred_intent, (size_t)B * K * sizeof(float));
        loss += gpu_distill_loss(ctx, E, g->V, g->cand, g->pred_intent, B, C, K, d, cfg->temp,
                                 g->target_intent, g->d_pred_intent);
        gpu_zero(g->du, (size_t)B * d * sizeof(float));
        gpu_candidate_scores_backward(ctx, E, g->u, g->cand, B, C, d, g->dscores, g->du, dE,
                                      g->head_work);
        gpu_user_vector_backward(ctx, g->V, g->w, g->du, B, K, d, g->dV, g->d_pred_intent);
        predictor_backward(g);
    }
    extractor_backward(g);
    return loss;
}

extern "C" void gpu_eval_scores(gpu_model_t *g, const model_batch_t *b, float *scores) {
    const char *who = "gpu_eval_scores";
    upload_batch(g, b, who);
    gpu_ctx_t *ctx = g->ctx;
    const int B = g->B, C = g->C, K = g->K, d = g->d;
    const float *E = PRM(P_EXT_ITEM_EMB);
    extractor_forward(g);
    if (g->lay.cfg.stage == STAGE_PRETRAIN) {
        gpu_pretrain_scores(ctx, E, g->V, g->cand, B, C, K, d, 0, NULL, g->scores);
    } else {
        dropout_key_t none = {0, 0};
        predictor_forward(g, b, 0, none, who);
        gpu_user_vector(ctx, g->V, g->pred_intent, B, K, d, g->w, g->u);
        gpu_candidate_scores(ctx, E, g->u, g->cand, B, C, d, g->scores);
    }
    gpu_to_host(scores, g->scores, (size_t)B * C * sizeof(float));
}

extern "C" void gpu_adam_step(gpu_model_t *g, adam_t *opt) {
    gpu_adam_update(g->ctx, opt, &g->lay, g->params, g->grads, g->adam_m, g->adam_v);
}

#undef PRM
#undef GRD

extern "C" int64_t gpu_model_read(gpu_model_t *g, gpu_tensor_t which, void *out) {
    const int64_t B = g->B, L = g->L, C = g->C, K = g->K, d = g->d;
    const void *src = NULL;
    int64_t count = 0;
    switch (which) {
    case GPU_T_PARAMS: src = g->params; count = g->lay.total; break;
    case GPU_T_GRADS: src = g->grads; count = g->lay.total; break;
    case GPU_T_ADAM_M: src = g->adam_m; count = g->lay.total; break;
    case GPU_T_ADAM_V: src = g->adam_v; count = g->lay.total; break;
    case GPU_T_X: src = g->x; count = B * L * d; break;
    case GPU_T_V: src = g->V; count = B * K * d; break;
    case GPU_T_SCORES: src = g->scores; count = B * C; break;
    case GPU_T_DSCORES: src = g->dscores; count = B * C; break;
    case GPU_T_PRED_INTENT: src = g->pred_intent; count = B * K; break;
    case GPU_T_TARGET_INTENT: src = g->target_intent; count = B * K; break;
    case GPU_T_DV: src = g->dV; count = B * K * d; break;
    case GPU_T_KSTAR: src = g->kstar; count = B; break;
    default: tmr_fatal("gpu_model_read: unknown tensor %d", (int)which);
    }
    if (out && count > 0) gpu_to_host(out, src, (size_t)count * 4);
    return count;
}
