/* GPU-vs-CPU parity of whole training steps (include/timirec/gpu.h against model_train_step_f,
 * model_eval_scores_f and adam_step):
 *
 * 1. One step on random batches, both stages, at the reference's shapes and at the edges
 *    (K 1 to 64, history up to 512, emb 4 to 256, n_layers 1 to 4, with and without the
 *    transformer and positions): loss, scores, interests, intents, d loss / d V, and every
 *    gradient tensor; a second step on the same batch must give the very same bits (the
 *    backend is deterministic); evaluation scores from the same parameters. Also steps on a
 *    slice of a larger batch (row0, B_all: the means over B_all rows, the dropout masks at
 *    the rows' places), the GPU's slice step against the CPU's.
 * 2. Twenty steps of each stage on a synthetic corpus, batches built as the trainer builds
 *    them (Philox negatives and shuffle, the trainer's dropout key), gpu_train_step +
 *    gpu_adam_step against the CPU step + adam_step from the same initial weights (finetune
 *    from the pretrained extractor): the losses must agree within 1e-4 relative step by step.
 *
 * Tolerances: the single ops hold 1e-5 (test_gpu_ops, test_gpu_heads, _predictor); a whole step
 * chains a dozen of them, so its per-tensor gradients are held to 1e-4 normalised, measured
 * against the larger of the tensor's own norm and 1e-3 of the largest tensor norm (a tensor
 * whose whole gradient is a cancellation residue is judged on the model's scale, as in
 * test_model_shapes); 1e-3 for the one configuration whose recurrence amplifies rounding (emb
 * 256, 200 GRU steps with x5 weights: float and double differ by 2.3e-4 there). The loss of
 * one step: 1e-5 relative.
 * SKIP without CUDA or a GPU (test_emu_model: the host emulation, smaller shapes). */
#include "test_util.h"

#ifndef TIMIREC_CUDA
int main(void) {
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
}
#else
#include "data_util.h"
#include "gpu_test_util.h"
#include "timirec/corpus.h"
#include "timirec/cpu_ops.h"
#include "timirec/gpu.h"
#include "timirec/prepare.h"
#include "timirec/sampler.h"

#define TOL_STEP_LOSS 1e-5
#define TOL_GRAD 1e-4
#define TOL_GRAD_CHAOTIC 1e-3
#define TOL_TRAJECTORY 1e-4

static char lab[256];
#define LABEL(...) (snprintf(lab, sizeof lab, __VA_ARGS__), lab)

static float *fresh(int64_t n) {
    float *x = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!x) exit(1);
    return x;
}

static void check_rel(const char *what, double gpu, double cpu, double tol) {
    double rel = fabs(gpu - cpu) / fmax(fabs(cpu), 1e-30);
    printf("  %-58s gpu %.9g cpu %.9g  rel %.2e\n", what, gpu, cpu, rel);
    CHECK(isfinite(gpu) && rel <= tol, "%s: gpu %.9g cpu %.9g (rel %.3g, tol %.3g)", what, gpu, cpu,
          rel, tol);
}

/* Every gradient tensor: normalised error against max(||cpu||, 1e-3 max_t ||cpu_t||). */
static void compare_grads(const model_layout_t *lay, const float *gpu, const float *cpu,
                          const char *label, double tol) {
    double global = 0;
    for (int t = 0; t < lay->n_tensors; t++) {
        const param_t *p = &lay->t[t];
        double s = 0;
        for (int64_t i = p->offset; i < p->offset + p->size; i++) s += (double)cpu[i] * cpu[i];
        tu_max_err(&global, sqrt(s));
    }
    double worst = 0;
    const char *worst_name = "";
    for (int t = 0; t < lay->n_tensors; t++) {
        const param_t *p = &lay->t[t];
        double diff = 0, ref = 0;
        int64_t bad = 0;
        for (int64_t i = p->offset; i < p->offset + p->size; i++) {
            if (!isfinite(gpu[i])) {
                bad++;
                continue;
            }
            double dl = (double)gpu[i] - cpu[i];
            diff += dl * dl;
            ref += (double)cpu[i] * cpu[i];
        }
        double rel = sqrt(diff) / fmax(sqrt(ref), 1e-3 * global);
        if (ref == 0) rel = sqrt(diff); /* exactly-zero gradients (W2.bias, k bias) stay 0 */
        printf("    grad %-56s err %.2e  (|cpu| %.2e)\n", p->name, rel, sqrt(ref));
        CHECK(bad == 0, "%s: %lld non-finite gradient values in %s", label, (long long)bad, p->name);
        CHECK(rel <= tol, "%s: gradient of %s differs by %.3g (normalised, tol %.3g)", label, p->name,
              rel, tol);
        if (tu_max_err(&worst, rel)) worst_name = p->name;
    }
    printf("  %-58s worst gradient err %.2e (%s)\n", label, worst, worst_name);
    if (tu_max_err(&gt_worst, worst))
        snprintf(gt_worst_label, sizeof gt_worst_label, "%s: gradient of %s", label, worst_name);
}

/* row0, B_all: the batch as a slice of a larger one (model_batch_t; 0, 0: a whole batch). */
static void one_step(const char *label, model_config_t cfg, int B, int L, int C, float scale,
                     double tol_grad, int row0, int B_all) {
    printf("%s: B %d, L %d, C %d, row0 %d, B_all %d\n", label, B, L, C, row0, B_all);
    char err[512];
    if (model_config_check(&cfg, err, sizeof err)) {
        CHECK(0, "%s: %s", label, err);
        return;
    }
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    const int64_t n = lay.total, K = cfg.K, d = cfg.emb_size;
    float *params = fresh(n), *grads = (float *)calloc((size_t)n, sizeof(float)), *gg = fresh(n);
    model_init_params(&lay, 3, params);
    for (int64_t i = 0; i < n; i++) params[i] *= scale; /* non-trivial gradients */
    int32_t *hist = (int32_t *)malloc((size_t)B * L * sizeof(int32_t));
    int32_t *pos = (int32_t *)malloc((size_t)B * L * sizeof(int32_t));
    int32_t *length = (int32_t *)malloc((size_t)B * sizeof(int32_t));
    int32_t *cand = (int32_t *)malloc((size_t)B * C * sizeof(int32_t));
    gt_histories(B, L, cfg.n_items, 17, 0, hist, pos, length);
    for (int64_t i = 0; i < (int64_t)B * C; i++)
        cand[i] = 1 + (int32_t)(rng_u32(5, RNG_TEST, 2, (uint64_t)i, 0) % (uint32_t)(cfg.n_items - 1));
    model_batch_t mb = {B, L, C, hist, pos, length, cand, row0, B_all};
    dropout_key_t key = {11, 4};

    model_ws_t_f ws;
    model_ws_alloc_f(&ws, &lay, B, L, C);
    const float lc = model_train_step_f(&lay, params, &mb, key, &ws, grads);
    gpu_model_t *g = gpu_model_create(&lay, params, B, L, C, err, sizeof err);
    CHECK(g != NULL, "%s: gpu_model_create: %s", label, err);
    if (!g) return;
    const float lg = gpu_train_step(g, &mb, key);
    check_rel("loss of one training step", lg, lc, TOL_STEP_LOSS);
    float *buf = fresh((int64_t)B * (C > L ? C : L) * (K > 1 ? K : 1) * d + n);
    gpu_model_read(g, GPU_T_SCORES, buf);
    gt_compare_host("scores", buf, ws.scores, (int64_t)B * C, 1e-5);
    gpu_model_read(g, GPU_T_DSCORES, buf);
    gt_compare_host("d loss / d scores", buf, ws.dscores, (int64_t)B * C, 1e-5);
    gpu_model_read(g, GPU_T_X, buf);
    gt_compare_host("extractor sequence output x", buf, ws.ext.x, (int64_t)B * L * d, 1e-5);
    gpu_model_read(g, GPU_T_V, buf);
    gt_compare_host("interests V", buf, ws.V, (int64_t)B * K * d, 1e-5);
    gpu_model_read(g, GPU_T_DV, buf);
    gt_compare_host("d loss / d V", buf, ws.dV, (int64_t)B * K * d, tol_grad);
    int ties = 0;
    if (cfg.stage == STAGE_PRETRAIN) {
        /* the GPU's kstar must be its own interests' argmax up to rounding (its V matches the
         * CPU's within the tolerance checked above) */
        int32_t *ks = (int32_t *)malloc((size_t)B * sizeof(int32_t));
        float *Vg = fresh((int64_t)B * K * d);
        gpu_model_read(g, GPU_T_KSTAR, ks);
        gpu_model_read(g, GPU_T_V, Vg);
        ties = gt_kstar_check("argmax interests kstar", ks, ws.kstar, Vg,
                              params + model_offset(&lay, P_EXT_ITEM_EMB), cand, B, C, K, d);
        free(ks);
        free(Vg);
    } else {
        gpu_model_read(g, GPU_T_PRED_INTENT, buf);
        gt_compare_host("pred_intent (dropout in training)", buf, ws.pred_intent, (int64_t)B * K, 1e-5);
        gpu_model_read(g, GPU_T_TARGET_INTENT, buf);
        gt_compare_host("target_intent", buf, ws.target_intent, (int64_t)B * K, 1e-5);
    }
    gpu_model_read(g, GPU_T_GRADS, gg);
    if (ties) printf("  %d argmax rows took the other interest: gradients not compared\n", ties);
    else compare_grads(&lay, gg, grads, label, tol_grad);
    /* Determinism: the same step again gives the same bits. */
    const float lg2 = gpu_train_step(g, &mb, key);
    gpu_model_read(g, GPU_T_GRADS, buf);
    const int same = lg2 == lg && memcmp(buf, gg, (size_t)n * sizeof(float)) == 0;
    printf("  %-58s %s\n", "second run of the same step", same ? "bit-identical" : "DIFFERS");
    CHECK(same, "%s: a second run of the same step differs (loss %.9g vs %.9g)", label, lg2, lg);
    /* Evaluation from the same parameters. */
    model_eval_scores_f(&lay, params, &mb, &ws);
    gpu_eval_scores(g, &mb, buf);
    gt_compare_host("evaluation scores", buf, ws.scores, (int64_t)B * C, 1e-5);
    gpu_model_free(g);
    model_ws_free_f(&ws);
    free(params), free(grads), free(gg), free(hist), free(pos), free(length), free(cand), free(buf);
}

/* ---- twenty steps per stage on a synthetic corpus ----------------------------------------- */

typedef struct {
    model_layout_t lay;
    float *params, *grads, *m, *v;
    adam_t adam;
    model_ws_t_f ws;
} cpu_model_t;

static void cpu_model_init(cpu_model_t *c, const model_config_t *cfg, const float *params, int B,
                           int L, int C, double lr, double l2) {
    model_layout_build(cfg, &c->lay);
    const size_t n = (size_t)c->lay.total;
    c->params = fresh((int64_t)n);
    memcpy(c->params, params, n * sizeof(float));
    c->grads = (float *)calloc(n, sizeof(float));
    c->m = (float *)calloc(n, sizeof(float));
    c->v = (float *)calloc(n, sizeof(float));
    adam_init(&c->adam, lr, l2);
    model_ws_alloc_f(&c->ws, &c->lay, B, L, C);
}

static void cpu_model_free(cpu_model_t *c) {
    free(c->params), free(c->grads), free(c->m), free(c->v);
    model_ws_free_f(&c->ws);
}

/* n_steps steps from the same weights; returns the CPU's trained parameters (caller frees). */
static float *trajectory(const char *stage_name, const corpus_t *corp, const model_config_t *cfg,
                         const float *init, int B, int history_max, int n_steps) {
    printf("%s: %d training steps of batch %d on the synthetic corpus\n", stage_name, n_steps, B);
    const int num_neg = 1, C = 1 + num_neg;
    const uint64_t seed = 2024;
    const int L = sampler_max_history(corp, history_max);
    cpu_model_t cpu;
    cpu_model_init(&cpu, cfg, init, B, L, C, 1e-3, 1e-6);
    char err[512];
    gpu_model_t *g = gpu_model_create(&cpu.lay, init, B, L, C, err, sizeof err);
    CHECK(g != NULL, "gpu_model_create: %s", err);
    if (!g) return NULL;
    adam_t gpu_adam;
    adam_init(&gpu_adam, 1e-3, 1e-6);
    batch_t batch;
    batch_alloc(&batch, B, L, C);
    const int64_t n_inst = corp->phase[PHASE_TRAIN].n_inst;
    int32_t *neg = (int32_t *)malloc((size_t)(n_inst * num_neg + 1) * sizeof(int32_t));
    int64_t *order = (int64_t *)malloc((size_t)(n_inst + 1) * sizeof(int64_t));
    int step = 0;
    double worst = 0;
    for (uint32_t epoch = 0; step < n_steps; epoch++) {
        CHECK(sampler_train_negatives(corp, seed, epoch, num_neg, neg, err, sizeof err) == 0, "%s", err);
        sampler_shuffle(n_inst, seed, epoch, order);
        for (int64_t s = 0; s < n_inst && step < n_steps; s += B, step++) {
            const int b = (int)(n_inst - s < B ? n_inst - s : B);
            batch_fill(&batch, corp, PHASE_TRAIN, order + s, b, history_max, neg, num_neg, 0);
            model_batch_t mb = {batch.B, batch.L, batch.C, batch.hist, batch.pos, batch.length,
                                batch.cand, 0, 0};
            dropout_key_t key = {seed, (uint32_t)step};
            memset(cpu.grads, 0, (size_t)cpu.lay.total * sizeof(float));
            const float lc = model_train_step_f(&cpu.lay, cpu.params, &mb, key, &cpu.ws, cpu.grads);
            adam_step(&cpu.adam, &cpu.lay, cpu.params, cpu.grads, cpu.m, cpu.v);
            const float lg = gpu_train_step(g, &mb, key);
            gpu_adam_step(g, &gpu_adam);
            const double rel = fabs((double)lg - lc) / fmax(fabs((double)lc), 1e-30);
            printf("  step %2d  batch %3d x %2d  loss gpu %.7f cpu %.7f  rel %.2e\n", step, b,
                   batch.L, lg, lc, rel);
            CHECK(isfinite(lg) && rel <= TOL_TRAJECTORY, "%s step %d: loss gpu %.9g cpu %.9g",
                  stage_name, step, lg, lc);
            tu_max_err(&worst, rel);
        }
    }
    printf("  %s: worst loss difference over %d steps %.2e\n", stage_name, n_steps, worst);
    if (tu_max_err(&gt_worst, worst))
        snprintf(gt_worst_label, sizeof gt_worst_label, "%s trajectory loss", stage_name);
    /* Where the parameters went (printed: Adam divides by sqrt(v), so elements with gradients
     * near rounding level move by up to lr on one side and not the other). */
    float *gp = fresh(cpu.lay.total);
    gpu_model_download_params(g, gp);
    double diff = 0, ref = 0;
    for (int64_t i = 0; i < cpu.lay.total; i++) {
        double dl = (double)gp[i] - cpu.params[i];
        diff += dl * dl;
        ref += (double)cpu.params[i] * cpu.params[i];
    }
    printf("  %s: parameters after %d steps differ by %.2e (normalised)\n", stage_name, n_steps,
           sqrt(diff / ref));
    CHECK(isfinite(diff), "%s: non-finite parameters on the GPU", stage_name);
    /* Evaluation on the dev set's first rows from the CPU's parameters. */
    gpu_model_upload_params(g, cpu.params);
    const corpus_phase_t *dev = &corp->phase[PHASE_DEV];
    const int eb = (int)(dev->n_inst < B ? dev->n_inst : B), eC = 1 + dev->n_neg;
    if (eb > 0 && eC <= C) {
        int64_t *idx = (int64_t *)malloc((size_t)eb * sizeof(int64_t));
        for (int i = 0; i < eb; i++) idx[i] = i;
        batch_fill(&batch, corp, PHASE_DEV, idx, eb, history_max, NULL, 0, 0);
        model_batch_t mb = {batch.B, batch.L, batch.C, batch.hist, batch.pos, batch.length,
                            batch.cand, 0, 0};
        model_eval_scores_f(&cpu.lay, cpu.params, &mb, &cpu.ws);
        float *sc = fresh((int64_t)eb * eC);
        gpu_eval_scores(g, &mb, sc);
        gt_compare_host(LABEL("%s: dev evaluation scores, same parameters", stage_name), sc,
                        cpu.ws.scores, (int64_t)eb * eC, 1e-5);
        free(sc), free(idx);
    }
    float *trained = fresh(cpu.lay.total);
    memcpy(trained, cpu.params, (size_t)cpu.lay.total * sizeof(float));
    gpu_model_free(g);
    batch_free(&batch);
    free(neg), free(order), free(gp);
    cpu_model_free(&cpu);
    return trained;
}

static void trajectories(int emu) {
    const char *dir = du_tempdir("gpu_model");
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/synth", dir);
    synth_opts_t so;
    synth_defaults(&so);
    so.n_users = emu ? 120 : 1000;
    so.n_items = emu ? 80 : 500;
    so.seed = 7;
    interactions_t x;
    CHECK(synth_generate(&so, &x, err, sizeof err) == 0, "synth: %s", err);
    /* dev/test with one negative each: evaluation batches fit the training workspace (C 2). */
    CHECK(prepare_write(&x, path, 1, 7, err, sizeof err) == 0, "prepare: %s", err);
    interactions_free(&x);
    corpus_t corp;
    corpus_opts_t co = {.path = dir, .dataset = "synth", .sep = '\t'};
    if (corpus_load(&co, &corp, err, sizeof err)) {
        CHECK(0, "corpus: %s", err);
        du_rm_rf(dir);
        return;
    }
    const int B = emu ? 32 : 256, history_max = 20, n_steps = 20;
    model_config_t cfg = {.stage = STAGE_PRETRAIN, .n_items = corp.n_items,
                          .emb_size = emu ? 16 : 64, .attn_size = 8, .K = 2,
                          .history_max = history_max, .add_pos = 1, .add_trm = 1, .n_layers = 1,
                          .temp = 1, .dropout = 0.5};
    model_layout_t pre_lay, fine_lay;
    model_layout_build(&cfg, &pre_lay);
    float *init = fresh(pre_lay.total);
    model_init_params(&pre_lay, 2024, init);
    float *pre = trajectory("pretrain", &corp, &cfg, init, B, history_max, n_steps);
    model_config_t fcfg = cfg;
    fcfg.stage = STAGE_FINETUNE;
    fcfg.n_layers = 2;
    fcfg.temp = 0.5;
    model_layout_build(&fcfg, &fine_lay);
    float *finit = fresh(fine_lay.total);
    model_init_params(&fine_lay, 2024, finit);
    if (pre) model_copy_shared(&fine_lay, finit, &pre_lay, pre); /* the pretrained extractor */
    float *fine = trajectory("finetune", &corp, &fcfg, finit, B, history_max, n_steps);
    free(init), free(pre), free(finit), free(fine);
    corpus_free(&corp);
    du_rm_rf(dir);
}

int main(void) {
    gpu_ctx_t *probe = gt_start("test_gpu_model");
    gpu_ctx_free(probe);
    /* Small shapes in the emulation (TMR_EMU_FULL=1: the GPU's) and when asked
     * (TMR_SMALL_SHAPES=1, e.g. under compute-sanitizer). */
    const int emu = (gpu_is_emulated() && !getenv("TMR_EMU_FULL")) || getenv("TMR_SMALL_SHAPES");
    model_config_t ref = {.stage = STAGE_PRETRAIN, .n_items = 500, .emb_size = 64, .attn_size = 8,
                          .K = 2, .history_max = 20, .add_pos = 1, .add_trm = 1, .n_layers = 1,
                          .temp = 1, .dropout = 0.5};
    model_config_t fine = ref;
    fine.stage = STAGE_FINETUNE;
    fine.n_layers = 2;
    fine.temp = 0.5;
    if (emu) {
        model_config_t c = ref;
        c.emb_size = 16;
        one_step("pretrain, emb 16, K 2", c, 24, 20, 2, 5, TOL_GRAD, 0, 0);
        c = fine;
        c.emb_size = 16;
        one_step("finetune, emb 16, K 2, n_layers 2", c, 24, 20, 2, 5, TOL_GRAD, 0, 0);
        c.K = 7;
        c.n_layers = 3;
        c.history_max = 40;
        one_step("finetune, emb 16, K 7, n_layers 3, history 40", c, 5, 40, 4, 5, TOL_GRAD, 0, 0);
        c.add_trm = 0;
        c.add_pos = 0;
        c.K = 1;
        c.emb_size = 4;
        c.attn_size = 1;
        c.n_layers = 1;
        one_step("finetune, K 1, emb 4, attn 1, no transformer/positions", c, 5, 40, 11, 5, TOL_GRAD, 0, 0);
        c = ref;
        c.emb_size = 16;
        c.K = 64;
        c.history_max = 64;
        one_step("pretrain, K 64, history 64", c, 3, 64, 4, 5, TOL_GRAD, 0, 0);
        /* Slices of a larger batch: the means divide by B_all, the dropout draws at rows
         * row0 + b (test_batch_slice checks the CPU's slices against the whole batch). */
        c = ref;
        c.emb_size = 16;
        one_step("pretrain, a slice: rows 7 .. 26 of 61", c, 20, 20, 2, 5, TOL_GRAD, 7, 61);
        c = fine;
        c.emb_size = 16;
        c.n_layers = 3; /* two hidden layers: the mask index's B_all matters from layer 1 */
        one_step("finetune, n_layers 3, a slice: rows 7 .. 26 of 61", c, 20, 20, 2, 5, TOL_GRAD,
                 7, 61);
    } else {
        one_step("pretrain at the reference's shapes", ref, 256, 20, 2, 5, TOL_GRAD, 0, 0);
        one_step("finetune at the reference's shapes", fine, 256, 20, 2, 5, TOL_GRAD, 0, 0);
        one_step("pretrain, a slice: rows 100 .. 227 of 256", ref, 128, 20, 2, 5, TOL_GRAD, 100,
                 256);
        model_config_t f3 = fine;
        f3.n_layers = 3;
        one_step("finetune, n_layers 3, a slice: rows 100 .. 227 of 256", f3, 128, 20, 2, 5,
                 TOL_GRAD, 100, 256);
        model_config_t c = ref;
        c.K = 64;
        c.history_max = 512;
        one_step("pretrain, K 64, history 512", c, 3, 512, 4, 5, TOL_GRAD, 0, 0);
        c = fine;
        c.K = 64;
        c.history_max = 512;
        c.n_layers = 4;
        c.temp = 0.3;
        one_step("finetune, K 64, history 512, n_layers 4", c, 3, 512, 4, 5, TOL_GRAD, 0, 0);
        c.emb_size = 256;
        c.attn_size = 32;
        c.K = 16;
        c.history_max = 200;
        /* The x5 weights make this GRU (emb 256, 200 steps) amplify rounding: float and double
         * differ by 2.3e-4 here (test_model_shapes), so two float orders may too. */
        one_step("finetune, K 16, history 200, emb 256, attn 32", c, 4, 200, 3, 5, TOL_GRAD_CHAOTIC, 0, 0);
        c.add_trm = 0;
        c.add_pos = 0;
        c.K = 1;
        c.emb_size = 4;
        c.attn_size = 1;
        c.n_layers = 1;
        one_step("finetune, K 1, emb 4, attn 1, no transformer/positions", c, 5, 512, 101, 5, TOL_GRAD, 0, 0);
    }
    trajectories(emu);
    return gt_finish("test_gpu_model");
}
#endif
