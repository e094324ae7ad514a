/* The GPU's measured ceilings (kernels/ceilings.cu): copy bandwidth, cuBLAS FP32/TF32 product
 * rate, the model's own product shapes, launch overhead. Kernel benchmarks report against these.
 * Prints a table and appends a row to bench/results/device.csv. SKIP without a GPU. */
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#ifdef TIMIREC_CUDA
#include "timirec/cuda.h"
#endif

int main(void) {
#ifndef TIMIREC_CUDA
    printf("SKIP: built without CUDA (no nvcc)\n");
    return 0;
#else
    char err[512];
    if (tmr_cuda_describe(err, sizeof err) == 0) {
        printf("SKIP: %s\n", err);
        return 0;
    }
    tmr_ceilings_t c;
    if (tmr_cuda_ceilings(&c, err, sizeof err) != 0) {
        fprintf(stderr, "bench_device: %s\n", err);
        return 1;
    }
    printf("device            %s (%d SMs, %.0f MiB L2, %.1f GiB)\n", c.device, c.sms,
           c.l2_bytes / 1048576.0, c.mem_bytes / 1073741824.0);
    printf("copy d2d          %8.0f GB/s (read + write, 1 GiB)\n", c.d2d_gbps);
    printf("copy h2d pinned   %8.1f GB/s (256 MiB)\n", c.h2d_pinned_gbps);
    printf("copy d2h pinned   %8.1f GB/s\n", c.d2h_pinned_gbps);
    printf("copy h2d pageable %8.1f GB/s\n", c.h2d_pageable_gbps);
    printf("sgemm FP32 8192^3 %8.1f TFLOP/s (clock-based FP32 peak %.1f)\n", c.sgemm_tflops,
           c.fp32_peak_tflops);
    printf("sgemm TF32 8192^3 %8.1f TFLOP/s\n", c.tf32_tflops);
    printf("sgemm 5120x64x64  %8.1f us (%.0f GFLOP/s)\n", c.proj_us,
           2.0 * 5120 * 64 * 64 / (c.proj_us * 1e-6) / 1e9);
    printf("sgemm 6040x3706x64 %7.1f us (%.0f GFLOP/s)\n", c.score_us,
           2.0 * 6040 * 3706 * 64 / (c.score_us * 1e-6) / 1e9);
    printf("launch            %8.2f us per empty kernel (stream), %.2f us (graph replay)\n",
           c.launch_us, c.graph_launch_us);
    const char *path = "bench/results/device.csv";
    FILE *f = fopen(path, "r");
    int fresh = f == NULL;
    if (f) fclose(f);
    f = fopen(path, "a");
    if (!f) {
        perror(path);
        return 1;
    }
    if (fresh)
        fprintf(f, "device,date,commit,sms,d2d_gbps,h2d_pinned_gbps,d2h_pinned_gbps,"
                   "h2d_pageable_gbps,sgemm_tflops,tf32_tflops,fp32_peak_tflops,proj_us,score_us,"
                   "launch_us,graph_launch_us\n");
    const char *commit = bench_commit(), *date = bench_date();
    fprintf(f, "%s,%s,%s,%d,%.0f,%.1f,%.1f,%.1f,%.2f,%.2f,%.2f,%.2f,%.2f,%.3f,%.3f\n", c.device,
            date ? date : "", commit ? commit : "", c.sms, c.d2d_gbps, c.h2d_pinned_gbps,
            c.d2h_pinned_gbps, c.h2d_pageable_gbps, c.sgemm_tflops, c.tf32_tflops,
            c.fp32_peak_tflops, c.proj_us, c.score_us, c.launch_us, c.graph_launch_us);
    fclose(f);
    return 0;
#endif
}
