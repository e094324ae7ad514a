/* Batched scoring + top-K on the GPU (include/timirec/topk.h): the CPU version's operation on
 * device pointers, with its order (higher score first, equal scores to the lower item id).
 *
 * How: users in chunks of U_c rows, the catalog in chunks of N_c items. For each pair of
 * chunks, cuBLAS writes the scores (U_c * n_vecs, N_c) into a scratch buffer (FP32, no TF32
 * unless TIMIREC_TOPK_TF32=1) and one block per row selects from it: each thread takes one
 * item per round, takes the max over the row's vectors, and appends the (score, item) key to a
 * shared candidate buffer when it beats the row's current k-th best (a binary search in the
 * row's seen list only then); when the buffer is nearly full, the block sorts the current
 * list and the candidates together (bitonic, in shared memory) and keeps the best k. The list
 * stays in global memory between item chunks. Nothing of size users x items exists at once:
 * the scratch is U_c x N_c (TIMIREC_TOPK_GPU_USERS / _ITEMS override the chunk sizes).
 *
 * Why this and not a fused kernel (scores computed in registers tile by tile and selected
 * without the scratch): the fused version has to reproduce a tuned FP32 GEMM's register
 * tiling to stay near the FLOP ceiling, and its selection state per (user, k <= 1024) does not
 * fit beside the tiles in shared memory. This design was written and checked without a GPU
 * (the host emulation, emu/emulate.h, runs tests/test_gpu_topk.c as test_emu_topk); the bench
 * (bench/bench_topk.c) times it next to cuBLAS product + a full segmented sort per row, which
 * is the comparison the README must quote once measured. A fused kernel is the next step if
 * the scratch traffic (8 bytes per score: written once, read once) shows as the limit.
 *
 * A key is (order-preserving bits of the score) << 32 | (0xFFFFFFFF - item): keys compare
 * as the order does, -0 is made +0 first (the CPU compares them equal), NaN never becomes one.
 * Key 0 is below every real key and pads the sort. */
#ifndef TMR_EMULATE
#include <cub/device/device_segmented_radix_sort.cuh>
#endif

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "timirec/topk.h"

#ifdef TMR_EMULATE
#include <algorithm>
#include <functional>
/* The emulation's stand-in for the one CUB call emulate.h does not cover: each segment
 * sorted descending (the bits and the stream are CUB's arguments; one serial queue here). */
namespace cub {
struct DeviceSegmentedRadixSort {
    template <class K>
    static cudaError_t SortKeysDescending(void *tmp, size_t &bytes, const K *in, K *out, int n,
                                          int n_segments, const int *begin, const int *end,
                                          int begin_bit = 0, int end_bit = (int)sizeof(K) * 8,
                                          cudaStream_t stream = 0) {
        (void)begin_bit;
        (void)end_bit;
        (void)stream;
        if (!tmp) {
            bytes = 64;
            return cudaSuccess;
        }
        memcpy(out, in, sizeof(K) * (size_t)n);
        for (int s = 0; s < n_segments; s++) std::sort(out + begin[s], out + end[s], std::greater<K>());
        return cudaSuccess;
    }
};
}  // namespace cub
#endif

#define TK_THREADS 256
#define TK_LIST TOPK_GPU_MAX_K     /* 1024: the list of the best so far */
#define TK_BUF 1024                /* candidates; merged when more than TK_BUF - TK_THREADS */
#define TK_SORT (TK_LIST + TK_BUF) /* keys the block sorts: a power of two */

__device__ __forceinline__ uint32_t tk_float_bits(float f) {
#ifdef TMR_EMULATE
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
#else
    return __float_as_uint(f);
#endif
}
__device__ __forceinline__ float tk_bits_float(uint32_t u) {
#ifdef TMR_EMULATE
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#else
    return __uint_as_float(u);
#endif
}

__device__ __forceinline__ uint64_t tk_key(float score, int32_t item) {
    uint32_t u = tk_float_bits(score + 0.0f); /* -0 + 0 = +0 */
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((uint64_t)u << 32) | (uint64_t)(0xFFFFFFFFu - (uint32_t)item);
}
__device__ __forceinline__ float tk_key_score(uint64_t key) {
    uint32_t u = (uint32_t)(key >> 32);
    u = (u & 0x80000000u) ? (u & 0x7FFFFFFFu) : ~u;
    return tk_bits_float(u);
}
__device__ __forceinline__ int32_t tk_key_item(uint64_t key) {
    return (int32_t)(0xFFFFFFFFu - (uint32_t)key);
}

/* Is item in the ascending list seen[0 .. n)? */
__device__ __forceinline__ int tk_seen(const int32_t *seen, int64_t n, int32_t item) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        const int64_t mid = (lo + hi) / 2;
        if (seen[mid] < item) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && seen[lo] == item;
}

/* Sort keys[0 .. TK_SORT) descending, every thread of the block taking part. */
__device__ void tk_block_sort_desc(uint64_t *keys) {
    for (int size = 2; size <= TK_SORT; size <<= 1) {
        for (int stride = size / 2; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < TK_SORT / 2; i += TK_THREADS) {
                const int lo = 2 * i - (i & (stride - 1)), hi = lo + stride;
                const uint64_t a = keys[lo], b = keys[hi];
                const int desc = (lo & size) == 0;
                if (desc ? a < b : a > b) {
                    keys[lo] = b;
                    keys[hi] = a;
                }
            }
            __syncthreads();
        }
    }
}

typedef struct {
    const float *scores;      /* (rows * n_vecs, ld) this chunk's scores */
    int64_t ld;
    int n_vecs;
    int64_t row0;             /* problem row of block 0 */
    int32_t j0, nj;           /* the item chunk */
    int k;
    uint64_t *state;          /* (rows, k) the list so far, sorted */
    int32_t *state_n;         /* (rows) its length */
    const int64_t *seen_off;
    const int32_t *seen, *seen_index;
    int skip_padding;
    int first_chunk, last_chunk;
    int32_t *items_out;       /* (U, k), written at the last chunk */
    float *scores_out;
    int32_t *counts;
} tk_args_t;

/* One block per row of the user chunk. */
__global__ void tk_select(tk_args_t a) {
    __shared__ uint64_t keys[TK_SORT]; /* [0, TK_LIST): the list; [TK_LIST, ...): candidates */
    __shared__ int n_buf, n_list;
    const int r = blockIdx.x, tid = threadIdx.x;
    const int64_t row = a.row0 + r;
    const int k = a.k;
    if (tid == 0) {
        n_list = a.first_chunk ? 0 : a.state_n[r];
        n_buf = 0;
    }
    __syncthreads();
    for (int i = tid; i < n_list; i += TK_THREADS) keys[i] = a.state[(int64_t)r * k + i];
    __syncthreads();
    uint64_t thr = n_list == k ? keys[k - 1] : 0;
    const int32_t *seen = NULL;
    int64_t n_seen = 0;
    if (a.seen_off) {
        const int64_t l = a.seen_index ? a.seen_index[row] : row;
        seen = a.seen + a.seen_off[l];
        n_seen = a.seen_off[l + 1] - a.seen_off[l];
    }
    const float *s0 = a.scores + (int64_t)r * a.n_vecs * a.ld;
    for (int32_t base = 0; base < a.nj; base += TK_THREADS) {
        const int32_t j = base + tid;
        if (j < a.nj) {
            float m = s0[j];
            for (int v = 1; v < a.n_vecs; v++) {
                const float x = s0[(int64_t)v * a.ld + j];
                m = x > m ? x : m;
            }
            const int32_t item = a.j0 + j;
            if (!isnan(m) && !(a.skip_padding && item == 0)) {
                const uint64_t key = tk_key(m, item);
                if (key > thr && !(n_seen && tk_seen(seen, n_seen, item))) {
                    const int p = atomicAdd(&n_buf, 1);
                    keys[TK_LIST + p] = key;
                }
            }
        }
        __syncthreads();
        const int nb = n_buf;
        const int merge = nb > TK_BUF - TK_THREADS || (base + TK_THREADS >= a.nj && nb > 0);
        __syncthreads(); /* every thread has read n_buf */
        if (merge) {
            for (int i = n_list + tid; i < TK_LIST; i += TK_THREADS) keys[i] = 0;
            for (int i = TK_LIST + nb + tid; i < TK_SORT; i += TK_THREADS) keys[i] = 0;
            __syncthreads();
            tk_block_sort_desc(keys); /* ends with a barrier */
            if (tid == 0) {
                n_list = n_list + nb < k ? n_list + nb : k;
                n_buf = 0;
            }
            __syncthreads();
            thr = n_list == k ? keys[k - 1] : 0;
        }
    }
    if (!a.last_chunk) {
        for (int i = tid; i < n_list; i += TK_THREADS) a.state[(int64_t)r * k + i] = keys[i];
        if (tid == 0) a.state_n[r] = n_list;
        return;
    }
    for (int i = tid; i < k; i += TK_THREADS) {
        a.items_out[row * k + i] = i < n_list ? tk_key_item(keys[i]) : -1;
        a.scores_out[row * k + i] = i < n_list ? tk_key_score(keys[i]) : NAN;
    }
    if (tid == 0) a.counts[row] = n_list;
}

/* ---- host side ------------------------------------------------------------------------- */

static int64_t tk_env(const char *name, int64_t fallback) {
    const char *v = getenv(name);
    return v && *v ? strtoll(v, NULL, 10) : fallback;
}

/* Grow the context's top-K buffers (struct gpu_ctx; never shrunk, freed by gpu_ctx_free) to
 * at least these sizes. A failed allocation leaves that buffer NULL with size 0, so the
 * context stays consistent and a later call tries again. */
static int tk_ctx_reserve(gpu_ctx_t *ctx, size_t scratch_bytes, size_t state_bytes, char *err,
                          size_t errlen) {
    if (ctx->topk_scratch_bytes < scratch_bytes) {
        CUDA_TRY(cudaFree(ctx->topk_scratch));
        ctx->topk_scratch = NULL;
        ctx->topk_scratch_bytes = 0;
        CUDA_TRY(cudaMalloc(&ctx->topk_scratch, scratch_bytes));
        ctx->topk_scratch_bytes = scratch_bytes;
    }
    if (ctx->topk_state_bytes < state_bytes) {
        CUDA_TRY(cudaFree(ctx->topk_state));
        ctx->topk_state = NULL;
        ctx->topk_state_bytes = 0;
        CUDA_TRY(cudaMalloc(&ctx->topk_state, state_bytes));
        ctx->topk_state_bytes = state_bytes;
    }
    return 0;
}

/* TIMIREC_TOPK_TF32=1: topk's products in TF32. The emulation has one math mode, so there the
 * switch is a no-op that still runs (and restores) like on the GPU. */
#ifdef TMR_EMULATE
#define TK_TF32_MATH CUBLAS_DEFAULT_MATH
#else
#define TK_TF32_MATH CUBLAS_TF32_TENSOR_OP_MATH
#endif

/* scratch (rows * V, nj) row-major = vecs (rows * V, D) x items[j0 .. j0 + nj)^T: in cuBLAS's
 * column-major terms, (nj, rows * V) = items_chunk^T (D, nj)^T x vecs (D, rows * V).
 * The cuBLAS handle is the context's, shared with training: TF32 is switched on only around
 * this product and CUBLAS_DEFAULT_MATH (what gpu_ctx_create sets) restored right after it,
 * whether the product succeeded or not, so a top-K call never changes the precision of a
 * later training product. */
static int tk_scores(gpu_ctx_t *ctx, const topk_problem_t *p, int64_t r0, int64_t rows,
                     int32_t j0, int32_t nj, float *out, int64_t ld, char *err, size_t errlen) {
    const float one = 1.0f, zero = 0.0f;
    const int tf32 = tk_env("TIMIREC_TOPK_TF32", 0) != 0;
    if (tf32) CUBLAS_TRY(cublasSetMathMode(ctx->blas, TK_TF32_MATH));
    const cublasStatus_t gemm = cublasSgemm(ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N, nj,
                                            (int)(rows * p->n_vecs), p->dim, &one,
                                            p->items + (int64_t)j0 * p->dim, p->dim,
                                            p->vecs + r0 * p->n_vecs * p->dim, p->dim, &zero,
                                            out, (int)ld);
    if (tf32) CUBLAS_TRY(cublasSetMathMode(ctx->blas, CUBLAS_DEFAULT_MATH));
    if (gemm != CUBLAS_STATUS_SUCCESS) {
        if (err && errlen)
            snprintf(err, errlen, "%s:%d: cublasSgemm (%d x %lld x %d scores) failed: cuBLAS status %d",
                     __FILE__, __LINE__, (int)nj, (long long)(rows * p->n_vecs), p->dim, (int)gemm);
        return -1;
    }
    return 0;
}

extern "C" int topk_gpu(gpu_ctx_t *ctx, const topk_problem_t *p, int k, int32_t *items_out,
                        float *scores_out, int32_t *counts, char *err, size_t errlen) {
    if (topk_check(p, k, TOPK_GPU_MAX_K, err, errlen)) return -1;
    if (p->n_rows == 0) return 0;
    const int V = p->n_vecs;
    int64_t Nc = tk_env("TIMIREC_TOPK_GPU_ITEMS", 32768), Uc = tk_env("TIMIREC_TOPK_GPU_USERS", 0);
    if (Nc < TK_THREADS) Nc = TK_THREADS;
    if (Nc > p->n_items) Nc = p->n_items;
    if (Uc <= 0) Uc = ((int64_t)256 << 20) / ((int64_t)V * Nc * 4); /* 256 MiB of scratch */
    if (Uc > 65535) Uc = 65535;                                        /* grid size */
    if (Uc * V > INT32_MAX / 2) Uc = INT32_MAX / 2 / V;
    if (Uc < 1) Uc = 1;
    if (Uc > p->n_rows) Uc = p->n_rows;
    /* scratch (Uc * V, Nc) floats; state (Uc, k) keys, then (Uc) int32 list lengths */
    if (tk_ctx_reserve(ctx, (size_t)(Uc * V * Nc) * sizeof(float),
                       (size_t)(Uc * k) * sizeof(uint64_t) + (size_t)Uc * sizeof(int32_t), err,
                       errlen))
        return -1;
    float *scratch = ctx->topk_scratch;
    uint64_t *state = ctx->topk_state;
    int32_t *state_n = (int32_t *)(state + Uc * k);
    for (int64_t r0 = 0; r0 < p->n_rows; r0 += Uc) {
        const int64_t rows = p->n_rows - r0 < Uc ? p->n_rows - r0 : Uc;
        for (int64_t j0 = 0; j0 < p->n_items; j0 += Nc) {
            const int32_t nj = (int32_t)(p->n_items - j0 < Nc ? p->n_items - j0 : Nc);
            if (tk_scores(ctx, p, r0, rows, (int32_t)j0, nj, scratch, Nc, err, errlen)) return -1;
            tk_args_t a = {scratch, Nc, V, r0, (int32_t)j0, nj, k, state, state_n,
                           p->seen_off, p->seen, p->seen_index, p->skip_padding, j0 == 0,
                           j0 + nj >= p->n_items, items_out, scores_out, counts};
            KLAUNCH(tk_select, dim3((unsigned)rows), dim3(TK_THREADS), 0, a);
        }
    }
    CUDA_TRY(cudaDeviceSynchronize());
    return 0;
}

extern "C" int topk_gpu_devices(char *desc, size_t desclen) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n < 1) {
        cudaGetLastError();
        snprintf(desc, desclen, "no CUDA device visible (%s)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 0;
    }
#ifdef TMR_EMULATE
    snprintf(desc, desclen, "host emulation of the CUDA kernels (emu/emulate.h)");
#else
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
        snprintf(desc, desclen, "%d device(s), properties unreadable", n);
        return n;
    }
    snprintf(desc, desclen, "%s (sm_%d%d, %d SMs, %.0f GiB)", prop.name, prop.major, prop.minor,
             prop.multiProcessorCount, (double)prop.totalGlobalMem / (1 << 30));
#endif
    return n;
}

extern "C" double topk_gpu_fp32_peak_gflops(void) {
#ifdef TMR_EMULATE
    return 0;
#else
    int sms = 0, khz = 0, major = 0;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess ||
        cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, 0) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) != cudaSuccess) {
        cudaGetLastError(); /* not left for the next launch check */
        return 0;
    }
    /* FP32 lanes per SM: 128 on Ampere consumer parts and Hopper (sm_90), 64 on sm_80/70. */
    const int lanes = major >= 9 ? 128 : 64;
    return 2.0 * lanes * sms * (khz / 1e6);
#endif
}

extern "C" int topk_gpu_malloc(void **ptr, size_t bytes, char *err, size_t errlen) {
    *ptr = NULL;
    CUDA_TRY(cudaMalloc(ptr, bytes ? bytes : 1));
    return 0;
}
extern "C" void topk_gpu_free(void *ptr) {
    if (ptr) cudaFree(ptr);
}
extern "C" int topk_gpu_copy(void *dst, const void *src, size_t bytes, int to_device, char *err,
                             size_t errlen) {
    CUDA_TRY(cudaMemcpy(dst, src, bytes, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost));
    return 0;
}
extern "C" int topk_gpu_sync(char *err, size_t errlen) {
    CUDA_TRY(cudaDeviceSynchronize());
    return 0;
}

/* ---- baseline for the benchmark: the whole product of a user chunk, then a full sort ---- */

/* keys[r, j] for the chunk's rows (max over vectors, exclusions as key 0), segment offsets. */
__global__ void tk_make_keys(const float *scores, int64_t n_rows, int n_vecs, int32_t N,
                             int64_t row0, const int64_t *seen_off, const int32_t *seen,
                             const int32_t *seen_index, int skip_padding, uint64_t *keys) {
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n_rows * N) return;
    const int64_t r = idx / N;
    const int32_t j = (int32_t)(idx % N);
    const float *s = scores + r * n_vecs * (int64_t)N;
    float m = s[j];
    for (int v = 1; v < n_vecs; v++) m = s[(int64_t)v * N + j] > m ? s[(int64_t)v * N + j] : m;
    uint64_t key = isnan(m) || (skip_padding && j == 0) ? 0 : tk_key(m, j);
    if (key && seen_off) {
        const int64_t l = seen_index ? seen_index[row0 + r] : row0 + r;
        if (tk_seen(seen + seen_off[l], seen_off[l + 1] - seen_off[l], j)) key = 0;
    }
    keys[idx] = key;
}
__global__ void tk_take(const uint64_t *sorted, int64_t n_rows, int32_t N, int k, int64_t row0,
                        int32_t *items_out, float *scores_out, int32_t *counts) {
    const int64_t r = blockIdx.x;
    __shared__ int n;
    if (threadIdx.x == 0) n = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        const uint64_t key = i < N ? sorted[r * N + i] : 0;
        items_out[(row0 + r) * k + i] = key ? tk_key_item(key) : -1;
        scores_out[(row0 + r) * k + i] = key ? tk_key_score(key) : NAN;
        if (key) atomicAdd(&n, 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) counts[row0 + r] = n;
    (void)n_rows;
}
__global__ void tk_offsets(int64_t n, int32_t N, int *off) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) off[i] = (int)(i * N);
}

/* The baseline's buffers, freed by topk_gpu_baseline whatever step failed. */
typedef struct {
    float *scores;          /* (Uc * V, N) */
    uint64_t *keys, *sorted; /* (Uc, N) */
    int *off;               /* (Uc + 1) segment offsets */
    void *tmp;              /* CUB's scratch */
    size_t tmp_bytes;
} tk_baseline_t;

static int tk_baseline_run(gpu_ctx_t *ctx, const topk_problem_t *p, int k, int64_t Uc,
                           tk_baseline_t *b, int32_t *items_out, float *scores_out,
                           int32_t *counts, char *err, size_t errlen) {
    const int64_t N = p->n_items, V = p->n_vecs;
    CUDA_TRY(cudaMalloc((void **)&b->scores, (size_t)(Uc * V * N) * sizeof(float)));
    CUDA_TRY(cudaMalloc((void **)&b->keys, (size_t)(Uc * N) * sizeof(uint64_t)));
    CUDA_TRY(cudaMalloc((void **)&b->sorted, (size_t)(Uc * N) * sizeof(uint64_t)));
    CUDA_TRY(cudaMalloc((void **)&b->off, (size_t)(Uc + 1) * sizeof(int)));
    CUDA_TRY(cub::DeviceSegmentedRadixSort::SortKeysDescending(
        NULL, b->tmp_bytes, b->keys, b->sorted, (int)(Uc * N), (int)Uc, b->off, b->off + 1, 0,
        (int)sizeof(uint64_t) * 8, gpu_launch_stream));
    CUDA_TRY(cudaMalloc(&b->tmp, b->tmp_bytes));
    for (int64_t r0 = 0; r0 < p->n_rows; r0 += Uc) {
        const int64_t rows = p->n_rows - r0 < Uc ? p->n_rows - r0 : Uc;
        if (tk_scores(ctx, p, r0, rows, 0, (int32_t)N, b->scores, N, err, errlen)) return -1;
        KLAUNCH(tk_make_keys, dim3((unsigned)((rows * N + 255) / 256)), dim3(256), 0, b->scores,
                rows, (int)V, (int32_t)N, r0, p->seen_off, p->seen, p->seen_index,
                p->skip_padding, b->keys);
        KLAUNCH(tk_offsets, dim3((unsigned)((rows + 256) / 256)), dim3(256), 0, rows,
                (int32_t)N, b->off);
        CUDA_TRY(cub::DeviceSegmentedRadixSort::SortKeysDescending(
            b->tmp, b->tmp_bytes, b->keys, b->sorted, (int)(rows * N), (int)rows, b->off,
            b->off + 1, 0, (int)sizeof(uint64_t) * 8, gpu_launch_stream));
        KLAUNCH(tk_take, dim3((unsigned)rows), dim3(256), 0, b->sorted, rows, (int32_t)N, k, r0,
                items_out, scores_out, counts);
    }
    CUDA_TRY(cudaDeviceSynchronize());
    return 0;
}

extern "C" int topk_gpu_baseline(gpu_ctx_t *ctx, const topk_problem_t *p, int k,
                                 int32_t *items_out, float *scores_out, int32_t *counts,
                                 char *err, size_t errlen) {
    if (topk_check(p, k, TOPK_GPU_MAX_K, err, errlen)) return -1;
    if (p->n_rows == 0) return 0;
    const int64_t N = p->n_items, V = p->n_vecs;
    /* Rows per chunk: scores + two key buffers (20 bytes an entry) within 2 GiB, int offsets. */
    int64_t Uc = ((int64_t)2 << 30) / (N * (4 * V + 16));
    if (Uc * N > INT32_MAX) Uc = INT32_MAX / N;
    if (Uc < 1) Uc = 1;
    if (Uc > p->n_rows) Uc = p->n_rows;
    tk_baseline_t b = {NULL, NULL, NULL, NULL, NULL, 0};
    const int rc = tk_baseline_run(ctx, p, k, Uc, &b, items_out, scores_out, counts, err, errlen);
    cudaFree(b.scores);
    cudaFree(b.keys);
    cudaFree(b.sorted);
    cudaFree(b.off);
    cudaFree(b.tmp);
    return rc;
}
