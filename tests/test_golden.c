/* Parity with PyTorch: tests/reference/golden_{pretrain,finetune}.safetensors hold a model
 * written from docs/MODEL.md in PyTorch (tests/reference/timirec_golden.py), its initial weights,
 * three training batches and, per Adam step, the loss, scores, interests, intents, every
 * gradient and every parameter after the step, plus one evaluation batch. The C reference
 * backend (float) must match each within 1e-5 relative to the tensor's largest magnitude.
 * Dropout masks come from the same Philox stream on both sides.
 *
 * PyTorch's own float rounding reaches ~1e-5 on a few small bias gradients (sums over 5,000
 * rows). There the C model's double-precision gradient on the same inputs is the arbiter: a
 * gradient passes if it is within 1e-5 of PyTorch's, or within 1e-5 of the double result while
 * PyTorch's is no closer to it and within 1e-4 (its error is its own rounding, not ours). */
#include "test_util.h"
#include "timirec/checkpoint.h"
#include "timirec/cpu_ops.h"
#include "timirec/model.h"
#include "timirec/safetensors.h"

#include <stdlib.h>

static char err[1024];
static double worst_overall = 0;

static const float *tensor(const st_file_t *f, const char *name, int64_t numel) {
    const st_tensor_t *t = st_find(f, name);
    CHECK(t != NULL, "golden file lacks %s", name);
    if (!t) return NULL;
    CHECK(st_numel(t) == numel, "%s has %lld elements, want %lld", name, (long long)st_numel(t),
          (long long)numel);
    return st_numel(t) == numel ? (const float *)st_data(f, t) : NULL;
}

static const int32_t *itensor(const st_file_t *f, const char *name) {
    const st_tensor_t *t = st_find(f, name);
    CHECK(t && strcmp(t->dtype, "I32") == 0, "golden file lacks I32 %s", name);
    return t ? (const int32_t *)st_data(f, t) : NULL;
}

/* max |got - want| / max |want|, printed; fails above tol (NaN fails). */
static void compare(const char *what, const float *got, const float *want, int64_t n, double tol) {
    if (!want) return;
    double md = 0, mw = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        tu_max_err(&md, d);
        tu_max_err(&mw, fabs(want[i]));
    }
    double rel = mw > 0 ? md / mw : md;
    tu_max_err(&worst_overall, rel);
    int ok = rel <= tol;
    printf("  %-64s rel err %.2e%s\n", what, rel, ok ? "" : "  FAIL");
    CHECK(ok, "%s: relative error %.3g above %.1g", what, rel, tol);
}

/* max |a - b| / max |b| (NaN when any difference is NaN). */
static double rel_err_fd(const float *a, const double *b, int64_t n) {
    double md = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        tu_max_err(&md, d);
        tu_max_err(&mb, fabs(b[i]));
    }
    return mb > 0 ? md / mb : md;
}

/* A gradient against PyTorch's, with the double model as the arbiter (see the top). */
static void compare_grad(const char *what, const float *got, const float *want,
                         const double *exact, int64_t n) {
    if (!want) return;
    double md = 0, mw = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        tu_max_err(&md, d);
        tu_max_err(&mw, fabs(want[i]));
    }
    double rel = mw > 0 ? md / mw : md;
    if (rel <= 1e-5) {
        tu_max_err(&worst_overall, rel);
        printf("  %-64s rel err %.2e\n", what, rel);
        CHECK(rel <= 1e-5, "%s", what);
        return;
    }
    double ours = rel_err_fd(got, exact, n), torch = rel_err_fd(want, exact, n);
    int ok = ours <= 1e-5 && ours <= torch && torch <= 1e-4;
    printf("  %-64s rel err %.2e; against double: ours %.2e, torch %.2e%s\n", what, rel, ours,
           torch, ok ? "" : "  FAIL");
    tu_max_err(&worst_overall, ours);
    CHECK(ok, "%s: relative error %.3g to torch; to the double model ours %.3g, torch %.3g", what,
          rel, ours, torch);
}

static int meta_int(const st_file_t *f, const char *k) {
    const char *v = st_meta(f, k);
    CHECK(v != NULL, "metadata %s missing", k);
    return v ? atoi(v) : 0;
}

static double meta_double(const st_file_t *f, const char *k) {
    const char *v = st_meta(f, k);
    CHECK(v != NULL, "metadata %s missing", k);
    return v ? atof(v) : 0;
}

/* pos[b, l] = length - l for real items, 0 for padding. */
static void positions(const int32_t *hist, const int32_t *length, int B, int L, int32_t *pos) {
    for (int b = 0; b < B; b++)
        for (int l = 0; l < L; l++) pos[b * L + l] = hist[b * L + l] > 0 ? length[b] - l : 0;
}

static void run(const char *path, const char *model_file) {
    st_file_t f;
    if (st_read(path, &f, err, sizeof err)) {
        CHECK(0, "%s", err);
        return;
    }
    printf("%s (made with torch %s)\n", path, st_meta(&f, "torch") ? st_meta(&f, "torch") : "?");
    const char *stage = st_meta(&f, "stage");
    model_config_t cfg = {
        .stage = stage && strcmp(stage, "finetune") == 0 ? STAGE_FINETUNE : STAGE_PRETRAIN,
        .n_items = meta_int(&f, "n_items"), .emb_size = meta_int(&f, "emb_size"),
        .attn_size = meta_int(&f, "attn_size"), .K = meta_int(&f, "K"),
        .history_max = meta_int(&f, "history_max"), .add_pos = meta_int(&f, "add_pos"),
        .add_trm = meta_int(&f, "add_trm"), .n_layers = meta_int(&f, "n_layers"),
        .temp = meta_double(&f, "temp"), .dropout = meta_double(&f, "dropout")};
    CHECK(model_config_check(&cfg, err, sizeof err) == 0, "config: %s", err);
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    int B = meta_int(&f, "B"), L = cfg.history_max, C = 1 + meta_int(&f, "num_neg");
    int eval_C = meta_int(&f, "eval_C"), K = cfg.K, d = cfg.emb_size;
    uint64_t seed = (uint64_t)strtoull(st_meta(&f, "seed") ? st_meta(&f, "seed") : "0", NULL, 10);
    float *params = calloc((size_t)lay.total, sizeof *params);
    float *grads = calloc((size_t)lay.total, sizeof *grads);
    float *m = calloc((size_t)lay.total, sizeof *m), *v = calloc((size_t)lay.total, sizeof *v);
    float *prev = malloc((size_t)lay.total * sizeof *prev);
    double *params_d = malloc((size_t)lay.total * sizeof *params_d);
    double *grads_d = malloc((size_t)lay.total * sizeof *grads_d);
    char name[256];
    for (int t = 0; t < lay.n_tensors; t++) {
        snprintf(name, sizeof name, "init/%s", lay.t[t].name);
        const float *w = tensor(&f, name, lay.t[t].size);
        if (w) memcpy(params + lay.t[t].offset, w, (size_t)lay.t[t].size * sizeof *w);
    }
    adam_t opt;
    adam_init(&opt, meta_double(&f, "lr"), meta_double(&f, "l2"));
    model_ws_t_f ws;
    model_ws_alloc_f(&ws, &lay, B, L, eval_C > C ? eval_C : C);
    model_ws_t_d ws_d;
    model_ws_alloc_d(&ws_d, &lay, B, L, C);
    int32_t *pos = malloc((size_t)B * L * sizeof *pos);
    for (int s = 0; s < 3; s++) {
        char pre[32];
        snprintf(pre, sizeof pre, "step%d/", s);
        snprintf(name, sizeof name, "%shist", pre);
        const int32_t *hist = itensor(&f, name);
        snprintf(name, sizeof name, "%slength", pre);
        const int32_t *length = itensor(&f, name);
        snprintf(name, sizeof name, "%scand", pre);
        const int32_t *cand = itensor(&f, name);
        if (!hist || !length || !cand) break;
        positions(hist, length, B, L, pos);
        model_batch_t batch = {B, L, C, hist, pos, length, cand, 0, 0};
        memset(grads, 0, (size_t)lay.total * sizeof *grads);
        dropout_key_t key = {seed, (uint32_t)s};
        float loss = model_train_step_f(&lay, params, &batch, key, &ws, grads);
        /* The same step in double from the same weights: the arbiter for gradients. */
        for (int64_t i = 0; i < lay.total; i++) params_d[i] = params[i];
        memset(grads_d, 0, (size_t)lay.total * sizeof *grads_d);
        model_train_step_d(&lay, params_d, &batch, key, &ws_d, grads_d);
        snprintf(name, sizeof name, "%sloss", pre);
        compare(name, &loss, tensor(&f, name, 1), 1, 1e-5);
        snprintf(name, sizeof name, "%sscores", pre);
        compare(name, ws.scores, tensor(&f, name, (int64_t)B * C), (int64_t)B * C, 1e-5);
        snprintf(name, sizeof name, "%sV", pre);
        compare(name, ws.V, tensor(&f, name, (int64_t)B * K * d), (int64_t)B * K * d, 1e-5);
        if (cfg.stage == STAGE_FINETUNE) {
            snprintf(name, sizeof name, "%spred_intent", pre);
            compare(name, ws.pred_intent, tensor(&f, name, (int64_t)B * K), (int64_t)B * K, 1e-5);
            snprintf(name, sizeof name, "%starget_intent", pre);
            compare(name, ws.target_intent, tensor(&f, name, (int64_t)B * K), (int64_t)B * K, 1e-5);
        }
        double grad_scale = 0; /* largest golden gradient of the step */
        for (int t = 0; t < lay.n_tensors; t++) {
            snprintf(name, sizeof name, "%sgrad/%s", pre, lay.t[t].name);
            const float *g = tensor(&f, name, lay.t[t].size);
            for (int64_t i = 0; g && i < lay.t[t].size; i++)
                tu_max_err(&grad_scale, fabs(g[i]));
        }
        for (int t = 0; t < lay.n_tensors; t++) {
            snprintf(name, sizeof name, "%sgrad/%s", pre, lay.t[t].name);
            const float *g = tensor(&f, name, lay.t[t].size);
            if (lay.t[t].no_grad) {
                /* Mathematically zero: ours exactly, PyTorch's rounding noise. */
                double ours = 0, theirs = 0;
                for (int64_t i = 0; g && i < lay.t[t].size; i++) {
                    tu_max_err(&ours, fabs(grads[lay.t[t].offset + i]));
                    tu_max_err(&theirs, fabs(g[i]));
                }
                printf("  %-64s zero (ours %.1e, torch's noise %.1e)\n", name, ours, theirs);
                CHECK(ours == 0 && theirs <= 1e-5 * grad_scale, "%s: ours %g torch %g", name,
                      ours, theirs);
                continue;
            }
            compare_grad(name, grads + lay.t[t].offset, g, grads_d + lay.t[t].offset,
                         lay.t[t].size);
        }
        memcpy(prev, params, (size_t)lay.total * sizeof *prev);
        adam_step(&opt, &lay, params, grads, m, v);
        for (int t = 0; t < lay.n_tensors; t++) {
            snprintf(name, sizeof name, "%sparam/%s", pre, lay.t[t].name);
            if (lay.t[t].no_grad) { /* torch moved it on noise; ours stays (biases: no decay) */
                CHECK(memcmp(params + lay.t[t].offset, prev + lay.t[t].offset,
                             (size_t)lay.t[t].size * sizeof *params) == 0,
                      "%s moved without gradient", name);
                const float *w = tensor(&f, name, lay.t[t].size);
                if (w) memcpy(params + lay.t[t].offset, w, (size_t)lay.t[t].size * sizeof *w);
                continue;
            }
            compare(name, params + lay.t[t].offset, tensor(&f, name, lay.t[t].size),
                    lay.t[t].size, 1e-5);
            /* Continue from PyTorch's parameters so one step's error does not compound. */
            const float *w = tensor(&f, name, lay.t[t].size);
            if (w) memcpy(params + lay.t[t].offset, w, (size_t)lay.t[t].size * sizeof *w);
        }
    }
    const int32_t *hist = itensor(&f, "eval/hist"), *length = itensor(&f, "eval/length"),
                  *cand = itensor(&f, "eval/cand");
    if (hist && length && cand) {
        positions(hist, length, B, L, pos);
        model_batch_t batch = {B, L, eval_C, hist, pos, length, cand, 0, 0};
        model_eval_scores_f(&lay, params, &batch, &ws);
        compare("eval/scores", ws.scores, tensor(&f, "eval/scores", (int64_t)B * eval_C),
                (int64_t)B * eval_C, 1e-5);
        /* The trained state_dict as PyTorch exports it, through the checkpoint loader. */
        float *loaded = calloc((size_t)lay.total, sizeof *loaded);
        int n_loaded = 0;
        int lrc = checkpoint_load(model_file, &lay, loaded, 1, &n_loaded, err, sizeof err);
        CHECK(lrc == 0 && n_loaded == lay.n_tensors, "%s: %s", model_file, lrc ? err : "partial");
        if (lrc == 0) {
            model_eval_scores_f(&lay, loaded, &batch, &ws);
            compare("eval/scores from the exported checkpoint", ws.scores,
                    tensor(&f, "eval/scores", (int64_t)B * eval_C), (int64_t)B * eval_C, 1e-5);
        }
        free(loaded);
    }
    model_ws_free_f(&ws);
    model_ws_free_d(&ws_d);
    free(params_d);
    free(grads_d);
    free(pos);
    free(params);
    free(grads);
    free(m);
    free(v);
    free(prev);
    st_free(&f);
}

int main(void) {
    run("tests/reference/golden_pretrain.safetensors",
        "tests/reference/golden_pretrain_model.safetensors");
    run("tests/reference/golden_finetune.safetensors",
        "tests/reference/golden_finetune_model.safetensors");
    printf("largest relative error over every compared tensor: %.2e\n", worst_overall);
    return tu_finish("test_golden");
}
