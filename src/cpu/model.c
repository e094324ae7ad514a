/* The parameter table, initialisation and Adam (docs/MODEL.md, "Parameters", "Initialisation",
 * "Optimiser"). */
#include "timirec/model.h"

#include "timirec/common.h"
#include "timirec/math_hd.h"
#include "timirec/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int model_config_check(const model_config_t *c, char *err, size_t errlen) {
    if (c->stage != STAGE_PRETRAIN && c->stage != STAGE_FINETUNE)
        return tmr_error(err, errlen, "stage must be pretrain or finetune");
    if (c->n_items < 2) return tmr_error(err, errlen, "n_items %d: need at least one item", c->n_items);
    if (c->emb_size < 4 || c->emb_size > 256 || c->emb_size % 4)
        return tmr_error(err, errlen, "emb_size %d: must be a multiple of 4 in 4..256", c->emb_size);
    if (c->attn_size < 1 || c->attn_size > 256)
        return tmr_error(err, errlen, "attn_size %d: must be in 1..256", c->attn_size);
    if (c->K < 1 || c->K > 64) return tmr_error(err, errlen, "K %d: must be in 1..64", c->K);
    if (c->history_max < 1 || c->history_max > 512)
        return tmr_error(err, errlen, "history_max %d: must be in 1..512", c->history_max);
    if (c->n_layers < 1 || c->n_layers > MODEL_MAX_PROJ)
        return tmr_error(err, errlen, "n_layers %d: must be in 1..%d", c->n_layers, MODEL_MAX_PROJ);
    if (!(c->temp > 0)) return tmr_error(err, errlen, "temp %g: must be > 0", c->temp);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return tmr_error(err, errlen, "dropout %g: must be in [0, 1)", c->dropout);
    /* Flat-buffer offsets are int64 but the tables are indexed by int32 ids times d. */
    if ((int64_t)(c->n_items + 1) * c->emb_size > INT32_MAX)
        return tmr_error(err, errlen, "n_items x emb_size = %lld exceeds 2^31 elements",
                         (long long)(c->n_items + 1) * c->emb_size);
    return 0;
}

static int add(model_layout_t *lay, const char *name, int64_t rows, int64_t cols, init_kind_t init) {
    if (lay->n_tensors >= MODEL_MAX_TENSORS) tmr_fatal("model layout: too many tensors");
    param_t *p = &lay->t[lay->n_tensors];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->rows = rows;
    p->cols = cols;
    p->size = rows * (cols ? cols : 1);
    p->offset = lay->total;
    p->decay = strstr(name, "bias") == NULL;
    p->no_grad = strcmp(name, "interest_extractor.W2.bias") == 0 ||
                 strcmp(name, "interest_extractor.transformer.masked_attn_head.k_linear.bias") == 0;
    p->init = init;
    lay->total += p->size;
    return lay->n_tensors++;
}

void model_layout_build(const model_config_t *cfg, model_layout_t *lay) {
    memset(lay, 0, sizeof *lay);
    lay->cfg = *cfg;
    for (int i = 0; i < P_COUNT; i++) lay->id[i] = -1;
    int64_t N = cfg->n_items, d = cfg->emb_size, a = cfg->attn_size, K = cfg->K;
    const init_kind_t NRM = INIT_NORMAL_001;
    /* State-dict order: the order PyTorch registers the modules. */
    lay->id[P_EXT_ITEM_EMB] = add(lay, "interest_extractor.i_embeddings.weight", N, d, NRM);
    if (cfg->add_pos)
        lay->id[P_EXT_POS_EMB] =
            add(lay, "interest_extractor.p_embeddings.weight", cfg->history_max + 1, d, NRM);
    lay->id[P_EXT_W1] = add(lay, "interest_extractor.W1.weight", a, d, NRM);
    lay->id[P_EXT_B1] = add(lay, "interest_extractor.W1.bias", a, 0, NRM);
    lay->id[P_EXT_W2] = add(lay, "interest_extractor.W2.weight", K, a, NRM);
    lay->id[P_EXT_B2] = add(lay, "interest_extractor.W2.bias", K, 0, NRM);
    if (cfg->add_trm) {
        const char *T = "interest_extractor.transformer.";
        char n[96];
#define TRM(pid, suffix, rows, cols, init)           \
    snprintf(n, sizeof n, "%s%s", T, suffix);        \
    lay->id[pid] = add(lay, n, rows, cols, init)
        TRM(P_TRM_WQ, "masked_attn_head.q_linear.weight", d, d, NRM);
        TRM(P_TRM_BQ, "masked_attn_head.q_linear.bias", d, 0, NRM);
        TRM(P_TRM_WK, "masked_attn_head.k_linear.weight", d, d, NRM);
        TRM(P_TRM_BK, "masked_attn_head.k_linear.bias", d, 0, NRM);
        TRM(P_TRM_WV, "masked_attn_head.v_linear.weight", d, d, NRM);
        TRM(P_TRM_BV, "masked_attn_head.v_linear.bias", d, 0, NRM);
        TRM(P_TRM_LN1_G, "layer_norm1.weight", d, 0, INIT_ONES);
        TRM(P_TRM_LN1_B, "layer_norm1.bias", d, 0, INIT_ZEROS);
        TRM(P_TRM_FF1_W, "linear1.weight", d, d, NRM);
        TRM(P_TRM_FF1_B, "linear1.bias", d, 0, NRM);
        TRM(P_TRM_FF2_W, "linear2.weight", d, d, NRM);
        TRM(P_TRM_FF2_B, "linear2.bias", d, 0, NRM);
        TRM(P_TRM_LN2_G, "layer_norm2.weight", d, 0, INIT_ONES);
        TRM(P_TRM_LN2_B, "layer_norm2.bias", d, 0, INIT_ZEROS);
#undef TRM
    }
    if (cfg->stage == STAGE_FINETUNE) {
        const init_kind_t GRU = INIT_GRU_UNIFORM;
        lay->id[P_PRED_ITEM_EMB] = add(lay, "interest_predictor.i_embeddings.weight", N + 1, d, NRM);
        lay->id[P_GRU_W_IH] = add(lay, "interest_predictor.rnn.weight_ih_l0", 3 * d, d, GRU);
        lay->id[P_GRU_W_HH] = add(lay, "interest_predictor.rnn.weight_hh_l0", 3 * d, d, GRU);
        lay->id[P_GRU_B_IH] = add(lay, "interest_predictor.rnn.bias_ih_l0", 3 * d, 0, GRU);
        lay->id[P_GRU_B_HH] = add(lay, "interest_predictor.rnn.bias_hh_l0", 3 * d, 0, GRU);
        lay->n_proj = cfg->n_layers;
        for (int i = 0; i < cfg->n_layers; i++) {
            int last = i == cfg->n_layers - 1;
            char w[96], b[96];
            if (last) {
                snprintf(w, sizeof w, "proj.proj_final.weight");
                snprintf(b, sizeof b, "proj.proj_final.bias");
            } else {
                snprintf(w, sizeof w, "proj.proj_%d.weight", i);
                snprintf(b, sizeof b, "proj.proj_%d.bias", i);
            }
            lay->proj_w[i] = add(lay, w, last ? K : d, d, NRM);
            lay->proj_b[i] = add(lay, b, last ? K : d, 0, NRM);
        }
    }
}

int64_t model_offset(const model_layout_t *lay, enum param_id id) {
    if (id < 0 || id >= P_COUNT || lay->id[id] < 0)
        tmr_fatal("model_offset: tensor %d is not part of this configuration", (int)id);
    return lay->t[lay->id[id]].offset;
}

void model_init_params(const model_layout_t *lay, uint64_t seed, float *params) {
    double gru_bound = 1.0 / sqrt((double)lay->cfg.emb_size);
    for (int t = 0; t < lay->n_tensors; t++) {
        const param_t *p = &lay->t[t];
        float *x = params + p->offset;
#pragma omp parallel for schedule(static) if (p->size > 65536)
        for (int64_t i = 0; i < p->size; i++) {
            philox4x32_t r = rng_block(seed, RNG_INIT, (uint32_t)t, (uint64_t)i, 0);
            double u1 = ((double)(r.v[0] >> 8) + 1.0) / 16777216.0; /* (0, 1] */
            double u2 = (double)(r.v[1] >> 8) / 16777216.0;         /* [0, 1) */
            switch (p->init) {
            case INIT_NORMAL_001:
                x[i] = (float)(0.01 * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
                break;
            case INIT_ONES: x[i] = 1.0f; break;
            case INIT_ZEROS: x[i] = 0.0f; break;
            case INIT_GRU_UNIFORM: x[i] = (float)((2.0 * u2 - 1.0) * gru_bound); break;
            }
        }
    }
}

int model_copy_shared(const model_layout_t *dst_lay, float *dst, const model_layout_t *src_lay,
                      const float *src) {
    int copied = 0;
    for (int i = 0; i < dst_lay->n_tensors; i++) {
        const param_t *d = &dst_lay->t[i];
        for (int j = 0; j < src_lay->n_tensors; j++) {
            const param_t *s = &src_lay->t[j];
            if (strcmp(d->name, s->name) == 0 && d->rows == s->rows && d->cols == s->cols) {
                memcpy(dst + d->offset, src + s->offset, (size_t)d->size * sizeof *dst);
                copied++;
                break;
            }
        }
    }
    return copied;
}

void model_layout_print(const model_layout_t *lay, FILE *out) {
    for (int t = 0; t < lay->n_tensors; t++) {
        const param_t *p = &lay->t[t];
        if (p->cols) fprintf(out, "  %-62s [%lld, %lld]%s\n", p->name, (long long)p->rows,
                             (long long)p->cols, p->decay ? "" : "  (no decay)");
        else fprintf(out, "  %-62s [%lld]%s\n", p->name, (long long)p->rows,
                     p->decay ? "" : "  (no decay)");
    }
    fprintf(out, "#params: %lld\n", (long long)lay->total);
}

void adam_init(adam_t *opt, double lr, double l2) {
    opt->lr = lr;
    opt->beta1 = 0.9;
    opt->beta2 = 0.999;
    opt->eps = 1e-8;
    opt->l2 = l2;
    opt->step = 0;
}

/* The dense update of every tensor except skip (a table index, -1: none) and skip2. */
static void adam_dense(const adam_scalars_t *sp, const model_layout_t *lay, int skip, int skip2,
                       float *params, const float *grads, float *m, float *v) {
    const adam_scalars_t s = *sp;
    /* One parallel region for the whole table: every tensor's elements are split between the
     * threads (elementwise, so no order to keep; nowait: tensors are disjoint). */
#pragma omp parallel if (lay->total > 65536)
    for (int t = 0; t < lay->n_tensors; t++) {
        if (t == skip || t == skip2) continue;
        const param_t *p = &lay->t[t];
        const float decay = p->decay ? s.l2 : 0.0f;
        float *x = params + p->offset, *mt = m + p->offset, *vt = v + p->offset;
        const float *gt = grads + p->offset;
#pragma omp for schedule(static) nowait
        for (int64_t i = 0; i < p->size; i++)
            x[i] = tmr_adam_elem(&s, decay, gt[i], x[i], &mt[i], &vt[i]);
    }
}

void adam_step(adam_t *opt, const model_layout_t *lay, float *params, const float *grads,
               float *m, float *v) {
    opt->step++;
    /* Scalars as PyTorch forms them (in double, then used as floats); the element update is
     * math_hd.h's, which the CUDA kernel runs too. */
    const adam_scalars_t s =
        tmr_adam_scalars(opt->lr, opt->beta1, opt->beta2, opt->eps, opt->l2, opt->step);
    adam_dense(&s, lay, -1, -1, params, grads, m, v);
}

int adam_lazy_tensors(const model_layout_t *lay, int *ids) {
    int n = 0;
    if (model_has(lay, P_EXT_ITEM_EMB)) ids[n++] = lay->id[P_EXT_ITEM_EMB];
    if (model_has(lay, P_PRED_ITEM_EMB)) ids[n++] = lay->id[P_PRED_ITEM_EMB];
    return n;
}

int64_t adam_lazy_rows(const model_layout_t *lay) {
    int ids[2];
    const int n = adam_lazy_tensors(lay, ids);
    int64_t rows = 0;
    for (int k = 0; k < n; k++) rows += lay->t[ids[k]].rows;
    return rows;
}

/* Row r of row_step (base + id) into rows unless marked; marked: its count bit-inverted
 * (counts are >= 0, so a marked count is negative), undone by adam_lazy_touched. */
static inline void lazy_mark(int64_t *row_step, int64_t base, int32_t id, int64_t *rows,
                             int64_t *n) {
    int64_t *c = &row_step[base + id];
    if (*c >= 0) {
        *c = ~*c;
        rows[(*n)++] = base + id;
    }
}

int64_t adam_lazy_touched(const model_layout_t *lay, const model_batch_t *mb, int64_t *row_step,
                          int64_t *rows) {
    int ids[2];
    const int n_lazy = adam_lazy_tensors(lay, ids);
    const int64_t BL = (int64_t)mb->B * mb->L, BC = (int64_t)mb->B * mb->C;
    int64_t n = 0, base = 0;
    for (int k = 0; k < n_lazy; k++) {
        const param_t *p = &lay->t[ids[k]];
        for (int64_t r = 0; r < (k == 0 ? BL : 0); r++) { /* extractor: every position */
            if (mb->hist[r] < 0 || mb->hist[r] >= p->rows)
                tmr_fatal("adam_step_lazy: item id %d outside %s", (int)mb->hist[r], p->name);
            lazy_mark(row_step, base, mb->hist[r], rows, &n);
        }
        for (int64_t r = 0; r < (k == 0 ? BC : 0); r++) {
            if (mb->cand[r] < 0 || mb->cand[r] >= p->rows)
                tmr_fatal("adam_step_lazy: candidate %d outside %s", (int)mb->cand[r], p->name);
            lazy_mark(row_step, base, mb->cand[r], rows, &n);
        }
        for (int b = 0; k == 1 && b < mb->B; b++) /* predictor: the packed rows */
            for (int l = 0; l < mb->length[b] && l < mb->L; l++) {
                const int32_t id = mb->hist[(int64_t)b * mb->L + l];
                if (id < 0 || id >= p->rows)
                    tmr_fatal("adam_step_lazy: item id %d outside %s", (int)id, p->name);
                lazy_mark(row_step, base, id, rows, &n);
            }
        base += p->rows;
    }
    for (int64_t i = 0; i < n; i++) row_step[rows[i]] = ~row_step[rows[i]];
    return n;
}

void adam_step_lazy(adam_t *opt, const model_layout_t *lay, const model_batch_t *mb,
                    float *params, const float *grads, float *m, float *v, int64_t *row_step) {
    const int64_t cap = adam_lazy_cap(mb->B, mb->L, mb->C);
    int64_t *rows = tmr_malloc(tmr_mul_size((size_t)(cap > 0 ? cap : 1), sizeof *rows));
    const int64_t n = adam_lazy_touched(lay, mb, row_step, rows);
    adam_step_lazy_rows(opt, lay, rows, n, params, grads, m, v, row_step);
    free(rows);
}

void adam_step_lazy_rows(adam_t *opt, const model_layout_t *lay, const int64_t *rows, int64_t n,
                         float *params, const float *grads, float *m, float *v,
                         int64_t *row_step) {
    opt->step++;
    const adam_scalars_t s =
        tmr_adam_scalars(opt->lr, opt->beta1, opt->beta2, opt->eps, opt->l2, opt->step);
    int ids[2] = {-1, -1};
    adam_lazy_tensors(lay, ids);
    adam_dense(&s, lay, ids[0], ids[1], params, grads, m, v);
    const int d = lay->cfg.emb_size;
#pragma omp parallel for schedule(static) if (n * d > 65536)
    for (int64_t i = 0; i < n; i++) { /* n > 0: the layout has a lazy table */
        const int64_t r = rows[i];
        const param_t *p;
        const int64_t off = adam_lazy_row_offset(lay, ids, r, &p);
        const int64_t t_r = ++row_step[r]; /* the row's own step count */
        const adam_scalars_t sr =
            tmr_adam_scalars(opt->lr, opt->beta1, opt->beta2, opt->eps, opt->l2, t_r);
        const float decay = p->decay ? sr.l2 : 0.0f;
        for (int j = 0; j < d; j++)
            params[off + j] = tmr_adam_elem(&sr, decay, grads[off + j], params[off + j],
                                            &m[off + j], &v[off + j]);
    }
}

/* ---- the activation table (model.h) ------------------------------------------------------- */

#define F ACT_F32
#define I ACT_I32
#define I64 ACT_I64
#define EXT ACT_EXTRACTOR
#define PRED ACT_PREDICTOR
#define HEADS ACT_HEADS
#define CPU ACT_CPU
#define GPU ACT_GPU
#define BOTH (ACT_CPU | ACT_GPU)
#define FWD ACT_FWD
#define SAVED ACT_SAVED
#define SCR ACT_SCRATCH
#define ALL ACT_ALWAYS
#define TRM ACT_TRM
#define FT ACT_FINETUNE
/* name, shape, type, pass, group, backends, need, scan, alias */
const act_desc_t model_acts[A_COUNT] = {
    [A_X0] = {"extractor.x0 = E[hist] + P[pos]",
        {AD_B, AD_L, AD_D}, F, SAVED, EXT, BOTH, ALL, SCAN_YES, -1},
    [A_Q] = {"extractor.q", {AD_B, AD_L, AD_D}, F, SAVED, EXT, BOTH, TRM, SCAN_YES, -1},
    [A_K] = {"extractor.k", {AD_B, AD_L, AD_D}, F, SAVED, EXT, BOTH, TRM, SCAN_YES, -1},
    [A_V] = {"extractor.v", {AD_B, AD_L, AD_D}, F, SAVED, EXT, BOTH, TRM, SCAN_YES, -1},
    [A_ATT] = {"extractor.att (attention weights)",
        {AD_B, AD_L, AD_L}, F, SAVED, EXT, CPU, TRM, SCAN_YES, -1},
    [A_LN1_RSTD] = {"extractor.ln1_rstd", {AD_B, AD_L}, F, SAVED, EXT, BOTH, TRM, SCAN_YES, -1},
    [A_LN1_XHAT] = {"extractor.ln1_xhat",
        {AD_B, AD_L, AD_D}, F, SAVED, EXT, BOTH, TRM, SCAN_YES, -1},
    [A_H1] = {"extractor.h1 (LayerNorm 1 output)",
        {AD_B, AD_L, AD_D}, F, SAVED, EXT, BOTH, TRM, SCAN_YES, -1},
    [A_FFN_R] = {"extractor.ffn_r = relu(h1 W_ff1^T + b_ff1)",
        {AD_B, AD_L, AD_DFF}, F, SAVED, EXT, BOTH, TRM, SCAN_YES, -1},
    [A_LN2_RSTD] = {"extractor.ln2_rstd", {AD_B, AD_L}, F, SAVED, EXT, BOTH, TRM, SCAN_YES, -1},
    [A_LN2_XHAT] = {"extractor.ln2_xhat",
        {AD_B, AD_L, AD_D}, F, SAVED, EXT, BOTH, TRM, SCAN_YES, -1},
    /* without the transformer the sequence output is x0 itself (the caches point x at x0) */
    [A_X] = {"extractor.x (transformer output)",
        {AD_B, AD_L, AD_D}, F, SAVED, EXT, BOTH, TRM, SCAN_YES, -1},
    [A_T] = {"extractor.t = tanh(x W1^T + b1)",
        {AD_B, AD_L, AD_A}, F, SAVED, EXT, BOTH, ALL, SCAN_YES, -1},
    [A_E] = {"extractor.e (interest scores)",
        {AD_B, AD_L, AD_K}, F, FWD, EXT, BOTH, ALL, SCAN_YES, -1},
    [A_ALPHA] = {"extractor.alpha (interest attention)",
        {AD_B, AD_K, AD_L}, F, SAVED, EXT, BOTH, ALL, SCAN_YES, -1},
    [A_INTERESTS] = {"V (interests)", {AD_B, AD_K, AD_D}, F, SAVED, HEADS, BOTH, ALL, SCAN_YES, -1},
    [A_PRED_X] = {"predictor.x (packed GRU inputs)",
        {AD_T, AD_D}, F, SAVED, PRED, BOTH, FT, SCAN_ROWS, -1},
    [A_PRED_XU] = {"predictor.x (distinct E2 rows)",
        {AD_U, AD_D}, F, SAVED, PRED, CPU, FT, SCAN_TABLE, A_PRED_X},
    [A_PRED_GATES] = {"predictor.gates (r, z, n)",
        {AD_T, AD_3D}, F, SAVED, PRED, BOTH, FT, SCAN_YES, -1},
    [A_PRED_GHN] = {"predictor.ghn", {AD_T, AD_D}, F, SAVED, PRED, BOTH, FT, SCAN_YES, -1},
    [A_PRED_H] = {"predictor.h (GRU states)", {AD_T, AD_D}, F, SAVED, PRED, BOTH, FT, SCAN_YES, -1},
    [A_PRED_G] = {"predictor.g (last GRU state)",
        {AD_B, AD_D}, F, SAVED, PRED, BOTH, FT, SCAN_YES, -1},
    [A_PRED_ACTS] = {"predictor.acts (projection hidden layers)",
        {AD_NP, AD_B, AD_D}, F, SAVED, PRED, BOTH, FT, SCAN_PROJ, -1},
    /* the heads' buffers exist in both stages (the pretrain step leaves the finetune ones be) */
    [A_PRED_INTENT] = {"pred_intent", {AD_B, AD_K}, F, SAVED, HEADS, BOTH, ALL, SCAN_FINETUNE, -1},
    [A_W] = {"w = softmax(pred_intent)",
        {AD_B, AD_K}, F, SAVED, HEADS, BOTH, ALL, SCAN_FINETUNE, -1},
    [A_U] = {"u (user vector)", {AD_B, AD_D}, F, SAVED, HEADS, BOTH, ALL, SCAN_FINETUNE, -1},
    [A_TARGET_INTENT] = {"target_intent", {AD_B, AD_K}, F, FWD, HEADS, BOTH, ALL, SCAN_TARGET, -1},
    [A_SCORES] = {"scores", {AD_B, AD_C}, F, FWD, HEADS, BOTH, ALL, SCAN_YES, -1},
    [A_DSCORES] = {"dscores", {AD_B, AD_C}, F, SCR, HEADS, BOTH, ALL, SCAN_YES, -1},
    [A_DU] = {"du", {AD_B, AD_D}, F, SCR, HEADS, BOTH, ALL, SCAN_FINETUNE, -1},
    [A_DV] = {"dV", {AD_B, AD_K, AD_D}, F, SCR, HEADS, BOTH, ALL, SCAN_YES, -1},
    [A_D_PRED_INTENT] = {"d_pred_intent",
        {AD_B, AD_K}, F, SCR, HEADS, BOTH, ALL, SCAN_FINETUNE, -1},
    [A_PRED_DG] = {"predictor.dg", {AD_B, AD_D}, F, SCR, PRED, BOTH, FT, SCAN_YES, -1},
    [A_PRED_DGI] = {"predictor.dgi", {AD_T, AD_3D}, F, SCR, PRED, BOTH, FT, SCAN_GRU_BWD, -1},
    /* the CPU keeps only d_hn (the r, z blocks equal dgi's); the GPU all three blocks */
    [A_PRED_DGH] = {"predictor.dgh (d_hn)", {AD_T, AD_D}, F, SCR, PRED, CPU, FT, SCAN_GRU_BWD, -1},
    /* W_ih x + b_ih per distinct row in the forward, then dgi summed per distinct row */
    [A_PRED_TAB] = {"predictor.tab (dgi summed per distinct E2 row)",
        {AD_U, AD_3D}, F, SAVED, PRED, CPU, FT, SCAN_GRU_BWD_TABLE, -1},
    [A_PRED_DXU] = {"predictor.dx (distinct E2 rows)",
        {AD_U, AD_D}, F, SCR, PRED, CPU, FT, SCAN_GRU_BWD_TABLE, A_PRED_DX},
    [A_PRED_DX] = {"predictor.dx", {AD_T, AD_D}, F, SCR, PRED, BOTH, FT, SCAN_GRU_BWD_ROWS, -1},
    [A_TMP] = {"extractor.tmp (ctx, then f)",
        {AD_B, AD_L, AD_D}, F, FWD, EXT, BOTH, TRM, SCAN_NO, -1},
    [A_G0] = {"extractor.g0", {AD_B, AD_L, AD_D}, F, SCR, EXT, BOTH, ALL, SCAN_NO, -1},
    [A_G1] = {"extractor.g1", {AD_B, AD_L, AD_D}, F, SCR, EXT, BOTH, TRM, SCAN_NO, -1},
    [A_G2] = {"extractor.g2", {AD_B, AD_L, AD_D}, F, SCR, EXT, BOTH, TRM, SCAN_NO, -1},
    [A_G3] = {"extractor.g3", {AD_B, AD_L, AD_D}, F, SCR, EXT, BOTH, TRM, SCAN_NO, -1},
    [A_GS] = {"extractor.gs (attention score gradients)",
        {AD_B, AD_L, AD_L}, F, SCR, EXT, CPU, TRM, SCAN_NO, -1},
    [A_GE] = {"extractor.ge (interest score gradients)",
        {AD_B, AD_L, AD_K}, F, SCR, EXT, BOTH, ALL, SCAN_NO, -1},
    [A_GT] = {"extractor.gt", {AD_B, AD_L, AD_A}, F, SCR, EXT, BOTH, ALL, SCAN_NO, -1},
    /* the GPU's attention keeps each row's max and 1 / sum instead of the weights */
    [A_ATT_STATS] = {"extractor.att_stats (row max, 1 / sum)",
        {AD_B, AD_L, AD_2}, F, SAVED, EXT, GPU, TRM, SCAN_NO, -1},
    [A_ATT_D] = {"extractor.att_D", {AD_B, AD_L}, F, SCR, EXT, GPU, TRM, SCAN_NO, -1},
    [A_KSTAR] = {"kstar (chosen interest)", {AD_B}, I, SAVED, HEADS, BOTH, ALL, SCAN_NO, -1},
    [A_HEAD_WORK] = {"head_work (candidate rows of E's gradient)",
        {AD_B, AD_C, AD_D}, F, SCR, HEADS, GPU, ALL, SCAN_NO, -1},
    [A_PRED_DH] = {"predictor.dh", {AD_T, AD_D}, F, SCR, PRED, BOTH, FT, SCAN_NO, -1},
    [A_PRED_WORK] = {"predictor.work", {AD_B, AD_3D}, F, SCR, PRED, CPU, FT, SCAN_NO, -1},
    [A_PRED_PWORK] = {"predictor.pwork", {AD_2, AD_B, AD_D}, F, SCR, PRED, BOTH, FT, SCAN_NO, -1},
    [A_PRED_DGH3] = {"predictor.dgh", {AD_T, AD_3D}, F, SCR, PRED, GPU, FT, SCAN_NO, -1},
    [A_PRED_PERM] = {"predictor.perm", {AD_B}, I, SAVED, PRED, CPU, FT, SCAN_NO, -1},
    [A_PRED_BATCH_SIZES] = {"predictor.batch_sizes", {AD_L}, I, SAVED, PRED, CPU, FT, SCAN_NO, -1},
    [A_PRED_STEP_OFF] = {"predictor.step_off", {AD_L1}, I64, SAVED, PRED, BOTH, FT, SCAN_NO, -1},
    [A_PRED_ROW_SLOT] = {"predictor.row_slot", {AD_T}, I, SAVED, PRED, CPU, FT, SCAN_NO, -1},
    [A_PRED_UNIQ] = {"predictor.uniq", {AD_U}, I, SAVED, PRED, CPU, FT, SCAN_NO, -1},
    [A_PRED_SLOT_OF] = {"predictor.slot_of", {AD_N1}, I, SCR, PRED, CPU, FT, SCAN_NO, -1},
    [A_PRED_IDS] = {"predictor.ids (E2 row of each packed row)",
        {AD_T}, I, SAVED, PRED, GPU, FT, SCAN_NO, -1},
    [A_PRED_FINAL_ROW] = {"predictor.final_row", {AD_B}, I, SAVED, PRED, GPU, FT, SCAN_NO, -1},
};
#undef F
#undef I
#undef I64
#undef EXT
#undef PRED
#undef HEADS
#undef CPU
#undef GPU
#undef BOTH
#undef FWD
#undef SAVED
#undef SCR
#undef ALL
#undef TRM
#undef FT

static uint64_t act_mul(uint64_t a, uint64_t b) {
    if (a == UINT64_MAX || b == UINT64_MAX || (a != 0 && b > UINT64_MAX / a)) return UINT64_MAX;
    return a * b;
}

static void act_counts(act_table_t *t) {
    for (int id = 0; id < A_COUNT; id++) {
        uint64_t n = 1;
        for (int k = 0; k < 3; k++)
            if (model_acts[id].dims[k] != AD_NONE) {
                int64_t v = t->sym[model_acts[id].dims[k]];
                n = act_mul(n, v > 0 ? (uint64_t)v : 0);
            }
        t->count[id] = t->present[id] ? n : 0;
    }
}

void model_acts_build(const model_layout_t *lay, int64_t B, int64_t L, int64_t C, act_table_t *t) {
    const model_config_t *cfg = &lay->cfg;
    memset(t, 0, sizeof *t);
    const int64_t d = cfg->emb_size, n1 = (int64_t)cfg->n_items + 1;
    const uint64_t bl = act_mul(B > 0 ? (uint64_t)B : 0, L > 0 ? (uint64_t)L : 0);
    const int64_t T = bl > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)bl;
    t->sym[AD_NONE] = 1;
    t->sym[AD_B] = B;
    t->sym[AD_L] = L;
    t->sym[AD_C] = C;
    t->sym[AD_D] = d;
    t->sym[AD_A] = cfg->attn_size;
    t->sym[AD_K] = cfg->K;
    t->sym[AD_DFF] = d;
    t->sym[AD_3D] = 3 * d;
    t->sym[AD_NP] = lay->n_proj > 1 ? lay->n_proj - 1 : 1;
    t->sym[AD_N1] = n1;
    t->sym[AD_L1] = L + 1;
    t->sym[AD_2] = 2;
    const int finetune = cfg->stage == STAGE_FINETUNE;
    for (int id = 0; id < A_COUNT; id++) {
        const int need = model_acts[id].need;
        t->present[id] = need == ACT_ALWAYS || (need == ACT_TRM && cfg->add_trm) ||
                         (need == ACT_FINETUNE && finetune);
    }
    model_acts_set_rows(t, T, T < n1 ? T : n1);
}

void model_acts_set_rows(act_table_t *t, int64_t T, int64_t U) {
    t->sym[AD_T] = T;
    t->sym[AD_U] = U;
    act_counts(t);
}

const char *model_act_shape(int id, char *out, size_t outlen) {
    static const char *sym_name[AD_COUNT] = {
        [AD_NONE] = "", [AD_B] = "B", [AD_L] = "L", [AD_C] = "C", [AD_D] = "d", [AD_A] = "a",
        [AD_K] = "K", [AD_DFF] = "dff", [AD_3D] = "3d", [AD_T] = "T", [AD_U] = "U",
        [AD_NP] = "n_layers-1", [AD_N1] = "N+1", [AD_L1] = "L+1", [AD_2] = "2"};
    const unsigned char *dm = model_acts[id].dims;
    if (dm[1] == AD_NONE) snprintf(out, outlen, "(%s)", sym_name[dm[0]]);
    else if (dm[2] == AD_NONE) snprintf(out, outlen, "(%s, %s)", sym_name[dm[0]], sym_name[dm[1]]);
    else snprintf(out, outlen, "(%s, %s, %s)", sym_name[dm[0]], sym_name[dm[1]], sym_name[dm[2]]);
    return out;
}

uint64_t model_acts_block(const act_table_t *t, int backend, unsigned groups, size_t real_size,
                          size_t align, uint64_t *off) {
    uint64_t total = 0;
    if (off)
        for (int id = 0; id < A_COUNT; id++) off[id] = UINT64_MAX;
    for (int id = 0; id < A_COUNT; id++) {
        const act_desc_t *a = &model_acts[id];
        if (!t->present[id] || !(a->backends & backend) || !(groups & (1u << a->group)) ||
            a->alias >= 0)
            continue;
        const uint64_t elem = a->type == ACT_F32 ? real_size : a->type == ACT_I32 ? 4 : 8;
        const uint64_t bytes = act_mul(t->count[id], elem);
        if (bytes > UINT64_MAX / 4 || total > UINT64_MAX / 4) return UINT64_MAX; /* no wrap below */
        const uint64_t start = (total + align - 1) / align * align;
        if (off) off[id] = start;
        total = start + bytes;
    }
    return total;
}
