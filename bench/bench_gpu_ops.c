/* The op table's perf mode on the GPU (tests/op_table.h): every op's CUDA launchers, forward
 * and backward, timed alone with CUDA events at the table's perf shapes (the reference's batch
 * 256, history 20, emb 64, attn 8, K 2; history 200 with K 16; history 512): median of 30
 * calls after 3 warm-up calls, on the table's random inputs (histories of random length 1..L:
 * about half the slots padding, so the embedding backward's scatter has long runs on item 0
 * and the low positions).
 * Next to each time: the achieved GB/s (the bytes the op must move at least) and GFLOP/s (its
 * useful arithmetic), and the fraction of the roofline, max(bytes / d2d bandwidth, flops /
 * FP32 SGEMM rate) / time, with this device's ceilings from bench/results/device.csv
 * (bench_device). Appends rows to bench/results/kernels.csv. SKIP without a GPU.
 * TIMIREC_BENCH_SMOKE=1: batch 8, one call each, no rows appended (runs in the host emulation
 * to check the harness). TIMIREC_BENCH_QUICK=1: the first shape only.
 *
 *   build/bench/bench_gpu_ops [op names, comma-separated parts] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_table.h"

int main(int argc, char **argv) {
#ifndef TIMIREC_CUDA
    (void)argc, (void)argv;
    printf("SKIP: built without CUDA (no nvcc)\n");
    return 0;
#else
    char desc[512], err[512];
    if (gpu_device_count(desc, sizeof desc) < 1) {
        printf("SKIP: %s\n", desc);
        return 0;
    }
    gpu_ctx_t *g = gpu_ctx_create(err, sizeof err);
    if (!g) {
        printf("SKIP: %s\n", err);
        return 0;
    }
    const char *quick = getenv("TIMIREC_BENCH_QUICK");
    const op_perf_t level = getenv("TIMIREC_BENCH_SMOKE")       ? PERF_SMOKE
                            : quick && *quick && strcmp(quick, "0") ? PERF_QUICK
                                                                 : PERF_FULL;
    const int bad = op_run_perf(g, argc > 1 ? argv[1] : NULL, level, "bench/results/kernels.csv");
    gpu_ctx_free(g);
    return bad ? 1 : 0;
#endif
}
