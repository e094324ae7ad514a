/* Interest attention + weighted sum (cpu/extractor_decl.h ext_interest_*), fused: one block
 * per sequence.
 *
 * Forward: t = x W1^T by cuBLAS, then one kernel per sequence: (1) warp per row l:
 * t = tanh(t + b1) (saved), e = t W2^T + b2 (saved; W2 in shared memory, one interest per
 * lane); (2) warp per interest k: the masked softmax of e[:, k] over the history (shuffle max
 * and sum) into alpha; (3) V = alpha x, each thread one (k, c) summed over the valid l in
 * ascending order, as the CPU.
 *
 * Backward: one kernel per sequence: (1) warp per row l: dalpha[l, k] = dV[k] . x[l] (dV in
 * shared memory, one interest per lane; 0 where alpha is 0) into de, and
 * dx[l] = sum_k alpha[k, l] dV[k]; (2) warp per interest: de = alpha (dalpha - sum_l alpha
 * dalpha); (3) warp per row: dt = (de W2) (1 - t^2). Then the parameter gradients
 * (dW2 += de^T t, db2, dW1 += dt^T x, db1) and dx += dt W1 by cuBLAS (deterministic, no
 * atomics). The phases meet at __syncthreads (global memory written by the block is visible
 * to it after the barrier). */
#include "common.cuh"

#define INT_WARPS 8
#define INT_FULL 0xffffffffu
/* Dynamic shared memory a block may ask for (the device's ceiling is 227 KiB). */
#define INT_MAX_SHARED (200 * 1024)

static __device__ __forceinline__ float int_warp_sum(float v) {
    for (int m = 16; m > 0; m /= 2) v += __shfl_xor_sync(INT_FULL, v, m);
    return v;
}

static __device__ __forceinline__ float int_warp_max(float v) {
    for (int m = 16; m > 0; m /= 2) v = fmaxf(v, __shfl_xor_sync(INT_FULL, v, m));
    return v;
}

/* grid B, block INT_WARPS * 32. On entry t (B, L, a) holds x W1^T. x (B, L, d); hist (B, L);
 * b1 (a); W2 (K, a); b2 (K); e (B, L, K); alpha (B, K, L); V (B, K, d). */
__global__ void __launch_bounds__(INT_WARPS * 32)
    interest_forward_kernel(int L, int d, int a, int K, const float *__restrict__ x,
                            const int32_t *__restrict__ hist, const float *__restrict__ b1,
                            const float *__restrict__ W2, const float *__restrict__ b2,
                            float *__restrict__ t, float *__restrict__ e,
                            float *__restrict__ alpha, float *__restrict__ V) {
    TMR_DYNAMIC_SHARED(float, smem);
    const int la = a + 1; /* odd stride: lane k reading row k, column c hits bank (k + c) % 32 */
    float *W2s = smem;               /* (K, la) */
    float *Ts = W2s + K * la;        /* (INT_WARPS, a) each warp's tanh row */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t b = blockIdx.x, row0 = b * L;
    const int32_t *m = hist + row0;
    for (int i = threadIdx.x; i < K * a; i += blockDim.x) W2s[(i / a) * la + i % a] = W2[i];
    __syncthreads();
    /* (1) t and e, a warp per row */
    float *ts = Ts + warp * a;
    for (int l = warp; l < L; l += INT_WARPS) {
        float *tr = t + (row0 + l) * a;
        for (int c = lane; c < a; c += 32) {
            const float tv = tanhf(tr[c] + b1[c]);
            tr[c] = tv;
            ts[c] = tv;
        }
        __syncwarp(INT_FULL);
        for (int k = lane; k < K; k += 32) {
            const float *w = W2s + k * la;
            float s = 0;
            for (int c = 0; c < a; c++) s += ts[c] * w[c];
            e[(row0 + l) * K + k] = s + b2[k];
        }
        __syncwarp(INT_FULL);
    }
    __syncthreads();
    /* (2) alpha[b, k, :] = masked softmax of e[b, :, k], a warp per interest */
    for (int k = warp; k < K; k += INT_WARPS) {
        const float *ek = e + row0 * K + k;
        float *al = alpha + (b * K + k) * L;
        float mx = -INFINITY;
        int any = 0;
        for (int l = lane; l < L; l += 32)
            if (m[l] > 0) {
                mx = fmaxf(mx, ek[(int64_t)l * K]);
                any = 1;
            }
        mx = int_warp_max(mx);
        any = __any_sync(INT_FULL, any);
        float sum = 0;
        for (int l = lane; l < L; l += 32) {
            const float p = m[l] > 0 ? expf(ek[(int64_t)l * K] - mx) : 0.0f;
            al[l] = p;
            sum += p;
        }
        sum = int_warp_sum(sum);
        if (!any) continue; /* all masked: alpha (and V) all 0 */
        const float inv = 1.0f / sum;
        for (int l = lane; l < L; l += 32)
            if (m[l] > 0) al[l] *= inv;
    }
    __syncthreads();
    /* (3) V[b, k, c] = sum over valid l (ascending) of alpha[b, k, l] x[b, l, c] */
    for (int o = threadIdx.x; o < K * d; o += blockDim.x) {
        const int k = o / d, c = o - k * d;
        const float *al = alpha + (b * K + k) * L, *xc = x + row0 * d + c;
        float acc = 0;
        for (int l = 0; l < L; l++)
            if (m[l] > 0) acc += al[l] * xc[(int64_t)l * d];
        V[(b * K + k) * d + c] = acc;
    }
}

/* grid B, block INT_WARPS * 32. x (B, L, d); t (B, L, a); alpha (B, K, L); W2 (K, a);
 * dV (B, K, d); dx (B, L, d) overwritten with the weighted-sum path; de (B, L, K) and
 * dt (B, L, a) written. */
__global__ void __launch_bounds__(INT_WARPS * 32)
    interest_backward_kernel(int L, int d, int a, int K, const float *__restrict__ x,
                             const float *__restrict__ t, const float *__restrict__ alpha,
                             const float *__restrict__ W2, const float *__restrict__ dV,
                             float *__restrict__ dx, float *__restrict__ de,
                             float *__restrict__ dt) {
    TMR_DYNAMIC_SHARED(float, smem);
    const int ld = d + 1;
    float *dVs = smem;               /* (K, ld) this sequence's dV */
    float *W2s = dVs + K * ld;       /* (K, a) */
    float *Xs = W2s + K * a;         /* (INT_WARPS, d) each warp's x row */
    float *Es = Xs + INT_WARPS * d;  /* (INT_WARPS, K) each warp's de row */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t b = blockIdx.x, row0 = b * L;
    const float *alb = alpha + b * K * L;
    for (int i = threadIdx.x; i < K * d; i += blockDim.x) dVs[(i / d) * ld + i % d] = dV[b * K * d + i];
    for (int i = threadIdx.x; i < K * a; i += blockDim.x) W2s[i] = W2[i];
    __syncthreads();
    /* (1) dalpha into de, and dx's weighted-sum path, a warp per row */
    float *xs = Xs + warp * d;
    for (int l = warp; l < L; l += INT_WARPS) {
        const int64_t r = row0 + l;
        for (int c = lane; c < d; c += 32) xs[c] = x[r * d + c];
        __syncwarp(INT_FULL);
        for (int k = lane; k < K; k += 32) {
            float g = 0;
            if (alb[(int64_t)k * L + l] != 0) {
                const float *v = dVs + k * ld;
                for (int c = 0; c < d; c++) g += v[c] * xs[c];
            }
            de[r * K + k] = g;
        }
        for (int c = lane; c < d; c += 32) {
            float acc = 0;
            for (int k = 0; k < K; k++) {
                const float w = alb[(int64_t)k * L + l];
                if (w == 0) continue;
                acc += w * dVs[k * ld + c];
            }
            dx[r * d + c] = acc;
        }
        __syncwarp(INT_FULL);
    }
    __syncthreads();
    /* (2) softmax backward per interest: de = alpha (dalpha - sum_l alpha dalpha) */
    for (int k = warp; k < K; k += INT_WARPS) {
        const float *al = alb + (int64_t)k * L;
        float *dk = de + row0 * K + k;
        float dot = 0;
        for (int l = lane; l < L; l += 32) dot += al[l] * dk[(int64_t)l * K];
        dot = int_warp_sum(dot);
        for (int l = lane; l < L; l += 32) dk[(int64_t)l * K] = al[l] * (dk[(int64_t)l * K] - dot);
    }
    __syncthreads();
    /* (3) dt = (de W2) (1 - t^2), a warp per row */
    float *es = Es + warp * K;
    for (int l = warp; l < L; l += INT_WARPS) {
        const int64_t r = row0 + l;
        for (int k = lane; k < K; k += 32) es[k] = de[r * K + k];
        __syncwarp(INT_FULL);
        for (int c = lane; c < a; c += 32) {
            float s = 0;
            for (int k = 0; k < K; k++) s += es[k] * W2s[k * a + c];
            const float tv = t[r * a + c];
            dt[r * a + c] = s * (1.0f - tv * tv);
        }
        __syncwarp(INT_FULL);
    }
}

static size_t interest_shared(size_t floats, const char *who, int d, int a, int K) {
    const size_t bytes = floats * sizeof(float);
    if (bytes > INT_MAX_SHARED)
        tmr_fatal("%s: emb %d, attn %d, K %d need %zu bytes of shared memory (at most %d)", who,
                  d, a, K, bytes, INT_MAX_SHARED);
    return bytes;
}

/* Each kernel's dynamic shared memory (floats), as the kernels lay it out. */
static size_t interest_fwd_bytes(int d, int a, int K) {
    return interest_shared((size_t)K * (a + 1) + (size_t)INT_WARPS * a,
                           "gpu_ext_interest_forward", d, a, K);
}
static size_t interest_bwd_bytes(int d, int a, int K) {
    return interest_shared((size_t)K * (d + 1) + (size_t)K * a + (size_t)INT_WARPS * (d + K),
                           "gpu_ext_interest_backward", d, a, K);
}
/* The kernels' opt-ins so far (gpu_allow_shared: raised, never lowered). */
static int interest_fwd_allowed, interest_bwd_allowed;

void gpu_interest_reserve_shared(int d, int a, int K) {
    gpu_allow_shared(interest_forward_kernel, &interest_fwd_allowed, interest_fwd_bytes(d, a, K));
    gpu_allow_shared(interest_backward_kernel, &interest_bwd_allowed, interest_bwd_bytes(d, a, K));
}

extern "C" void gpu_ext_interest_forward(gpu_ctx_t *ctx, const float *x, const int32_t *hist,
                                         const float *W1, const float *b1, const float *W2,
                                         const float *b2, int B, int L, int d, int a, int K,
                                         float *t, float *e, float *alpha, float *V) {
    const int64_t n = (int64_t)B * L;
    if (B <= 0 || L <= 0) return;
    gpu_gemm(ctx, 0, 1, n, a, d, 1.0f, x, d, W1, d, 0.0f, t, a); /* t = x W1^T */
    const size_t bytes = interest_fwd_bytes(d, a, K);
    gpu_allow_shared(interest_forward_kernel, &interest_fwd_allowed, bytes);
    KLAUNCH(interest_forward_kernel, (unsigned)B, INT_WARPS * 32, bytes, L, d, a, K, x, hist, b1,
            W2, b2, t, e, alpha, V);
}

extern "C" void gpu_ext_interest_backward(gpu_ctx_t *ctx, const float *x, const float *t,
                                          const float *alpha, const float *W1, const float *W2,
                                          const float *dV, int B, int L, int d, int a, int K,
                                          float *dx, float *dW1, float *db1, float *dW2,
                                          float *db2, float *de, float *dt) {
    const int64_t n = (int64_t)B * L;
    if (B <= 0 || L <= 0) return;
    const size_t bytes = interest_bwd_bytes(d, a, K);
    gpu_allow_shared(interest_backward_kernel, &interest_bwd_allowed, bytes);
    KLAUNCH(interest_backward_kernel, (unsigned)B, INT_WARPS * 32, bytes, L, d, a, K, x, t, alpha,
            W2, dV, dx, de, dt);
    /* Score path's parameters, and dx += dt W1. */
    gpu_layer_linear_backward(ctx, t, W2, de, n, a, K, NULL, dW2, db2);
    gpu_layer_linear_backward(ctx, x, W1, dt, n, d, a, dx, dW1, db1);
}
