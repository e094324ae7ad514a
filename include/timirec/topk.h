/* Batched scoring and top-K over the whole catalog (full-ranking evaluation, recommend).
 *
 * A problem is a set of user rows, each with n_vecs vectors of size dim (the K interests of
 * the pretrain stage, or the one finetune user vector), and an item table (N, dim). The score
 * of (row, item) is the largest dot product of the row's vectors with the item's vector
 * (first vector wins the comparison, a NaN one never does: m = v > m ? v : m in vector order).
 *
 * Order, everywhere (CPU, GPU, brute force): higher score first; equal scores -> lower item id
 * first. Items never returned: item 0 when skip_padding, the row's excluded (seen) items, and
 * items whose score is NaN. A row with fewer than k eligible items gets them all: its count
 * says how many, the slots after it hold item -1 and score NaN.
 *
 * Excluded items come as a CSR list: row r uses list seen_index ? seen_index[r] : r, that is
 * seen[seen_off[l] .. seen_off[l + 1]), sorted ascending; duplicates and ids outside 0..N-1
 * are harmless (the corpus's all_off/all_items, see corpus.h, fit as they are).
 *
 * The CPU version scores a block of rows against a tile of items with the project's matrix
 * product (gemm.h: the built-in kernel sums every element as one ascending chain, so a score
 * is the same bits in whatever tile it is computed) and keeps each row's best k in a buffer
 * of 2k behind a threshold test (quickselect when it fills); OpenMP over row blocks. Nothing of size rows x N is
 * written. */
#ifndef TIMIREC_TOPK_H
#define TIMIREC_TOPK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TOPK_MAX_K 100000 /* CPU; the GPU kernel takes k <= TOPK_GPU_MAX_K */
#define TOPK_GPU_MAX_K 1024

typedef struct {
    int64_t n_rows;            /* U */
    int n_vecs;                /* vectors per row (>= 1): score = max over them */
    int dim;                   /* D */
    const float *vecs;         /* (U, n_vecs, D) */
    int32_t n_items;           /* N: rows of the item table, ids 0..N-1 */
    const float *items;        /* (N, D) */
    const int64_t *seen_off;   /* (lists + 1) or NULL: nothing excluded */
    const int32_t *seen;       /* ascending within a list */
    const int32_t *seen_index; /* (U) list of each row, or NULL: row r uses list r */
    int skip_padding;          /* 1: item 0 is never returned nor ranked */
} topk_problem_t;

/* Best k items of every row: items_out/scores_out (U, k) best first, counts (U) how many are
 * real (<= k). k in 1..TOPK_MAX_K. Deterministic: the same output for any thread count. */
void topk_cpu(const topk_problem_t *p, int k, int32_t *items_out, float *scores_out,
              int32_t *counts);

/* The same, with every vector of a row as its own list (the per-interest retrieval of
 * ComiRec): outputs (U, n_vecs, k) and counts (U, n_vecs). */
void topk_cpu_per_vec(const topk_problem_t *p, int k, int32_t *items_out, float *scores_out,
                      int32_t *counts);

/* Merge n_lists ranked lists per row (U, n_lists, k_in) into one of k (U, k): every item
 * once, with its best score, in the order above (ComiRec's merge: sort the union by score,
 * keep each item's first occurrence). For the pretrain score (max over interests) the merged
 * per-interest lists equal topk_cpu's list: an item among the max-score top k is among the top
 * k of the interest that gives its max. */
void topk_merge_lists(int64_t n_rows, int n_lists, int k_in, const int32_t *items,
                      const float *scores, const int32_t *counts, int k, int32_t *items_out,
                      float *scores_out, int32_t *counts_out);

/* Full-ranking rank of targets[r] (in 1..N-1, or 0..N-1 without skip_padding) for every row,
 * as metrics_rank_all (metrics.h) defines it: 1 + the number of other ranked items whose
 * score is >= the target's (a tie counts against the target); the target is ranked even when
 * excluded; a NaN target score gets the worst rank. Scores come from the same blocked product
 * as topk_cpu. */
void topk_rank_cpu(const topk_problem_t *p, const int32_t *targets, int64_t *ranks);

/* Brute force, for tests and benchmarks: every row's full score vector from one product per
 * row, all eligible items sorted by the order above (qsort), first k kept. Same outputs as
 * topk_cpu. */
void topk_bruteforce(const topk_problem_t *p, int k, int32_t *items_out, float *scores_out,
                     int32_t *counts);

/* Bytes topk_cpu / topk_rank_cpu (k = 1) allocate for such a problem on `threads` threads:
 * each thread's packed item tile, scores, candidate buffers and row state (nothing of catalog
 * size: the item table is read in place). */
uint64_t topk_cpu_bytes(int64_t n_rows, int n_vecs, int dim, int k, int threads);

/* Check a problem's shapes and k (k <= max_k); 0 or -1 with a message. */
int topk_check(const topk_problem_t *p, int k, int max_k, char *err, size_t errlen);

/* ---- CUDA (kernels/topk.cu; linked when the build has CUDA) ------------------------------
 * The same operation on device pointers: vecs (U, n_vecs, D), items (N, D), the CSR lists
 * seen_off (lists + 1) / seen / seen_index (U) (device pointers, or NULL), outputs
 * items_out/scores_out (U, k) and counts (U) on the device. k <= TOPK_GPU_MAX_K.
 * Returns 0, or -1 with a message (CUDA/cuBLAS error, bad shape). Results equal topk_cpu's
 * when both compute the same float scores (exactly representable products; otherwise only
 * rounding-level ties can differ: cuBLAS sums in its own order).
 *
 * ctx is the backend's context (gpu_ops.h: gpu_ctx_create / gpu_ctx_free): its cuBLAS handle
 * does the products (TF32 only for these products when TIMIREC_TOPK_TF32=1; the handle's
 * default math is restored after each), and it keeps the score and list scratch between
 * calls; gpu_ctx_free releases them. A kernel launch failure is fatal, as for every backend
 * kernel (common.cuh's KLAUNCH). */
typedef struct gpu_ctx gpu_ctx_t;
int topk_gpu(gpu_ctx_t *ctx, const topk_problem_t *dev_problem, int k, int32_t *items_out,
             float *scores_out, int32_t *counts, char *err, size_t errlen);
/* The baseline the benchmark compares with: cuBLAS product of a chunk of users against the
 * whole catalog, then a full segmented radix sort (CUB) of every row; same outputs. Its
 * buffers are allocated and freed by each call. */
int topk_gpu_baseline(gpu_ctx_t *ctx, const topk_problem_t *dev_problem, int k,
                      int32_t *items_out, float *scores_out, int32_t *counts, char *err,
                      size_t errlen);
/* Device memory for callers written in C (tests, benchmarks): 0 or -1 with a message. */
int topk_gpu_malloc(void **ptr, size_t bytes, char *err, size_t errlen);
void topk_gpu_free(void *ptr);
int topk_gpu_copy(void *dst, const void *src, size_t bytes, int to_device, char *err, size_t errlen);
int topk_gpu_sync(char *err, size_t errlen);
/* FP32 FMA peak of device 0 from its SM count and clock (GFLOP/s; 0 when unknown). */
double topk_gpu_fp32_peak_gflops(void);
/* Number of visible CUDA devices (0 without a GPU or without CUDA), and a line describing it. */
int topk_gpu_devices(char *desc, size_t desclen);

#ifdef __cplusplus
}
#endif
#endif
