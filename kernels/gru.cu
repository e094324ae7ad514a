/* The finetune stage's interest predictor (cpu/predictor_decl.h): the GRU over packed rows
 * (input and recurrent products through cuBLAS, the cell one thread per (row, unit)), and the
 * projection MLP with Philox dropout. */
#include "common.cuh"
#include "timirec/cpu_ops.h"

/* The gate math and the dropout rule are the CPU reference's own host+device functions
 * (include/timirec/cpu/predictor_decl.h: gru_cell_forward_f, proj_dropout_keep), so both
 * backends compute each element the same way. */

/* One GRU step for rows off .. off + nt - 1 (thread (i, j): row off + i, hidden unit j).
 * On entry gates holds W_ih x + b_ih; work (nt, 3d) holds h_prev W_hh^T (not read when
 * hprev is NULL: h_prev = 0). Writes r, z, n over the gates, ghn = W_hn h_prev + b_hn, h. */
__global__ void gru_cell_forward_kernel(int64_t n, int d, int64_t off,
                                        const float *__restrict__ b_hh,
                                        const float *__restrict__ hprev,
                                        const float *__restrict__ work, float *__restrict__ gates,
                                        float *__restrict__ ghn, float *__restrict__ h) {
    THREAD_INDEX(idx, n);
    const int64_t i = idx / d;
    const int j = (int)(idx % d);
    const int64_t G = 3 * (int64_t)d;
    const float *gw = work + i * G;
    float *gt = gates + (off + i) * G;
    float ghr = b_hh[j], ghz = b_hh[d + j], ghnj = b_hh[2 * d + j], hp = 0;
    if (hprev) {
        ghr += gw[j];
        ghz += gw[d + j];
        ghnj += gw[2 * d + j];
        hp = hprev[i * d + j];
    }
    float r, z, nn;
    h[(off + i) * d + j] =
        gru_cell_forward_f(gt[j], gt[d + j], gt[2 * d + j], ghr, ghz, ghnj, hp, &r, &z, &nn);
    gt[j] = r;
    gt[d + j] = z;
    gt[2 * d + j] = nn;
    ghn[(off + i) * d + j] = ghnj;
}

extern "C" void gpu_gru_forward(gpu_ctx_t *ctx, int d, const float *w_ih, const float *w_hh,
                                const float *b_ih, const float *b_hh, int n_steps,
                                const int32_t *batch_sizes, const int64_t *step_off,
                                const float *x, float *gates, float *ghn, float *h, float *work) {
    const int64_t T = step_off[n_steps], G = 3 * (int64_t)d;
    if (T == 0) return;
    gpu_ext_linear_forward(ctx, x, w_ih, b_ih, T, d, (int)G, gates);
    for (int t = 0; t < n_steps; t++) {
        const int64_t nt = batch_sizes[t], off = step_off[t];
        const float *hprev = t > 0 ? h + step_off[t - 1] * d : NULL;
        if (hprev) gpu_gemm(ctx, 0, 1, nt, G, d, 1.0f, hprev, d, w_hh, d, 0.0f, work, G);
        LAUNCH(gru_cell_forward_kernel, nt * d, d, off, b_hh, hprev, work, gates, ghn, h);
    }
}

/* Backward of one step (thread (i, j) as above): from dh of row off + i, the saved r, z, n,
 * ghn and h_prev, writes dgi (dL/d(W_ih x + b_ih)), work (dL/d(W_hh h_prev + b_hh)) and adds
 * the direct part dh z into dh_prev (none at the first step). */
__global__ void gru_cell_backward_kernel(int64_t n, int d, int64_t off,
                                         const float *__restrict__ gates,
                                         const float *__restrict__ ghn,
                                         const float *__restrict__ hprev,
                                         const float *__restrict__ dh, float *__restrict__ dhprev,
                                         float *__restrict__ dgi, float *__restrict__ work) {
    THREAD_INDEX(idx, n);
    const int64_t i = idx / d;
    const int j = (int)(idx % d);
    const int64_t G = 3 * (int64_t)d;
    const float *gt = gates + (off + i) * G;
    const float r = gt[j], z = gt[d + j], nn = gt[2 * d + j];
    const float gh_n = ghn[(off + i) * d + j];
    const float hp = hprev ? hprev[i * d + j] : 0.0f;
    const float dh_new = dh[(off + i) * d + j];
    float d_ir, d_iz, d_in, d_hn;
    const float dh_direct =
        gru_cell_backward_f(r, z, nn, gh_n, hp, dh_new, &d_ir, &d_iz, &d_in, &d_hn);
    if (dhprev) dhprev[i * d + j] += dh_direct;
    float *di = dgi + (off + i) * G, *dw = work + i * G;
    di[j] = d_ir;
    di[d + j] = d_iz;
    di[2 * d + j] = d_in;
    dw[j] = d_ir;
    dw[d + j] = d_iz;
    dw[2 * d + j] = d_hn;
}

extern "C" void gpu_gru_backward(gpu_ctx_t *ctx, int d, const float *w_ih, const float *w_hh,
                                 int n_steps, const int32_t *batch_sizes, const int64_t *step_off,
                                 const float *x, const float *gates, const float *ghn,
                                 const float *h, float *dh, float *dgi, float *work, float *dx,
                                 float *dw_ih, float *dw_hh, float *db_ih, float *db_hh) {
    const int64_t T = step_off[n_steps], G = 3 * (int64_t)d;
    if (T == 0) return;
    for (int t = n_steps - 1; t >= 0; t--) {
        const int64_t nt = batch_sizes[t], off = step_off[t];
        const float *hprev = t > 0 ? h + step_off[t - 1] * d : NULL;
        float *dhprev = t > 0 ? dh + step_off[t - 1] * d : NULL;
        LAUNCH(gru_cell_backward_kernel, nt * d, d, off, gates, ghn, hprev, dh, dhprev, dgi,
               work);
        /* db_hh += column sums of work; dW_hh += work^T h_prev; dh_prev += work W_hh. */
        gpu_colsum_add(ctx, work, nt, (int)G, db_hh);
        if (hprev) {
            gpu_gemm(ctx, 1, 0, G, d, nt, 1.0f, work, G, hprev, d, 1.0f, dw_hh, d);
            gpu_gemm(ctx, 0, 0, nt, d, G, 1.0f, work, G, w_hh, d, 1.0f, dhprev, d);
        }
    }
    /* Input side, all rows at once: db_ih += sums, dW_ih += dgi^T x, dx = dgi W_ih. */
    gpu_colsum_add(ctx, dgi, T, (int)G, db_ih);
    gpu_gemm(ctx, 1, 0, G, d, T, 1.0f, dgi, G, x, d, 1.0f, dw_ih, d);
    gpu_gemm(ctx, 0, 0, T, d, G, 1.0f, dgi, G, w_ih, d, 0.0f, dx, d);
}

/* y[b, j] += bias[j]; hidden layers then dropout (training) and ReLU. y (B, width). */
__global__ void proj_activate_kernel(int64_t n, int width, int hidden, int drop, uint64_t seed,
                                     uint32_t step, int layer, int B, float p, float scale,
                                     const float *__restrict__ bias, float *__restrict__ y) {
    THREAD_INDEX(i, n);
    const int b = (int)(i / width);
    const int j = (int)(i % width);
    float v = y[i] + bias[j];
    if (hidden) {
        if (drop) v = proj_dropout_keep(seed, step, layer, B, b, width, j, p) ? v * scale : 0.0f;
        if (v < 0) v = 0; /* ReLU (NaN propagates) */
    }
    y[i] = v;
}

extern "C" void gpu_proj_forward(gpu_ctx_t *ctx, const model_layout_t *lay, const float *params,
                                 const float *g, int B, int training, dropout_key_t key,
                                 float *acts, float *out) {
    const int d = lay->cfg.emb_size, K = lay->cfg.K, np = lay->n_proj;
    const double p = lay->cfg.dropout;
    const float pf = (float)p;
    const float scale = (float)(1.0 / (1.0 - p));
    const int drop = training && p > 0;
    const float *in = g;
    for (int l = 0; l < np; l++) {
        const int last = l == np - 1, width = last ? K : d;
        const float *W = params + lay->t[lay->proj_w[l]].offset;
        const float *bias = params + lay->t[lay->proj_b[l]].offset;
        float *y = last ? out : acts + (int64_t)l * B * d;
        gpu_gemm(ctx, 0, 1, B, width, d, 1.0f, in, d, W, d, 0.0f, y, width);
        LAUNCH(proj_activate_kernel, (int64_t)B * width, width, !last, drop, key.seed, key.step, l,
               B, pf, scale, bias, y);
        in = y;
    }
}

/* din[i] = in[i] > 0 ? din[i] * scale : 0 (back through ReLU and dropout: a dropped element is
 * 0, as is a clipped one). */
__global__ void proj_mask_backward_kernel(int64_t n, float scale, const float *__restrict__ in,
                                          float *__restrict__ din) {
    THREAD_INDEX(i, n);
    din[i] = in[i] > 0 ? din[i] * scale : 0.0f;
}

extern "C" void gpu_proj_backward(gpu_ctx_t *ctx, const model_layout_t *lay, const float *params,
                                  const float *g, const float *acts, int B, int training,
                                  const float *dout, float *dg, float *work, float *grads) {
    const int d = lay->cfg.emb_size, K = lay->cfg.K, np = lay->n_proj;
    const double p = lay->cfg.dropout;
    const float scale = (training && p > 0) ? (float)(1.0 / (1.0 - p)) : 1.0f;
    const float *dy = dout; /* gradient wrt layer l's output (pre-activation for l < np-1) */
    for (int l = np - 1; l >= 0; l--) {
        const int last = l == np - 1, width = last ? K : d;
        const param_t *pw = &lay->t[lay->proj_w[l]], *pb = &lay->t[lay->proj_b[l]];
        const float *W = params + pw->offset;
        const float *in = l == 0 ? g : acts + (int64_t)(l - 1) * B * d;
        gpu_colsum_add(ctx, dy, B, width, grads + pb->offset);
        gpu_gemm(ctx, 1, 0, width, d, B, 1.0f, dy, width, in, d, 1.0f, grads + pw->offset, d);
        float *din = l == 0 ? dg : work + (int64_t)(l & 1) * B * d;
        gpu_gemm(ctx, 0, 0, B, d, width, 1.0f, dy, width, W, d, 0.0f, din, d);
        if (l > 0) LAUNCH(proj_mask_backward_kernel, (int64_t)B * d, scale, in, din);
        dy = din;
    }
}

__global__ void dropout_mask_kernel(int64_t n, uint64_t seed, uint32_t step, int B, int d,
                                    float p, int32_t *__restrict__ keep) {
    THREAD_INDEX(i, n);
    const int64_t lb = i / d;
    const int j = (int)(i % d);
    keep[i] = proj_dropout_keep(seed, step, (int)(lb / B), B, (int)(lb % B), d, j, p);
}

extern "C" void gpu_proj_dropout_mask(gpu_ctx_t *ctx, dropout_key_t key, int n_layers, int B,
                                      int d, float p, int32_t *keep) {
    (void)ctx;
    LAUNCH(dropout_mask_kernel, (int64_t)n_layers * B * d, key.seed, key.step, B, d, p, keep);
}
