/* The CUDA training backend (include/timirec/gpu.h): the device copy of the model and the
 * composition of the layer operations into the training step and evaluation, restating
 * src/cpu/model_step.inc, extractor_forward/backward (src/cpu/extractor.inc) and
 * predictor_forward/backward (src/cpu/predictor.inc) call for call, on device buffers that
 * mirror the CPU caches. gpu_train_step/gpu_eval_scores take the batch as host arrays: it is
 * checked on the host (the CPU backend's checks, same messages) and copied over. The epoch
 * driver (gpu_train_epoch, gpu_eval_phase; gpu_data.h) assembles its batches on the device
 * from the resident corpus and sums the losses on the device, so the host never waits for the
 * device between steps. The GRU's packing (sort by length, rows per time step) is computed on
 * the host from the lengths in both cases: gpu_gru_forward sizes its launches from it, so the
 * host must know it anyway, and it knows every instance's length without asking the device;
 * the driver plans a whole epoch's packing at once and uploads it in one copy, the staged path
 * copies each batch's step offsets with the batch (so no step uploads anything: gpu_ops.h). */
#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "data.cuh"
#include "timirec/gpu.h"

#define MAX_ALLOCS 128

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
    int32_t *length;      /* (B) device batches (epoch driver) */

    /* The activations (model.h's table, carved by carve_acts from one allocation); the
     * extractor's as extractor_cache_t (n = B * L rows) */
    float *x0, *q, *k, *v;          /* (n, d) */
    float *att_stats;               /* (B, L, 2) attention row max, 1 / sum */
    float *att_D;                   /* (B, L) attention backward scratch */
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
    const int32_t *cur_final;       /* final rows of the batch running (final_row or a plan's) */
    gpu_gru_pack_t pack;            /* the running batch's packing (step offsets on the device) */
    int64_t *step_off_d;            /* (max_L + 1) device: the per-step path's step offsets */
    float *px, *ghn, *ph, *pdh, *pdx;  /* (T, d) */
    float *gates, *pdgi, *pdgh;     /* (T, 3d) */
    float *pg, *pdg;                /* (B, d) */
    float *acts;                    /* (n_proj - 1, B, d) */
    float *ppwork;                  /* (2, B, d) */
    /* host packing of the last batch */
    int32_t *h_perm, *h_batch_sizes, *h_ids, *h_final;
    int64_t *h_step_off;
    int training;                   /* the last predictor forward */

    /* epoch driver: the losses summed on the device */
    double *rank_rows, *kl_rows;    /* (B) per-row loss terms */
    struct epoch_acc *acc;          /* device */
    /* a plan of batches (shapes and GRU packing) for an epoch or an evaluation phase */
    int64_t plan_cap_n, plan_cap_batches;
    int32_t *plan_L;                /* host (n_batches) padded length of each batch */
    int32_t *plan_perm, *plan_final;        /* host (n): per batch, packed slot -> row, final rows */
    int32_t *plan_batch_sizes;      /* host (n_batches, max_L) */
    int64_t *plan_step_off;         /* host (n_batches, max_L + 1) */
    int32_t *plan_perm_d, *plan_final_d;    /* device copies (n) */
    int64_t *plan_step_off_d;       /* device copy (n_batches, max_L + 1) */
    int64_t *h_order;               /* host (n) the epoch's order */
    int64_t h_order_cap;
    int32_t *eval_len;              /* host scratch */
    int64_t *ranks_d;               /* (n) device ranks of an evaluation phase */
    int64_t ranks_cap;

    /* CUDA graphs of the pretrain step (epoch driver): the step's varying inputs come from
     * device memory, so one captured graph per batch shape replays every batch of it */
    int64_t *batch_ctr;             /* device: the batch the next step trains on */
    adam_scalars_t *adam_by_batch;  /* device (adam_cap) Adam's scalars for each batch */
    adam_scalars_t *h_adam_by_batch;
    int64_t adam_cap;
    struct step_graph *graphs;      /* (MAX_GRAPHS) */
    int n_graphs;
    int graphs_failed;              /* a capture failed once: direct launches for the run */
    char graphs_why[600];
    int fail_next_capture;          /* test hook (gpu_model_test_capture_failure) */
    cudaStream_t stream;            /* graphs are captured on and replayed into this stream */
    void *blas_ws;                  /* cuBLAS's workspace inside captures (no allocation there) */
    /* staged host batches (gpu_train_epoch_staged): two pinned slots, two device slots */
    struct stage_slot *stage;       /* (2), NULL until first used */
    cudaStream_t copy_stream;
};

struct stage_slot {
    batch_t hb;                     /* pinned: the batch as batch_fill writes it */
    int32_t *h_ids, *h_fin;         /* pinned (B * L), (B): GRU packing staged with it */
    int64_t *h_off;                 /* pinned (L + 1): the GRU's step offsets, staged too */
    int32_t *h_perm, *h_sizes;      /* host (B), (L) */
    int32_t *d_hist, *d_pos, *d_cand, *d_ids, *d_fin;  /* device copies */
    int64_t *d_off;
    cudaEvent_t copied;             /* the slot's copies are done: the pinned slot is free */
    cudaEvent_t used;               /* the step reading the device slot is done */
};

/* One captured step: its shape, and the allocation generation it was captured at (a graph
 * holds pointers into the corpus, the model, the context's scratch and the epoch's Adam table:
 * after any device allocation or free, gpu_alloc_generation moves on and the graph is stale). */
#define MAX_GRAPHS 16
#define BLAS_WORKSPACE ((size_t)32 << 20) /* cuBLAS's recommendation for Hopper */
struct step_graph {
    int B, L, C, bs;
    uint64_t generation;
    int seen;                       /* batches of this shape launched directly so far */
    cudaGraphExec_t exec;           /* NULL: not captured (yet, or stale) */
};

/* The epoch's running sums on the device (read once when the epoch stops). */
struct epoch_acc {
    double loss_sum;    /* losses of the applied batches, added in batch order */
    int64_t bad;        /* first batch with a non-finite loss, -1: none */
    float bad_loss, last_loss;
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

/* The epoch plan's buffers (host and device), grown by plan_epoch. */
static void plan_free(gpu_model_t *g) {
    free(g->plan_L);
    free(g->plan_perm);
    free(g->plan_final);
    free(g->plan_batch_sizes);
    free(g->plan_step_off);
    gpu_free(g->plan_perm_d);
    gpu_free(g->plan_final_d);
    gpu_free(g->plan_step_off_d);
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
 * packed row, into host arrays perm (B), batch_sizes (L), step_off (L + 1), ids (B * L),
 * fin (B). Returns the number of steps; *T gets the packed rows. */
static int pack_compute(const model_batch_t *b, const char *who, int32_t *perm,
                        int32_t *batch_sizes, int64_t *step_off, int32_t *ids, int32_t *fin,
                        int64_t *T) {
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
    const int n_steps = pack_compute(b, who, g->h_perm, g->h_batch_sizes, g->h_step_off,
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
        gpu_ext_attn_forward(ctx, g->q, g->k, g->v, g->hist, B, L, d, g->att_stats, g->tmp);
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
        gpu_ext_attn_backward(ctx, g->q, g->k, g->v, g->hist, g->att_stats, g->g1, B, L, d, g->g0,
                              g->g2, g->g3, g->att_D);
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

/* After pack_batch or plan_use_batch. */
static void predictor_forward(gpu_model_t *g, int training, dropout_key_t key) {
    gpu_ctx_t *ctx = g->ctx;
    const int B = g->B, d = g->d;
    g->training = training;
    /* The packed inputs from E2 (ids were checked against the extractor's smaller range). */
    gpu_ext_embed_forward(ctx, PRM(P_PRED_ITEM_EMB), NULL, g->pk_ids, NULL, g->pack.T, d, g->px);
    gpu_gru_forward(ctx, d, PRM(P_GRU_W_IH), PRM(P_GRU_W_HH), PRM(P_GRU_B_IH), PRM(P_GRU_B_HH),
                    &g->pack, g->px, g->gates, g->ghn, g->ph);
    LAUNCH(gather_final_kernel, (int64_t)B * d, d, g->cur_final, g->ph, g->pg);
    gpu_proj_forward(ctx, &g->lay, g->params, g->pg, B, training, key, g->acts, g->pred_intent);
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
 * epoch's loss is the per-step path's bit for bit. A non-finite loss marks the batch bad;
 * nothing is added from then on. */
__global__ void loss_accumulate_kernel(int64_t n, int B, int has_kl, double temp,
                                       const double *__restrict__ rank_rows,
                                       const double *__restrict__ kl_rows, int64_t batch_arg,
                                       const int64_t *__restrict__ batch_ctr,
                                       struct epoch_acc *__restrict__ acc) {
    THREAD_INDEX(i, n);
    (void)i;
    const int64_t batch = batch_ctr ? *batch_ctr : batch_arg;
    double sum = 0;
    for (int b = 0; b < B; b++) sum += rank_rows[b];
    float loss = (float)(sum / B);
    if (has_kl) {
        double kl = 0;
        for (int b = 0; b < B; b++) kl += kl_rows[b];
        loss += (float)(temp * temp * kl / B);
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
static float train_step_device(gpu_model_t *g, dropout_key_t key, int64_t batch,
                               const int64_t *batch_ctr) {
    gpu_ctx_t *ctx = g->ctx;
    const model_config_t *cfg = &g->lay.cfg;
    const int B = g->B, C = g->C, K = g->K, d = g->d;
    const float *E = PRM(P_EXT_ITEM_EMB);
    float *dE = GRD(P_EXT_ITEM_EMB);
    const int on_device = batch >= 0 || batch_ctr;
    gpu_zero(g->grads, (size_t)g->lay.total * sizeof(float));
    extractor_forward(g);
    float loss = 0;
    gpu_zero(g->dV, (size_t)B * K * d * sizeof(float));
    if (cfg->stage == STAGE_PRETRAIN) {
        if (on_device)
            gpu_pretrain_rank_rows(ctx, E, g->V, g->cand, B, C, K, d, g->kstar, g->scores,
                                   g->dscores, g->rank_rows);
        else
            loss = gpu_pretrain_rank(ctx, E, g->V, g->cand, B, C, K, d, g->kstar, g->scores,
                                     g->dscores);
        gpu_pretrain_scores_backward(ctx, E, g->V, g->cand, B, C, K, d, g->kstar, g->dscores,
                                     g->dV, dE, g->head_work);
    } else {
        predictor_forward(g, 1, key);
        gpu_zero(g->d_pred_intent, (size_t)B * K * sizeof(float));
        if (on_device) {
            gpu_user_vector_distill_rows(ctx, E, g->V, g->cand, g->pred_intent, B, C, K, d,
                                         cfg->temp, g->w, g->u, g->target_intent,
                                         g->d_pred_intent, g->kl_rows);
            gpu_candidate_rank_rows(ctx, E, g->u, g->cand, B, C, d, g->scores, g->dscores,
                                    g->rank_rows);
        } else {
            const float kl = gpu_user_vector_distill(ctx, E, g->V, g->cand, g->pred_intent, B, C,
                                                     K, d, cfg->temp, g->w, g->u,
                                                     g->target_intent, g->d_pred_intent);
            loss = gpu_candidate_rank(ctx, E, g->u, g->cand, B, C, d, g->scores, g->dscores);
            loss += kl;
        }
        gpu_zero(g->du, (size_t)B * d * sizeof(float));
        gpu_finetune_head_backward(ctx, E, g->V, g->u, g->w, g->cand, B, C, K, d, g->dscores,
                                   g->du, g->dV, g->d_pred_intent, dE, g->head_work);
        predictor_backward(g);
    }
    if (on_device)
        LAUNCH(loss_accumulate_kernel, (int64_t)1, B, cfg->stage == STAGE_FINETUNE, cfg->temp,
               g->rank_rows, g->kl_rows, batch, batch_ctr, g->acc);
    extractor_backward(g);
    return loss;
}

extern "C" float gpu_train_step(gpu_model_t *g, const model_batch_t *b, dropout_key_t key) {
    const char *who = "gpu_train_step";
    upload_batch(g, b, who);
    if (g->finetune) pack_batch(g, b, who);
    return train_step_device(g, key, -1, NULL);
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
        pack_batch(g, b, who);
        predictor_forward(g, 0, none);
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

/* ---- the epoch driver (gpu_data.h) -------------------------------------------------------- */

/* Grow a host / device array to at least n elements (contents lost). */
template <class T> static void grow_host(T **p, int64_t *cap, int64_t n) {
    if (n <= *cap) return;
    free(*p);
    *p = (T *)tmr_malloc(tmr_mul_size((size_t)n, sizeof(T)));
    *cap = n;
}

/* Plan batches [first, n_batches) of n instances taken in `order` (host; NULL: 0, 1, ...) in
 * batches of bs, lengths h_len (host, by instance): each batch's padded length L (the longest
 * history in it, as batch_fill) and, finetune, its GRU packing as pack_batch computes it
 * (slots sorted by length, longest first, ties in batch order; rows per step; each row's final
 * packed row). The packing goes to the device in one copy per array. */
static void plan_batches(gpu_model_t *g, const int32_t *h_len, const int64_t *order, int64_t n,
                         int bs, int64_t first) {
    const int64_t n_batches = (n + bs - 1) / bs;
    const int maxL = g->max_L;
    if (n > g->plan_cap_n || n_batches > g->plan_cap_batches) {
        plan_free(g);
        const size_t nb = (size_t)n_batches, n1 = (size_t)n;
        g->plan_L = (int32_t *)tmr_malloc(tmr_mul_size(nb, sizeof(int32_t)));
        g->plan_perm = (int32_t *)tmr_malloc(tmr_mul_size(n1, sizeof(int32_t)));
        g->plan_final = (int32_t *)tmr_malloc(tmr_mul_size(n1, sizeof(int32_t)));
        g->plan_batch_sizes = (int32_t *)tmr_malloc(tmr_mul_size(nb * (size_t)maxL, sizeof(int32_t)));
        g->plan_step_off = (int64_t *)tmr_malloc(tmr_mul_size(nb * (size_t)(maxL + 1), sizeof(int64_t)));
        g->plan_perm_d = (int32_t *)gpu_malloc(n1 * sizeof(int32_t));
        g->plan_final_d = (int32_t *)gpu_malloc(n1 * sizeof(int32_t));
        g->plan_step_off_d = (int64_t *)gpu_malloc(nb * (size_t)(maxL + 1) * sizeof(int64_t));
        g->plan_cap_n = n;
        g->plan_cap_batches = n_batches;
    }
    for (int64_t bi = first; bi < n_batches; bi++) {
        const int64_t s = bi * bs;
        const int B = (int)(n - s < bs ? n - s : bs);
        int L = 0;
        for (int i = 0; i < B; i++) {
            const int32_t len = h_len[order ? order[s + i] : s + i];
            if (len > L) L = len;
        }
        if (L < 1 || L > maxL)
            tmr_fatal("gpu_train_epoch: batch %lld's longest history %d outside 1..%d",
                      (long long)bi, L, maxL);
        g->plan_L[bi] = L;
        if (!g->finetune) continue;
        int32_t *perm = g->plan_perm + s, *fin = g->plan_final + s;
        int32_t *sizes = g->plan_batch_sizes + bi * maxL;
        int64_t *off = g->plan_step_off + bi * (maxL + 1);
        int slot = 0;
        for (int len = L; len >= 0; len--)
            for (int i = 0; i < B; i++)
                if (h_len[order ? order[s + i] : s + i] == len) perm[slot++] = i;
        for (int t = 0; t < L; t++) sizes[t] = 0;
        for (int i = 0; i < B; i++)
            for (int t = 0; t < h_len[order ? order[s + i] : s + i]; t++) sizes[t]++;
        off[0] = 0;
        for (int t = 0; t < L; t++) off[t + 1] = off[t] + sizes[t];
        for (int i = 0; i < B; i++) {
            const int bi_row = perm[i];
            const int32_t len = h_len[order ? order[s + bi_row] : s + bi_row];
            fin[bi_row] = len == 0 ? -1 : (int32_t)(off[len - 1] + i);
        }
    }
    if (!g->finetune || first >= n_batches) return;
    const int64_t s0 = first * bs;
    gpu_to_device(g->plan_perm_d + s0, g->plan_perm + s0, (size_t)(n - s0) * sizeof(int32_t));
    gpu_to_device(g->plan_final_d + s0, g->plan_final + s0, (size_t)(n - s0) * sizeof(int32_t));
    gpu_to_device(g->plan_step_off_d + first * (maxL + 1), g->plan_step_off + first * (maxL + 1),
                  (size_t)((n_batches - first) * (maxL + 1)) * sizeof(int64_t));
}

/* pk_ids[step_off[t] + i] = hist[perm[i], t] for t < the length of slot i's row: packed slot i
 * takes part in step t exactly when its row is longer than t (slots are sorted longest first),
 * as pack_batch's ids. One thread per (slot, t). */
__global__ void pack_ids_kernel(int64_t n, int L, const int32_t *__restrict__ perm,
                                const int64_t *__restrict__ step_off,
                                const int32_t *__restrict__ length,
                                const int32_t *__restrict__ hist, int32_t *__restrict__ ids) {
    THREAD_INDEX(e, n);
    const int64_t i = e / L;
    const int t = (int)(e % L);
    const int32_t row = perm[i];
    if (t < length[row]) ids[step_off[t] + i] = hist[(int64_t)row * L + t];
}

/* Batch bi of the plan into g's device buffers (assembled from the resident corpus), with its
 * packing (finetune). */
static void plan_use_batch(gpu_model_t *g, gpu_data_t *d, int phase, const int64_t *order_d,
                           int64_t n, int bs, int64_t bi) {
    const int64_t s = bi * bs;
    const int B = (int)(n - s < bs ? n - s : bs), L = g->plan_L[bi];
    const int C = 1 + d->ph[phase].n_neg;
    if (B > g->max_B || C > g->max_C)
        tmr_fatal("gpu_train_epoch: batch %d x %d x %d outside the workspace %d x %d x %d", B, L,
                  C, g->max_B, g->max_L, g->max_C);
    gpu_data_assemble(d, phase, order_d, s, NULL, 0, B, L, NULL, g->length, g->hist, g->pos,
                      NULL, g->cand);
    g->B = B;
    g->L = L;
    g->C = C;
    if (!g->finetune) return;
    const int maxL = g->max_L;
    g->cur_final = g->plan_final_d + s;
    g->pack = (gpu_gru_pack_t){L, g->plan_batch_sizes[bi * maxL], g->plan_step_off[bi * (maxL + 1) + L],
                               g->plan_step_off_d + bi * (maxL + 1)};
    LAUNCH(pack_ids_kernel, (int64_t)B * L, L, g->plan_perm_d + s,
           g->plan_step_off_d + bi * (maxL + 1), g->length, g->hist, g->pk_ids);
}

/* The model and the resident corpus fit each other (checked once per call). */
static int check_fit(gpu_model_t *g, gpu_data_t *d, int phase, char *err, size_t errlen) {
    const model_config_t *cfg = &g->lay.cfg;
    if (d->n_items != cfg->n_items)
        return tmr_error(err, errlen, "the corpus has %d items, the model %d", d->n_items,
                         cfg->n_items);
    if (d->ph[phase].max_len > g->max_L)
        return tmr_error(err, errlen, "%s histories up to %d items, the workspace %d",
                         corpus_phase_names[phase], d->ph[phase].max_len, g->max_L);
    if (g->add_pos && d->ph[phase].max_len > cfg->history_max)
        return tmr_error(err, errlen, "%s histories up to %d items, the position table %d",
                         corpus_phase_names[phase], d->ph[phase].max_len, cfg->history_max);
    if (1 + d->ph[phase].n_neg > g->max_C)
        return tmr_error(err, errlen, "%s has %d candidates, the workspace %d",
                         corpus_phase_names[phase], 1 + d->ph[phase].n_neg, g->max_C);
    return 0;
}

/* ---- CUDA graphs of the pretrain step ------------------------------------------------------
 * A pretrain step has no host-side inputs but its shape once its batch index and Adam's
 * scalars are read from device memory (batch_ctr, adam_by_batch): the step is captured once per
 * shape (B, L, C) and replayed; the finetune step is not (its GRU launches are sized from each
 * batch's packing on the host, and its dropout key is a launch argument). The first batch of a
 * shape runs directly (cuBLAS initialises then, outside any capture), the second is captured
 * and every later one replays. What a graph freezes: its launch shapes and pointers; every
 * per-step value (the batch index, Adam's scalars with lr and l2) is read from device memory
 * when it runs. A graph is stale once any device buffer was allocated or freed after its
 * capture (gpu_alloc_generation): it is then captured again. A capture that fails for any
 * reason (a CUDA, cuBLAS or CUB call refused while capturing, a buffer that would grow) is
 * abandoned, the batch runs directly, and graphs stay off for the rest of the run, with one
 * line on stderr saying why. Off with TIMIREC_GPU_GRAPHS=0 and under gpu_debug_sync(1). The
 * emulation (kernels/emulate.h) records and replays graphs too. */

__global__ void advance_batch_kernel(int64_t n, int64_t *__restrict__ batch_ctr) {
    THREAD_INDEX(i, n);
    (void)i;
    *batch_ctr += 1;
}

static int graphs_wanted(gpu_model_t *g) {
    const char *env = getenv("TIMIREC_GPU_GRAPHS");
    if (env && env[0] == '0') return 0;
    return !g->finetune && !gpu_debug_sync_enabled();
}

/* Adam's scalars for batches [first, n_batches) of the epoch: the step each will be. */
static void adam_table_for_epoch(gpu_model_t *g, const adam_t *opt, int64_t first,
                                 int64_t n_batches) {
    if (n_batches > g->adam_cap) {
        free(g->h_adam_by_batch);
        gpu_free(g->adam_by_batch);
        g->h_adam_by_batch =
            (adam_scalars_t *)tmr_malloc(tmr_mul_size((size_t)n_batches, sizeof(adam_scalars_t)));
        g->adam_by_batch = (adam_scalars_t *)gpu_malloc((size_t)n_batches * sizeof(adam_scalars_t));
        g->adam_cap = n_batches;
    }
    for (int64_t b = first; b < n_batches; b++)
        g->h_adam_by_batch[b] = tmr_adam_scalars(opt->lr, opt->beta1, opt->beta2, opt->eps,
                                                 opt->l2, opt->step + (b - first) + 1);
    gpu_to_device(g->adam_by_batch + first, g->h_adam_by_batch + first,
                  (size_t)(n_batches - first) * sizeof(adam_scalars_t));
}

/* The step of batch *batch_ctr (shape B x L), then the counter moves on. */
static void pretrain_step_indexed(gpu_model_t *g, gpu_data_t *d, adam_t *opt, int bs, int B,
                                  int L) {
    gpu_data_assemble(d, PHASE_TRAIN, d->order, 0, g->batch_ctr, bs, B, L, NULL, g->length,
                      g->hist, g->pos, NULL, g->cand);
    g->B = B;
    g->L = L;
    g->C = 1 + d->ph[PHASE_TRAIN].n_neg;
    const dropout_key_t none = {0, 0}; /* pretrain has no dropout */
    train_step_device(g, none, -1, g->batch_ctr);
    gpu_adam_update_guarded(g->ctx, opt, &g->lay, g->params, g->grads, g->adam_m, g->adam_v,
                            &g->acc->bad, g->adam_by_batch, g->batch_ctr);
    LAUNCH(advance_batch_kernel, (int64_t)1, g->batch_ctr);
}

/* Capture batch bi's step into sg->exec. Returns 0, or -1 with graphs turned off for the run
 * (g->graphs_why says why; nothing of the failed capture ran). */
static int capture_step(gpu_model_t *g, gpu_data_t *d, adam_t *opt, int bs, int B, int L,
                        struct step_graph *sg) {
    gpu_ctx_t *ctx = g->ctx;
    cudaGraph_t graph = NULL;
    char why[512] = "";
    gpu_set_launch_stream(ctx, g->stream);
    /* after cublasSetStream, which resets it to the default pool */
    CUBLAS_CHECK(cublasSetWorkspace(ctx->blas, g->blas_ws, BLAS_WORKSPACE));
    cudaError_t e = cudaStreamBeginCapture(g->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        snprintf(why, sizeof why, "cudaStreamBeginCapture: %s", cudaGetErrorString(e));
    } else {
        gpu_capture_begin();
        if (g->fail_next_capture == GPU_CAPTURE_FAIL_SYNC) /* a call a capture refuses */
            gpu_poison(g->kstar, sizeof(int32_t));
        else if (g->fail_next_capture == GPU_CAPTURE_FAIL_GROW) /* scratch that must grow */
            gpu_ctx_ones(ctx, ctx->ones_cap + 1);
        g->fail_next_capture = 0;
        pretrain_step_indexed(g, d, opt, bs, B, L);
        const char *failed = gpu_capture_end();
        e = cudaStreamEndCapture(g->stream, &graph);
        if (failed) snprintf(why, sizeof why, "%s", failed);
        else if (e != cudaSuccess)
            snprintf(why, sizeof why, "cudaStreamEndCapture: %s", cudaGetErrorString(e));
        else if ((e = cudaGraphInstantiate(&sg->exec, graph, 0)) != cudaSuccess)
            snprintf(why, sizeof why, "cudaGraphInstantiate: %s", cudaGetErrorString(e));
    }
    if (graph) cudaGraphDestroy(graph);
    gpu_set_launch_stream(ctx, 0);
    if (!why[0]) {
        sg->generation = gpu_alloc_generation();
        return 0;
    }
    cudaGetLastError(); /* the capture's errors are reported here, not by the next launch */
    sg->exec = NULL;
    g->graphs_failed = 1;
    snprintf(g->graphs_why, sizeof g->graphs_why, "capturing the %d x %d step: %s", B, L, why);
    fprintf(stderr, "timirec: warning: CUDA graphs off for this run, steps launched one by one "
            "(%s)\n", g->graphs_why);
    return -1;
}

/* Batch bi through its shape's graph (captured on the shape's second batch, recaptured when
 * stale); returns 1 when it replayed or captured-and-launched a graph, 0 when it ran directly.
 * opt->step advances by one in every case. */
static int graph_step(gpu_model_t *g, gpu_data_t *d, adam_t *opt, int bs, int64_t n,
                      int64_t bi, gpu_epoch_t *e) {
    const int64_t s = bi * bs;
    const int B = (int)(n - s < bs ? n - s : bs), L = g->plan_L[bi];
    const int C = 1 + d->ph[PHASE_TRAIN].n_neg;
    if (B > g->max_B || L > g->max_L || C > g->max_C)
        tmr_fatal("gpu_train_epoch: batch %d x %d x %d outside the workspace %d x %d x %d", B, L,
                  C, g->max_B, g->max_L, g->max_C);
    g->B = B; /* the last batch's shape (gpu_model_read) */
    g->L = L;
    g->C = C;
    opt->step++; /* this batch's step (its scalars are adam_by_batch[bi]) */
    struct step_graph *sg = NULL;
    for (int i = 0; i < g->n_graphs; i++)
        if (g->graphs[i].B == B && g->graphs[i].L == L && g->graphs[i].C == C &&
            g->graphs[i].bs == bs)
            sg = &g->graphs[i];
    if (!sg && g->n_graphs < MAX_GRAPHS) {
        sg = &g->graphs[g->n_graphs++];
        memset(sg, 0, sizeof *sg);
        sg->B = B;
        sg->L = L;
        sg->C = C;
        sg->bs = bs;
    }
    if (sg && sg->exec && sg->generation != gpu_alloc_generation()) {
        /* stale: a buffer it points into may have moved; the scratch is already big enough
         * for this shape, so capture again now */
        CUDA_CHECK(cudaGraphExecDestroy(sg->exec));
        sg->exec = NULL;
        sg->seen = 1;
        e->graph_stale++;
    }
    if (!sg || g->graphs_failed || (!sg->exec && sg->seen == 0)) {
        if (sg) sg->seen++;
        pretrain_step_indexed(g, d, opt, bs, B, L);
        return 0;
    }
    if (!sg->exec) {
        if (capture_step(g, d, opt, bs, B, L, sg)) {
            pretrain_step_indexed(g, d, opt, bs, B, L);
            return 0;
        }
        e->graph_captures++;
    }
    CUDA_CHECK(cudaGraphLaunch(sg->exec, g->stream));
    return 1;
}

/* What an epoch driver reports once its queue is drained: the batches applied before the
 * first non-finite loss (all up to bi when none), the device's loss sums, and the step and
 * Adam counters advanced by the batches applied. */
static void epoch_finish(gpu_epoch_t *e, adam_t *opt, const struct epoch_acc *acc, int64_t bi,
                         int64_t step0, int64_t adam0) {
    const int64_t applied = (acc->bad >= 0 ? acc->bad : bi) - e->first_batch;
    e->next_batch = e->first_batch + applied;
    e->bad_batch = acc->bad;
    e->bad_loss = acc->bad_loss;
    e->last_loss = acc->last_loss;
    e->loss_sum = acc->loss_sum;
    e->step = step0 + applied;
    opt->step = adam0 + applied;
}

extern "C" const char *gpu_model_graphs_off_why(const gpu_model_t *g) {
    return g->graphs_failed ? g->graphs_why : NULL;
}

extern "C" void gpu_model_test_capture_failure(gpu_model_t *g, int how) { g->fail_next_capture = how; }

extern "C" int gpu_train_epoch(gpu_model_t *g, gpu_data_t *d, adam_t *opt, gpu_epoch_t *e,
                               char *err, size_t errlen) {
    const int64_t n = d->ph[PHASE_TRAIN].n_inst;
    const int bs = e->batch_size;
    if (bs < 1 || bs > g->max_B)
        return tmr_error(err, errlen, "gpu_train_epoch: batch size %d outside 1..%d", bs, g->max_B);
    if (check_fit(g, d, PHASE_TRAIN, err, errlen)) return -1;
    const int64_t n_batches = (n + bs - 1) / bs;
    e->n_batches = n_batches;
    e->next_batch = e->first_batch;
    e->bad_batch = -1;
    e->bad_loss = e->last_loss = 0;
    if (e->first_batch < 0 || e->first_batch > n_batches)
        return tmr_error(err, errlen, "epoch %u: cannot start at batch %lld of %lld", e->epoch + 1,
                         (long long)e->first_batch, (long long)n_batches);
    if (e->first_batch == n_batches) return 0;
    const double t0 = tmr_now();
    if (gpu_data_train_negatives(d, e->seed, e->epoch, err, errlen)) return -1;
    gpu_data_shuffle(d, e->seed, e->epoch);
    /* The order comes back once (the host plans every batch's shape and packing from it). */
    grow_host(&g->h_order, &g->h_order_cap, n);
    gpu_data_read_order(d, g->h_order);
    plan_batches(g, d->ph[PHASE_TRAIN].h_len, g->h_order, n, bs, e->first_batch);
    struct epoch_acc acc0 = {e->loss_sum, -1, 0.0f, 0.0f};
    gpu_to_device(g->acc, &acc0, sizeof acc0);
    const int64_t step0 = e->step, adam0 = opt->step;
    int64_t bi = e->first_batch;
    const double t1 = tmr_now();
    e->prepare_s = t1 - t0;
    const int graphs = graphs_wanted(g);
    if (graphs) { /* the replayed steps read their batch and Adam scalars from the device */
        adam_table_for_epoch(g, opt, e->first_batch, n_batches);
        gpu_to_device(g->batch_ctr, &e->first_batch, sizeof(int64_t));
    }
    e->graph_replays = e->graph_captures = e->graph_stale = 0;
    for (; bi < n_batches; bi++) {
        if (graphs) {
            /* a capture is not a step: it may allocate nothing either, and its own failures
             * are reported by capture_step */
            gpu_nosync_begin("a training step (gpu_train_epoch, graphs)");
            e->graph_replays += graph_step(g, d, opt, bs, n, bi, e);
            gpu_nosync_end();
        } else {
            gpu_nosync_begin("a training step (gpu_train_epoch)");
            plan_use_batch(g, d, PHASE_TRAIN, d->order, n, bs, bi);
            const dropout_key_t key = {e->seed, (uint32_t)(step0 + (bi - e->first_batch))};
            train_step_device(g, key, bi, NULL);
            gpu_adam_update_guarded(g->ctx, opt, &g->lay, g->params, g->grads, g->adam_m,
                                    g->adam_v, &g->acc->bad, NULL, NULL);
            gpu_nosync_end();
        }
        if (e->after_batch && e->after_batch(e->ctx, bi, n_batches) && bi + 1 < n_batches) {
            bi++;
            break;
        }
    }
    e->queue_s = tmr_now() - t1;
    struct epoch_acc acc;
    gpu_to_host(&acc, g->acc, sizeof acc);
    epoch_finish(e, opt, &acc, bi, step0, adam0);
    return 0;
}

/* rank[b] = metrics_rank(scores row b): 1 + the candidates scored at least as high as the
 * target (a NaN target: C; NaN candidates never count). */
__global__ void rank_kernel(int64_t n, int C, const float *__restrict__ scores,
                            int64_t *__restrict__ rank) {
    THREAD_INDEX(b, n);
    const float *s = scores + b * C;
    const float t = s[0];
    if (isnan(t)) {
        rank[b] = C;
        return;
    }
    int64_t beat = 0;
    for (int i = 1; i < C; i++) beat += s[i] >= t;
    rank[b] = 1 + beat;
}

#define PRM(id) (g->params + model_offset(&g->lay, (id)))
extern "C" void gpu_eval_phase(gpu_model_t *g, gpu_data_t *d, int phase, int eval_batch,
                               int64_t *ranks) {
    char err[256];
    if (phase != PHASE_DEV && phase != PHASE_TEST)
        tmr_fatal("gpu_eval_phase: phase %d is not dev or test", phase);
    if (eval_batch < 1 || eval_batch > g->max_B)
        tmr_fatal("gpu_eval_phase: batch size %d outside 1..%d", eval_batch, g->max_B);
    if (check_fit(g, d, phase, err, sizeof err)) tmr_fatal("gpu_eval_phase: %s", err);
    const int64_t n = d->ph[phase].n_inst;
    if (n <= 0) return;
    if (n > g->ranks_cap) {
        gpu_free(g->ranks_d);
        g->ranks_d = (int64_t *)gpu_malloc((size_t)n * sizeof(int64_t));
        g->ranks_cap = n;
    }
    gpu_ctx_t *ctx = g->ctx;
    const int K = g->K, dim = g->d;
    const float *E = PRM(P_EXT_ITEM_EMB);
    plan_batches(g, d->ph[phase].h_len, NULL, n, eval_batch, 0);
    const int64_t n_batches = (n + eval_batch - 1) / eval_batch;
    gpu_nosync_begin("an evaluation phase (gpu_eval_phase)");
    for (int64_t bi = 0; bi < n_batches; bi++) {
        plan_use_batch(g, d, phase, NULL, n, eval_batch, bi);
        const int B = g->B, C = g->C;
        extractor_forward(g);
        if (g->lay.cfg.stage == STAGE_PRETRAIN) {
            gpu_pretrain_scores(ctx, E, g->V, g->cand, B, C, K, dim, 0, NULL, g->scores);
        } else {
            dropout_key_t none = {0, 0};
            predictor_forward(g, 0, none);
            gpu_user_vector(ctx, g->V, g->pred_intent, B, K, dim, g->w, g->u);
            gpu_candidate_scores(ctx, E, g->u, g->cand, B, C, dim, g->scores);
        }
        LAUNCH(rank_kernel, (int64_t)B, C, g->scores, g->ranks_d + bi * eval_batch);
    }
    gpu_nosync_end();
    gpu_to_host(ranks, g->ranks_d, (size_t)n * sizeof(int64_t));
}
#undef PRM

/* ---- host-built batches staged through pinned memory --------------------------------------- */

static void *pinned_alloc(size_t bytes) {
    void *p = NULL;
    CUDA_CHECK(cudaHostAlloc(&p, bytes ? bytes : 16, cudaHostAllocDefault));
    return p;
}

static void stage_alloc(gpu_model_t *g) {
    if (g->stage) return;
    g->stage = (struct stage_slot *)calloc(2, sizeof(struct stage_slot));
    if (!g->stage) tmr_fatal("gpu_train_epoch_staged: out of host memory");
    CUDA_CHECK(cudaStreamCreateWithFlags(&g->copy_stream, cudaStreamNonBlocking));
    const size_t B = (size_t)g->max_B, L = (size_t)g->max_L, C = (size_t)g->max_C;
    for (int k = 0; k < 2; k++) {
        struct stage_slot *S = &g->stage[k];
        batch_t *b = &S->hb;
        b->user = (int32_t *)pinned_alloc(B * sizeof(int32_t));
        b->length = (int32_t *)pinned_alloc(B * sizeof(int32_t));
        b->hist = (int32_t *)pinned_alloc(B * L * sizeof(int32_t));
        b->pos = (int32_t *)pinned_alloc(B * L * sizeof(int32_t));
        b->mask = (float *)pinned_alloc(B * L * sizeof(float));
        b->cand = (int32_t *)pinned_alloc(B * C * sizeof(int32_t));
        b->cap_B = g->max_B;
        b->cap_L = g->max_L;
        b->cap_C = g->max_C;
        S->h_ids = (int32_t *)pinned_alloc(B * L * sizeof(int32_t));
        S->h_fin = (int32_t *)pinned_alloc(B * sizeof(int32_t));
        S->h_off = (int64_t *)pinned_alloc((L + 1) * sizeof(int64_t));
        S->h_perm = (int32_t *)tmr_malloc(B * sizeof(int32_t));
        S->h_sizes = (int32_t *)tmr_malloc(L * sizeof(int32_t));
        S->d_hist = take_i(g, B * L);
        S->d_pos = take_i(g, B * L);
        S->d_cand = take_i(g, B * C);
        S->d_ids = take_i(g, B * L);
        S->d_fin = take_i(g, B);
        S->d_off = (int64_t *)take(g, (L + 1) * sizeof(int64_t));
        CUDA_CHECK(cudaEventCreateWithFlags(&S->copied, cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&S->used, cudaEventDisableTiming));
    }
}

extern "C" int gpu_train_epoch_staged(gpu_model_t *g, const corpus_t *c, int history_max,
                                      const int32_t *train_neg, int num_neg,
                                      const int64_t *order, adam_t *opt, gpu_epoch_t *e,
                                      char *err, size_t errlen) {
    const char *who = "gpu_train_epoch_staged";
    const int64_t n = c->phase[PHASE_TRAIN].n_inst;
    const int bs = e->batch_size;
    if (bs < 1 || bs > g->max_B)
        return tmr_error(err, errlen, "%s: batch size %d outside 1..%d", who, bs, g->max_B);
    if (c->n_items != g->lay.cfg.n_items)
        return tmr_error(err, errlen, "the corpus has %d items, the model %d", c->n_items,
                         g->lay.cfg.n_items);
    if (1 + num_neg > g->max_C)
        return tmr_error(err, errlen, "%d candidates, the workspace %d", 1 + num_neg, g->max_C);
    const int64_t n_batches = (n + bs - 1) / bs;
    e->n_batches = n_batches;
    e->next_batch = e->first_batch;
    e->bad_batch = -1;
    e->bad_loss = e->last_loss = 0;
    e->graph_replays = 0;
    if (e->first_batch < 0 || e->first_batch > n_batches)
        return tmr_error(err, errlen, "epoch %u: cannot start at batch %lld of %lld", e->epoch + 1,
                         (long long)e->first_batch, (long long)n_batches);
    if (e->first_batch == n_batches) return 0;
    const double t0 = tmr_now();
    stage_alloc(g);
    struct epoch_acc acc0 = {e->loss_sum, -1, 0.0f, 0.0f};
    gpu_to_device(g->acc, &acc0, sizeof acc0);
    int32_t *const hist0 = g->hist, *const pos0 = g->pos, *const cand0 = g->cand;
    int32_t *const ids0 = g->pk_ids;
    const int64_t step0 = e->step, adam0 = opt->step;
    int64_t bi = e->first_batch;
    const double t1 = tmr_now();
    e->prepare_s = t1 - t0;
    for (; bi < n_batches; bi++) {
        struct stage_slot *S = &g->stage[bi & 1];
        const int64_t s = bi * bs;
        const int B = (int)(n - s < bs ? n - s : bs);
        /* the pinned slot is free once its last copies (batch bi - 2) are done */
        CUDA_CHECK(cudaEventSynchronize(S->copied));
        batch_fill(&S->hb, c, PHASE_TRAIN, order + s, B, history_max, train_neg, num_neg, 0);
        const int L = S->hb.L, C = S->hb.C;
        const model_batch_t mb = {B, L, C, S->hb.hist, S->hb.pos, S->hb.length, S->hb.cand};
        int64_t T = 0;
        int n_steps = 0;
        if (g->finetune)
            n_steps = pack_compute(&mb, who, S->h_perm, S->h_sizes, S->h_off, S->h_ids, S->h_fin, &T);
        /* copies wait until the step that last read the device slot (batch bi - 2) is done */
        CUDA_CHECK(cudaStreamWaitEvent(g->copy_stream, S->used, 0));
        const size_t bl = (size_t)B * L * sizeof(int32_t);
        CUDA_CHECK(cudaMemcpyAsync(S->d_hist, S->hb.hist, bl, cudaMemcpyHostToDevice, g->copy_stream));
        if (g->add_pos)
            CUDA_CHECK(cudaMemcpyAsync(S->d_pos, S->hb.pos, bl, cudaMemcpyHostToDevice, g->copy_stream));
        CUDA_CHECK(cudaMemcpyAsync(S->d_cand, S->hb.cand, (size_t)B * C * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, g->copy_stream));
        if (g->finetune) {
            CUDA_CHECK(cudaMemcpyAsync(S->d_ids, S->h_ids, (size_t)T * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, g->copy_stream));
            CUDA_CHECK(cudaMemcpyAsync(S->d_fin, S->h_fin, (size_t)B * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, g->copy_stream));
            CUDA_CHECK(cudaMemcpyAsync(S->d_off, S->h_off, (size_t)(n_steps + 1) * sizeof(int64_t),
                                       cudaMemcpyHostToDevice, g->copy_stream));
        }
        CUDA_CHECK(cudaEventRecord(S->copied, g->copy_stream));
        CUDA_CHECK(cudaStreamWaitEvent(gpu_launch_stream, S->copied, 0));
        g->hist = S->d_hist;
        g->pos = S->d_pos;
        g->cand = S->d_cand;
        g->B = B;
        g->L = L;
        g->C = C;
        if (g->finetune) {
            g->pk_ids = S->d_ids;
            g->cur_final = S->d_fin;
            g->pack = (gpu_gru_pack_t){n_steps, n_steps > 0 ? S->h_sizes[0] : 0, T, S->d_off};
        }
        gpu_nosync_begin("a training step (gpu_train_epoch_staged)");
        const dropout_key_t key = {e->seed, (uint32_t)(step0 + (bi - e->first_batch))};
        train_step_device(g, key, bi, NULL);
        gpu_adam_update_guarded(g->ctx, opt, &g->lay, g->params, g->grads, g->adam_m, g->adam_v,
                                &g->acc->bad, NULL, NULL);
        CUDA_CHECK(cudaEventRecord(S->used, gpu_launch_stream));
        gpu_nosync_end();
        if (e->after_batch && e->after_batch(e->ctx, bi, n_batches) && bi + 1 < n_batches) {
            bi++;
            break;
        }
    }
    e->queue_s = tmr_now() - t1;
    struct epoch_acc acc;
    gpu_to_host(&acc, g->acc, sizeof acc);
    g->hist = hist0;
    g->pos = pos0;
    g->cand = cand0;
    g->pk_ids = ids0;
    epoch_finish(e, opt, &acc, bi, step0, adam0);
    return 0;
}
