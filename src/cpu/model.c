/* The parameter table, initialisation and Adam (SPEC.md section 6). */
#include "timirec/model.h"

#include "timirec/common.h"
#include "timirec/math_hd.h"
#include "timirec/rng.h"

#include <math.h>
#include <stdio.h>
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

void adam_step(adam_t *opt, const model_layout_t *lay, float *params, const float *grads,
               float *m, float *v) {
    opt->step++;
    /* Scalars as PyTorch forms them (in double, then used as floats); the element update is
     * math_hd.h's, which the CUDA kernel runs too. */
    const adam_scalars_t s =
        tmr_adam_scalars(opt->lr, opt->beta1, opt->beta2, opt->eps, opt->l2, opt->step);
    /* One parallel region for the whole table: every tensor's elements are split between the
     * threads (elementwise, so no order to keep; nowait: tensors are disjoint). */
#pragma omp parallel if (lay->total > 65536)
    for (int t = 0; t < lay->n_tensors; t++) {
        const param_t *p = &lay->t[t];
        const float decay = p->decay ? s.l2 : 0.0f;
        float *x = params + p->offset, *mt = m + p->offset, *vt = v + p->offset;
        const float *gt = grads + p->offset;
#pragma omp for schedule(static) nowait
        for (int64_t i = 0; i < p->size; i++)
            x[i] = tmr_adam_elem(&s, decay, gt[i], x[i], &mt[i], &vt[i]);
    }
}
