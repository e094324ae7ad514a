/* Embedding gather (+ position) and the deterministic scatter-add of table gradients. */
#ifndef TMR_EMULATE
#include <cub/device/device_radix_sort.cuh>
#endif

#include "common.cuh"

/* x0[r, c] = E[hist[r], c] (+ P[pos[r], c]); one thread per element (i = r * d + c). */
__global__ void embed_forward_kernel(int64_t n, const float *__restrict__ E,
                                     const float *__restrict__ P,
                                     const int32_t *__restrict__ hist,
                                     const int32_t *__restrict__ pos, int d,
                                     float *__restrict__ x0) {
    THREAD_INDEX(i, n);
    const int64_t r = i / d;
    const int c = (int)(i % d);
    const float e = E[(int64_t)hist[r] * d + c];
    x0[i] = P ? e + P[(int64_t)pos[r] * d + c] : e;
}

extern "C" void gpu_ext_embed_forward(gpu_ctx_t *ctx, const float *E, const float *P,
                                      const int32_t *hist, const int32_t *pos, int64_t n, int d,
                                      float *x0) {
    (void)ctx;
    LAUNCH(embed_forward_kernel, n * d, E, P, hist, pos, d, x0);
}

__global__ void iota_kernel(int64_t n, int32_t *__restrict__ v) {
    THREAD_INDEX(i, n);
    v[i] = (int32_t)i;
}

/* After the stable sort: keys (n) ascending, src_row (n) the source row of each, in ascending
 * order within a key. Thread (i, c) with i the first position of its key's run adds that
 * run's source rows, in order, into table[key, c]; the other threads have nothing to do. The
 * running sum starts from the table's value, as the CPU's row-after-row += does. */
__global__ void segment_add_kernel(int64_t n_threads, int64_t n, int d,
                                   const int32_t *__restrict__ keys,
                                   const int32_t *__restrict__ src_row,
                                   const float *__restrict__ src, float *__restrict__ table) {
    THREAD_INDEX(i, n_threads);
    const int64_t s = i / d;
    const int c = (int)(i % d);
    const int32_t key = keys[s];
    if (s > 0 && keys[s - 1] == key) return;
    float *out = table + (int64_t)key * d + c;
    float acc = *out;
    for (int64_t j = s; j < n && keys[j] == key; j++) acc += src[(int64_t)src_row[j] * d + c];
    *out = acc;
}

int gpu_scatter_reserve(gpu_ctx_t *ctx, int64_t n, int d) {
    (void)d;
    if (n > 2147483647LL) tmr_fatal("gpu_scatter_add_rows: %lld rows exceed CUB's int count", (long long)n);
    if (n > ctx->sort_cap) {
        if (gpu_grow_refused("the scatter's sort buffers", n, ctx->sort_cap)) return -1;
        gpu_free(ctx->sort_buf);
        ctx->sort_buf = (int32_t *)gpu_malloc((size_t)(4 * n) * sizeof(int32_t));
        ctx->sort_cap = n;
    }
    size_t bytes = 0;
    int32_t *b = ctx->sort_buf; /* CUB only reads the sizes in this query */
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(NULL, bytes, b, b, b, b, (int)n, 0,
                                               (int)sizeof(int32_t) * 8, gpu_launch_stream));
    if (bytes > ctx->sort_temp_cap) {
        if (gpu_grow_refused("CUB's sort scratch", (int64_t)bytes, (int64_t)ctx->sort_temp_cap))
            return -1;
        gpu_free(ctx->sort_temp);
        ctx->sort_temp = gpu_malloc(bytes);
        ctx->sort_temp_cap = bytes;
    }
    return 0;
}

extern "C" void gpu_scatter_add_rows(gpu_ctx_t *ctx, const int32_t *ids, int64_t n, int d,
                                     const float *src, float *table) {
    if (n <= 0) return;
    if (gpu_scatter_reserve(ctx, n, d)) return; /* inside a capture, which is now abandoned */
    int32_t *vals_in = ctx->sort_buf, *keys_out = vals_in + n, *vals_out = keys_out + n;
    LAUNCH(iota_kernel, n, vals_in);
    size_t bytes = ctx->sort_temp_cap;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(ctx->sort_temp, bytes, ids, keys_out, vals_in,
                                               vals_out, (int)n, 0, (int)sizeof(int32_t) * 8,
                                               gpu_launch_stream));
    gpu_after_launch("cub::DeviceRadixSort::SortPairs", __FILE__, __LINE__);
    LAUNCH(segment_add_kernel, n * d, n, d, keys_out, vals_out, src, table);
}

extern "C" void gpu_ext_embed_backward(gpu_ctx_t *ctx, const int32_t *hist, const int32_t *pos,
                                       int64_t n, int d, const float *dx0, float *dE, float *dP) {
    gpu_scatter_add_rows(ctx, hist, n, d, dx0, dE);
    if (dP) gpu_scatter_add_rows(ctx, pos, n, d, dx0, dP);
}
