/* GPU-vs-CPU parity of the Philox streams: the device must draw exactly the CPU's words.
 * SKIP without a CUDA build or without a visible GPU. */
#include "test_util.h"
#include "timirec/rng.h"
#ifdef TIMIREC_CUDA
#include "timirec/cuda.h"
#endif

int main(void) {
#ifndef TIMIREC_CUDA
    printf("SKIP: built without CUDA (no nvcc)\n");
    return TU_SKIP;
#else
    char desc[512], err[512] = "";
    if (tmr_cuda_describe(desc, sizeof desc) == 0) {
        printf("SKIP: %s\n", desc);
        return TU_SKIP;
    }
    enum { N = 1 << 16, DRAWS = 9 };
    static uint32_t gpu[N * DRAWS];
    uint64_t seed = 0x9e3779b97f4a7c15ull, index0 = (1ull << 32) - 1000;
    int rc = tmr_cuda_rng_u32(seed, RNG_TRAIN_NEG, 3, index0, N, DRAWS, gpu, err, sizeof err);
    CHECK(rc == 0, "device draw failed: %s", err);
    int bad = 0;
    for (int64_t i = 0; i < N && rc == 0; i++)
        for (uint32_t d = 0; d < DRAWS; d++)
            bad += gpu[i * DRAWS + d] != rng_u32(seed, RNG_TRAIN_NEG, 3, index0 + (uint64_t)i, d);
    CHECK(bad == 0, "%d of %d words differ between GPU and CPU", bad, N * DRAWS);
    /* Nothing to draw (no 0-block launch): 0, and out untouched. */
    gpu[0] = 0x12345678u;
    rc = tmr_cuda_rng_u32(seed, RNG_TRAIN_NEG, 3, index0, 0, DRAWS, gpu, err, sizeof err);
    CHECK(rc == 0 && gpu[0] == 0x12345678u, "n = 0: rc %d (%s), out[0] %08x", rc, err, gpu[0]);
    rc = tmr_cuda_rng_u32(seed, RNG_TRAIN_NEG, 3, index0, N, 0, gpu, err, sizeof err);
    CHECK(rc == 0 && gpu[0] == 0x12345678u, "n_draws = 0: rc %d (%s), out[0] %08x", rc, err, gpu[0]);
    printf("%s: %d words compared\n", desc, N * DRAWS);
    return tu_finish("test_gpu_rng");
#endif
}
