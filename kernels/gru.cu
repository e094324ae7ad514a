/* The finetune stage's interest predictor (cpu/predictor_decl.h): the GRU over packed rows
 * (input projections and the weight gradients as single cuBLAS products, the recurrence one
 * kernel per direction with the state on chip), and the projection MLP with Philox dropout. */
#include "common.cuh"
#include "timirec/cpu_ops.h"

/* The gate math and the dropout rule are the CPU reference's own host+device functions
 * (include/timirec/cpu/predictor_decl.h: gru_cell_forward_f, proj_dropout_keep), so both
 * backends compute each element the same way.
 *
 * The recurrence runs as ONE kernel per direction. A block owns a group of S consecutive
 * sorted slots (sequences of similar length: slots are sorted longest first) and walks all
 * steps with the hidden state on chip: thread (j, y) owns hidden unit j of the slots
 * y, y + SY, ... (GRU_SLOTS_PER_THREAD of them), computes their three recurrent gate sums for
 * unit j, and applies the cell to exactly those (slot, j) elements, so the gate sums never
 * leave registers; only h_prev (forward) or the recurrent gate gradients (backward) of the
 * group are exchanged through shared memory, once per step. W_hh sits in shared memory for
 * the whole run when it fits the budget (d <= 128: up to 192 KiB on sm_90), else it is
 * streamed through shared memory in row tiles every step (from L2). Blocks are independent
 * (a slot's recurrence only reads its own previous row), so nothing waits across blocks. */

#define GRU_SLOTS_PER_THREAD 4
/* Dynamic shared memory a GRU block may use (sm_90 allows 227 KiB a block). */
#define GRU_SMEM_BUDGET (200 * 1024)

/* Threads per block along y (blocks of d x SY threads, at least ~128 threads for small d). */
static int gru_block_y(int d) {
    int sy = 128 / d;
    if (sy < 1) sy = 1;
    if (sy > 8) sy = 8;
    return sy;
}

/* Forward recurrence. On entry gates (T, 3d) holds W_ih x + b_ih for every packed row;
 * writes r, z, n over it, ghn = W_hn h_prev + b_hn and h. step_off (n_steps + 1) on the
 * device. Shared: wt (kt_rows, 3d + 1) rows k of W_hh^T (padded against bank conflicts),
 * hs (S, d) the group's h_prev. kt_rows >= d: W_hh^T resident for the whole run. */
__global__ void gru_forward_kernel(int d, int n_steps, int kt_rows,
                                   const int64_t *__restrict__ step_off,
                                   const float *__restrict__ w_hh, const float *__restrict__ b_hh,
                                   float *__restrict__ gates, float *__restrict__ ghn,
                                   float *__restrict__ h) {
    TMR_DYNAMIC_SHARED(float, smem);
    const int G = 3 * d, ws = G + 1, SY = (int)blockDim.y;
    const int j = (int)threadIdx.x, y = (int)threadIdx.y;
    const int tid = y * d + j, nthreads = d * SY;
    const int S = SY * GRU_SLOTS_PER_THREAD, slot0 = (int)blockIdx.x * S;
    const int resident = kt_rows >= d;
    float *wt = smem, *hs = smem + (int64_t)kt_rows * ws;
    for (int e = tid; e < S * d; e += nthreads) hs[e] = 0.0f; /* h0 = 0 */
    if (resident)
        for (int e = tid; e < G * d; e += nthreads) wt[(e % d) * ws + e / d] = __ldg(&w_hh[e]);
    const float bhr = b_hh[j], bhz = b_hh[d + j], bhn = b_hh[2 * d + j];
    float hreg[GRU_SLOTS_PER_THREAD]; /* h_prev of this thread's (slot, j) */
    for (int q = 0; q < GRU_SLOTS_PER_THREAD; q++) hreg[q] = 0.0f;
    __syncthreads();
    for (int t = 0; t < n_steps; t++) {
        const int64_t off = step_off[t];
        const int rows = (int)(step_off[t + 1] - off);
        if (slot0 >= rows) break; /* the group's longest sequence has ended (block-uniform) */
        float ar[GRU_SLOTS_PER_THREAD], az[GRU_SLOTS_PER_THREAD], an[GRU_SLOTS_PER_THREAD];
        for (int q = 0; q < GRU_SLOTS_PER_THREAD; q++) ar[q] = az[q] = an[q] = 0.0f;
        if (t > 0) { /* h_prev W_hh^T for unit j, k ascending (h_prev = 0 at t = 0) */
            for (int k0 = 0; k0 < d; k0 += kt_rows) {
                const int kn = d - k0 < kt_rows ? d - k0 : kt_rows;
                if (!resident) {
                    __syncthreads(); /* the previous tile is no longer read */
                    for (int e = tid; e < G * kn; e += nthreads)
                        wt[(e % kn) * ws + e / kn] = __ldg(&w_hh[(int64_t)(e / kn) * d + k0 + e % kn]);
                    __syncthreads();
                }
                for (int kk = 0; kk < kn; kk++) {
                    const float wr = wt[kk * ws + j], wz = wt[kk * ws + d + j];
                    const float wn = wt[kk * ws + 2 * d + j];
                    for (int q = 0; q < GRU_SLOTS_PER_THREAD; q++) {
                        const float hk = hs[(y + q * SY) * d + k0 + kk];
                        ar[q] += wr * hk;
                        az[q] += wz * hk;
                        an[q] += wn * hk;
                    }
                }
            }
        }
        __syncthreads(); /* every thread is done reading hs */
        for (int q = 0; q < GRU_SLOTS_PER_THREAD; q++) {
            const int s = y + q * SY, slot = slot0 + s;
            if (slot >= rows) continue;
            const int64_t row = off + slot;
            float *gt = gates + row * G;
            const float ghnj = an[q] + bhn;
            float r, z, nn;
            const float hn = gru_cell_forward_f(gt[j], gt[d + j], gt[2 * d + j], ar[q] + bhr,
                                                az[q] + bhz, ghnj, hreg[q], &r, &z, &nn);
            gt[j] = r;
            gt[d + j] = z;
            gt[2 * d + j] = nn;
            ghn[row * d + j] = ghnj;
            h[row * d + j] = hn;
            hs[s * d + j] = hn;
            hreg[q] = hn;
        }
        __syncthreads(); /* hs holds this step's states */
    }
}

/* Backward recurrence, steps in reverse. dh (T, d): the gradient arriving at each packed row
 * from outside the recurrence (read only). Writes per packed row dgi = dL/d(W_ih x + b_ih)
 * and dgh = dL/d(W_hh h_prev + b_hh) (T, 3d), and hprev_rows (T - n0, d): row r >= n0's
 * h_prev, so that dW_hh is one product afterwards. The gradient flowing into h_prev
 * (dh z + dgh W_hh) stays in registers: thread (j, y) owns unit j of its slots. Shared: wtile
 * (gt_rows, d) rows of W_hh (gt_rows >= 3d: resident), dgs (S, 3d) the group's dgh. */
__global__ void gru_backward_kernel(int d, int n0, int n_steps, int gt_rows,
                                    const int64_t *__restrict__ step_off,
                                    const float *__restrict__ w_hh,
                                    const float *__restrict__ gates, const float *__restrict__ ghn,
                                    const float *__restrict__ h, const float *__restrict__ dh,
                                    float *__restrict__ dgi, float *__restrict__ dgh,
                                    float *__restrict__ hprev_rows) {
    TMR_DYNAMIC_SHARED(float, smem);
    const int G = 3 * d, SY = (int)blockDim.y;
    const int j = (int)threadIdx.x, y = (int)threadIdx.y;
    const int tid = y * d + j, nthreads = d * SY;
    const int S = SY * GRU_SLOTS_PER_THREAD, slot0 = (int)blockIdx.x * S;
    const int resident = gt_rows >= G;
    float *wtile = smem, *dgs = smem + (int64_t)gt_rows * d;
    for (int e = tid; e < S * G; e += nthreads) dgs[e] = 0.0f;
    if (resident)
        for (int e = tid; e < G * d; e += nthreads) wtile[e] = __ldg(&w_hh[e]);
    float carry[GRU_SLOTS_PER_THREAD]; /* dL/dh of this thread's (slot, j) from later steps */
    for (int q = 0; q < GRU_SLOTS_PER_THREAD; q++) carry[q] = 0.0f;
    __syncthreads();
    for (int t = n_steps - 1; t >= 0; t--) {
        const int64_t off = step_off[t];
        const int rows = (int)(step_off[t + 1] - off);
        if (slot0 >= rows) continue; /* the group's sequences start later (block-uniform) */
        float direct[GRU_SLOTS_PER_THREAD];
        for (int q = 0; q < GRU_SLOTS_PER_THREAD; q++) {
            const int s = y + q * SY, slot = slot0 + s;
            direct[q] = 0.0f;
            if (slot >= rows) continue;
            const int64_t row = off + slot;
            const float *gt = gates + row * G;
            const float hp = t > 0 ? h[(step_off[t - 1] + slot) * d + j] : 0.0f;
            float d_ir, d_iz, d_in, d_hn;
            direct[q] = gru_cell_backward_f(gt[j], gt[d + j], gt[2 * d + j], ghn[row * d + j], hp,
                                            dh[row * d + j] + carry[q], &d_ir, &d_iz, &d_in,
                                            &d_hn);
            float *di = dgi + row * G, *dw = dgh + row * G, *ds = dgs + s * G;
            di[j] = d_ir;
            di[d + j] = d_iz;
            di[2 * d + j] = d_in;
            dw[j] = ds[j] = d_ir;
            dw[d + j] = ds[d + j] = d_iz;
            dw[2 * d + j] = ds[2 * d + j] = d_hn;
            if (t > 0) hprev_rows[(row - n0) * d + j] = hp;
        }
        if (t == 0) break;
        __syncthreads(); /* dgs holds this step's gate gradients */
        float acc[GRU_SLOTS_PER_THREAD]; /* (dgh W_hh)[slot, j], g ascending */
        for (int q = 0; q < GRU_SLOTS_PER_THREAD; q++) acc[q] = 0.0f;
        for (int g0 = 0; g0 < G; g0 += gt_rows) {
            const int gn = G - g0 < gt_rows ? G - g0 : gt_rows;
            if (!resident) {
                __syncthreads();
                for (int e = tid; e < gn * d; e += nthreads)
                    wtile[e] = __ldg(&w_hh[(int64_t)g0 * d + e]);
                __syncthreads();
            }
            for (int gg = 0; gg < gn; gg++) {
                const float w = wtile[gg * d + j];
                for (int q = 0; q < GRU_SLOTS_PER_THREAD; q++)
                    acc[q] += dgs[(y + q * SY) * G + g0 + gg] * w;
            }
        }
        for (int q = 0; q < GRU_SLOTS_PER_THREAD; q++)
            if (slot0 + y + q * SY < rows) carry[q] = direct[q] + acc[q];
        __syncthreads(); /* dgs is read by all before the next step writes it */
    }
}

/* Rows of the W_hh tile that fit the budget beside `fixed` bytes (all rows when they fit). */
static int gru_tile_rows(int rows, int row_floats, size_t fixed) {
    const int64_t fit = ((int64_t)GRU_SMEM_BUDGET - (int64_t)fixed) / ((int64_t)row_floats * 4);
    if (fit < 1) tmr_fatal("gru: no room in shared memory for a W_hh row (%lld bytes fixed)",
                           (long long)fixed);
    return fit < rows ? (int)fit : rows;
}

static void gru_check_d(int d, const char *who) {
    if (d < 1 || d > 256) tmr_fatal("%s: d = %d outside 1..256", who, d);
}

/* Each recurrence kernel's dynamic shared memory and its W_hh tile rows for hidden size d. */
static size_t gru_fwd_shared(int d, int *kt) {
    const int S = gru_block_y(d) * GRU_SLOTS_PER_THREAD, G = 3 * d;
    const size_t fixed = (size_t)S * d * sizeof(float);
    *kt = gru_tile_rows(d, G + 1, fixed);
    return fixed + (size_t)*kt * (size_t)(G + 1) * sizeof(float);
}
static size_t gru_bwd_shared(int d, int *gt) {
    const int S = gru_block_y(d) * GRU_SLOTS_PER_THREAD, G = 3 * d;
    const size_t fixed = (size_t)S * (size_t)G * sizeof(float);
    *gt = gru_tile_rows(G, d, fixed);
    return fixed + (size_t)*gt * (size_t)d * sizeof(float);
}
/* The kernels' opt-ins so far (gpu_allow_shared: raised, never lowered). */
static int gru_fwd_allowed, gru_bwd_allowed;

void gpu_gru_reserve_shared(int d) {
    gru_check_d(d, "gpu_gru_reserve_shared");
    int rows;
    gpu_allow_shared(gru_forward_kernel, &gru_fwd_allowed, gru_fwd_shared(d, &rows));
    gpu_allow_shared(gru_backward_kernel, &gru_bwd_allowed, gru_bwd_shared(d, &rows));
}

static void gru_check_pack(const gpu_gru_pack_t *pk, const char *who) {
    if (pk->n_steps < 0 || pk->T < 0 || pk->n0 < 0 || (pk->T > 0 && (pk->n0 < 1 || !pk->step_off)))
        tmr_fatal("%s: packing with %d steps, %d rows at step 0, %lld rows in all", who,
                  pk->n_steps, pk->n0, (long long)pk->T);
}

extern "C" void gpu_gru_forward(gpu_ctx_t *ctx, int d, const float *w_ih, const float *w_hh,
                                const float *b_ih, const float *b_hh, const gpu_gru_pack_t *pk,
                                const float *x, float *gates, float *ghn, float *h) {
    gru_check_pack(pk, "gpu_gru_forward");
    const int64_t T = pk->T, G = 3 * (int64_t)d;
    if (T == 0) return;
    gru_check_d(d, "gpu_gru_forward");
    /* Input projections of every packed row at once: gates = x W_ih^T + b_ih. */
    gpu_layer_linear_forward(ctx, x, w_ih, b_ih, T, d, (int)G, gates);
    const int sy = gru_block_y(d), S = sy * GRU_SLOTS_PER_THREAD;
    int kt;
    const size_t shared = gru_fwd_shared(d, &kt);
    gpu_allow_shared(gru_forward_kernel, &gru_fwd_allowed, shared);
    KLAUNCH(gru_forward_kernel, dim3((unsigned)((pk->n0 + S - 1) / S)),
            dim3((unsigned)d, (unsigned)sy), shared, d, pk->n_steps, kt, pk->step_off, w_hh,
            b_hh, gates, ghn, h);
}

extern "C" void gpu_gru_backward(gpu_ctx_t *ctx, int d, const float *w_ih, const float *w_hh,
                                 const gpu_gru_pack_t *pk, const float *x, const float *gates,
                                 const float *ghn, const float *h, const float *dh, float *dgi,
                                 float *dgh, float *dx, float *dw_ih, float *dw_hh, float *db_ih,
                                 float *db_hh) {
    gru_check_pack(pk, "gpu_gru_backward");
    const int64_t T = pk->T, G = 3 * (int64_t)d;
    const int n0 = pk->n0;
    if (T == 0) return;
    gru_check_d(d, "gpu_gru_backward");
    const int sy = gru_block_y(d), S = sy * GRU_SLOTS_PER_THREAD;
    int gt;
    const size_t shared = gru_bwd_shared(d, &gt);
    float *hprev_rows = dx; /* (T - n0, d), free until dx is written at the end */
    gpu_allow_shared(gru_backward_kernel, &gru_bwd_allowed, shared);
    KLAUNCH(gru_backward_kernel, dim3((unsigned)((n0 + S - 1) / S)), dim3((unsigned)d, (unsigned)sy),
            shared, d, n0, pk->n_steps, gt, pk->step_off, w_hh, gates, ghn, h, dh, dgi, dgh,
            hprev_rows);
    /* Hidden side, all steps at once: db_hh += sums of dgh; dW_hh += dgh^T h_prev over the
     * rows of steps >= 1. */
    gpu_colsum_add(ctx, dgh, T, (int)G, db_hh);
    if (T > n0)
        gpu_gemm(ctx, 1, 0, G, d, T - n0, 1.0f, dgh + (int64_t)n0 * G, G, hprev_rows, d, 1.0f,
                 dw_hh, d);
    /* Input side, all rows at once: db_ih += sums, dW_ih += dgi^T x, dx = dgi W_ih. */
    gpu_colsum_add(ctx, dgi, T, (int)G, db_ih);
    gpu_gemm(ctx, 1, 0, G, d, T, 1.0f, dgi, G, x, d, 1.0f, dw_ih, d);
    gpu_gemm(ctx, 0, 0, T, d, G, 1.0f, dgi, G, w_ih, d, 0.0f, dx, d);
}

/* y[b, j] += bias[j]; hidden layers then dropout (training) and ReLU. y (B, width); row b is
 * row row0 + b of the whole batch of B_all rows the mask is drawn over. */
__global__ void proj_activate_kernel(int64_t n, int width, int hidden, int drop, uint64_t seed,
                                     uint32_t step, int layer, int row0, int B_all, float p,
                                     float scale, const float *__restrict__ bias,
                                     float *__restrict__ y) {
    THREAD_INDEX(i, n);
    const int b = (int)(i / width);
    const int j = (int)(i % width);
    float v = y[i] + bias[j];
    if (hidden) {
        if (drop)
            v = proj_dropout_keep(seed, step, layer, B_all, row0 + b, width, j, p) ? v * scale
                                                                                  : 0.0f;
        if (v < 0) v = 0; /* ReLU (NaN propagates) */
    }
    y[i] = v;
}

extern "C" void gpu_proj_forward(gpu_ctx_t *ctx, const model_layout_t *lay, const float *params,
                                 const float *g, int B, int training, dropout_key_t key,
                                 int row0, int B_all, float *acts, float *out) {
    const int d = lay->cfg.emb_size, K = lay->cfg.K, np = lay->n_proj;
    if (model_slice_check(B, row0, B_all) != 0)
        tmr_fatal("gpu_proj_forward: rows %d .. %d of a batch of %d", row0, row0 + B - 1, B_all);
    const int nb = model_rows_all(B, B_all); /* the mask is drawn over the whole batch */
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
               row0, nb, pf, scale, bias, y);
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

/* keep (n_layers, B, d): rows row0 .. row0 + B - 1 of a batch of B_all rows. */
__global__ void dropout_mask_kernel(int64_t n, uint64_t seed, uint32_t step, int B, int row0,
                                    int B_all, int d, float p, int32_t *__restrict__ keep) {
    THREAD_INDEX(i, n);
    const int64_t lb = i / d;
    const int j = (int)(i % d);
    keep[i] = proj_dropout_keep(seed, step, (int)(lb / B), B_all, row0 + (int)(lb % B), d, j, p);
}

extern "C" void gpu_proj_dropout_mask(gpu_ctx_t *ctx, dropout_key_t key, int n_layers, int B,
                                      int row0, int B_all, int d, float p, int32_t *keep) {
    (void)ctx;
    if (model_slice_check(B, row0, B_all) != 0)
        tmr_fatal("gpu_proj_dropout_mask: rows %d .. %d of a batch of %d", row0, row0 + B - 1,
                  B_all);
    LAUNCH(dropout_mask_kernel, (int64_t)n_layers * B * d, key.seed, key.step, B, row0,
           model_rows_all(B, B_all), d, p, keep);
}
