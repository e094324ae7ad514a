/* The parameter table (names, shapes, order, decay flags, the reference's parameter count), the
 * initialisation statistics and Adam against the PyTorch formula computed in double. */
#include "test_util.h"
#include "timirec/model.h"
#include "timirec/rng.h"

#include <stdint.h>

static model_config_t ml1m_finetune(void) {
    model_config_t c = {.stage = STAGE_FINETUNE, .n_items = 3707, .emb_size = 64, .attn_size = 8,
                        .K = 2, .history_max = 20, .add_pos = 1, .add_trm = 1, .n_layers = 2,
                        .temp = 0.5, .dropout = 0.5};
    return c;
}

static void test_table(void) {
    model_config_t c = ml1m_finetune();
    char err[256];
    CHECK(model_config_check(&c, err, sizeof err) == 0, "%s", err);
    model_layout_t lay;
    model_layout_build(&c, &lay);
    CHECK(lay.total == 526748, "#params %lld, the reference has 526,748", (long long)lay.total);
    /* The reference's state_dict order. */
    const char *want[] = {
        "interest_extractor.i_embeddings.weight",
        "interest_extractor.p_embeddings.weight",
        "interest_extractor.W1.weight",
        "interest_extractor.W1.bias",
        "interest_extractor.W2.weight",
        "interest_extractor.W2.bias",
        "interest_extractor.transformer.masked_attn_head.q_linear.weight",
        "interest_extractor.transformer.masked_attn_head.q_linear.bias",
        "interest_extractor.transformer.masked_attn_head.k_linear.weight",
        "interest_extractor.transformer.masked_attn_head.k_linear.bias",
        "interest_extractor.transformer.masked_attn_head.v_linear.weight",
        "interest_extractor.transformer.masked_attn_head.v_linear.bias",
        "interest_extractor.transformer.layer_norm1.weight",
        "interest_extractor.transformer.layer_norm1.bias",
        "interest_extractor.transformer.linear1.weight",
        "interest_extractor.transformer.linear1.bias",
        "interest_extractor.transformer.linear2.weight",
        "interest_extractor.transformer.linear2.bias",
        "interest_extractor.transformer.layer_norm2.weight",
        "interest_extractor.transformer.layer_norm2.bias",
        "interest_predictor.i_embeddings.weight",
        "interest_predictor.rnn.weight_ih_l0",
        "interest_predictor.rnn.weight_hh_l0",
        "interest_predictor.rnn.bias_ih_l0",
        "interest_predictor.rnn.bias_hh_l0",
        "proj.proj_0.weight",
        "proj.proj_0.bias",
        "proj.proj_final.weight",
        "proj.proj_final.bias",
    };
    int n = (int)(sizeof want / sizeof want[0]);
    CHECK(lay.n_tensors == n, "%d tensors, want %d", lay.n_tensors, n);
    for (int i = 0; i < n && i < lay.n_tensors; i++)
        CHECK(strcmp(lay.t[i].name, want[i]) == 0, "tensor %d is %s, want %s", i, lay.t[i].name,
              want[i]);
    /* Decay: every name without "bias". LayerNorm gammas decay, betas do not. */
    for (int i = 0; i < lay.n_tensors; i++)
        CHECK(lay.t[i].decay == (strstr(lay.t[i].name, "bias") == NULL), "decay flag of %s",
              lay.t[i].name);
    /* Contiguous, in order. */
    int64_t off = 0;
    for (int i = 0; i < lay.n_tensors; i++) {
        CHECK(lay.t[i].offset == off, "offset of %s", lay.t[i].name);
        off += lay.t[i].size;
    }
    CHECK(lay.t[lay.id[P_PRED_ITEM_EMB]].rows == 3708, "predictor table has N+1 rows");
    CHECK(lay.t[lay.id[P_EXT_POS_EMB]].rows == 21, "position table has history_max+1 rows");
    CHECK(lay.n_proj == 2 && lay.t[lay.proj_w[1]].rows == 2, "projection layers");

    /* Pretrain: the extractor only. Without transformer and positions: fewer tensors. */
    c.stage = STAGE_PRETRAIN;
    model_layout_build(&c, &lay);
    CHECK(lay.total == 260186, "pretrain #params %lld", (long long)lay.total);
    CHECK(!model_has(&lay, P_GRU_W_IH) && lay.n_proj == 0, "pretrain has no predictor");
    c.add_pos = 0;
    c.add_trm = 0;
    model_layout_build(&c, &lay);
    CHECK(lay.total == 3707 * 64 + 8 * 64 + 8 + 2 * 8 + 2, "bare extractor #params %lld",
          (long long)lay.total);
    CHECK(!model_has(&lay, P_EXT_POS_EMB) && !model_has(&lay, P_TRM_WQ), "absent tensors");

    /* Bad configurations name the setting. */
    c = ml1m_finetune();
    c.K = 65;
    CHECK(model_config_check(&c, err, sizeof err) != 0 && strstr(err, "K 65"), "K range: %s", err);
    c = ml1m_finetune();
    c.emb_size = 66;
    CHECK(model_config_check(&c, err, sizeof err) != 0 && strstr(err, "emb_size"), "emb: %s", err);
    c = ml1m_finetune();
    c.history_max = 513;
    CHECK(model_config_check(&c, err, sizeof err) != 0 && strstr(err, "history_max"), "%s", err);
}

static void test_init(void) {
    model_config_t c = ml1m_finetune();
    model_layout_t lay;
    model_layout_build(&c, &lay);
    float *p = malloc((size_t)lay.total * sizeof *p), *q = malloc((size_t)lay.total * sizeof *q);
    model_init_params(&lay, 0, p);
    model_init_params(&lay, 0, q);
    CHECK(memcmp(p, q, (size_t)lay.total * sizeof *p) == 0, "init is deterministic");
    model_init_params(&lay, 1, q);
    CHECK(memcmp(p, q, (size_t)lay.total * sizeof *p) != 0, "another seed, other weights");
    for (int t = 0; t < lay.n_tensors; t++) {
        const param_t *pt = &lay.t[t];
        const float *x = p + pt->offset;
        double mean = 0, sq = 0, mx = 0;
        for (int64_t i = 0; i < pt->size; i++) {
            mean += x[i];
            sq += (double)x[i] * x[i];
            tu_max_err(&mx, fabs(x[i]));
        }
        mean /= (double)pt->size;
        double sd = sqrt(sq / (double)pt->size - mean * mean);
        switch (pt->init) {
        case INIT_ONES: CHECK(mean == 1.0 && sd == 0.0, "%s: ones", pt->name); break;
        case INIT_ZEROS: CHECK(mx == 0.0, "%s: zeros", pt->name); break;
        case INIT_NORMAL_001:
            if (pt->size >= 1000) {
                CHECK(fabs(sd - 0.01) < 0.0015, "%s: sd %.5f, want 0.01", pt->name, sd);
                CHECK(fabs(mean) < 0.002, "%s: mean %.5f", pt->name, mean);
            }
            CHECK(mx < 0.07, "%s: |x| up to %.4f for Normal(0, 0.01)", pt->name, mx);
            break;
        case INIT_GRU_UNIFORM: {
            double k = 1.0 / 8.0; /* 1/sqrt(64) */
            CHECK(mx <= k, "%s: beyond the uniform bound", pt->name);
            if (pt->size >= 1000)
                CHECK(fabs(sd - k / sqrt(3.0)) < 0.005, "%s: sd %.4f want %.4f", pt->name, sd,
                      k / sqrt(3.0));
            break;
        }
        }
    }
    free(p);
    free(q);
}

/* Adam: five steps on a small model against the PyTorch formula in double. */
static void test_adam(void) {
    model_config_t c = {.stage = STAGE_FINETUNE, .n_items = 7, .emb_size = 4, .attn_size = 3,
                        .K = 2, .history_max = 3, .add_pos = 1, .add_trm = 1, .n_layers = 2,
                        .temp = 1, .dropout = 0.5};
    model_layout_t lay;
    model_layout_build(&c, &lay);
    int64_t n = lay.total;
    float *p = malloc((size_t)n * sizeof *p), *g = malloc((size_t)n * sizeof *g);
    float *m = calloc((size_t)n, sizeof *m), *v = calloc((size_t)n, sizeof *v);
    double *pd = malloc((size_t)n * sizeof *pd), *md = calloc((size_t)n, sizeof *md),
           *vd = calloc((size_t)n, sizeof *vd);
    for (int64_t i = 0; i < n; i++) {
        p[i] = rng_uniform01(rng_u32(5, RNG_TEST, 0, (uint64_t)i, 0)) - 0.5f;
        pd[i] = p[i];
    }
    adam_t opt;
    adam_init(&opt, 1e-3, 1e-2);
    double worst = 0;
    for (int step = 1; step <= 5; step++) {
        for (int64_t i = 0; i < n; i++)
            g[i] = (rng_uniform01(rng_u32(5, RNG_TEST, (uint32_t)step, (uint64_t)i, 0)) - 0.5f) *
                   (float)(i % 3); /* some zero gradients: untouched rows still move */
        adam_step(&opt, &lay, p, g, m, v);
        for (int t = 0; t < lay.n_tensors; t++) {
            const param_t *pt = &lay.t[t];
            for (int64_t i = pt->offset; i < pt->offset + pt->size; i++) {
                double gd = g[i] + (pt->decay ? 1e-2 * pd[i] : 0.0);
                md[i] = 0.9 * md[i] + 0.1 * gd;
                vd[i] = 0.999 * vd[i] + 0.001 * gd * gd;
                double mhat = md[i] / (1 - pow(0.9, step)), vhat = vd[i] / (1 - pow(0.999, step));
                pd[i] -= 1e-3 * mhat / (sqrt(vhat) + 1e-8);
            }
        }
        for (int64_t i = 0; i < n; i++) {
            double diff = fabs(p[i] - pd[i]);
            tu_max_err(&worst, diff);
        }
    }
    CHECK(opt.step == 5, "step count");
    /* float vs double over five steps of size ~1e-3: agreement to a few float ulps of |p|<0.5 */
    CHECK(worst <= 2e-7, "Adam differs from the double-precision formula by %.3g", worst);
    /* Bias tensors got no decay: with zero gradient and zero moments they stay put. */
    memset(g, 0, (size_t)n * sizeof *g);
    memset(m, 0, (size_t)n * sizeof *m);
    memset(v, 0, (size_t)n * sizeof *v);
    float *before = malloc((size_t)n * sizeof *before);
    memcpy(before, p, (size_t)n * sizeof *p);
    adam_step(&opt, &lay, p, g, m, v);
    int moved_bias = 0, still_weight = 0;
    for (int t = 0; t < lay.n_tensors; t++) {
        const param_t *pt = &lay.t[t];
        for (int64_t i = pt->offset; i < pt->offset + pt->size; i++) {
            if (!pt->decay && p[i] != before[i]) moved_bias++;
            if (pt->decay && before[i] != 0 && p[i] == before[i]) still_weight++;
        }
    }
    CHECK(moved_bias == 0, "%d bias elements moved without gradient", moved_bias);
    CHECK(still_weight == 0, "%d decayed elements did not move under l2", still_weight);
    free(before);
    free(p);
    free(g);
    free(m);
    free(v);
    free(pd);
    free(md);
    free(vd);
}

/* The activation table: presence by configuration, sizes from the symbols, shapes as text,
 * and the block layout (aligned, disjoint, in table order). */
static void test_acts(void) {
    model_config_t c = ml1m_finetune();
    model_layout_t lay;
    model_layout_build(&c, &lay);
    act_table_t t;
    model_acts_build(&lay, 5, 7, 3, &t);
    const int64_t d = c.emb_size;
    CHECK(t.present[A_Q] == c.add_trm && t.present[A_PRED_GATES], "finetune with the transformer");
    CHECK(t.count[A_X0] == (uint64_t)(5 * 7 * d), "x0 count %llu",
          (unsigned long long)t.count[A_X0]);
    CHECK(t.count[A_PRED_GATES] == (uint64_t)(5 * 7 * 3 * d), "gates (T, 3d) at capacity T = B L");
    CHECK(t.count[A_PRED_TAB] == (uint64_t)(5 * 7 * 3 * d), "tab (U, 3d), U = min(B L, N + 1)");
    CHECK(t.count[A_PRED_ACTS] == (uint64_t)((c.n_layers - 1) * 5 * d), "acts (n_layers-1, B, d)");
    CHECK(t.count[A_PRED_SLOT_OF] == (uint64_t)c.n_items + 1, "slot_of (N+1)");
    CHECK(t.count[A_SCORES] == 15 && t.count[A_KSTAR] == 5, "heads (B, C), (B)");
    model_acts_set_rows(&t, 11, 4);
    CHECK(t.count[A_PRED_GATES] == (uint64_t)(11 * 3 * d) &&
              t.count[A_PRED_XU] == (uint64_t)(4 * d),
          "T and U of a step");
    char sh[40];
    CHECK(strcmp(model_act_shape(A_PRED_ACTS, sh, sizeof sh), "(n_layers-1, B, d)") == 0, "%s", sh);
    CHECK(strcmp(model_act_shape(A_LN1_RSTD, sh, sizeof sh), "(B, L)") == 0, "%s", sh);
    CHECK(strcmp(model_act_shape(A_KSTAR, sh, sizeof sh), "(B)") == 0, "%s", sh);
    for (int backend = ACT_CPU; backend <= ACT_GPU; backend++)
        for (int g = ACT_EXTRACTOR; g <= ACT_HEADS; g++) {
            uint64_t off[A_COUNT], end = 0;
            const uint64_t total = model_acts_block(&t, backend, 1u << g, 8, 256, off);
            for (int id = 0; id < A_COUNT; id++) {
                const act_desc_t *a = &model_acts[id];
                const int in = t.present[id] && (a->backends & backend) && a->group == g &&
                               a->alias < 0;
                CHECK(in == (off[id] != UINT64_MAX), "%s: in block %d", a->name, in);
                if (!in) continue;
                CHECK(off[id] % 256 == 0 && off[id] >= end, "%s: offset %llu after %llu", a->name,
                      (unsigned long long)off[id], (unsigned long long)end);
                end = off[id] + t.count[id] * (a->type == ACT_I32 ? 4 : 8);
            }
            CHECK(total == end, "block of group %d: %llu bytes, entries end at %llu", g,
                  (unsigned long long)total, (unsigned long long)end);
        }
    c.stage = STAGE_PRETRAIN;
    c.add_trm = 0;
    model_layout_build(&c, &lay);
    model_acts_build(&lay, 5, 7, 3, &t);
    CHECK(!t.present[A_Q] && !t.present[A_PRED_X] && t.count[A_PRED_X] == 0 && t.present[A_DV],
          "pretrain without the transformer");
    CHECK(model_acts_block(&t, ACT_CPU, 1u << ACT_PREDICTOR, 4, 64, NULL) == 0, "no predictor");
}

int main(void) {
    test_table();
    test_acts();
    test_init();
    test_adam();
    return tu_finish("test_model_layout");
}
