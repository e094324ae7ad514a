/* Residual + LayerNorm (+ row mask) and the position-wise feed-forward (cpu/extractor_decl.h
 * layer_add_layernorm_*, ext_ffn_*).
 *
 * LayerNorm: one warp per row, each lane holding d / 32 of its values in registers; the mean
 * and the (biased) variance of the centred values by shuffles, eps 1e-5, rstd = 1 / sqrt, as
 * the CPU. The backward computes dz the same way and, in the same pass, each block's partial
 * sums of dgamma and dbeta over its LN_ROWS rows (its warps' register sums combined in a fixed
 * order through shared memory); a second kernel adds the partials over the blocks in order.
 * No float atomics: the result is the same run to run. One block (n <= LN_ROWS) adds its
 * sums directly.
 *
 * Feed-forward: the two products through cuBLAS, each followed by one fused elementwise
 * epilogue: bias + ReLU after the first (forward), ReLU' after dr = df W2 (backward, db1 then
 * by cuBLAS's column sum). We chose plain cuBLAS + our own epilogue kernel over cuBLASLt's
 * RELU_BIAS / DRELU_BGRAD epilogues: the same one extra pass over (n, dff) at most, no second
 * GEMM path for the emulation (emu/emulate.h) to model, and the CPU's rounding order of
 * the bias kept (added to the product, not inside it). */
#include "common.cuh"

#define LN_EPS 1e-5f
#define LN_WARPS 8                /* rows in flight per block: one warp each */
#define LN_ROWS 64                /* rows per block in the backward (LN_ROWS / LN_WARPS a warp) */
#define LN_MAX_D 256
#define LN_CPL (LN_MAX_D / 32)    /* columns per lane, at most */
#define LN_FULL 0xffffffffu

static __device__ __forceinline__ float ln_warp_sum(float v) {
    for (int m = 16; m > 0; m /= 2) v += __shfl_xor_sync(LN_FULL, v, m);
    return v;
}

/* grid ceil(n / LN_WARPS), block LN_WARPS * 32: warp w of block b normalises row
 * b * LN_WARPS + w. a, b, y, xhat (n, d); gamma, beta (d); rowmask (n) or NULL; rstd (n). */
__global__ void __launch_bounds__(LN_WARPS * 32)
    add_layernorm_forward_kernel(int64_t n, int d, const float *__restrict__ a,
                                 const float *__restrict__ b, const float *__restrict__ gamma,
                                 const float *__restrict__ beta,
                                 const int32_t *__restrict__ rowmask, float *__restrict__ y,
                                 float *__restrict__ xhat, float *__restrict__ rstd) {
    const int lane = threadIdx.x % 32;
    const int64_t r = (int64_t)blockIdx.x * LN_WARPS + threadIdx.x / 32;
    if (r >= n) return; /* whole warps */
    const float *ar = a + r * d, *br = b ? b + r * d : NULL;
    float z[LN_CPL], s = 0;
    for (int u = 0; u < LN_CPL; u++) {
        const int c = lane + 32 * u;
        z[u] = c < d ? (br ? ar[c] + br[c] : ar[c]) : 0.0f;
        s += z[u];
    }
    const float mean = ln_warp_sum(s) / (float)d;
    float v = 0;
    for (int u = 0; u < LN_CPL; u++) {
        const int c = lane + 32 * u;
        z[u] = c < d ? z[u] - mean : 0.0f;
        v += z[u] * z[u];
    }
    const float var = ln_warp_sum(v) / (float)d;
    const float rs = 1.0f / sqrtf(var + LN_EPS);
    if (lane == 0) rstd[r] = rs;
    const int keep = !rowmask || rowmask[r] > 0;
    for (int u = 0; u < LN_CPL; u++) {
        const int c = lane + 32 * u;
        if (c >= d) break;
        const float xh = z[u] * rs;
        xhat[r * d + c] = xh;
        y[r * d + c] = keep ? gamma[c] * xh + beta[c] : 0.0f;
    }
}

/* grid ceil(n / LN_ROWS), block LN_WARPS * 32. Rows b * LN_ROWS .. + LN_ROWS - 1, warp w taking
 * every LN_WARPS-th: dz = rstd (dy gamma - mean(dy gamma) - xhat mean(dy gamma xhat)) (masked
 * rows 0). The block's sums of dy xhat and dy over its kept rows: with parts NULL added into
 * dgamma, dbeta (the only block), else written to parts (gridDim.x, 2, d). */
__global__ void __launch_bounds__(LN_WARPS * 32)
    add_layernorm_backward_kernel(int64_t n, int d, const float *__restrict__ dy,
                                  const float *__restrict__ xhat, const float *__restrict__ rstd,
                                  const float *__restrict__ gamma,
                                  const int32_t *__restrict__ rowmask, float *__restrict__ dz,
                                  float *__restrict__ parts, float *__restrict__ dgamma,
                                  float *__restrict__ dbeta) {
    TMR_DYNAMIC_SHARED(float, smem); /* (2, LN_WARPS, d) the warps' sums */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float sg[LN_CPL], sb[LN_CPL];
    for (int u = 0; u < LN_CPL; u++) sg[u] = sb[u] = 0;
    const int64_t r_end = (int64_t)(blockIdx.x + 1) * LN_ROWS < n ? (int64_t)(blockIdx.x + 1) * LN_ROWS : n;
    for (int64_t r = (int64_t)blockIdx.x * LN_ROWS + warp; r < r_end; r += LN_WARPS) {
        float *zr = dz + r * d;
        if (rowmask && rowmask[r] <= 0) {
            for (int c = lane; c < d; c += 32) zr[c] = 0;
            continue;
        }
        const float *gr = dy + r * d, *xr = xhat + r * d;
        float g[LN_CPL], xh[LN_CPL], m1 = 0, m2 = 0;
        for (int u = 0; u < LN_CPL; u++) {
            const int c = lane + 32 * u;
            g[u] = c < d ? gr[c] : 0.0f;
            xh[u] = c < d ? xr[c] : 0.0f;
            const float gg = c < d ? g[u] * gamma[c] : 0.0f;
            m1 += gg;
            m2 += gg * xh[u];
            sg[u] += g[u] * xh[u];
            sb[u] += g[u];
        }
        m1 = ln_warp_sum(m1) / (float)d;
        m2 = ln_warp_sum(m2) / (float)d;
        const float rs = rstd[r];
        for (int u = 0; u < LN_CPL; u++) {
            const int c = lane + 32 * u;
            if (c >= d) break;
            zr[c] = rs * (g[u] * gamma[c] - m1 - xh[u] * m2);
        }
    }
    for (int u = 0; u < LN_CPL; u++) {
        const int c = lane + 32 * u;
        if (c >= d) break;
        smem[warp * d + c] = sg[u];
        smem[(LN_WARPS + warp) * d + c] = sb[u];
    }
    __syncthreads();
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float tg = 0, tb = 0;
        for (int w = 0; w < LN_WARPS; w++) {
            tg += smem[w * d + c];
            tb += smem[(LN_WARPS + w) * d + c];
        }
        if (parts) {
            parts[(int64_t)blockIdx.x * 2 * d + c] = tg;
            parts[(int64_t)blockIdx.x * 2 * d + d + c] = tb;
        } else {
            dgamma[c] += tg;
            dbeta[c] += tb;
        }
    }
}

/* Second pass: out[c] += sum over p < n_parts (ascending within each of the block's 8 row
 * groups, the groups then in order) of parts[p, c], c < cols; columns at or past split go to
 * out2[c - split]. grid ceil(cols / 32), block (32, 8). */
__global__ void __launch_bounds__(256)
    partials_sum_add_kernel(int64_t n_parts, int cols, int split, const float *__restrict__ parts,
                            float *__restrict__ out, float *__restrict__ out2) {
    __shared__ float sums[8][32];
    const int tx = threadIdx.x, ty = threadIdx.y, c = blockIdx.x * 32 + tx;
    float s = 0;
    if (c < cols)
        for (int64_t p = ty; p < n_parts; p += 8) s += parts[p * cols + c];
    sums[ty][tx] = s;
    __syncthreads();
    if (ty != 0 || c >= cols) return;
    float t = 0;
    for (int g = 0; g < 8; g++) t += sums[g][tx];
    if (c < split)
        out[c] += t;
    else
        out2[c - split] += t;
}

static void ln_check(int64_t n, int d, const char *who) {
    if (d < 1 || d > LN_MAX_D)
        tmr_fatal("%s: emb_size %d outside the GPU LayerNorm's 1..%d", who, d, LN_MAX_D);
    if ((n + LN_WARPS - 1) / LN_WARPS > 2147483647LL) tmr_fatal("%s: %lld rows exceed the grid", who, (long long)n);
}

extern "C" void gpu_layer_add_layernorm_forward(gpu_ctx_t *ctx, const float *a, const float *b,
                                              const float *gamma, const float *beta,
                                              const int32_t *rowmask, int64_t n, int d, float *y,
                                              float *xhat, float *rstd) {
    (void)ctx;
    ln_check(n, d, "gpu_layer_add_layernorm_forward");
    if (n <= 0) return;
    KLAUNCH(add_layernorm_forward_kernel, (unsigned)((n + LN_WARPS - 1) / LN_WARPS),
            LN_WARPS * 32, 0, n, d, a, b, gamma, beta, rowmask, y, xhat, rstd);
}

extern "C" void gpu_layer_add_layernorm_backward(gpu_ctx_t *ctx, const float *dy, const float *xhat,
                                               const float *rstd, const float *gamma,
                                               const int32_t *rowmask, int64_t n, int d,
                                               float *dz, float *dgamma, float *dbeta,
                                               float *work) {
    (void)ctx;
    ln_check(n, d, "gpu_layer_add_layernorm_backward");
    if (n <= 0) return;
    const int64_t blocks = (n + LN_ROWS - 1) / LN_ROWS;
    /* More than one block: (blocks, 2, d) partials in work, which holds n * d >= 2 * blocks * d
     * floats since n > LN_ROWS. */
    float *parts = blocks > 1 ? work : NULL;
    KLAUNCH(add_layernorm_backward_kernel, (unsigned)blocks, LN_WARPS * 32,
            sizeof(float) * 2 * LN_WARPS * (size_t)d, n, d, dy, xhat, rstd, gamma, rowmask, dz,
            parts, dgamma, dbeta);
    if (parts)
        KLAUNCH(partials_sum_add_kernel, (unsigned)((2 * d + 31) / 32), dim3(32, 8), 0, blocks,
                2 * d, d, (const float *)parts, dgamma, dbeta);
}

/* r[i] = relu(r[i] + b[i % cols]) (NaN becomes 0, as the CPU's !(x > 0)). */
__global__ void bias_relu_kernel(int64_t n, int cols, const float *__restrict__ b,
                                 float *__restrict__ r) {
    THREAD_INDEX(i, n);
    const float x = r[i] + b[i % cols];
    r[i] = x > 0 ? x : 0.0f;
}

/* dr[i] = 0 where r[i] <= 0 (relu'(u) = [u > 0] = [r > 0]). */
__global__ void relu_backward_kernel(int64_t n, const float *__restrict__ r,
                                     float *__restrict__ dr) {
    THREAD_INDEX(i, n);
    if (!(r[i] > 0)) dr[i] = 0;
}

extern "C" void gpu_ext_ffn_forward(gpu_ctx_t *ctx, const float *h, const float *W1,
                                    const float *b1, const float *W2, const float *b2, int64_t n,
                                    int d, int dff, float *r, float *f) {
    if (n <= 0) return;
    gpu_gemm(ctx, 0, 1, n, dff, d, 1.0f, h, d, W1, d, 0.0f, r, dff); /* r = h W1^T */
    LAUNCH(bias_relu_kernel, n * dff, dff, b1, r);
    gpu_layer_linear_forward(ctx, r, W2, b2, n, dff, d, f);
}

extern "C" void gpu_ext_ffn_backward(gpu_ctx_t *ctx, const float *h, const float *r,
                                     const float *W1, const float *W2, const float *df,
                                     int64_t n, int d, int dff, float *dh, float *dW1, float *db1,
                                     float *dW2, float *db2, float *dr) {
    if (n <= 0) return;
    gpu_layer_linear_backward(ctx, r, W2, df, n, dff, d, NULL, dW2, db2);
    gpu_gemm(ctx, 0, 0, n, dff, d, 1.0f, df, d, W2, dff, 0.0f, dr, dff); /* dr = df W2 */
    LAUNCH(relu_backward_kernel, n * dff, r, dr);
    gpu_layer_linear_backward(ctx, h, W1, dr, n, d, dff, dh, dW1, db1);
}
