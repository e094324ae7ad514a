/* The extractor's embedding gather (+ position) and the deterministic scatter of row gradients
 * into a table (device twins of ext_embed_forward / ext_embed_backward, src/cpu/extractor.inc). */
#include <cub/device/device_radix_sort.cuh>

#include "common.cuh"
#include "timirec/gpu_ops.h"

/* One thread per output element (r, c) of x0 (n, d). */
__global__ void embed_forward_kernel(const float *E, const float *P, const int32_t *hist,
                                     const int32_t *pos, int64_t n, int d, float *x0) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * d) return;
    const int64_t r = i / d;
    const int c = (int)(i % d);
    float x = E[(int64_t)hist[r] * d + c];
    if (P) x += P[(int64_t)pos[r] * d + c];
    x0[i] = x;
}

extern "C" int tmr_gpu_embed_forward(const float *E, const float *P, const int32_t *hist,
                                     const int32_t *pos, int64_t n, int d, float *x0,
                                     void *stream, char *err, size_t errlen) {
    GPU_CHECK_SIZE(n >= 0 && d >= 1 && n * d < ((int64_t)1 << 40));
    if (n == 0) return 0;
    embed_forward_kernel<<<tmr_blocks_for(n * d, 256), 256, 0, (cudaStream_t)stream>>>(
        E, P, hist, pos, n, d, x0);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

/* ---- scatter: stable sort of (id, source index), then one thread per (id, column) -------- */

/* The work buffer: sorted ids (n), source indices before and after the sort (n each), then
 * CUB's temporary storage; each part starts on a 256-byte boundary. */
static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

/* Radix bits that cover ids 0..rows-1 (a shorter sort than all 32 bits). */
static int id_bits(int64_t rows) {
    int bits = 1;
    while (bits < 32 && ((int64_t)1 << bits) < rows) bits++;
    return bits;
}

static int cub_sort_bytes(int64_t n, int64_t rows, size_t *bytes, char *err, size_t errlen) {
    *bytes = 0;
    CUDA_TRY(cub::DeviceRadixSort::SortPairs(NULL, *bytes, (const uint32_t *)NULL,
                                             (uint32_t *)NULL, (const int32_t *)NULL,
                                             (int32_t *)NULL, (int)n, 0, id_bits(rows)));
    return 0;
}

extern "C" int tmr_gpu_scatter_work_bytes(int64_t n, int64_t rows, size_t *bytes, char *err,
                                          size_t errlen) {
    GPU_CHECK_SIZE(n >= 0 && n < ((int64_t)1 << 31) && rows >= 1);
    size_t sort_bytes;
    if (cub_sort_bytes(n, rows, &sort_bytes, err, errlen)) return -1;
    *bytes = 3 * align256((size_t)n * sizeof(int32_t)) + align256(sort_bytes);
    return 0;
}

__global__ void iota_kernel(int32_t *x, int64_t n) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = (int32_t)i;
}

/* One thread per (sorted position j, column c); only the first position of each run of equal
 * ids works: it adds that id's source rows, in ascending source index (the sort is stable),
 * into the table row, one add at a time as the CPU does. Different threads write different
 * (id, column) elements, so no atomics. */
__global__ void scatter_runs_kernel(const uint32_t *sorted_ids, const int32_t *sorted_src,
                                    int64_t n, int d, const float *src, float *table) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * d) return;
    const int64_t j = i / d;
    const int c = (int)(i % d);
    const uint32_t id = sorted_ids[j];
    if (j > 0 && sorted_ids[j - 1] == id) return; /* not the start of a run */
    float acc = table[(int64_t)id * d + c];
    for (int64_t k = j; k < n && sorted_ids[k] == id; k++)
        acc += src[(int64_t)sorted_src[k] * d + c];
    table[(int64_t)id * d + c] = acc;
}

extern "C" int tmr_gpu_scatter_add_rows(const int32_t *ids, int64_t n, int d, int64_t rows,
                                        const float *src, float *table, void *work,
                                        size_t work_bytes, void *stream, char *err,
                                        size_t errlen) {
    GPU_CHECK_SIZE(n >= 0 && n < ((int64_t)1 << 31) && d >= 1 && rows >= 1);
    if (n == 0) return 0;
    size_t sort_bytes, need;
    if (cub_sort_bytes(n, rows, &sort_bytes, err, errlen)) return -1;
    need = 3 * align256((size_t)n * sizeof(int32_t)) + align256(sort_bytes);
    if (work_bytes < need) {
        if (err && errlen)
            snprintf(err, errlen, "%s:%d: scatter work buffer %zu bytes, needs %zu", __FILE__,
                     __LINE__, work_bytes, need);
        return -1;
    }
    cudaStream_t st = (cudaStream_t)stream;
    char *w = (char *)work;
    const size_t part = align256((size_t)n * sizeof(int32_t));
    uint32_t *sorted_ids = (uint32_t *)w;
    int32_t *src_index = (int32_t *)(w + part);
    int32_t *sorted_src = (int32_t *)(w + 2 * part);
    void *sort_tmp = w + 3 * part;
    iota_kernel<<<tmr_blocks_for(n, 256), 256, 0, st>>>(src_index, n);
    CUDA_TRY(cudaGetLastError());
    /* Ids are >= 0, so as unsigned keys they sort in the same order. */
    CUDA_TRY(cub::DeviceRadixSort::SortPairs(sort_tmp, sort_bytes, (const uint32_t *)ids,
                                             sorted_ids, src_index, sorted_src, (int)n, 0,
                                             id_bits(rows), st));
    CUDA_TRY(cudaGetLastError());
    scatter_runs_kernel<<<tmr_blocks_for(n * d, 256), 256, 0, st>>>(sorted_ids, sorted_src, n, d,
                                                                   src, table);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

extern "C" int tmr_gpu_embed_backward(const int32_t *hist, const int32_t *pos, int64_t n, int d,
                                      int64_t rows_E, int64_t rows_P, const float *dx0, float *dE,
                                      float *dP, void *work, size_t work_bytes, void *stream,
                                      char *err, size_t errlen) {
    if (tmr_gpu_scatter_add_rows(hist, n, d, rows_E, dx0, dE, work, work_bytes, stream, err,
                                 errlen))
        return -1;
    if (dP && tmr_gpu_scatter_add_rows(pos, n, d, rows_P, dx0, dP, work, work_bytes, stream, err,
                                       errlen))
        return -1;
    return 0;
}
