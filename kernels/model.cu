/* The CUDA training backend's model (include/timirec/gpu.h): the device copy of the model and
 * the composition of the layer operations into the training step and evaluation, restating
 * src/cpu/model_step.inc, extractor_forward/backward (src/cpu/extractor.inc) and
 * predictor_forward/backward (src/cpu/predictor.inc) call for call, on device buffers that
 * mirror the CPU caches. gpu_train_step/gpu_eval_scores take the batch as host arrays: it is
 * checked on the host (the CPU backend's checks, same messages) and copied over. The GRU's
 * packing (sort by length, rows per time step) is computed on the host from the lengths:
 * gpu_gru_forward sizes its launches from it, so the host must know it anyway, and it knows
 * every instance's length without asking the device. The epoch drivers that run many steps
 * without waiting are kernels/epoch.cu and kernels/epoch_staged.cu; the struct they share,
 * kernels/model_internal.cuh. */
#include "model_internal.cuh"

/* Where each entry of the activation table (model.h) that the GPU has lives in gpu_model_t. */
struct act_slot {
    float **f;
    int32_t **i;
    int64_t **l;
};
static void model_slots(gpu_model_t *g, struct act_slot *s) {
    s[A_X0].f = &g->x0;
    s[A_Q].f = &g->q;
    s[A_K].f = &g->k;
    s[A_V].f = &g->v;
    s[A_ATT_STATS].f = &g->att_stats;
    s[A_ATT_D].f = &g->att_D;
    s[A_LN1_XHAT].f = &g->ln1_xhat;
    s[A_H1].f = &g->h1;
    s[A_LN2_XHAT].f = &g->ln2_xhat;
    s[A_X].f = &g->x;
    s[A_TMP].f = &g->tmp;
    s[A_LN1_RSTD].f = &g->ln1_rstd;
    s[A_LN2_RSTD].f = &g->ln2_rstd;
    s[A_FFN_R].f = &g->ffn_r;
    s[A_T].f = &g->t;
    s[A_GT].f = &g->gt;
    s[A_E].f = &g->e;
    s[A_GE].f = &g->ge;
    s[A_ALPHA].f = &g->alpha;
    s[A_G0].f = &g->g0;
    s[A_G1].f = &g->g1;
    s[A_G2].f = &g->g2;
    s[A_G3].f = &g->g3;
    s[A_INTERESTS].f = &g->V;
    s[A_DV].f = &g->dV;
    s[A_PRED_INTENT].f = &g->pred_intent;
    s[A_D_PRED_INTENT].f = &g->d_pred_intent;
    s[A_TARGET_INTENT].f = &g->target_intent;
    s[A_W].f = &g->w;
    s[A_U].f = &g->u;
    s[A_DU].f = &g->du;
    s[A_SCORES].f = &g->scores;
    s[A_DSCORES].f = &g->dscores;
    s[A_HEAD_WORK].f = &g->head_work;
    s[A_KSTAR].i = &g->kstar;
    s[A_PRED_IDS].i = &g->pk_ids;
    s[A_PRED_FINAL_ROW].i = &g->final_row;
    s[A_PRED_STEP_OFF].l = &g->step_off_d;
    s[A_PRED_X].f = &g->px;
    s[A_PRED_GHN].f = &g->ghn;
    s[A_PRED_H].f = &g->ph;
    s[A_PRED_DH].f = &g->pdh;
    s[A_PRED_DX].f = &g->pdx;
    s[A_PRED_GATES].f = &g->gates;
    s[A_PRED_DGI].f = &g->pdgi;
    s[A_PRED_DGH3].f = &g->pdgh;
    s[A_PRED_G].f = &g->pg;
    s[A_PRED_DG].f = &g->pdg;
    s[A_PRED_ACTS].f = &g->acts;
    s[A_PRED_PWORK].f = &g->ppwork;
}

/* The activations: one device allocation for every entry of the table the GPU has (all
 * parts), each entry on a 256-byte boundary (cudaMalloc's alignment). */
static void carve_acts(gpu_model_t *g, const model_layout_t *lay) {
    act_table_t t;
    model_acts_build(lay, g->max_B, g->max_L, g->max_C, &t);
    g->dff = (int)t.sym[AD_DFF];
    uint64_t off[A_COUNT];
    const unsigned all = (1u << ACT_EXTRACTOR) | (1u << ACT_PREDICTOR) | (1u << ACT_HEADS);
    const uint64_t bytes = model_acts_block(&t, ACT_GPU, all, sizeof(float), 256, off);
    if (bytes > (uint64_t)SIZE_MAX / 2) tmr_fatal("gpu_model_create: activations too large");
    char *block = (char *)take(g, bytes ? (size_t)bytes : 1);
    struct act_slot slot[A_COUNT];
    memset(slot, 0, sizeof slot);
    model_slots(g, slot);
    for (int id = 0; id < A_COUNT; id++) {
        if (off[id] == UINT64_MAX) continue;
        const struct act_slot *s = &slot[id];
        const int type = model_acts[id].type;
        if (!(type == ACT_F32 ? (void *)s->f : type == ACT_I32 ? (void *)s->i : (void *)s->l))
            tmr_fatal("gpu_model_create: %s has no field", model_acts[id].name);
        if (type == ACT_F32) *s->f = (float *)(block + off[id]);
        else if (type == ACT_I32) *s->i = (int32_t *)(block + off[id]);
        else *s->l = (int64_t *)(block + off[id]);
    }
    if (!g->add_trm) g->x = g->x0; /* the sequence output is x0 itself */
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
    g->add_pos = cfg->add_pos;
    g->add_trm = cfg->add_trm;
    g->finetune = cfg->stage == STAGE_FINETUNE;
    const size_t B = (size_t)max_B, L = (size_t)max_L;
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
    g->length = take_i(g, B);
    g->rank_rows = (double *)take(g, B * sizeof(double));
    g->kl_rows = (double *)take(g, B * sizeof(double));
    g->acc = (struct epoch_acc *)take(g, sizeof(struct epoch_acc));
    g->batch_ctr = (int64_t *)take(g, sizeof(int64_t));
    g->graphs = (struct step_graph *)calloc(MAX_GRAPHS, sizeof(struct step_graph));
    if (!g->graphs) tmr_fatal("gpu_model_create: out of host memory");
    CUDA_CHECK(cudaStreamCreate(&g->stream));
#ifdef TMR_EMULATE
    g->blas_ws = take(g, 16); /* the emulated cuBLAS needs no workspace */
#else
    g->blas_ws = take(g, BLAS_WORKSPACE);
#endif

    if (g->finetune && (!model_has(lay, P_PRED_ITEM_EMB) || lay->n_proj < 1))
        tmr_fatal("gpu_model_create: finetune layout without an interest predictor");
    carve_acts(g, lay);
    if (g->finetune) {
        g->h_perm = (int32_t *)tmr_malloc(B * sizeof(int32_t));
        g->h_batch_sizes = (int32_t *)tmr_malloc(L * sizeof(int32_t));
        g->h_step_off = (int64_t *)tmr_malloc((L + 1) * sizeof(int64_t));
        g->h_ids = (int32_t *)tmr_malloc(n * sizeof(int32_t));
        g->h_final = (int32_t *)tmr_malloc(B * sizeof(int32_t));
    }
    /* Everything a step uses is sized now: no step allocates (gpu_ops.h), and no kernel's
     * shared memory opt-in changes after this (a captured graph keeps launching). Column sums
     * run over up to B * L rows (also B * C for head products); scatters over the B * L
     * history rows or the B * C candidate rows. */
    const int64_t rows = (int64_t)(n > B * (size_t)max_C ? n : B * (size_t)max_C);
    gpu_ctx_reserve(ctx, rows, rows, g->d, (int64_t)B);
    if (g->add_trm) gpu_attn_reserve_shared(g->d);
    gpu_interest_reserve_shared(g->d, g->a, g->K);
    gpu_heads_reserve_shared(ctx, g->K, g->d, max_C);
    if (g->finetune) gpu_gru_reserve_shared(g->d);
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
    plan_free(g);
    free(g->h_order);
    free(g->eval_len);
    gpu_free(g->ranks_d);
    free(g->h_adam_by_batch);
    gpu_free(g->adam_by_batch);
    if (g->lazy) gpu_lazy_adam_free(g->lazy);
    free(g->lazy);
    for (int i = 0; i < g->n_graphs; i++)
        if (g->graphs[i].exec) cudaGraphExecDestroy(g->graphs[i].exec);
    cudaStreamDestroy(g->stream);
    free(g->graphs);
    if (g->stage) {
        for (int k = 0; k < 2; k++) {
            struct stage_slot *S = &g->stage[k];
            void *pinned[] = {S->hb.user, S->hb.length, S->hb.hist, S->hb.pos, S->hb.mask,
                              S->hb.cand, S->h_ids, S->h_fin, S->h_off};
            for (size_t i = 0; i < sizeof pinned / sizeof pinned[0]; i++) cudaFreeHost(pinned[i]);
            free(S->h_perm);
            free(S->h_sizes);
            cudaEventDestroy(S->copied);
            cudaEventDestroy(S->used);
        }
        free(g->stage);
        cudaStreamDestroy(g->copy_stream);
    }
    free(g);
}

extern "C" const char *gpu_model_device(const gpu_model_t *g) { return g->device; }

extern "C" void gpu_model_upload_params(gpu_model_t *g, const float *params) {
    gpu_to_device(g->params, params, (size_t)g->lay.total * sizeof(float));
}
extern "C" void gpu_model_download_params(gpu_model_t *g, float *params) {
    gpu_to_host(params, g->params, (size_t)g->lay.total * sizeof(float));
}
extern "C" void gpu_model_upload_grads(gpu_model_t *g, const float *grads) {
    gpu_to_device(g->grads, grads, (size_t)g->lay.total * sizeof(float));
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
    if (model_slice_check(B, b->row0, b->B_all) != 0)
        tmr_fatal("%s: batch slice: rows %d .. %d of a batch of %d", who, b->row0,
                  b->row0 + B - 1, b->B_all);
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
 * packed row, into host arrays perm (B), batch_sizes (L), step_off (L + 1), ids (B * L),
 * fin (B). Returns the number of steps; *T gets the packed rows. */
int gm_pack_compute(const model_batch_t *b, const char *who, int32_t *perm, int32_t *batch_sizes,
                    int64_t *step_off, int32_t *ids, int32_t *fin, int64_t *T) {
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
            if (b->length[i] == len) perm[slot++] = i;
    for (int t = 0; t < L; t++) batch_sizes[t] = 0;
    for (int i = 0; i < B; i++)
        for (int t = 0; t < b->length[i]; t++) batch_sizes[t]++;
    step_off[0] = 0;
    for (int t = 0; t < L; t++)
        step_off[t + 1] = step_off[t] + (t < n_steps ? batch_sizes[t] : 0);
    *T = step_off[n_steps];
    for (int t = 0; t < n_steps; t++)
        for (int i = 0; i < batch_sizes[t]; i++)
            ids[step_off[t] + i] = b->hist[(int64_t)perm[i] * L + t];
    for (int i = 0; i < B; i++) {
        const int bi = perm[i], len = b->length[bi];
        fin[bi] = len == 0 ? -1 : (int32_t)(step_off[len - 1] + i);
    }
    return n_steps;
}

/* pack_compute into g's host arrays, then the ids, final rows and step offsets to the device
 * (the per-step path: it waits for the device anyway). */
static void pack_batch(gpu_model_t *g, const model_batch_t *b, const char *who) {
    int64_t T = 0;
    const int n_steps = gm_pack_compute(b, who, g->h_perm, g->h_batch_sizes, g->h_step_off,
                                     g->h_ids, g->h_final, &T);
    gpu_to_device(g->pk_ids, g->h_ids, (size_t)T * sizeof(int32_t));
    gpu_to_device(g->final_row, g->h_final, (size_t)b->B * sizeof(int32_t));
    gpu_to_device(g->step_off_d, g->h_step_off, (size_t)(n_steps + 1) * sizeof(int64_t));
    g->cur_final = g->final_row;
    g->pack = (gpu_gru_pack_t){n_steps, n_steps > 0 ? g->h_batch_sizes[0] : 0, T, g->step_off_d};
}

/* ---- extractor ---------------------------------------------------------------------------- */

#define PRM(id) (g->params + model_offset(&g->lay, (id)))
#define GRD(id) (g->grads + model_offset(&g->lay, (id)))

void gm_extractor_forward(gpu_model_t *g) {
    gpu_ctx_t *ctx = g->ctx;
    const int B = g->B, L = g->L, d = g->d, a = g->a, K = g->K, dff = g->dff;
    const int64_t n = (int64_t)B * L;
    gpu_layer_embed_forward(ctx, PRM(P_EXT_ITEM_EMB), g->add_pos ? PRM(P_EXT_POS_EMB) : NULL,
                          g->hist, g->pos, n, d, g->x0);
    if (g->add_trm) {
        gpu_layer_linear_forward(ctx, g->x0, PRM(P_TRM_WQ), PRM(P_TRM_BQ), n, d, d, g->q);
        gpu_layer_linear_forward(ctx, g->x0, PRM(P_TRM_WK), PRM(P_TRM_BK), n, d, d, g->k);
        gpu_layer_linear_forward(ctx, g->x0, PRM(P_TRM_WV), PRM(P_TRM_BV), n, d, d, g->v);
        gpu_ext_attn_forward(ctx, g->q, g->k, g->v, g->hist, B, L, d, g->att_stats, g->tmp);
        gpu_layer_add_layernorm_forward(ctx, g->tmp, g->x0, PRM(P_TRM_LN1_G), PRM(P_TRM_LN1_B),
                                      NULL, n, d, g->h1, g->ln1_xhat, g->ln1_rstd);
        gpu_ext_ffn_forward(ctx, g->h1, PRM(P_TRM_FF1_W), PRM(P_TRM_FF1_B), PRM(P_TRM_FF2_W),
                            PRM(P_TRM_FF2_B), n, d, dff, g->ffn_r, g->tmp);
        gpu_layer_add_layernorm_forward(ctx, g->tmp, g->h1, PRM(P_TRM_LN2_G), PRM(P_TRM_LN2_B),
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
        gpu_layer_add_layernorm_backward(ctx, g->g0, g->ln2_xhat, g->ln2_rstd, PRM(P_TRM_LN2_G),
                                       g->hist, n, d, g->g1, GRD(P_TRM_LN2_G), GRD(P_TRM_LN2_B),
                                       g->g2);
        gpu_copy(g->g2, g->g1, (size_t)(n * d) * sizeof(float));
        gpu_ext_ffn_backward(ctx, g->h1, g->ffn_r, PRM(P_TRM_FF1_W), PRM(P_TRM_FF2_W), g->g1, n,
                             d, dff, g->g2, GRD(P_TRM_FF1_W), GRD(P_TRM_FF1_B), GRD(P_TRM_FF2_W),
                             GRD(P_TRM_FF2_B), g->g0);
        /* g2 = dh1 -> (LN1) -> g1 = dz1 = dctx and the residual's share of dx0 (g3 free: the
         * row-sum scratch) */
        gpu_layer_add_layernorm_backward(ctx, g->g2, g->ln1_xhat, g->ln1_rstd, PRM(P_TRM_LN1_G),
                                       NULL, n, d, g->g1, GRD(P_TRM_LN1_G), GRD(P_TRM_LN1_B),
                                       g->g3);
        gpu_ext_attn_backward(ctx, g->q, g->k, g->v, g->hist, g->att_stats, g->g1, B, L, d, g->g0,
                              g->g2, g->g3, g->att_D);
        gpu_layer_linear_backward(ctx, g->x0, PRM(P_TRM_WQ), g->g0, n, d, d, g->g1, GRD(P_TRM_WQ),
                                GRD(P_TRM_BQ));
        gpu_layer_linear_backward(ctx, g->x0, PRM(P_TRM_WK), g->g2, n, d, d, g->g1, GRD(P_TRM_WK),
                                NULL);
        gpu_layer_linear_backward(ctx, g->x0, PRM(P_TRM_WV), g->g3, n, d, d, g->g1, GRD(P_TRM_WV),
                                GRD(P_TRM_BV));
        dx0 = g->g1;
    }
    gpu_layer_embed_backward(ctx, g->hist, g->pos, n, d, dx0, GRD(P_EXT_ITEM_EMB),
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

/* After pack_batch or plan_use_batch. */
void gm_predictor_forward(gpu_model_t *g, int training, dropout_key_t key, int row0, int B_all) {
    gpu_ctx_t *ctx = g->ctx;
    const int B = g->B, d = g->d;
    g->training = training;
    /* The packed inputs from E2 (ids were checked against the extractor's smaller range). */
    gpu_layer_embed_forward(ctx, PRM(P_PRED_ITEM_EMB), NULL, g->pk_ids, NULL, g->pack.T, d, g->px);
    gpu_gru_forward(ctx, d, PRM(P_GRU_W_IH), PRM(P_GRU_W_HH), PRM(P_GRU_B_IH), PRM(P_GRU_B_HH),
                    &g->pack, g->px, g->gates, g->ghn, g->ph);
    LAUNCH(gather_final_kernel, (int64_t)B * d, d, g->cur_final, g->ph, g->pg);
    gpu_proj_forward(ctx, &g->lay, g->params, g->pg, B, training, key, row0, B_all, g->acts,
                     g->pred_intent);
}

static void predictor_backward(gpu_model_t *g) {
    gpu_ctx_t *ctx = g->ctx;
    const int B = g->B, d = g->d;
    gpu_proj_backward(ctx, &g->lay, g->params, g->pg, g->acts, B, g->training, g->d_pred_intent,
                      g->pdg, g->ppwork, g->grads);
    if (g->pack.T == 0) return;
    gpu_zero(g->pdh, (size_t)(g->pack.T * d) * sizeof(float));
    LAUNCH(scatter_final_kernel, (int64_t)B * d, d, g->cur_final, g->pdg, g->pdh);
    gpu_gru_backward(ctx, d, PRM(P_GRU_W_IH), PRM(P_GRU_W_HH), &g->pack, g->px, g->gates, g->ghn,
                     g->ph, g->pdh, g->pdgi, g->pdgh, g->pdx, GRD(P_GRU_W_IH), GRD(P_GRU_W_HH),
                     GRD(P_GRU_B_IH), GRD(P_GRU_B_HH));
    gpu_scatter_add_rows(ctx, g->pk_ids, g->pack.T, d, g->pdx, GRD(P_PRED_ITEM_EMB));
}

/* ---- the step ----------------------------------------------------------------------------- */

/* One thread: the step's loss from the per-row terms exactly as gpu_ranking_loss and
 * gpu_distill_loss and the trainer compute it on the host (the rows summed in double in row
 * order, each term rounded to float, the float sum added to the epoch's double sum), so the
 * epoch's loss is the per-step path's bit for bit; nb: the rows the means divide by (B, or a
 * slice's B_all). A non-finite loss marks the batch bad; nothing is added from then on. */
__global__ void loss_accumulate_kernel(int64_t n, int B, int nb, int has_kl, double temp,
                                       const double *__restrict__ rank_rows,
                                       const double *__restrict__ kl_rows, int64_t batch_arg,
                                       const int64_t *__restrict__ batch_ctr,
                                       struct epoch_acc *__restrict__ acc) {
    THREAD_INDEX(i, n);
    (void)i;
    const int64_t batch = batch_ctr ? *batch_ctr : batch_arg;
    double sum = 0;
    for (int b = 0; b < B; b++) sum += rank_rows[b];
    float loss = (float)(sum / nb);
    if (has_kl) {
        double kl = 0;
        for (int b = 0; b < B; b++) kl += kl_rows[b];
        loss += (float)(temp * temp * kl / nb);
    }
    if (acc->bad >= 0) return;
    if (!isfinite(loss)) {
        acc->bad = batch;
        acc->bad_loss = loss;
        return;
    }
    acc->loss_sum += (double)loss;
    acc->last_loss = loss;
}

/* Forward, loss, backward of the batch in g's device buffers (and, finetune, its packing).
 * batch < 0 and no batch_ctr: returns the loss (read back: the host waits); else the loss goes
 * into the device's epoch sums as batch `batch` (or *batch_ctr, read on the device), and 0 is
 * returned. */
float gm_train_step_device(gpu_model_t *g, dropout_key_t key, int row0, int B_all,
                           int64_t batch, const int64_t *batch_ctr) {
    gpu_ctx_t *ctx = g->ctx;
    const model_config_t *cfg = &g->lay.cfg;
    const int B = g->B, C = g->C, K = g->K, d = g->d;
    const float *E = PRM(P_EXT_ITEM_EMB);
    float *dE = GRD(P_EXT_ITEM_EMB);
    const int on_device = batch >= 0 || batch_ctr;
    gpu_zero(g->grads, (size_t)g->lay.total * sizeof(float));
    gm_extractor_forward(g);
    float loss = 0;
    gpu_zero(g->dV, (size_t)B * K * d * sizeof(float));
    if (cfg->stage == STAGE_PRETRAIN) {
        if (on_device)
            gpu_pretrain_rank_rows(ctx, E, g->V, g->cand, B, C, K, d, B_all, g->kstar,
                                   g->scores, g->dscores, g->rank_rows);
        else
            loss = gpu_pretrain_rank(ctx, E, g->V, g->cand, B, C, K, d, B_all, g->kstar,
                                     g->scores, g->dscores);
        gpu_pretrain_scores_backward(ctx, E, g->V, g->cand, B, C, K, d, g->kstar, g->dscores,
                                     g->dV, dE, g->head_work);
    } else {
        gm_predictor_forward(g, 1, key, row0, B_all);
        gpu_zero(g->d_pred_intent, (size_t)B * K * sizeof(float));
        if (on_device) {
            gpu_user_vector_distill_rows(ctx, E, g->V, g->cand, g->pred_intent, B, C, K, d,
                                         B_all, cfg->temp, g->w, g->u, g->target_intent,
                                         g->d_pred_intent, g->kl_rows);
            gpu_candidate_rank_rows(ctx, E, g->u, g->cand, B, C, d, B_all, g->scores, g->dscores,
                                    g->rank_rows);
        } else {
            const float kl = gpu_user_vector_distill(ctx, E, g->V, g->cand, g->pred_intent, B, C,
                                                     K, d, B_all, cfg->temp, g->w, g->u,
                                                     g->target_intent, g->d_pred_intent);
            loss = gpu_candidate_rank(ctx, E, g->u, g->cand, B, C, d, B_all, g->scores,
                                      g->dscores);
            loss += kl;
        }
        gpu_zero(g->du, (size_t)B * d * sizeof(float));
        gpu_finetune_head_backward(ctx, E, g->V, g->u, g->w, g->cand, B, C, K, d, g->dscores,
                                   g->du, g->dV, g->d_pred_intent, dE, g->head_work);
        predictor_backward(g);
    }
    if (on_device)
        LAUNCH(loss_accumulate_kernel, (int64_t)1, B, model_rows_all(B, B_all),
               cfg->stage == STAGE_FINETUNE, cfg->temp, g->rank_rows, g->kl_rows, batch,
               batch_ctr, g->acc);
    extractor_backward(g);
    return loss;
}

extern "C" float gpu_train_step(gpu_model_t *g, const model_batch_t *b, dropout_key_t key) {
    const char *who = "gpu_train_step";
    upload_batch(g, b, who);
    if (g->finetune) pack_batch(g, b, who);
    return gm_train_step_device(g, key, b->row0, b->B_all, -1, NULL);
}

extern "C" void gpu_eval_scores(gpu_model_t *g, const model_batch_t *b, float *scores) {
    const char *who = "gpu_eval_scores";
    upload_batch(g, b, who);
    gpu_ctx_t *ctx = g->ctx;
    const int B = g->B, C = g->C, K = g->K, d = g->d;
    const float *E = PRM(P_EXT_ITEM_EMB);
    gm_extractor_forward(g);
    if (g->lay.cfg.stage == STAGE_PRETRAIN) {
        gpu_pretrain_scores(ctx, E, g->V, g->cand, B, C, K, d, 0, NULL, g->scores);
    } else {
        dropout_key_t none = {0, 0};
        pack_batch(g, b, who);
        gm_predictor_forward(g, 0, none, 0, 0);
        gpu_user_vector(ctx, g->V, g->pred_intent, B, K, d, g->w, g->u);
        gpu_candidate_scores(ctx, E, g->u, g->cand, B, C, d, g->scores);
    }
    gpu_to_host(scores, g->scores, (size_t)B * C * sizeof(float));
}

extern "C" void gpu_adam_step(gpu_model_t *g, adam_t *opt) {
    gpu_lazy_batch_t lb;
    if (!gm_lazy_batch(g, &lb)) {
        gpu_adam_update(g->ctx, opt, &g->lay, g->params, g->grads, g->adam_m, g->adam_v);
        return;
    }
    gpu_lazy_adam_reserve(g->lazy, opt, opt->step + 1);
    gpu_adam_update_lazy(g->ctx, opt, &g->lay, &lb, g->params, g->grads, g->adam_m, g->adam_v);
}

const gpu_lazy_batch_t *gm_lazy_batch(gpu_model_t *g, gpu_lazy_batch_t *lb) {
    if (!g->lazy) return NULL;
    *lb = (gpu_lazy_batch_t){g->lazy, g->hist, g->cand, g->pk_ids, (int64_t)g->B * g->L,
                             (int64_t)g->B * g->C, g->finetune ? g->pack.T : 0};
    return lb;
}

void gm_step_update(gpu_model_t *g, adam_t *opt, dropout_key_t key, int64_t batch) {
    gm_train_step_device(g, key, 0, 0, batch, NULL);
    gpu_lazy_batch_t lb;
    gpu_adam_update_guarded(g->ctx, opt, &g->lay, g->params, g->grads, g->adam_m, g->adam_v,
                            &g->acc->bad, NULL, NULL, gm_lazy_batch(g, &lb));
}

extern "C" void gpu_model_lazy_adam(gpu_model_t *g) {
    if (g->lazy) return;
    g->lazy = (gpu_lazy_adam_t *)tmr_calloc(1, sizeof *g->lazy);
    gpu_lazy_adam_init(g->lazy, &g->lay);
}

extern "C" void gpu_model_upload_row_step(gpu_model_t *g, const int64_t *row_step) {
    if (!g->lazy) tmr_fatal("gpu_model_upload_row_step: the model is on Adam, not LazyAdam");
    gpu_to_device(g->lazy->row_step, row_step, (size_t)g->lazy->n_rows * sizeof(int64_t));
}

extern "C" void gpu_model_download_row_step(gpu_model_t *g, int64_t *row_step) {
    if (!g->lazy) tmr_fatal("gpu_model_download_row_step: the model is on Adam, not LazyAdam");
    gpu_to_host(row_step, g->lazy->row_step, (size_t)g->lazy->n_rows * sizeof(int64_t));
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
