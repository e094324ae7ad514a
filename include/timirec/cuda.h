/* The CUDA side as the host sees it (extern "C" launchers in kernels/). Only declared when the
 * build found nvcc (TIMIREC_CUDA); callers guard with #ifdef TIMIREC_CUDA. */
#ifndef TIMIREC_CUDA_H
#define TIMIREC_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of visible GPUs (0 when none or no driver); a line describing them into out. */
int tmr_cuda_describe(char *out, size_t outlen);

/* Parity probe: out[i * n_draws + d] = rng_u32(seed, purpose, epoch, index0 + i, d) computed on
 * the device. Returns 0, or -1 (no device / CUDA error, message in err). */
int tmr_cuda_rng_u32(uint64_t seed, uint32_t purpose, uint32_t epoch, uint64_t index0,
                     int64_t n, uint32_t n_draws, uint32_t *out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
