/* Block-cooperative kernels in plain CUDA style (shared memory, barriers, warp shuffles and
 * votes, dynamic shared memory, atomics, 2-D grids, 3-D blocks) for test_gpu_coop.c: nvcc
 * builds them for a real GPU, g++ -DTMR_EMULATE for the host emulation (emu/emulate.h), so
 * one source checks that the emulation runs what the GPU runs. Declarations: coop_kernels.h. */
#include "coop_kernels.h"

#include <stdio.h>

#ifdef TMR_EMULATE
#include "../emu/emulate.h"
#define KLAUNCH(kernel, grid, block, shared_bytes, ...) \
    TMR_EMU_LAUNCH(kernel, grid, block, shared_bytes, __VA_ARGS__)
#else
#include <cuda_runtime.h>
#define KLAUNCH(kernel, grid, block, shared_bytes, ...) \
    kernel<<<grid, block, shared_bytes>>>(__VA_ARGS__)
#define TMR_DYNAMIC_SHARED(T, name) extern __shared__ __align__(16) T name[]
#endif

#define FULL_MASK 0xffffffffu

/* Print the failing call and return -1 from the host function. */
#define CK(call)                                                                        \
    do {                                                                                \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess) {                                                        \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,         \
                    cudaGetErrorString(e_));                                            \
            return -1;                                                                  \
        }                                                                               \
    } while (0)

template <class T> static int upload(T **d, const T *h, size_t n) {
    CK(cudaMalloc((void **)d, n * sizeof(T)));
    CK(cudaMemcpy(*d, h, n * sizeof(T), cudaMemcpyHostToDevice));
    return 0;
}
template <class T> static int download(T *h, const T *d, size_t n) {
    CK(cudaMemcpy(h, d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return 0;
}
/* After a launch: configuration errors, then errors inside the kernel. */
#define CK_LAUNCH()                       \
    do {                                  \
        CK(cudaGetLastError());           \
        CK(cudaDeviceSynchronize());      \
    } while (0)

/* ---- block reduction through shared memory ---- */
__global__ void block_sum_kernel(const float *x, int n, float *sums, int *positives) {
    __shared__ float s[1024];
    const int t = threadIdx.x, base = blockIdx.x * blockDim.x * 2;
    const float a = base + t < n ? x[base + t] : 0.0f;
    const float b = base + t + (int)blockDim.x < n ? x[base + t + blockDim.x] : 0.0f;
    s[t] = a + b;
    const int count = __syncthreads_count(a > 0.0f) + __syncthreads_count(b > 0.0f);
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) s[t] += s[t + half];
        __syncthreads();
    }
    if (t == 0) {
        sums[blockIdx.x] = s[0];
        positives[blockIdx.x] = count;
    }
}

extern "C" int coop_block_sum(const float *x, int n, int threads, float *sums, int *positives) {
    const int blocks = (n + 2 * threads - 1) / (2 * threads);
    float *dx, *ds;
    int *dp;
    if (upload(&dx, x, (size_t)n)) return -1;
    CK(cudaMalloc((void **)&ds, (size_t)blocks * sizeof(float)));
    CK(cudaMalloc((void **)&dp, (size_t)blocks * sizeof(int)));
    KLAUNCH(block_sum_kernel, blocks, threads, 0, dx, n, ds, dp);
    CK_LAUNCH();
    if (download(sums, ds, (size_t)blocks) || download(positives, dp, (size_t)blocks)) return -1;
    CK(cudaFree(dx));
    CK(cudaFree(ds));
    CK(cudaFree(dp));
    return 0;
}

/* ---- warp shuffles and votes ---- */
__global__ void warp_reduce_kernel(const float *x, int n, float *xor_sums, float *down_max,
                                   unsigned *ballots, int *any, int *all) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32;
    if (i >= n) return;  /* n is a multiple of 32: whole warps return */
    const float v = x[i];
    float sum = v;
    for (int m = 16; m > 0; m /= 2) sum += __shfl_xor_sync(FULL_MASK, sum, m);
    float mx = v;
    for (int d = 16; d > 0; d /= 2) mx = fmaxf(mx, __shfl_down_sync(FULL_MASK, mx, d));
    const unsigned ballot = __ballot_sync(FULL_MASK, v > 0.0f);
    const int some = __any_sync(FULL_MASK, v > 0.5f), every = __all_sync(FULL_MASK, v > -0.9f);
    xor_sums[i] = sum;
    if (lane == 0) {
        const int w = i / 32;
        down_max[w] = mx;
        ballots[w] = ballot;
        any[w] = some;
        all[w] = every;
    }
}

extern "C" int coop_warp_reduce(const float *x, int n, float *xor_sums, float *down_max,
                                unsigned *ballots, int *any, int *all) {
    const int warps = n / 32;
    float *dx, *dsum, *dmax;
    unsigned *db;
    int *dany, *dall;
    if (upload(&dx, x, (size_t)n)) return -1;
    CK(cudaMalloc((void **)&dsum, (size_t)n * sizeof(float)));
    CK(cudaMalloc((void **)&dmax, (size_t)warps * sizeof(float)));
    CK(cudaMalloc((void **)&db, (size_t)warps * sizeof(unsigned)));
    CK(cudaMalloc((void **)&dany, (size_t)warps * sizeof(int)));
    CK(cudaMalloc((void **)&dall, (size_t)warps * sizeof(int)));
    KLAUNCH(warp_reduce_kernel, (n + 127) / 128, 128, 0, dx, n, dsum, dmax, db, dany, dall);
    CK_LAUNCH();
    if (download(xor_sums, dsum, (size_t)n) || download(down_max, dmax, (size_t)warps) ||
        download(ballots, db, (size_t)warps) || download(any, dany, (size_t)warps) ||
        download(all, dall, (size_t)warps))
        return -1;
    CK(cudaFree(dx));
    CK(cudaFree(dsum));
    CK(cudaFree(dmax));
    CK(cudaFree(db));
    CK(cudaFree(dany));
    CK(cudaFree(dall));
    return 0;
}

/* ---- tiled transpose: 2-D grid, (32, 8) blocks ---- */
#define TILE 32
__global__ void transpose_kernel(const float *in, int rows, int cols, float *out) {
    __shared__ float tile[TILE][TILE + 1];  /* +1: no bank conflicts on the GPU */
    const int c0 = blockIdx.x * TILE, r0 = blockIdx.y * TILE;
    for (int k = threadIdx.y; k < TILE; k += blockDim.y) {
        const int r = r0 + k, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[k][threadIdx.x] = in[(size_t)r * cols + c];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < TILE; k += blockDim.y) {
        const int r = c0 + k, c = r0 + threadIdx.x;  /* out is cols x rows */
        if (r < cols && c < rows) out[(size_t)r * rows + c] = tile[threadIdx.x][k];
    }
}

extern "C" int coop_transpose(const float *in, int rows, int cols, float *out) {
    float *din, *dout;
    if (upload(&din, in, (size_t)rows * cols)) return -1;
    CK(cudaMalloc((void **)&dout, (size_t)rows * cols * sizeof(float)));
    const dim3 grid((cols + TILE - 1) / TILE, (rows + TILE - 1) / TILE), block(TILE, 8);
    KLAUNCH(transpose_kernel, grid, block, 0, din, rows, cols, dout);
    CK_LAUNCH();
    if (download(out, dout, (size_t)rows * cols)) return -1;
    CK(cudaFree(din));
    CK(cudaFree(dout));
    return 0;
}

/* ---- block prefix sum: __shfl_up_sync within warps, warp totals in shared memory ---- */
__global__ void block_scan_kernel(const int *x, int n, int *out) {
    __shared__ int warp_total[32];
    const int t = threadIdx.x, i = blockIdx.x * blockDim.x + t, lane = t % 32, warp = t / 32;
    int v = i < n ? x[i] : 0;
    for (int d = 1; d < 32; d *= 2) {
        const int up = __shfl_up_sync(FULL_MASK, v, d);
        if (lane >= d) v += up;
    }
    if (lane == 31) warp_total[warp] = v;
    __syncthreads();
    if (warp == 0) {
        const int warps = blockDim.x / 32;
        int w = lane < warps ? warp_total[lane] : 0;
        for (int d = 1; d < 32; d *= 2) {
            const int up = __shfl_up_sync(FULL_MASK, w, d);
            if (lane >= d) w += up;
        }
        if (lane < warps) warp_total[lane] = w;  /* inclusive scan of the totals */
    }
    __syncthreads();
    if (warp > 0) v += warp_total[warp - 1];
    if (i < n) out[i] = v;
}

extern "C" int coop_block_scan(const int *x, int n, int *out) {
    int *dx, *dout;
    if (upload(&dx, x, (size_t)n)) return -1;
    CK(cudaMalloc((void **)&dout, (size_t)n * sizeof(int)));
    KLAUNCH(block_scan_kernel, (n + 255) / 256, 256, 0, dx, n, dout);
    CK_LAUNCH();
    if (download(out, dout, (size_t)n)) return -1;
    CK(cudaFree(dx));
    CK(cudaFree(dout));
    return 0;
}

/* ---- row softmax with the row in dynamic shared memory ---- */
/* Every thread of the block gets the block's reduction (op: 0 max, 1 sum). */
__device__ float block_reduce(float v, int op, float *scratch) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    for (int m = 16; m > 0; m /= 2) {
        const float o = __shfl_xor_sync(FULL_MASK, v, m);
        v = op == 0 ? fmaxf(v, o) : v + o;
    }
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : (op == 0 ? -INFINITY : 0.0f);
    for (int m = 16; m > 0; m /= 2) {
        const float o = __shfl_xor_sync(FULL_MASK, v, m);
        v = op == 0 ? fmaxf(v, o) : v + o;
    }
    __syncthreads();  /* scratch is reused by the next reduction */
    return v;
}

__global__ void softmax_rows_kernel(const float *x, int cols, float *out) {
    TMR_DYNAMIC_SHARED(float, row);
    __shared__ float scratch[32];
    const float *xr = x + (size_t)blockIdx.x * cols;
    float mx = -INFINITY;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        row[c] = xr[c];
        mx = fmaxf(mx, row[c]);
    }
    mx = block_reduce(mx, 0, scratch);
    float sum = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        row[c] = __expf(row[c] - mx);
        sum += row[c];
    }
    sum = block_reduce(sum, 1, scratch);
    const float inv = __fdividef(1.0f, sum);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out[(size_t)blockIdx.x * cols + c] = row[c] * inv;
}

extern "C" int coop_softmax_rows(const float *x, int rows, int cols, int threads, float *out) {
    float *dx, *dout;
    if (upload(&dx, x, (size_t)rows * cols)) return -1;
    CK(cudaMalloc((void **)&dout, (size_t)rows * cols * sizeof(float)));
    KLAUNCH(softmax_rows_kernel, rows, threads, (size_t)cols * sizeof(float), dx, cols, dout);
    CK_LAUNCH();
    if (download(out, dout, (size_t)rows * cols)) return -1;
    CK(cudaFree(dx));
    CK(cudaFree(dout));
    return 0;
}

/* ---- 3-D blocks ---- */
__global__ void reverse_3d_kernel(const float *x, float *out) {
    __shared__ float s[64];
    const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int base = blockIdx.x * 64;
    s[t] = x[base + t];
    __syncthreads();
    /* Recomputed after the barrier on purpose: threadIdx must be this thread's again. */
    const int t2 = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    out[base + t2] = s[63 - t2];
}

extern "C" int coop_reverse_3d(const float *x, int blocks, float *out) {
    float *dx, *dout;
    if (upload(&dx, x, (size_t)blocks * 64)) return -1;
    CK(cudaMalloc((void **)&dout, (size_t)blocks * 64 * sizeof(float)));
    KLAUNCH(reverse_3d_kernel, blocks, dim3(4, 4, 4), 0, dx, dout);
    CK_LAUNCH();
    if (download(out, dout, (size_t)blocks * 64)) return -1;
    CK(cudaFree(dx));
    CK(cudaFree(dout));
    return 0;
}

/* ---- a shuffle in one warp of the block only ---- */
__global__ void half_block_shuffle_kernel(const float *x, float *out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = x[i];
    if (threadIdx.x >= 32) v = __shfl_xor_sync(FULL_MASK, v, 1);
    out[i] = v;
}

extern "C" int coop_half_block_shuffle(const float *x, int blocks, float *out) {
    float *dx, *dout;
    if (upload(&dx, x, (size_t)blocks * 64)) return -1;
    CK(cudaMalloc((void **)&dout, (size_t)blocks * 64 * sizeof(float)));
    KLAUNCH(half_block_shuffle_kernel, blocks, 64, 0, dx, dout);
    CK_LAUNCH();
    if (download(out, dout, (size_t)blocks * 64)) return -1;
    CK(cudaFree(dx));
    CK(cudaFree(dout));
    return 0;
}

/* ---- atomics ---- */
__global__ void atomics_kernel(const int *keys, const float *x, int n, int *hist, float *total) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(&hist[__ldg(&keys[i])], 1);
    atomicAdd(total, __ldg(&x[i]));
}

extern "C" int coop_atomics(const int *keys, const float *x, int n, int bins, int *hist,
                            float *total) {
    int *dk, *dh;
    float *dx, *dt;
    if (upload(&dk, keys, (size_t)n) || upload(&dx, x, (size_t)n)) return -1;
    CK(cudaMalloc((void **)&dh, (size_t)bins * sizeof(int)));
    CK(cudaMalloc((void **)&dt, sizeof(float)));
    CK(cudaMemset(dh, 0, (size_t)bins * sizeof(int)));
    CK(cudaMemset(dt, 0, sizeof(float)));
    KLAUNCH(atomics_kernel, (n + 255) / 256, 256, 0, dk, dx, n, dh, dt);
    CK_LAUNCH();
    if (download(hist, dh, (size_t)bins) || download(total, dt, 1)) return -1;
    CK(cudaFree(dk));
    CK(cudaFree(dx));
    CK(cudaFree(dh));
    CK(cudaFree(dt));
    return 0;
}

/* ---- a deliberate race (emulation only) ---- */
__global__ void racy_neighbour_kernel(const float *x, float *out) {
    TMR_DYNAMIC_SHARED(float, s);
    const int t = threadIdx.x;
    s[t] = x[t];
    __syncthreads();
    s[t] *= 2.0f;
    out[t] = t > 0 ? s[t - 1] : 0.0f;  /* no barrier after the write: a race */
}

extern "C" int coop_racy_neighbour(const float *x, int n, float *out) {
    float *dx, *dout;
    if (upload(&dx, x, (size_t)n)) return -1;
    CK(cudaMalloc((void **)&dout, (size_t)n * sizeof(float)));
    KLAUNCH(racy_neighbour_kernel, 1, n, (size_t)n * sizeof(float), dx, dout);
    CK_LAUNCH();
    if (download(out, dout, (size_t)n)) return -1;
    CK(cudaFree(dx));
    CK(cudaFree(dout));
    return 0;
}

/* ---- misuse the emulation must report (never run these on a GPU) ---- */
__global__ void bad_early_return_kernel(int n, int *out) {
    __shared__ int s[64];
    const int t = threadIdx.x;
    if (t >= n) return;
    s[t] = t;
    __syncthreads();
    out[t] = s[n - 1 - t];
}

__global__ void bad_two_barriers_kernel(int *out) {
    const int t = threadIdx.x;
    if (t < 16) {
        __syncthreads();
        out[t] = 1;
    } else {
        __syncthreads();
        out[t] = 2;
    }
}

__global__ void bad_shuffle_exited_kernel(int *out) {
    const int t = threadIdx.x;
    if (t == 5) return;
    out[t] = __shfl_xor_sync(FULL_MASK, t, 1);
}

__global__ void bad_missing_lane_kernel(int *out) {
    const int t = threadIdx.x;
    out[t] = __shfl_down_sync(FULL_MASK, t, 1);
}

__global__ void bad_deadlock_kernel(int *out) {
    const int t = threadIdx.x;
    if (t == 0)
        __syncthreads();
    else
        out[t] = __shfl_sync(FULL_MASK, t, 1);
}

static int run_bad(int which) {
    int *d;
    CK(cudaMalloc((void **)&d, 64 * sizeof(int)));
    switch (which) {
    case 0: KLAUNCH(bad_early_return_kernel, 1, 64, 0, 40, d); break;
    case 1: KLAUNCH(bad_two_barriers_kernel, 1, 32, 0, d); break;
    case 2: KLAUNCH(bad_shuffle_exited_kernel, 1, 32, 0, d); break;
    case 3: KLAUNCH(bad_missing_lane_kernel, 1, 48, 0, d); break;
    case 4: KLAUNCH(bad_deadlock_kernel, 1, 32, 0, d); break;
    }
    CK_LAUNCH();
    CK(cudaFree(d));
    return 0;
}
extern "C" int coop_bad_early_return(void) { return run_bad(0); }
extern "C" int coop_bad_two_barriers(void) { return run_bad(1); }
extern "C" int coop_bad_shuffle_exited(void) { return run_bad(2); }
extern "C" int coop_bad_missing_lane(void) { return run_bad(3); }
extern "C" int coop_bad_deadlock(void) { return run_bad(4); }
