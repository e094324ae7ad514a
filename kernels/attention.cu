/* Fused masked single-head scaled dot-product attention (cpu/extractor_decl.h ext_attn_*),
 * flash-attention style: the L x L scores never reach global memory.
 *
 * Forward: a block per (sequence, tile of ATT_WARPS query rows), one warp per query row. Keys
 * and values stream through shared memory in tiles of 32 (one key per lane for q . k, the
 * row's weights then broadcast from shared memory while each lane accumulates its d / 32
 * output columns), with the online softmax (running max, rescaled running sum). Per query row
 * it saves only stats = (max of the valid scaled scores, 1 / sum of their exponentials).
 *
 * Backward recomputes each weight p = exp(s / sqrt(d) - max) / sum from the stats (the same
 * expression as the forward's, so both backward kernels see the same p), in two kernels so
 * that every output element is summed by one warp lane in a fixed order (no atomics):
 *  - query side (block per sequence x query tile, warp per query row i): pass 1 over the key
 *    tiles gives D_i = sum_j p_ij g_ij (g_ij = dctx_i . v_j); pass 2 gives
 *    dq_i = sum_j p_ij (g_ij - D_i) k_j / sqrt(d). D is saved (B, L) for
 *  - key side (block per sequence x key tile, warp per key j, query tiles streamed):
 *    dk_j = sum_i ds_ij q_i / sqrt(d), dv_j = sum_i p_ij dctx_i.
 * Masked keys (hist <= 0) get weight exactly 0; a sequence with no valid key gives ctx = 0
 * and zero gradients, as the CPU. Shared memory per block (floats): forward
 * 2 * 32 (d + 1) + 8 d + 256, backward about 2 * 32 (d + 1) + 16 d + 512: 85 KiB at d = 256
 * (opted in above the 48 KiB default). d is limited to ATT_MAX_D (the per-lane registers). */
#include "common.cuh"

#define ATT_TILE 32   /* keys (or queries) per shared tile: one per lane */
#define ATT_WARPS 8   /* query (or key) rows per block: one warp each */
#define ATT_MAX_D 256
#define ATT_CPL (ATT_MAX_D / 32) /* output columns per lane, at most */
#define ATT_FULL 0xffffffffu

static __device__ __forceinline__ float att_warp_sum(float v) {
    for (int m = 16; m > 0; m /= 2) v += __shfl_xor_sync(ATT_FULL, v, m);
    return v;
}

static __device__ __forceinline__ float att_warp_max(float v) {
    for (int m = 16; m > 0; m /= 2) v = fmaxf(v, __shfl_xor_sync(ATT_FULL, v, m));
    return v;
}

/* S[r * ld + c] = X[(row0 + r) * d + c] for r < ATT_TILE, c < d; rows at or past L are 0.
 * All threads of the block take part. */
static __device__ void att_load_tile(const float *__restrict__ X, int row0, int L, int d,
                                     float *S, int ld) {
    for (int e = threadIdx.x; e < ATT_TILE * d; e += blockDim.x) {
        const int r = e / d, c = e - r * d;
        S[r * ld + c] = row0 + r < L ? X[(int64_t)(row0 + r) * d + c] : 0.0f;
    }
}

/* a . b over d elements (a, b in shared memory). */
static __device__ __forceinline__ float att_dot(const float *a, const float *b, int d) {
    float s = 0;
    for (int c = 0; c < d; c++) s += a[c] * b[c];
    return s;
}

/* The attention weight of a valid key from its raw score q . k and the row's stats: the
 * forward's expression (a division by sqrt(d), as the CPU). */
static __device__ __forceinline__ float att_weight(float raw, float sq, float mx, float inv) {
    return expf(raw / sq - mx) * inv;
}

/* grid (B, ceil(L / ATT_WARPS)), block ATT_WARPS * 32. q, k, v, ctx (B, L, d); hist (B, L);
 * stats (B, L, 2). */
__global__ void __launch_bounds__(ATT_WARPS * 32)
    attn_forward_kernel(int L, int d, float sq, const float *__restrict__ q,
                        const float *__restrict__ k, const float *__restrict__ v,
                        const int32_t *__restrict__ hist, float *__restrict__ stats,
                        float *__restrict__ ctx) {
    TMR_DYNAMIC_SHARED(float, smem);
    const int ld = d + 1; /* odd stride: lane j reading row j, column c hits bank (j + c) % 32 */
    float *Ks = smem;                   /* (32, ld) key tile */
    float *Vs = Ks + ATT_TILE * ld;     /* (32, ld) value tile */
    float *Qs = Vs + ATT_TILE * ld;     /* (ATT_WARPS, d) the block's query rows */
    float *Ps = Qs + ATT_WARPS * d;     /* (ATT_WARPS, 32) each warp's weights for a tile */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int i = blockIdx.y * ATT_WARPS + warp;
    const int row_ok = i < L;
    const int64_t base = (int64_t)blockIdx.x * L * d;
    const int32_t *m = hist + (int64_t)blockIdx.x * L;
    float *qs = Qs + warp * d, *ps = Ps + warp * ATT_TILE;
    for (int c = lane; c < d; c += 32) qs[c] = row_ok ? q[base + (int64_t)i * d + c] : 0.0f;
    float mx = -INFINITY, sum = 0, acc[ATT_CPL];
    for (int u = 0; u < ATT_CPL; u++) acc[u] = 0;
    for (int j0 = 0; j0 < L; j0 += ATT_TILE) {
        __syncthreads(); /* the previous tile is read by every warp (and qs is written) */
        att_load_tile(k + base, j0, L, d, Ks, ld);
        att_load_tile(v + base, j0, L, d, Vs, ld);
        __syncthreads();
        const int j = j0 + lane;
        const int valid = j < L && m[j] > 0;
        const float s = att_dot(qs, Ks + lane * ld, d) / sq;
        const float new_max = fmaxf(mx, att_warp_max(valid ? s : -INFINITY));
        if (new_max == -INFINITY) continue; /* no valid key yet (the same for every row) */
        const float p = valid ? expf(s - new_max) : 0.0f;
        const float scale = expf(mx - new_max); /* 0 while mx is -inf */
        sum = sum * scale + att_warp_sum(p);
        mx = new_max;
        ps[lane] = p;
        __syncwarp(ATT_FULL);
        const int nj = L - j0 < ATT_TILE ? L - j0 : ATT_TILE;
        for (int u = 0; u < ATT_CPL; u++) {
            const int c = lane + 32 * u;
            if (c >= d) break;
            float a = acc[u] * scale;
            for (int jj = 0; jj < nj; jj++) a += ps[jj] * Vs[jj * ld + c];
            acc[u] = a;
        }
        __syncwarp(ATT_FULL);
    }
    if (!row_ok) return;
    const int64_t r = (int64_t)blockIdx.x * L + i;
    const float inv = sum > 0 ? 1.0f / sum : 0.0f;
    if (lane == 0) {
        stats[2 * r] = mx == -INFINITY ? 0.0f : mx;
        stats[2 * r + 1] = inv;
    }
    for (int u = 0; u < ATT_CPL; u++) {
        const int c = lane + 32 * u;
        if (c >= d) break;
        ctx[base + (int64_t)i * d + c] = acc[u] * inv;
    }
}

/* Query side of the backward: dq and D (see the file comment). Grid and block as the forward. */
__global__ void __launch_bounds__(ATT_WARPS * 32)
    attn_backward_query_kernel(int L, int d, float sq, const float *__restrict__ q,
                               const float *__restrict__ k, const float *__restrict__ v,
                               const int32_t *__restrict__ hist, const float *__restrict__ stats,
                               const float *__restrict__ dctx, float *__restrict__ dq,
                               float *__restrict__ D) {
    TMR_DYNAMIC_SHARED(float, smem);
    const int ld = d + 1;
    float *Ks = smem;                   /* (32, ld) */
    float *Vs = Ks + ATT_TILE * ld;     /* (32, ld) */
    float *Qs = Vs + ATT_TILE * ld;     /* (ATT_WARPS, d) query rows */
    float *Gs = Qs + ATT_WARPS * d;     /* (ATT_WARPS, d) their dctx rows */
    float *Ss = Gs + ATT_WARPS * d;     /* (ATT_WARPS, 32) each warp's ds for a tile */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int i = blockIdx.y * ATT_WARPS + warp;
    const int row_ok = i < L;
    const int64_t base = (int64_t)blockIdx.x * L * d, r = (int64_t)blockIdx.x * L + i;
    const int32_t *m = hist + (int64_t)blockIdx.x * L;
    float *qs = Qs + warp * d, *gs = Gs + warp * d, *ss = Ss + warp * ATT_TILE;
    for (int c = lane; c < d; c += 32) {
        qs[c] = row_ok ? q[base + (int64_t)i * d + c] : 0.0f;
        gs[c] = row_ok ? dctx[base + (int64_t)i * d + c] : 0.0f;
    }
    const float mx = row_ok ? stats[2 * r] : 0.0f, inv = row_ok ? stats[2 * r + 1] : 0.0f;
    float dsum = 0, acc[ATT_CPL];
    for (int u = 0; u < ATT_CPL; u++) acc[u] = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int j0 = 0; j0 < L; j0 += ATT_TILE) {
            __syncthreads();
            att_load_tile(k + base, j0, L, d, Ks, ld);
            att_load_tile(v + base, j0, L, d, Vs, ld);
            __syncthreads();
            const int j = j0 + lane;
            const int valid = j < L && m[j] > 0;
            const float p = valid ? att_weight(att_dot(qs, Ks + lane * ld, d), sq, mx, inv) : 0.0f;
            const float g = valid ? att_dot(gs, Vs + lane * ld, d) : 0.0f;
            if (pass == 0) {
                dsum += att_warp_sum(p * g);
                continue;
            }
            ss[lane] = p * (g - dsum);
            __syncwarp(ATT_FULL);
            const int nj = L - j0 < ATT_TILE ? L - j0 : ATT_TILE;
            for (int u = 0; u < ATT_CPL; u++) {
                const int c = lane + 32 * u;
                if (c >= d) break;
                float a = acc[u];
                for (int jj = 0; jj < nj; jj++) a += ss[jj] * Ks[jj * ld + c];
                acc[u] = a;
            }
            __syncwarp(ATT_FULL);
        }
    }
    if (!row_ok) return;
    if (lane == 0) D[r] = dsum;
    for (int u = 0; u < ATT_CPL; u++) {
        const int c = lane + 32 * u;
        if (c >= d) break;
        dq[base + (int64_t)i * d + c] = acc[u] / sq;
    }
}

/* Key side of the backward: dk, dv for the block's ATT_WARPS keys, query tiles streamed.
 * Grid and block as the forward (blockIdx.y tiles the keys). */
__global__ void __launch_bounds__(ATT_WARPS * 32)
    attn_backward_key_kernel(int L, int d, float sq, const float *__restrict__ q,
                             const float *__restrict__ k, const float *__restrict__ v,
                             const int32_t *__restrict__ hist, const float *__restrict__ stats,
                             const float *__restrict__ dctx, const float *__restrict__ D,
                             float *__restrict__ dk, float *__restrict__ dv) {
    TMR_DYNAMIC_SHARED(float, smem);
    const int ld = d + 1;
    float *Qs = smem;                   /* (32, ld) query tile */
    float *Gs = Qs + ATT_TILE * ld;     /* (32, ld) its dctx rows */
    float *Ks = Gs + ATT_TILE * ld;     /* (ATT_WARPS, d) the block's keys */
    float *Vs = Ks + ATT_WARPS * d;     /* (ATT_WARPS, d) their values */
    float *Ps = Vs + ATT_WARPS * d;     /* (ATT_WARPS, 32) each warp's p for a tile */
    float *Ss = Ps + ATT_WARPS * ATT_TILE; /* (ATT_WARPS, 32) and ds */
    float *Rs = Ss + ATT_WARPS * ATT_TILE; /* (3, 32) the tile's max, 1 / sum, D */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int j = blockIdx.y * ATT_WARPS + warp;
    const int64_t base = (int64_t)blockIdx.x * L * d, row0 = (int64_t)blockIdx.x * L;
    const int key_ok = j < L;
    const int valid = key_ok && hist[row0 + j] > 0;
    float *ks = Ks + warp * d, *vs = Vs + warp * d;
    float *ps = Ps + warp * ATT_TILE, *ss = Ss + warp * ATT_TILE;
    for (int c = lane; c < d; c += 32) {
        ks[c] = key_ok ? k[base + (int64_t)j * d + c] : 0.0f;
        vs[c] = key_ok ? v[base + (int64_t)j * d + c] : 0.0f;
    }
    float dk_acc[ATT_CPL], dv_acc[ATT_CPL];
    for (int u = 0; u < ATT_CPL; u++) dk_acc[u] = dv_acc[u] = 0;
    for (int i0 = 0; i0 < L; i0 += ATT_TILE) {
        __syncthreads();
        att_load_tile(q + base, i0, L, d, Qs, ld);
        att_load_tile(dctx + base, i0, L, d, Gs, ld);
        if (threadIdx.x < ATT_TILE) {
            const int i = i0 + threadIdx.x;
            const int ok = i < L;
            Rs[threadIdx.x] = ok ? stats[2 * (row0 + i)] : 0.0f;
            Rs[ATT_TILE + threadIdx.x] = ok ? stats[2 * (row0 + i) + 1] : 0.0f;
            Rs[2 * ATT_TILE + threadIdx.x] = ok ? D[row0 + i] : 0.0f;
        }
        __syncthreads();
        if (!valid) continue; /* masked key (or past L): dk = dv = 0; still at every barrier */
        const int ok = i0 + lane < L;
        const float p = ok ? att_weight(att_dot(Qs + lane * ld, ks, d), sq, Rs[lane],
                                        Rs[ATT_TILE + lane])
                           : 0.0f;
        const float g = ok ? att_dot(Gs + lane * ld, vs, d) : 0.0f;
        ps[lane] = p;
        ss[lane] = p * (g - Rs[2 * ATT_TILE + lane]);
        __syncwarp(ATT_FULL);
        const int ni = L - i0 < ATT_TILE ? L - i0 : ATT_TILE;
        for (int u = 0; u < ATT_CPL; u++) {
            const int c = lane + 32 * u;
            if (c >= d) break;
            float a = dk_acc[u], b = dv_acc[u];
            for (int ii = 0; ii < ni; ii++) {
                a += ss[ii] * Qs[ii * ld + c];
                b += ps[ii] * Gs[ii * ld + c];
            }
            dk_acc[u] = a;
            dv_acc[u] = b;
        }
        __syncwarp(ATT_FULL);
    }
    if (!key_ok) return;
    for (int u = 0; u < ATT_CPL; u++) {
        const int c = lane + 32 * u;
        if (c >= d) break;
        dk[base + (int64_t)j * d + c] = dk_acc[u] / sq;
        dv[base + (int64_t)j * d + c] = dv_acc[u];
    }
}

static void attn_check(int B, int L, int d, const char *who) {
    if (d < 1 || d > ATT_MAX_D)
        tmr_fatal("%s: emb_size %d outside the GPU attention's 1..%d", who, d, ATT_MAX_D);
    if (B < 0 || L < 0 || (L + ATT_WARPS - 1) / ATT_WARPS > 65535)
        tmr_fatal("%s: batch %d x %d outside the grid", who, B, L);
}

/* Each kernel's dynamic shared memory (floats): the key/value tiles, the warps' rows and
 * score tiles, as the kernels lay them out. */
static size_t attn_fwd_bytes(int d) {
    return sizeof(float) * ((size_t)2 * ATT_TILE * (d + 1) + (size_t)ATT_WARPS * d + ATT_WARPS * ATT_TILE);
}
static size_t attn_bwd_query_bytes(int d) {
    return sizeof(float) * ((size_t)2 * ATT_TILE * (d + 1) + (size_t)2 * ATT_WARPS * d +
                            ATT_WARPS * ATT_TILE);
}
static size_t attn_bwd_key_bytes(int d) {
    return sizeof(float) * ((size_t)2 * ATT_TILE * (d + 1) + (size_t)2 * ATT_WARPS * d +
                            (size_t)2 * ATT_WARPS * ATT_TILE + 3 * ATT_TILE);
}
/* The kernels' opt-ins so far (gpu_allow_shared: raised, never lowered). */
static int attn_fwd_allowed, attn_bwd_query_allowed, attn_bwd_key_allowed;

void gpu_attn_reserve_shared(int d) {
    gpu_allow_shared(attn_forward_kernel, &attn_fwd_allowed, attn_fwd_bytes(d));
    gpu_allow_shared(attn_backward_query_kernel, &attn_bwd_query_allowed, attn_bwd_query_bytes(d));
    gpu_allow_shared(attn_backward_key_kernel, &attn_bwd_key_allowed, attn_bwd_key_bytes(d));
}

extern "C" void gpu_ext_attn_forward(gpu_ctx_t *ctx, const float *q, const float *k,
                                     const float *v, const int32_t *hist, int B, int L, int d,
                                     float *stats, float *ctx_out) {
    (void)ctx;
    attn_check(B, L, d, "gpu_ext_attn_forward");
    if (B == 0 || L == 0) return;
    const float sq = sqrtf((float)d);
    const size_t bytes = attn_fwd_bytes(d);
    gpu_allow_shared(attn_forward_kernel, &attn_fwd_allowed, bytes);
    const dim3 grid((unsigned)B, (unsigned)((L + ATT_WARPS - 1) / ATT_WARPS));
    KLAUNCH(attn_forward_kernel, grid, ATT_WARPS * 32, bytes, L, d, sq, q, k, v, hist, stats,
            ctx_out);
}

extern "C" void gpu_ext_attn_backward(gpu_ctx_t *ctx, const float *q, const float *k,
                                      const float *v, const int32_t *hist, const float *stats,
                                      const float *dctx, int B, int L, int d, float *dq,
                                      float *dk, float *dv, float *D) {
    (void)ctx;
    attn_check(B, L, d, "gpu_ext_attn_backward");
    if (B == 0 || L == 0) return;
    const float sq = sqrtf((float)d);
    const dim3 grid((unsigned)B, (unsigned)((L + ATT_WARPS - 1) / ATT_WARPS));
    const size_t qbytes = attn_bwd_query_bytes(d);
    gpu_allow_shared(attn_backward_query_kernel, &attn_bwd_query_allowed, qbytes);
    KLAUNCH(attn_backward_query_kernel, grid, ATT_WARPS * 32, qbytes, L, d, sq, q, k, v, hist,
            stats, dctx, dq, D);
    const size_t kbytes = attn_bwd_key_bytes(d);
    gpu_allow_shared(attn_backward_key_kernel, &attn_bwd_key_allowed, kbytes);
    KLAUNCH(attn_backward_key_kernel, grid, ATT_WARPS * 32, kbytes, L, d, sq, q, k, v, hist,
            stats, dctx, D, dk, dv);
}
