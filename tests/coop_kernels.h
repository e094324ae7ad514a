/* Block-cooperative test kernels (tests/coop_kernels.cu) behind host functions: each copies its
 * inputs to the device, launches, copies the outputs back, and returns 0 (or -1 after printing
 * the failing CUDA call). Built by nvcc for test_gpu_coop and by the host emulation
 * (emu/emulate.h) for test_emu_coop. */
#ifndef TIMIREC_TESTS_COOP_KERNELS_H
#define TIMIREC_TESTS_COOP_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Blocks of `threads` (a power of 2) threads; block b sums x[b * 2 threads .. + 2 threads) (zero
 * past n) by a shared-memory tree: sums[b]; and counts its positive elements with
 * __syncthreads_count: positives[b]. */
int coop_block_sum(const float *x, int n, int threads, float *sums, int *positives);

/* One warp per 32 elements (n a multiple of 32, blocks of 128): per element, the warp's sum by
 * __shfl_xor_sync (every lane), per warp the maximum by __shfl_down_sync (lane 0),
 * __ballot_sync / __any_sync / __all_sync of x > 0. */
int coop_warp_reduce(const float *x, int n, float *xor_sums, float *down_max, unsigned *ballots,
                     int *any, int *all);

/* out (cols x rows) = transpose of in (rows x cols), 32 x 32 tiles through shared memory,
 * blocks of (32, 8) threads, a 2-D grid. */
int coop_transpose(const float *in, int rows, int cols, float *out);

/* Inclusive prefix sum of x within each block of 256 (n any): __shfl_up_sync within warps, the
 * warps' totals through shared memory. */
int coop_block_scan(const int *x, int n, int *out);

/* Softmax of each row of x (rows x cols), one block of `threads` per row, the row held in
 * dynamic shared memory (cols floats), maximum and sum by warp shuffles plus shared memory. */
int coop_softmax_rows(const float *x, int rows, int cols, int threads, float *out);

/* 3-D blocks (4, 4, 4): out[b * 64 + t] = x[b * 64 + 63 - t] for linear thread t, through
 * shared memory and a barrier (threadIdx.x/y/z must survive the switches). */
int coop_reverse_3d(const float *x, int blocks, float *out);

/* Blocks of 64 where only warp 1 shuffles: out[i] = x[i ^ 1] for i in warp 1, x[i] in warp 0. */
int coop_half_block_shuffle(const float *x, int blocks, float *out);

/* atomicAdd: hist[k] = count of keys equal to k (k < bins); *total = sum of x. */
int coop_atomics(const int *keys, const float *x, int n, int bins, int *hist, float *total);

/* Deliberately racy (emulation only): one block of n <= 1024 threads; s[t] = x[t]; barrier;
 * then s[t] *= 2 and out[t] = s[t - 1] (out[0] = 0) with no barrier between: threads in launch
 * order give 2 x[t-1], in reverse order x[t-1]. */
int coop_racy_neighbour(const float *x, int n, float *out);

/* Misuse, for the emulation to report (each aborts there; on a GPU it would hang or be
 * undefined, so never run them on one): */
int coop_bad_early_return(void);   /* threads past 40 of 64 return before __syncthreads */
int coop_bad_two_barriers(void);   /* half the block at one __syncthreads, half at another */
int coop_bad_shuffle_exited(void); /* lane 5 returns before a full-mask __shfl_xor_sync */
int coop_bad_missing_lane(void);   /* block of 48: a full mask names lanes 48..63 */
int coop_bad_deadlock(void);       /* lane 0 at __syncthreads, lanes 1..31 at a shuffle */

#ifdef __cplusplus
}
#endif

#endif
