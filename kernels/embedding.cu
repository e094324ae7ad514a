/* Embedding gather (+ position) and the deterministic scatter-add of table gradients: a stable
 * radix sort of the ids, then each key's run of source rows summed in ascending source row,
 * in chunks of SEG_CHUNK rows when the run is longer (segment_chunk_kernel,
 * segment_combine_kernel): no atomics, the same bits every run; table rows whose key has at
 * most SEG_CHUNK rows are the CPU's bit for bit, longer runs within float rounding of it. */
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

extern "C" void gpu_layer_embed_forward(gpu_ctx_t *ctx, const float *E, const float *P,
                                      const int32_t *hist, const int32_t *pos, int64_t n, int d,
                                      float *x0) {
    (void)ctx;
    LAUNCH(embed_forward_kernel, n * d, E, P, hist, pos, d, x0);
}

__global__ void iota_kernel(int64_t n, int32_t *__restrict__ v) {
    THREAD_INDEX(i, n);
    v[i] = (int32_t)i;
}

/* Rows of one key are added in chunks of SEG_CHUNK consecutive sorted rows, counted from the
 * start of the key's run: a run of at most SEG_CHUNK rows is one chunk, summed by one thread
 * exactly as the CPU sums it (the table's value, then the rows in ascending source row), so
 * those table rows match the CPU bit for bit; a longer run (the padding item 0, position 0:
 * up to B x L rows; each position: up to B rows) is split so that no thread walks more than
 * SEG_CHUNK source rows, and the thread that combines a run one partial per chunk. 32: at
 * batch 256 x history 20 a position's 256-row run costs a chain of 32 + 8 loads instead of
 * 256, the ~5,000-row padding run 32 + 157 instead of ~5,000 (a larger chunk would shorten
 * that one run's combine but lengthen the L position runs: 64 + 4 at 64), and items that
 * occur at most 32 times in a batch keep the CPU's order exactly. */
#define SEG_CHUNK 32

/* The first sorted position of key's run, given keys[hi] == key (keys ascending). */
__device__ __forceinline__ int64_t seg_run_start(const int32_t *__restrict__ keys, int64_t hi,
                                                 int32_t key) {
    int64_t lo = 0;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (keys[mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* The partial-sum slot of the chunk that starts at sorted position s of a long run: first
 * chunks of runs take odd slots, later chunks even ones. Unique: the starts of two long runs
 * are more than SEG_CHUNK apart, and a later chunk starts at least SEG_CHUNK after any other
 * chunk start before it, so s / SEG_CHUNK differs within each kind. 2 ceil(n / SEG_CHUNK)
 * slots of d floats: 1/16 of the (n, d) that indexing by s itself would need. */
__device__ __forceinline__ int64_t seg_slot(int64_t s, int first) {
    return 2 * (s / SEG_CHUNK) + (first ? 1 : 0);
}

static int64_t seg_slots(int64_t n) { return 2 * ((n + SEG_CHUNK - 1) / SEG_CHUNK); }

/* After the stable sort: keys (n) ascending, src_row (n) the source row of each, in ascending
 * order within a key. Thread (s, c) with s the first position of a chunk sums the chunk's
 * source rows in order into column c: a run's only chunk (run <= SEG_CHUNK rows) starts from
 * table[key, c] and is stored there; in a longer run chunk 0 starts from the table's value,
 * the others from 0, and each goes to partial (seg_slots(n), d) for segment_combine_kernel.
 * Other threads return: s is a chunk start iff it starts the run, or the run began at least
 * SEG_CHUNK rows earlier (keys[s - SEG_CHUNK] == key; only then the binary search) and s is a
 * multiple of SEG_CHUNK past the run's start. */
__global__ void segment_chunk_kernel(int64_t n_threads, int64_t n, int d,
                                     const int32_t *__restrict__ keys,
                                     const int32_t *__restrict__ src_row,
                                     const float *__restrict__ src, float *__restrict__ table,
                                     float *__restrict__ partial) {
    THREAD_INDEX(i, n_threads);
    const int64_t s = i / d;
    const int c = (int)(i % d);
    const int32_t key = keys[s];
    int64_t start = s; /* of the run */
    if (s > 0 && keys[s - 1] == key) {
        if (s < SEG_CHUNK || keys[s - SEG_CHUNK] != key) return; /* inside the first chunk */
        start = seg_run_start(keys, s - SEG_CHUNK, key);
        if ((s - start) % SEG_CHUNK != 0) return;
    }
    const int long_run = s > start || (s + SEG_CHUNK < n && keys[s + SEG_CHUNK] == key);
    const int64_t end = s + SEG_CHUNK < n ? s + SEG_CHUNK : n;
    float *out = table + (int64_t)key * d + c;
    float acc = s == start ? *out : 0.0f;
    for (int64_t j = s; j < end && keys[j] == key; j++) acc += src[(int64_t)src_row[j] * d + c];
    if (long_run) partial[seg_slot(s, s == start) * d + c] = acc;
    else *out = acc;
}

/* Thread (s, c) with s the start of a run longer than SEG_CHUNK: table[key, c] = the run's
 * chunk sums added in chunk order (chunk 0 already holds the table's old value). */
__global__ void segment_combine_kernel(int64_t n_threads, int64_t n, int d,
                                       const int32_t *__restrict__ keys,
                                       const float *__restrict__ partial,
                                       float *__restrict__ table) {
    THREAD_INDEX(i, n_threads);
    const int64_t s = i / d;
    const int c = (int)(i % d);
    const int32_t key = keys[s];
    if (s > 0 && keys[s - 1] == key) return;                       /* not a run start */
    if (!(s + SEG_CHUNK < n && keys[s + SEG_CHUNK] == key)) return; /* short: already stored */
    float acc = partial[seg_slot(s, 1) * d + c];
    for (int64_t j = s + SEG_CHUNK; j < n && keys[j] == key; j += SEG_CHUNK)
        acc += partial[seg_slot(j, 0) * d + c];
    table[(int64_t)key * d + c] = acc;
}

int gpu_scatter_reserve(gpu_ctx_t *ctx, int64_t n, int d) {
    if (n > 2147483647LL) tmr_fatal("gpu_scatter_add_rows: %lld rows exceed CUB's int count", (long long)n);
    if (n > ctx->sort_cap) { /* CUB's storage is sized with the buffers: no query per call */
        if (gpu_grow_refused("the scatter's sort buffers", n, ctx->sort_cap)) return -1;
        gpu_free(ctx->sort_buf);
        ctx->sort_buf = (int32_t *)gpu_malloc((size_t)(4 * n) * sizeof(int32_t));
        ctx->sort_cap = n;
        size_t bytes = 0;
        int32_t *b = ctx->sort_buf; /* CUB only reads the sizes in this query */
        CUDA_CHECK(cub::DeviceRadixSort::SortPairs(NULL, bytes, b, b, b, b, (int)n, 0,
                                                   (int)sizeof(int32_t) * 8, gpu_launch_stream));
        if (bytes > ctx->sort_temp_cap) { /* the storage a radix sort needs grows with n */
            gpu_free(ctx->sort_temp);
            ctx->sort_temp = gpu_malloc(bytes);
            ctx->sort_temp_cap = bytes;
        }
    }
    /* the chunk sums: sized from (n, d) alone, not from the ids, so they never grow in a step */
    const int64_t partial = seg_slots(n) * d;
    if (partial > ctx->seg_partial_cap) {
        if (gpu_grow_refused("the scatter's chunk sums", partial, ctx->seg_partial_cap)) return -1;
        gpu_free(ctx->seg_partial);
        ctx->seg_partial = (float *)gpu_malloc((size_t)partial * sizeof(float));
        ctx->seg_partial_cap = partial;
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
    float *partial = ctx->seg_partial; /* (seg_slots(n), d), reserved above */
    LAUNCH(segment_chunk_kernel, n * d, n, d, keys_out, vals_out, src, table, partial);
    LAUNCH(segment_combine_kernel, n * d, n, d, keys_out, partial, table);
}

extern "C" void gpu_layer_embed_backward(gpu_ctx_t *ctx, const int32_t *hist, const int32_t *pos,
                                       int64_t n, int d, const float *dx0, float *dE, float *dP) {
    gpu_scatter_add_rows(ctx, hist, n, d, dx0, dE);
    if (dP) gpu_scatter_add_rows(ctx, pos, n, d, dx0, dP);
}
