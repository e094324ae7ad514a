/* GPU-vs-CPU parity of the interest predictor's ops (include/timirec/cpu/predictor_decl.h
 * against gpu_ops.h): the GRU on packed rows (gates, W_hn h + b_hn, hidden states; backward:
 * input gradients, all four weight gradients, both gate gradients) with mixed lengths, all
 * lengths equal and one long history among short ones, emb sizes that keep W_hh resident in
 * shared memory and ones that stream it in tiles (256), and several blocks of slots; the
 * projection MLP in
 * training (Philox dropout) and evaluation mode with 1 to 4 layers, forward and backward, and
 * the dropout mask itself, which must equal proj_dropout_keep bit for bit. Histories from 1
 * to 512 items, emb 16 to 256, batch 1 to 256, K 1 to 64. Outputs poisoned first; accumulated
 * gradients start from the same random values. Tolerance 1e-5 normalised (float32 summation
 * order), widened for the GRU's weight gradients, sums over every packed row, to what the
 * CPU's serial float sum may be off by (gpu_test_util.h gt_tol_rows).
 * SKIP without CUDA or a GPU (test_emu_predictor: the host emulation, small shapes). */
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

static char lab[200];
#define LABEL(...) (snprintf(lab, sizeof lab, __VA_ARGS__), lab)

static float *fresh(int64_t n) {
    float *x = (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!x) exit(1);
    return x;
}

/* History lengths of a GRU case. */
enum { LEN_MIXED, LEN_EQUAL, LEN_ONE_LONG };
static const char *const len_name[] = {"mixed 0..L", "all equal L", "one L among 1..3"};

static void gru(gpu_ctx_t *ctx, int B, int L, int d, int lengths, uint32_t tag) {
    printf("GRU: B %d, L %d, d %d, lengths %s\n", B, L, d, len_name[lengths]);
    const int64_t n = (int64_t)B * L, G = 3 * (int64_t)d;
    int32_t *hist = (int32_t *)malloc((size_t)n * sizeof(int32_t));
    int32_t *pos = (int32_t *)malloc((size_t)n * sizeof(int32_t));
    int32_t *length = (int32_t *)malloc((size_t)B * sizeof(int32_t));
    gt_histories(B, L, 50, tag, 1, hist, pos, length);
    for (int b = 0; b < B; b++) { /* the GRU reads lengths only (x is drawn below) */
        if (lengths == LEN_EQUAL) length[b] = L;
        if (lengths == LEN_ONE_LONG) length[b] = b == B / 2 ? L : 1 + b % (L < 3 ? L : 3);
    }
    int32_t *perm = (int32_t *)malloc((size_t)B * sizeof(int32_t));
    int32_t *batch_sizes = (int32_t *)malloc((size_t)L * sizeof(int32_t));
    int64_t *step_off = (int64_t *)malloc((size_t)(L + 1) * sizeof(int64_t));
    const int n_steps = gru_pack_f(length, B, L, perm, batch_sizes, step_off);
    const int64_t T = step_off[n_steps], n0 = n_steps ? batch_sizes[0] : 1;
    const float bound = 1.0f / sqrtf((float)d);
    float *w_ih = gt_rand(G * d, tag + 1, -bound, bound), *w_hh = gt_rand(G * d, tag + 2, -bound, bound);
    float *b_ih = gt_rand(G, tag + 3, -bound, bound), *b_hh = gt_rand(G, tag + 4, -bound, bound);
    float *x = gt_rand(T * d, tag + 5, -1, 1);
    float *d_w_ih = gt_up(w_ih, G * d), *d_w_hh = gt_up(w_hh, G * d), *d_b_ih = gt_up(b_ih, G);
    float *d_b_hh = gt_up(b_hh, G), *d_x = gt_up(x, T * d);
    float *gates = fresh(T * G), *ghn = fresh(T * d), *h = fresh(T * d), *work = fresh(n0 * G);
    float *d_gates = gt_poisoned(T * G), *d_ghn = gt_poisoned(T * d), *d_h = gt_poisoned(T * d);
    /* the packing as the backend passes it: sizes on the host, step offsets on the device */
    int64_t *d_step_off = (int64_t *)gpu_malloc((size_t)(n_steps + 1) * sizeof(int64_t));
    gpu_to_device(d_step_off, step_off, (size_t)(n_steps + 1) * sizeof(int64_t));
    const gpu_gru_pack_t pk = {n_steps, n_steps ? batch_sizes[0] : 0, T, d_step_off};
    gru_forward_f(d, w_ih, w_hh, b_ih, b_hh, n_steps, batch_sizes, step_off, x, gates, ghn, h, work);
    gpu_gru_forward(ctx, d, d_w_ih, d_w_hh, d_b_ih, d_b_hh, &pk, d_x, d_gates, d_ghn, d_h);
    printf("  %lld packed rows over %d steps\n", (long long)T, n_steps);
    gt_compare("GRU forward gates r, z, n", d_gates, gates, T * G, TOL);
    gt_compare("GRU forward W_hn h + b_hn", d_ghn, ghn, T * d, TOL);
    gt_compare("GRU forward hidden states", d_h, h, T * d, TOL);
    /* Backward from a gradient on every packed row's output (the model sets final rows only). */
    float *dh = gt_rand(T * d, tag + 6, -1, 1), *dgi = fresh(T * G), *dx = fresh(T * d);
    float *dw_ih = gt_rand(G * d, tag + 7, -1, 1), *dw_hh = gt_rand(G * d, tag + 8, -1, 1);
    float *db_ih = gt_rand(G, tag + 9, -1, 1), *db_hh = gt_rand(G, tag + 10, -1, 1);
    float *d_dh = gt_up(dh, T * d), *d_dgi = gt_poisoned(T * G), *d_dx = gt_poisoned(T * d);
    float *d_dw_ih = gt_up(dw_ih, G * d), *d_dw_hh = gt_up(dw_hh, G * d);
    float *d_db_ih = gt_up(db_ih, G), *d_db_hh = gt_up(db_hh, G);
    float *d_dgh = gt_poisoned(T * G);
    float *dgh = fresh(T * d); /* the CPU keeps the n block only (its r, z blocks are dgi's) */
    gru_backward_f(d, w_ih, w_hh, n_steps, batch_sizes, step_off, x, gates, ghn, h, dh, dgi, dgh,
                   dx, dw_ih, dw_hh, db_ih, db_hh);
    gpu_gru_backward(ctx, d, d_w_ih, d_w_hh, &pk, d_x, d_gates, d_ghn, d_h, d_dh, d_dgi, d_dgh,
                     d_dx, d_dw_ih, d_dw_hh, d_db_ih, d_db_hh);
    gt_compare("GRU backward d(W_ih x + b_ih)", d_dgi, dgi, T * G, TOL);
    /* The GPU's (T, 3d) recurrent-gate gradients: blocks r, z as the CPU's dgi, n as its dgh. */
    float *dgh_full = fresh(T * G);
    for (int64_t r = 0; r < T; r++)
        for (int j = 0; j < d; j++) {
            dgh_full[r * G + j] = dgi[r * G + j];
            dgh_full[r * G + d + j] = dgi[r * G + d + j];
            dgh_full[r * G + 2 * d + j] = dgh[r * d + j];
        }
    gt_compare("GRU backward d(W_hh h + b_hh)", d_dgh, dgh_full, T * G, TOL);
    free(dgh_full);
    gt_compare("GRU backward dx", d_dx, dx, T * d, TOL);
    gt_compare("GRU backward dW_ih (accumulated)", d_dw_ih, dw_ih, G * d, gt_tol_rows(TOL, T));
    gt_compare("GRU backward dW_hh (accumulated)", d_dw_hh, dw_hh, G * d, gt_tol_rows(TOL, T));
    gt_compare("GRU backward db_ih (accumulated)", d_db_ih, db_ih, G, gt_tol_rows(TOL, T));
    gt_compare("GRU backward db_hh (accumulated)", d_db_hh, db_hh, G, gt_tol_rows(TOL, T));
    free(hist), free(pos), free(length), free(perm), free(batch_sizes), free(step_off);
    gpu_free(d_step_off);
    free(w_ih), free(w_hh), free(b_ih), free(b_hh), free(x), free(gates), free(ghn), free(h);
    free(work), free(dh), free(dgi), free(dgh), free(dx), free(dw_ih), free(dw_hh), free(db_ih), free(db_hh);
    gpu_free(d_w_ih), gpu_free(d_w_hh), gpu_free(d_b_ih), gpu_free(d_b_hh), gpu_free(d_x);
    gpu_free(d_gates), gpu_free(d_ghn), gpu_free(d_h), gpu_free(d_dgh), gpu_free(d_dh);
    gpu_free(d_dgi), gpu_free(d_dx), gpu_free(d_dw_ih), gpu_free(d_dw_hh), gpu_free(d_db_ih);
    gpu_free(d_db_hh);
}

static void projection(gpu_ctx_t *ctx, int B, int d, int K, int n_layers, double p, uint32_t tag) {
    printf("projection: B %d, d %d, K %d, n_layers %d, dropout %.2f\n", B, d, K, n_layers, p);
    model_config_t cfg = {.stage = STAGE_FINETUNE, .n_items = 20, .emb_size = d, .attn_size = 8,
                          .K = K, .history_max = 20, .add_pos = 1, .add_trm = 0,
                          .n_layers = n_layers, .temp = 1, .dropout = p};
    char err[256];
    if (model_config_check(&cfg, err, sizeof err)) {
        CHECK(0, "%s", err);
        return;
    }
    model_layout_t lay;
    model_layout_build(&cfg, &lay);
    const int64_t total = lay.total, nA = (int64_t)(n_layers > 1 ? n_layers - 1 : 1) * B * d;
    const float bound = 2.0f / sqrtf((float)d);
    float *params = gt_rand(total, tag + 1, -bound, bound), *g = gt_rand((int64_t)B * d, tag + 2, -1, 1);
    float *d_params = gt_up(params, total), *d_g = gt_up(g, (int64_t)B * d);
    dropout_key_t key = {0x1234567890abcdefull + tag, 7 + tag};
    for (int training = 0; training <= 1; training++) {
        const char *m = training ? "training" : "evaluation";
        float *acts = fresh(nA), *out = fresh((int64_t)B * K);
        float *d_acts = gt_poisoned(nA), *d_out = gt_poisoned((int64_t)B * K);
        proj_forward_f(&lay, params, g, B, training, key, acts, out);
        gpu_proj_forward(ctx, &lay, d_params, d_g, B, training, key, d_acts, d_out);
        if (n_layers > 1)
            gt_compare(LABEL("projection %s hidden outputs", m), d_acts, acts,
                       (int64_t)(n_layers - 1) * B * d, TOL);
        gt_compare(LABEL("projection %s pred_intent", m), d_out, out, (int64_t)B * K, TOL);
        float *dout = gt_rand((int64_t)B * K, tag + 3, -1, 1), *dg = fresh((int64_t)B * d);
        float *work = fresh(2 * (int64_t)B * d), *grads = gt_rand(total, tag + 4, -1, 1);
        float *d_dout = gt_up(dout, (int64_t)B * K), *d_dg = gt_poisoned((int64_t)B * d);
        float *d_work = gt_poisoned(2 * (int64_t)B * d), *d_grads = gt_up(grads, total);
        proj_backward_f(&lay, params, g, acts, B, training, dout, dg, work, grads);
        gpu_proj_backward(ctx, &lay, d_params, d_g, d_acts, B, training, d_dout, d_dg, d_work,
                          d_grads);
        gt_compare(LABEL("projection %s backward dg", m), d_dg, dg, (int64_t)B * d, TOL);
        for (int l = 0; l < n_layers; l++) {
            const param_t *pw = &lay.t[lay.proj_w[l]], *pb = &lay.t[lay.proj_b[l]];
            float *hw = fresh(pw->size), *hb = fresh(pb->size);
            gpu_to_host(hw, d_grads + pw->offset, (size_t)pw->size * sizeof(float));
            gpu_to_host(hb, d_grads + pb->offset, (size_t)pb->size * sizeof(float));
            gt_compare_host(LABEL("projection %s backward %s", m, pw->name), hw, grads + pw->offset,
                            pw->size, TOL);
            gt_compare_host(LABEL("projection %s backward %s", m, pb->name), hb, grads + pb->offset,
                            pb->size, TOL);
            free(hw), free(hb);
        }
        free(acts), free(out), free(dout), free(dg), free(work), free(grads);
        gpu_free(d_acts), gpu_free(d_out), gpu_free(d_dout), gpu_free(d_dg), gpu_free(d_work);
        gpu_free(d_grads);
    }
    free(params), free(g);
    gpu_free(d_params), gpu_free(d_g);
}

static void dropout_mask(gpu_ctx_t *ctx, int n_layers, int B, int d, float p, dropout_key_t key) {
    const int64_t n = (int64_t)n_layers * B * d;
    int32_t *keep = (int32_t *)malloc((size_t)n * sizeof(int32_t));
    int64_t kept = 0;
    for (int l = 0; l < n_layers; l++)
        for (int b = 0; b < B; b++)
            for (int j = 0; j < d; j++) {
                int k = proj_dropout_keep(key.seed, key.step, l, B, b, d, j, p);
                keep[((int64_t)l * B + b) * d + j] = k;
                kept += k;
            }
    int32_t *d_keep = (int32_t *)gpu_malloc((size_t)n * sizeof(int32_t));
    gpu_poison(d_keep, (size_t)n * sizeof(int32_t));
    gpu_proj_dropout_mask(ctx, key, n_layers, B, d, p, d_keep);
    char label[160];
    snprintf(label, sizeof label, "dropout mask p %.2f (%.3f kept) vs proj_dropout_keep", p,
             (double)kept / (double)n);
    gt_compare_int(label, d_keep, keep, n);
    free(keep);
    gpu_free(d_keep);
}

int main(void) {
    gpu_ctx_t *ctx = gt_start("test_gpu_predictor");
    /* Small shapes in the emulation (TMR_EMU_FULL=1: the GPU's) and when asked
     * (TMR_SMALL_SHAPES=1, e.g. under compute-sanitizer). */
    const int emu = (gpu_is_emulated() && !getenv("TMR_EMU_FULL")) || getenv("TMR_SMALL_SHAPES");
    if (emu) {
        gru(ctx, 1, 1, 16, LEN_MIXED, 100);
        gru(ctx, 3, 20, 16, LEN_MIXED, 200);
        gru(ctx, 17, 9, 64, LEN_MIXED, 300);
        gru(ctx, 40, 20, 64, LEN_MIXED, 310);   /* several blocks of slots */
        gru(ctx, 12, 20, 32, LEN_EQUAL, 320);
        gru(ctx, 9, 200, 16, LEN_ONE_LONG, 330);
        gru(ctx, 3, 512, 16, LEN_ONE_LONG, 340);
        gru(ctx, 6, 30, 48, LEN_MIXED, 350);    /* d not a multiple of 32 */
        gru(ctx, 5, 12, 128, LEN_MIXED, 360);   /* W_hh resident at 192 KiB */
        gru(ctx, 5, 16, 256, LEN_MIXED, 370);   /* W_hh streamed in tiles */
        projection(ctx, 1, 16, 1, 1, 0.5, 400);
        projection(ctx, 5, 16, 2, 2, 0.5, 500);
        projection(ctx, 9, 32, 7, 4, 0.2, 600);
        dropout_mask(ctx, 3, 7, 16, 0.5f, (dropout_key_t){42, 3});
    } else {
        gru(ctx, 1, 1, 16, LEN_MIXED, 100);
        gru(ctx, 3, 20, 64, LEN_MIXED, 200);
        gru(ctx, 256, 20, 64, LEN_MIXED, 300);
        gru(ctx, 256, 20, 64, LEN_EQUAL, 310);
        gru(ctx, 256, 512, 64, LEN_ONE_LONG, 320);
        gru(ctx, 3, 200, 256, LEN_MIXED, 400);
        gru(ctx, 256, 200, 256, LEN_MIXED, 410);
        gru(ctx, 3, 512, 16, LEN_MIXED, 500);
        gru(ctx, 256, 200, 64, LEN_MIXED, 600);
        gru(ctx, 100, 200, 128, LEN_EQUAL, 610);
        gru(ctx, 77, 50, 48, LEN_MIXED, 620);
        projection(ctx, 1, 16, 1, 1, 0.5, 700);
        projection(ctx, 3, 64, 2, 2, 0.5, 800);
        projection(ctx, 256, 64, 2, 2, 0.5, 900);
        projection(ctx, 256, 256, 64, 4, 0.2, 1000);
        projection(ctx, 3, 16, 7, 3, 0.0, 1100);
        dropout_mask(ctx, 3, 256, 64, 0.5f, (dropout_key_t){42, 3});
        dropout_mask(ctx, 7, 256, 256, 0.2f, (dropout_key_t){0xfedcba9876543210ull, 123456});
    }
    gpu_ctx_free(ctx);
    return gt_finish("test_gpu_predictor");
}
#endif
