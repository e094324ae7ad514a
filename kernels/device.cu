/* Device discovery and the RNG parity probe. */
#include "common.cuh"
#include "timirec/cuda.h"
#include "timirec/rng.h"

extern "C" int tmr_cuda_built(void) { return 1; }

/* A failed query is also recorded as the runtime's last error: clear it, or the next launch
 * check (cudaGetLastError) would report it against an innocent kernel. */
extern "C" int tmr_cuda_describe(char *out, size_t outlen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        snprintf(out, outlen, "no GPU visible (%s)", cudaGetErrorString(e));
        return 0;
    }
    if (n == 0) {
        snprintf(out, outlen, "no GPU visible");
        return 0;
    }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
        cudaGetLastError();
        snprintf(out, outlen, "%d GPU(s), properties unavailable", n);
        return n;
    }
    snprintf(out, outlen, "%d GPU(s); device 0: %s, sm_%d%d, %.1f GiB, %d SMs", n, p.name, p.major,
             p.minor, (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), p.multiProcessorCount);
    return n;
}

__global__ void rng_u32_kernel(uint64_t seed, uint32_t purpose, uint32_t epoch, uint64_t index0,
                               int64_t n, uint32_t n_draws, uint32_t *out) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    for (uint32_t d = 0; d < n_draws; d++)
        out[i * n_draws + d] = rng_u32(seed, purpose, epoch, index0 + (uint64_t)i, d);
}

/* Launch and copy back into the caller's d_out (n * n_draws words); the caller frees d_out. */
static int rng_u32_run(uint64_t seed, uint32_t purpose, uint32_t epoch, uint64_t index0,
                       int64_t n, uint32_t n_draws, uint32_t *d_out, uint32_t *out, char *err,
                       size_t errlen) {
    const int threads = 256;
    const int64_t blocks = (n + threads - 1) / threads;
    if (blocks > 2147483647LL) {
        if (err && errlen)
            snprintf(err, errlen, "tmr_cuda_rng_u32: %lld indices exceed the grid", (long long)n);
        return -1;
    }
    rng_u32_kernel<<<(unsigned)blocks, threads>>>(seed, purpose, epoch, index0, n, n_draws, d_out);
    CUDA_TRY(cudaGetLastError());
    CUDA_TRY(cudaMemcpy(out, d_out, (size_t)n * n_draws * sizeof(uint32_t),
                        cudaMemcpyDeviceToHost));
    return 0;
}

extern "C" int tmr_cuda_rng_u32(uint64_t seed, uint32_t purpose, uint32_t epoch, uint64_t index0,
                                int64_t n, uint32_t n_draws, uint32_t *out, char *err,
                                size_t errlen) {
    if (n < 0) {
        if (err && errlen) snprintf(err, errlen, "tmr_cuda_rng_u32: n = %lld", (long long)n);
        return -1;
    }
    /* Nothing to draw: a 0-block launch is an invalid configuration on the GPU. */
    if (n == 0 || n_draws == 0) return 0;
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        cudaGetLastError(); /* as in tmr_cuda_describe */
        if (err && errlen) snprintf(err, errlen, "no GPU visible");
        return -1;
    }
    uint32_t *d_out = NULL;
    CUDA_TRY(cudaMalloc(&d_out, (size_t)n * n_draws * sizeof(uint32_t)));
    const int rc = rng_u32_run(seed, purpose, epoch, index0, n, n_draws, d_out, out, err, errlen);
    const cudaError_t e = cudaFree(d_out); /* on every path */
    if (rc == 0 && e != cudaSuccess) {
        if (err && errlen)
            snprintf(err, errlen, "%s:%d: cudaFree(d_out) failed: %s", __FILE__, __LINE__,
                     cudaGetErrorString(e));
        return -1;
    }
    return rc;
}
