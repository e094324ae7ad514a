/* Batch slices (docs/MODEL.md, "Batch slices (data-parallel ranks)"): a batch split into
 * slices, each run by model_train_step_f on its own rows with row0 / B_all set, must give the
 * whole batch's step in sum. For both stages (finetune with n_layers 2 and 3: one and two
 * hidden projection layers, dropout 0.5; with two, the mask index's B matters too), random
 * parameters and a random batch of 37 rows split into 2 and into 3 uneven slices:
 *  (a) the slices' losses sum to the whole batch's loss (within TOL_LOSS relative);
 *  (b) their gradients, every tensor, sum to the whole batch's (within TOL_GRAD of the
 *      tensor's largest whole-batch gradient);
 *  (c) the dropout masks of each slice, read from the workspace (the projection's hidden
 *      outputs: the hidden layers' weights are made small and their biases 1, so every
 *      pre-activation is positive and an output is 0 exactly where the mask dropped it), are
 *      the whole batch's rows row0 .. row0 + B - 1 bit for bit;
 *  (d) B_all = B, row0 = 0 gives the same bits as B_all = 0 (loss, gradients, scores, masks).
 * The sums differ from the whole batch only by rounding: the slices' products are blocked
 * differently, the GRU's inputs may take the other path (distinct rows or all rows) and the
 * float losses and gradients are added afterwards. */
#include "test_util.h"
#include "timirec/cpu_ops.h"
#include "timirec/model.h"
#include "timirec/rng.h"

enum { B = 37, L = 9, C = 5, N = 300 };
#define TOL_LOSS 2e-6 /* relative to the whole batch's loss: a few float roundings */
#define TOL_GRAD 2e-5 /* relative to the tensor's largest whole-batch gradient */

typedef struct {
    int32_t hist[B * L], pos[B * L], length[B], cand[B * C];
} rows_t;

/* A random batch: lengths 1..L, items 1..N-1, positions length - l, C candidates. */
static void random_batch(rows_t *r) {
    memset(r, 0, sizeof *r);
    for (int b = 0; b < B; b++) {
        r->length[b] = 1 + (int)(rng_u32(21, RNG_TEST, 0, (uint64_t)b, 0) % L);
        for (int l = 0; l < r->length[b]; l++) {
            r->hist[b * L + l] = 1 + (int)(rng_u32(21, RNG_TEST, 1, (uint64_t)(b * L + l), 0) % (N - 1));
            r->pos[b * L + l] = r->length[b] - l;
        }
        for (int c = 0; c < C; c++)
            r->cand[b * C + c] = 1 + (int)(rng_u32(21, RNG_TEST, 2, (uint64_t)(b * C + c), 0) % (N - 1));
    }
}

/* Rows row0 .. row0 + n - 1 of src into dst's first n rows. */
static void copy_rows(const rows_t *src, int row0, int n, rows_t *dst) {
    memcpy(dst->hist, src->hist + (int64_t)row0 * L, sizeof(int32_t) * (size_t)n * L);
    memcpy(dst->pos, src->pos + (int64_t)row0 * L, sizeof(int32_t) * (size_t)n * L);
    memcpy(dst->length, src->length + row0, sizeof(int32_t) * (size_t)n);
    memcpy(dst->cand, src->cand + (int64_t)row0 * C, sizeof(int32_t) * (size_t)n * C);
}

static model_batch_t batch_of(const rows_t *r, int n, int row0, int B_all) {
    model_batch_t mb = {n, L, C, r->hist, r->pos, r->length, r->cand, row0, B_all};
    return mb;
}

/* Random parameters, Uniform(-0.3, 0.3); the hidden projection layers' weights Uniform(-0.01,
 * 0.01) and biases 1: with d = 16, |g| < 1 and kept values scaled by 2, layer 0's
 * pre-activations lie in 1 +- 0.16 and layer 1's in 1 +- 0.38, all positive (see (c)). */
static void random_params(const model_layout_t *lay, float *params) {
    for (int64_t i = 0; i < lay->total; i++)
        params[i] = 0.6f * rng_uniform01(rng_u32(22, RNG_TEST, 0, (uint64_t)i, 0)) - 0.3f;
    for (int l = 0; l + 1 < lay->n_proj; l++) {
        const param_t *pw = &lay->t[lay->proj_w[l]], *pb = &lay->t[lay->proj_b[l]];
        for (int64_t i = pw->offset; i < pw->offset + pw->size; i++) params[i] *= 1.0f / 30;
        for (int64_t i = pb->offset; i < pb->offset + pb->size; i++) params[i] = 1.0f;
    }
}

typedef struct {
    float loss;
    float *grads;  /* (lay.total) */
    float *scores; /* (B, C) */
    float *acts;   /* (n_proj - 1, B, d): the hidden projection layers' outputs, else NULL */
} step_out_t;

static int64_t hidden_elems(const model_layout_t *lay, int n) {
    return lay->n_proj > 1 ? (int64_t)(lay->n_proj - 1) * n * lay->cfg.emb_size : 0;
}

static void run_step(const model_layout_t *lay, const float *params, const model_batch_t *mb,
                     model_ws_t_f *ws, step_out_t *o) {
    memset(o->grads, 0, sizeof(float) * (size_t)lay->total);
    const dropout_key_t key = {33, 7};
    o->loss = model_train_step_f(lay, params, mb, key, ws, o->grads);
    memcpy(o->scores, ws->scores, sizeof(float) * (size_t)mb->B * C);
    if (o->acts) memcpy(o->acts, ws->pred.acts, sizeof(float) * (size_t)hidden_elems(lay, mb->B));
}

static void out_alloc(const model_layout_t *lay, step_out_t *o) {
    o->grads = calloc((size_t)lay->total, sizeof(float));
    o->scores = calloc((size_t)B * C, sizeof(float));
    o->acts = lay->n_proj > 1 ? calloc((size_t)hidden_elems(lay, B), sizeof(float)) : NULL;
}

static void out_free(step_out_t *o) {
    free(o->grads);
    free(o->scores);
    free(o->acts);
}

/* (d): B_all = B, row0 = 0 against B_all = 0, bit for bit. */
static void check_whole_as_slice(const char *stage, const model_layout_t *lay, const float *params,
                                 const rows_t *r, model_ws_t_f *ws, const step_out_t *whole) {
    step_out_t o;
    out_alloc(lay, &o);
    const model_batch_t mb = batch_of(r, B, 0, B);
    run_step(lay, params, &mb, ws, &o);
    const int loss_same = memcmp(&o.loss, &whole->loss, sizeof o.loss) == 0;
    const int grads_same = memcmp(o.grads, whole->grads, sizeof(float) * (size_t)lay->total) == 0;
    const int scores_same = memcmp(o.scores, whole->scores, sizeof(float) * (size_t)B * C) == 0;
    const int acts_same =
        !o.acts || memcmp(o.acts, whole->acts, sizeof(float) * (size_t)hidden_elems(lay, B)) == 0;
    CHECK(loss_same, "%s: B_all = B loss %.9g vs %.9g", stage, o.loss, whole->loss);
    CHECK(grads_same, "%s: B_all = B gradients differ from B_all = 0", stage);
    CHECK(scores_same, "%s: B_all = B scores differ from B_all = 0", stage);
    CHECK(acts_same, "%s: B_all = B projection outputs differ from B_all = 0", stage);
    printf("%s: B_all = B, row0 = 0 against B_all = 0: %s\n", stage,
           loss_same && grads_same && scores_same && acts_same ? "same bits" : "DIFFER");
    out_free(&o);
}

/* The whole batch split at the given sizes: (a), (b), (c). */
static void check_split(const char *stage, const model_layout_t *lay, const float *params,
                        const rows_t *r, model_ws_t_f *ws, const step_out_t *whole,
                        const int *sizes, int n_slices) {
    const int d = lay->cfg.emb_size;
    double *gsum = calloc((size_t)lay->total, sizeof(double));
    double loss_sum = 0;
    int64_t mask_bad = 0, dropped = 0, masked = 0;
    step_out_t o;
    out_alloc(lay, &o);
    rows_t *sr = malloc(sizeof *sr);
    int row0 = 0;
    for (int s = 0; s < n_slices; s++) {
        const int n = sizes[s];
        copy_rows(r, row0, n, sr);
        const model_batch_t mb = batch_of(sr, n, row0, B);
        run_step(lay, params, &mb, ws, &o);
        loss_sum += o.loss;
        for (int64_t i = 0; i < lay->total; i++) gsum[i] += o.grads[i];
        /* Hidden layer l, slice row b: the whole batch's row row0 + b of layer l. */
        for (int64_t e = 0; e < hidden_elems(lay, n); e++) {
            const int64_t l = e / ((int64_t)n * d), bj = e % ((int64_t)n * d);
            const float w = whole->acts[(l * B + row0) * d + bj];
            const int kept_slice = o.acts[e] != 0, kept_whole = w != 0;
            mask_bad += kept_slice != kept_whole || !(o.acts[e] >= 0) || !(w >= 0);
            dropped += !kept_whole;
            masked++;
        }
        row0 += n;
    }
    CHECK(row0 == B, "%s: the slices cover %d rows of %d", stage, row0, B);
    /* (a) */
    const double loss_err = fabs(loss_sum - whole->loss), loss_tol = TOL_LOSS * fabs(whole->loss);
    CHECK(!(loss_err > loss_tol) && isfinite(loss_sum),
          "%s, %d slices: losses sum to %.9g, whole batch %.9g (|diff| %.3g > %.3g)", stage,
          n_slices, loss_sum, whole->loss, loss_err, loss_tol);
    /* (b): each tensor against its own scale; NaN anywhere fails. */
    double worst = 0;
    const char *worst_at = "-";
    for (int t = 0; t < lay->n_tensors; t++) {
        const param_t *p = &lay->t[t];
        double scale = 0, err = 0;
        for (int64_t i = p->offset; i < p->offset + p->size; i++) {
            tu_max_err(&scale, fabs((double)whole->grads[i]));
            tu_max_err(&err, fabs(gsum[i] - (double)whole->grads[i]));
        }
        if (!p->no_grad)
            CHECK(scale > 0, "%s: whole-batch gradient of %s is zero (a vacuous check)", stage,
                  p->name);
        const double rel = scale > 0 ? err / scale : err;
        CHECK(rel <= TOL_GRAD, "%s, %d slices: gradient of %s: max |sum - whole| %.3g, %.3g of its "
              "largest %.3g (tol %g)", stage, n_slices, p->name, err, rel, scale, TOL_GRAD);
        if (tu_max_err(&worst, rel)) worst_at = p->name;
    }
    /* (c) */
    if (o.acts) {
        CHECK(mask_bad == 0, "%s, %d slices: %lld of %lld mask elements differ from the whole "
              "batch's rows", stage, n_slices, (long long)mask_bad, (long long)masked);
        CHECK(dropped > masked / 4 && dropped < 3 * masked / 4,
              "%s: %lld of %lld dropped: not the p = 0.5 mask (the check would be vacuous)",
              stage, (long long)dropped, (long long)masked);
    }
    printf("%s, %d slices:", stage, n_slices);
    for (int s = 0; s < n_slices; s++) printf(" %d", sizes[s]);
    printf(" rows: loss sum %.9g vs %.9g (rel %.2g); gradients worst %.2g of scale (%s)", loss_sum,
           whole->loss, loss_err / fabs(whole->loss), worst, worst_at);
    if (o.acts)
        printf("; masks %lld / %lld equal (%lld dropped)", (long long)(masked - mask_bad),
               (long long)masked, (long long)dropped);
    printf("\n");
    free(sr);
    free(gsum);
    out_free(&o);
}

int main(void) {
    rows_t *r = malloc(sizeof *r);
    random_batch(r);
    static const int two[] = {20, 17}, three[] = {5, 19, 13};
    for (int run = 0; run < 3; run++) {
        const int stage = run == 0 ? STAGE_PRETRAIN : STAGE_FINETUNE, n_layers = run < 2 ? 2 : 3;
        const char *name = run == 0 ? "pretrain" : run == 1 ? "finetune, n_layers 2"
                                                            : "finetune, n_layers 3";
        model_config_t cfg = {.stage = stage, .n_items = N, .emb_size = 16, .attn_size = 8,
                              .K = 3, .history_max = L, .add_pos = 1, .add_trm = 1,
                              .n_layers = n_layers, .temp = 0.7, .dropout = 0.5};
        char err[256];
        CHECK(model_config_check(&cfg, err, sizeof err) == 0, "%s", err);
        model_layout_t lay;
        model_layout_build(&cfg, &lay);
        float *params = malloc(sizeof(float) * (size_t)lay.total);
        random_params(&lay, params);
        model_ws_t_f ws;
        model_ws_alloc_f(&ws, &lay, B, L, C);
        step_out_t whole;
        out_alloc(&lay, &whole);
        const model_batch_t mb = batch_of(r, B, 0, 0);
        run_step(&lay, params, &mb, &ws, &whole);
        CHECK(isfinite(whole.loss) && whole.loss > 0, "%s: whole-batch loss %g", name, whole.loss);
        check_whole_as_slice(name, &lay, params, r, &ws, &whole);
        check_split(name, &lay, params, r, &ws, &whole, two, 2);
        check_split(name, &lay, params, r, &ws, &whole, three, 3);
        out_free(&whole);
        model_ws_free_f(&ws);
        free(params);
    }
    free(r);
    return tu_finish("test_batch_slice");
}
