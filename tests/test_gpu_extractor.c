/* GPU-vs-CPU parity of every extractor op (include/timirec/cpu/extractor_decl.h against
 * include/timirec/gpu_ops.h): embedding gather and scatter, Linear, masked attention, residual
 * + LayerNorm (with and without the row mask), feed-forward, interest attention; forward
 * outputs and backward gradients, on the same random inputs at shapes from one history item
 * to 512, emb 16 to 256, K 1 to 64, batch 1 to 256 (histories of random length, one of them
 * empty). Device outputs are poisoned with NaN before each run; gradients that accumulate
 * start from the same random values on both sides. Tolerance: 1e-5 normalised (float32
 * summation order: cuBLAS sums in another order than the CPU's blocked product), widened for
 * parameter gradients summed over many rows to what the CPU's own serial float sum may be off
 * by (gt_tol_rows: 5.4e-5 at 51,200 rows). The embedding gather must agree exactly; so must
 * the scatter's table rows with at most 32 source rows (added in the CPU's order), while rows
 * with more (the padding item 0, positions; summed in chunks of 32) get gt_tol_rows of their
 * longest run (gt_compare_scatter).
 * The fused attention keeps per query row (max, 1 / sum) instead of the L x L weights: the
 * weights rebuilt from those on the host must match the CPU's, and the backward (which
 * recomputes them) must match the CPU's gradients. Shapes cover one item (L 1), L not a
 * multiple of the 32-key tile, L 200 and 512, emb 16..256, K 1..64, empty and short histories
 * (padded rows), LayerNorm with one block and with block partials (n > 64 rows).
 * SKIP without a CUDA build or a GPU; the host emulation (test_emu_extractor) runs smaller
 * shapes (~8 s; TMR_EMU_REVERSE=1 runs blocks and threads in reverse order). */
#include "test_util.h"

#ifndef TIMIREC_CUDA
int main(void) {
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
}
#else
#include "gpu_test_util.h"
#include "timirec/cpu_ops.h"

#define TOL 1e-5
/* Parameter gradients summed over n rows (gpu_test_util.h gt_tol_rows). */
#define TOLN(n) gt_tol_rows(TOL, (n))

typedef struct {
    int B, L, d, K, a;
} shape_t;

static char lab[200];
#define LABEL(...) (snprintf(lab, sizeof lab, __VA_ARGS__), lab)

static float *fresh(int64_t n) {
    float *x = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!x) exit(1);
    return x;
}

static void embed(gpu_ctx_t *ctx, shape_t s, uint32_t tag, const int32_t *hist, const int32_t *pos,
                  const int32_t *d_hist, const int32_t *d_pos) {
    const int B = s.B, L = s.L, d = s.d, N = 60;
    const int64_t n = (int64_t)B * L, nE = (int64_t)N * d, nP = (int64_t)(L + 1) * d;
    float *E = gt_rand(nE, tag + 1, -1, 1), *P = gt_rand(nP, tag + 2, -1, 1), *x0 = fresh(n * d);
    float *dE = gt_up(E, nE), *dP = gt_up(P, nP);
    for (int with_p = 0; with_p <= 1; with_p++) {
        float *d_x0 = gt_poisoned(n * d);
        layer_embed_forward_f(E, with_p ? P : NULL, hist, pos, n, d, x0);
        gpu_ext_embed_forward(ctx, dE, with_p ? dP : NULL, d_hist, d_pos, n, d, d_x0);
        gt_compare(LABEL("embed forward x0%s", with_p ? " (+ positions)" : ""), d_x0, x0, n * d, 0);
        gpu_free(d_x0);
    }
    /* Scatter-add into tables that already hold values. */
    float *dx0 = gt_rand(n * d, tag + 3, -1, 1), *gE = gt_rand(nE, tag + 4, -1, 1);
    float *gP = gt_rand(nP, tag + 5, -1, 1);
    float *d_dx0 = gt_up(dx0, n * d), *d_gE = gt_up(gE, nE), *d_gP = gt_up(gP, nP);
    layer_embed_backward_f(hist, pos, n, d, dx0, gE, gP);
    gpu_ext_embed_backward(ctx, d_hist, d_pos, n, d, d_dx0, d_gE, d_gP);
    gt_compare_scatter("embed backward dE", d_gE, gE, hist, n, N, d, TOL);
    gt_compare_scatter("embed backward dP", d_gP, gP, pos, n, L + 1, d, TOL);
    free(E), free(P), free(x0), free(dx0), free(gE), free(gP);
    gpu_free(dE), gpu_free(dP), gpu_free(d_dx0), gpu_free(d_gE), gpu_free(d_gP);
}

static void linear(gpu_ctx_t *ctx, int64_t n, int in, int out, uint32_t tag) {
    const float bound = 1.0f / sqrtf((float)in);
    float *x = gt_rand(n * in, tag + 1, -1, 1), *W = gt_rand((int64_t)out * in, tag + 2, -bound, bound);
    float *b = gt_rand(out, tag + 3, -1, 1), *y = fresh(n * out);
    float *d_x = gt_up(x, n * in), *d_W = gt_up(W, (int64_t)out * in), *d_b = gt_up(b, out);
    for (int with_b = 0; with_b <= 1; with_b++) {
        float *d_y = gt_poisoned(n * out);
        layer_linear_forward_f(x, W, with_b ? b : NULL, n, in, out, y);
        gpu_ext_linear_forward(ctx, d_x, d_W, with_b ? d_b : NULL, n, in, out, d_y);
        gt_compare(LABEL("linear %d -> %d forward y%s", in, out, with_b ? " (+ bias)" : ""), d_y,
                   y, n * out, TOL);
        gpu_free(d_y);
    }
    float *dy = gt_rand(n * out, tag + 4, -1, 1), *dx = gt_rand(n * in, tag + 5, -1, 1);
    float *dW = gt_rand((int64_t)out * in, tag + 6, -1, 1), *db = gt_rand(out, tag + 7, -1, 1);
    float *d_dy = gt_up(dy, n * out), *d_dx = gt_up(dx, n * in), *d_dW = gt_up(dW, (int64_t)out * in);
    float *d_db = gt_up(db, out);
    layer_linear_backward_f(x, W, dy, n, in, out, dx, dW, db);
    gpu_ext_linear_backward(ctx, d_x, d_W, d_dy, n, in, out, d_dx, d_dW, d_db);
    gt_compare(LABEL("linear %d -> %d backward dx (accumulated)", in, out), d_dx, dx, n * in, TOL);
    gt_compare(LABEL("linear %d -> %d backward dW", in, out), d_dW, dW, (int64_t)out * in, TOLN(n));
    gt_compare(LABEL("linear %d -> %d backward db", in, out), d_db, db, out, TOLN(n));
    free(x), free(W), free(b), free(y), free(dy), free(dx), free(dW), free(db);
    gpu_free(d_x), gpu_free(d_W), gpu_free(d_b), gpu_free(d_dy), gpu_free(d_dx), gpu_free(d_dW);
    gpu_free(d_db);
}

/* The fused attention saves per query row (max, 1 / sum) instead of the (L, L) weights: the
 * weights rebuilt from them on the host (the kernels' expression, raw scores in float) must
 * match the CPU's. */
static void attention_weights_from_stats(const float *q, const float *k, const int32_t *hist,
                                         const float *stats, int B, int L, int d, float *att) {
    const float sq = sqrtf((float)d);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < L; i++) {
            const int64_t r = (int64_t)b * L + i;
            for (int j = 0; j < L; j++) {
                float s = 0;
                const float *qi = q + r * d, *kj = k + ((int64_t)b * L + j) * d;
                for (int c = 0; c < d; c++) s += qi[c] * kj[c];
                att[r * L + j] = hist[(int64_t)b * L + j] > 0
                                     ? expf(s / sq - stats[2 * r]) * stats[2 * r + 1]
                                     : 0.0f;
            }
        }
}

static void attention(gpu_ctx_t *ctx, shape_t s, uint32_t tag, const int32_t *hist,
                      const int32_t *d_hist) {
    const int B = s.B, L = s.L, d = s.d;
    const int64_t n = (int64_t)B * L, nd = n * d, nL = n * L;
    float *q = gt_rand(nd, tag + 1, -1, 1), *k = gt_rand(nd, tag + 2, -1, 1);
    float *v = gt_rand(nd, tag + 3, -1, 1), *att = fresh(nL), *cx = fresh(nd);
    float *d_q = gt_up(q, nd), *d_k = gt_up(k, nd), *d_v = gt_up(v, nd);
    float *d_stats = gt_poisoned(2 * n), *d_cx = gt_poisoned(nd);
    ext_attn_forward_f(q, k, v, hist, B, L, d, att, cx);
    gpu_ext_attn_forward(ctx, d_q, d_k, d_v, d_hist, B, L, d, d_stats, d_cx);
    float *stats = fresh(2 * n), *att_gpu = fresh(nL);
    gpu_to_host(stats, d_stats, (size_t)(2 * n) * sizeof(float));
    attention_weights_from_stats(q, k, hist, stats, B, L, d, att_gpu);
    gt_compare_host("attention forward weights (from the row stats)", att_gpu, att, nL, TOL);
    gt_compare("attention forward context", d_cx, cx, nd, TOL);
    float *dcx = gt_rand(nd, tag + 4, -1, 1), *dq = fresh(nd), *dk = fresh(nd), *dv = fresh(nd);
    float *ds = fresh(nL);
    float *d_dcx = gt_up(dcx, nd), *d_dq = gt_poisoned(nd), *d_dk = gt_poisoned(nd);
    float *d_dv = gt_poisoned(nd), *d_D = gt_poisoned(n);
    /* Both sides start from their own forward (the GPU's stats stay on the device). */
    ext_attn_backward_f(q, k, v, att, dcx, B, L, d, dq, dk, dv, ds);
    gpu_ext_attn_backward(ctx, d_q, d_k, d_v, d_hist, d_stats, d_dcx, B, L, d, d_dq, d_dk, d_dv,
                          d_D);
    gt_compare("attention backward dq", d_dq, dq, nd, TOL);
    gt_compare("attention backward dk", d_dk, dk, nd, TOL);
    gt_compare("attention backward dv", d_dv, dv, nd, TOL);
    free(q), free(k), free(v), free(att), free(cx), free(dcx), free(dq), free(dk), free(dv);
    free(ds), free(stats), free(att_gpu);
    gpu_free(d_q), gpu_free(d_k), gpu_free(d_v), gpu_free(d_stats), gpu_free(d_cx);
    gpu_free(d_dcx), gpu_free(d_dq), gpu_free(d_dk), gpu_free(d_dv), gpu_free(d_D);
}

static void layernorm(gpu_ctx_t *ctx, shape_t s, uint32_t tag, const int32_t *hist,
                      const int32_t *d_hist) {
    const int B = s.B, L = s.L, d = s.d;
    const int64_t n = (int64_t)B * L, nd = n * d;
    float *a = gt_rand(nd, tag + 1, -2, 2), *b = gt_rand(nd, tag + 2, -1, 1);
    float *gamma = gt_rand(d, tag + 3, 0.5f, 1.5f), *beta = gt_rand(d, tag + 4, -0.5f, 0.5f);
    float *d_a = gt_up(a, nd), *d_b = gt_up(b, nd), *d_gamma = gt_up(gamma, d);
    float *d_beta = gt_up(beta, d);
    float *y = fresh(nd), *xhat = fresh(nd), *rstd = fresh(n);
    float *dy = gt_rand(nd, tag + 5, -1, 1), *dz = fresh(nd);
    float *d_dy = gt_up(dy, nd);
    for (int masked = 0; masked <= 1; masked++) {
        const char *m = masked ? " (row mask)" : "";
        float *d_y = gt_poisoned(nd), *d_xhat = gt_poisoned(nd), *d_rstd = gt_poisoned(n);
        layer_add_layernorm_forward_f(a, b, gamma, beta, masked ? hist : NULL, n, d, y, xhat, rstd);
        gpu_ext_add_layernorm_forward(ctx, d_a, d_b, d_gamma, d_beta, masked ? d_hist : NULL, n,
                                      d, d_y, d_xhat, d_rstd);
        gt_compare(LABEL("add+layernorm forward y%s", m), d_y, y, nd, TOL);
        gt_compare(LABEL("add+layernorm forward xhat%s", m), d_xhat, xhat, nd, TOL);
        gt_compare(LABEL("add+layernorm forward rstd%s", m), d_rstd, rstd, n, TOL);
        float *dg = gt_rand(d, tag + 6, -1, 1), *dbt = gt_rand(d, tag + 7, -1, 1);
        float *d_dg = gt_up(dg, d), *d_dbt = gt_up(dbt, d), *d_dz = gt_poisoned(nd);
        float *d_work = gt_poisoned(nd);
        layer_add_layernorm_backward_f(dy, xhat, rstd, gamma, masked ? hist : NULL, n, d, dz, dg, dbt);
        gpu_ext_add_layernorm_backward(ctx, d_dy, d_xhat, d_rstd, d_gamma, masked ? d_hist : NULL,
                                       n, d, d_dz, d_dg, d_dbt, d_work);
        gt_compare(LABEL("add+layernorm backward dz%s", m), d_dz, dz, nd, TOL);
        gt_compare(LABEL("add+layernorm backward dgamma%s", m), d_dg, dg, d, TOLN(n));
        gt_compare(LABEL("add+layernorm backward dbeta%s", m), d_dbt, dbt, d, TOLN(n));
        free(dg), free(dbt);
        gpu_free(d_y), gpu_free(d_xhat), gpu_free(d_rstd), gpu_free(d_dg), gpu_free(d_dbt);
        gpu_free(d_dz), gpu_free(d_work);
    }
    free(a), free(b), free(gamma), free(beta), free(y), free(xhat), free(rstd), free(dy), free(dz);
    gpu_free(d_a), gpu_free(d_b), gpu_free(d_gamma), gpu_free(d_beta), gpu_free(d_dy);
}

static void ffn(gpu_ctx_t *ctx, shape_t s, uint32_t tag) {
    const int d = s.d, dff = s.d;
    const int64_t n = (int64_t)s.B * s.L, nd = n * d, nf = n * dff;
    const float bound = 1.0f / sqrtf((float)d);
    float *h = gt_rand(nd, tag + 1, -1, 1);
    float *W1 = gt_rand((int64_t)dff * d, tag + 2, -bound, bound), *b1 = gt_rand(dff, tag + 3, -0.1f, 0.1f);
    float *W2 = gt_rand((int64_t)d * dff, tag + 4, -bound, bound), *b2 = gt_rand(d, tag + 5, -0.1f, 0.1f);
    float *d_h = gt_up(h, nd), *d_W1 = gt_up(W1, (int64_t)dff * d), *d_b1 = gt_up(b1, dff);
    float *d_W2 = gt_up(W2, (int64_t)d * dff), *d_b2 = gt_up(b2, d);
    float *r = fresh(nf), *f = fresh(nd), *d_r = gt_poisoned(nf), *d_f = gt_poisoned(nd);
    ext_ffn_forward_f(h, W1, b1, W2, b2, n, d, dff, r, f);
    gpu_ext_ffn_forward(ctx, d_h, d_W1, d_b1, d_W2, d_b2, n, d, dff, d_r, d_f);
    gt_compare("feed-forward relu(h W1^T + b1)", d_r, r, nf, TOL);
    gt_compare("feed-forward output f", d_f, f, nd, TOL);
    float *df = gt_rand(nd, tag + 6, -1, 1), *dh = gt_rand(nd, tag + 7, -1, 1);
    float *dW1 = gt_rand((int64_t)dff * d, tag + 8, -1, 1), *db1 = gt_rand(dff, tag + 9, -1, 1);
    float *dW2 = gt_rand((int64_t)d * dff, tag + 10, -1, 1), *db2 = gt_rand(d, tag + 11, -1, 1);
    float *dr = fresh(nf);
    float *d_df = gt_up(df, nd), *d_dh = gt_up(dh, nd), *d_dW1 = gt_up(dW1, (int64_t)dff * d);
    float *d_db1 = gt_up(db1, dff), *d_dW2 = gt_up(dW2, (int64_t)d * dff), *d_db2 = gt_up(db2, d);
    float *d_dr = gt_poisoned(nf);
    ext_ffn_backward_f(h, r, W1, W2, df, n, d, dff, dh, dW1, db1, dW2, db2, dr);
    gpu_ext_ffn_backward(ctx, d_h, d_r, d_W1, d_W2, d_df, n, d, dff, d_dh, d_dW1, d_db1, d_dW2,
                         d_db2, d_dr);
    gt_compare("feed-forward backward dh (accumulated)", d_dh, dh, nd, TOL);
    gt_compare("feed-forward backward dW1", d_dW1, dW1, (int64_t)dff * d, TOLN(n));
    gt_compare("feed-forward backward db1", d_db1, db1, dff, TOLN(n));
    gt_compare("feed-forward backward dW2", d_dW2, dW2, (int64_t)d * dff, TOLN(n));
    gt_compare("feed-forward backward db2", d_db2, db2, d, TOLN(n));
    free(h), free(W1), free(b1), free(W2), free(b2), free(r), free(f), free(df), free(dh);
    free(dW1), free(db1), free(dW2), free(db2), free(dr);
    gpu_free(d_h), gpu_free(d_W1), gpu_free(d_b1), gpu_free(d_W2), gpu_free(d_b2), gpu_free(d_r);
    gpu_free(d_f), gpu_free(d_df), gpu_free(d_dh), gpu_free(d_dW1), gpu_free(d_db1);
    gpu_free(d_dW2), gpu_free(d_db2), gpu_free(d_dr);
}

static void interest(gpu_ctx_t *ctx, shape_t s, uint32_t tag, const int32_t *hist,
                     const int32_t *d_hist) {
    const int B = s.B, L = s.L, d = s.d, a = s.a, K = s.K;
    const int64_t n = (int64_t)B * L, nd = n * d, na = n * a, nK = n * K, nV = (int64_t)B * K * d;
    const float b1d = 1.0f / sqrtf((float)d), b1a = 2.0f / sqrtf((float)a);
    float *x = gt_rand(nd, tag + 1, -1, 1);
    float *W1 = gt_rand((int64_t)a * d, tag + 2, -b1d, b1d), *b1 = gt_rand(a, tag + 3, -0.2f, 0.2f);
    float *W2 = gt_rand((int64_t)K * a, tag + 4, -b1a, b1a), *b2 = gt_rand(K, tag + 5, -0.2f, 0.2f);
    float *d_x = gt_up(x, nd), *d_W1 = gt_up(W1, (int64_t)a * d), *d_b1 = gt_up(b1, a);
    float *d_W2 = gt_up(W2, (int64_t)K * a), *d_b2 = gt_up(b2, K);
    float *t = fresh(na), *e = fresh(nK), *alpha = fresh(nK), *V = fresh(nV);
    float *d_t = gt_poisoned(na), *d_e = gt_poisoned(nK), *d_alpha = gt_poisoned(nK);
    float *d_V = gt_poisoned(nV);
    ext_interest_forward_f(x, hist, W1, b1, W2, b2, B, L, d, a, K, t, e, alpha, V);
    gpu_ext_interest_forward(ctx, d_x, d_hist, d_W1, d_b1, d_W2, d_b2, B, L, d, a, K, d_t, d_e,
                             d_alpha, d_V);
    gt_compare("interest forward tanh(x W1^T + b1)", d_t, t, na, TOL);
    gt_compare("interest forward scores e", d_e, e, nK, TOL);
    gt_compare("interest forward attention alpha", d_alpha, alpha, nK, TOL);
    gt_compare("interest forward interests V", d_V, V, nV, TOL);
    float *dV = gt_rand(nV, tag + 6, -1, 1), *dx = fresh(nd);
    float *dW1 = gt_rand((int64_t)a * d, tag + 7, -1, 1), *db1 = gt_rand(a, tag + 8, -1, 1);
    float *dW2 = gt_rand((int64_t)K * a, tag + 9, -1, 1), *db2 = gt_rand(K, tag + 10, -1, 1);
    float *de = fresh(nK), *dt = fresh(na);
    float *d_dV = gt_up(dV, nV), *d_dx = gt_poisoned(nd), *d_dW1 = gt_up(dW1, (int64_t)a * d);
    float *d_db1 = gt_up(db1, a), *d_dW2 = gt_up(dW2, (int64_t)K * a), *d_db2 = gt_up(db2, K);
    float *d_de = gt_poisoned(nK), *d_dt = gt_poisoned(na);
    ext_interest_backward_f(x, t, alpha, W1, W2, dV, B, L, d, a, K, dx, dW1, db1, dW2, db2, de, dt);
    gpu_ext_interest_backward(ctx, d_x, d_t, d_alpha, d_W1, d_W2, d_dV, B, L, d, a, K, d_dx, d_dW1,
                              d_db1, d_dW2, d_db2, d_de, d_dt);
    gt_compare("interest backward dx", d_dx, dx, nd, TOL);
    gt_compare("interest backward dW1", d_dW1, dW1, (int64_t)a * d, TOLN(n));
    gt_compare("interest backward db1", d_db1, db1, a, TOLN(n));
    gt_compare("interest backward dW2", d_dW2, dW2, (int64_t)K * a, TOLN(n));
    gt_compare("interest backward db2", d_db2, db2, K, TOLN(n));
    free(x), free(W1), free(b1), free(W2), free(b2), free(t), free(e), free(alpha), free(V);
    free(dV), free(dx), free(dW1), free(db1), free(dW2), free(db2), free(de), free(dt);
    gpu_free(d_x), gpu_free(d_W1), gpu_free(d_b1), gpu_free(d_W2), gpu_free(d_b2), gpu_free(d_t);
    gpu_free(d_e), gpu_free(d_alpha), gpu_free(d_V), gpu_free(d_dV), gpu_free(d_dx);
    gpu_free(d_dW1), gpu_free(d_db1), gpu_free(d_dW2), gpu_free(d_db2), gpu_free(d_de);
    gpu_free(d_dt);
}

int main(void) {
    gpu_ctx_t *ctx = gt_start("test_gpu_extractor");
    static const shape_t gpu_shapes[] = {
        {1, 1, 16, 1, 8},      /* the smallest: one item, one interest */
        {3, 20, 64, 2, 8},     /* the reference's per-row shape, small batch */
        {256, 20, 64, 2, 8},   /* the reference's batch */
        {3, 200, 256, 7, 32},
        {3, 512, 64, 64, 16},  /* longest history, most interests */
        {1, 512, 256, 64, 64},
        {256, 200, 16, 7, 8},
    };
    static const shape_t emu_shapes[] = {
        {1, 1, 16, 1, 8},
        {3, 20, 16, 7, 8},
        {5, 13, 64, 2, 8},
        {32, 20, 64, 2, 8},
        {3, 70, 32, 64, 16},   /* L past two key tiles, not a multiple of 32 */
        {3, 45, 256, 3, 40},   /* the widest rows */
        {3, 200, 32, 16, 8},   /* L 200 */
        {3, 512, 16, 33, 8},   /* the longest history; K past one interest per lane */
    };
    /* Small shapes in the emulation (TMR_EMU_FULL=1: the GPU's) and when asked
     * (TMR_SMALL_SHAPES=1, e.g. under compute-sanitizer). */
    const int emu = (gpu_is_emulated() && !getenv("TMR_EMU_FULL")) || getenv("TMR_SMALL_SHAPES");
    const shape_t *shapes = emu ? emu_shapes : gpu_shapes;
    const int n_shapes = emu ? (int)(sizeof emu_shapes / sizeof *emu_shapes)
                             : (int)(sizeof gpu_shapes / sizeof *gpu_shapes);
    for (int i = 0; i < n_shapes; i++) {
        const shape_t s = shapes[i];
        const uint32_t tag = 100u * (uint32_t)(i + 1);
        printf("B %d, L %d, d %d, K %d, a %d\n", s.B, s.L, s.d, s.K, s.a);
        const int64_t n = (int64_t)s.B * s.L;
        int32_t *hist = (int32_t *)malloc((size_t)n * sizeof(int32_t));
        int32_t *pos = (int32_t *)malloc((size_t)n * sizeof(int32_t));
        int32_t *length = (int32_t *)malloc((size_t)s.B * sizeof(int32_t));
        gt_histories(s.B, s.L, 60, tag, 1, hist, pos, length);
        int32_t *d_hist = gt_upi(hist, n), *d_pos = gt_upi(pos, n);
        embed(ctx, s, tag + 10, hist, pos, d_hist, d_pos);
        linear(ctx, n, s.d, s.a, tag + 20);
        linear(ctx, n, s.a, s.K, tag + 30);
        attention(ctx, s, tag + 40, hist, d_hist);
        layernorm(ctx, s, tag + 50, hist, d_hist);
        ffn(ctx, s, tag + 60);
        interest(ctx, s, tag + 70, hist, d_hist);
        free(hist), free(pos), free(length);
        gpu_free(d_hist), gpu_free(d_pos);
    }
    gpu_ctx_free(ctx);
    return gt_finish("test_gpu_extractor");
}
#endif
