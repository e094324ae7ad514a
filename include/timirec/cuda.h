/* The CUDA side as the host sees it (extern "C" launchers in kernels/). tmr_cuda_built and
 * tmr_cuda_describe exist in every build (src/nocuda/device.c answers without nvcc); the rest
 * only when the build found nvcc (TIMIREC_CUDA), so their callers guard with #ifdef. */
#ifndef TIMIREC_CUDA_H
#define TIMIREC_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when this binary has the CUDA backend (built with nvcc), else 0. */
int tmr_cuda_built(void);

/* Number of visible GPUs (0 when none, no driver or no CUDA in the build); a line describing
 * them, or why there are none, into out. */
int tmr_cuda_describe(char *out, size_t outlen);

/* Parity probe: out[i * n_draws + d] = rng_u32(seed, purpose, epoch, index0 + i, d) computed on
 * the device. Returns 0 (at once, nothing written, when n or n_draws is 0), or -1 (no device /
 * CUDA error / n < 0, message in err). */
int tmr_cuda_rng_u32(uint64_t seed, uint32_t purpose, uint32_t epoch, uint64_t index0,
                     int64_t n, uint32_t n_draws, uint32_t *out, char *err, size_t errlen);

/* What the device can do, measured (kernels/ceilings.cu): the numbers benchmarks divide by. */
typedef struct {
    char device[256];
    int sms;
    int l2_bytes;
    size_t mem_bytes;
    double fp32_peak_tflops;    /* 128 lanes x SMs x boost clock: a datasheet lead */
    double d2d_gbps;            /* 1 GiB device copy, bytes read + written */
    double h2d_pinned_gbps, d2h_pinned_gbps, h2d_pageable_gbps; /* 256 MiB */
    double sgemm_tflops, tf32_tflops; /* cuBLAS 8192^3 */
    double proj_us;             /* cuBLAS 5120 x 64 x 64 */
    double score_us;            /* cuBLAS 6040 x 3706 x 64 */
    double launch_us, graph_launch_us; /* per empty kernel, stream vs graph replay */
} tmr_ceilings_t;

/* Measures the ceilings on device 0 (about 2 s). Returns 0, or -1 with a message in err. */
int tmr_cuda_ceilings(tmr_ceilings_t *c, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
