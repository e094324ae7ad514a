/* Device discovery and the RNG parity probe. */
#include "common.cuh"
#include "timirec/cuda.h"
#include "timirec/rng.h"

extern "C" int tmr_cuda_describe(char *out, size_t outlen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(out, outlen, "no GPU visible (%s)", cudaGetErrorString(e));
        return 0;
    }
    if (n == 0) {
        snprintf(out, outlen, "no GPU visible");
        return 0;
    }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
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

extern "C" int tmr_cuda_rng_u32(uint64_t seed, uint32_t purpose, uint32_t epoch, uint64_t index0,
                                int64_t n, uint32_t n_draws, uint32_t *out, char *err,
                                size_t errlen) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        if (err && errlen) snprintf(err, errlen, "no GPU visible");
        return -1;
    }
    size_t bytes = (size_t)n * n_draws * sizeof(uint32_t);
    uint32_t *d_out = NULL;
    CUDA_TRY(cudaMalloc(&d_out, bytes));
    int threads = 256;
    unsigned blocks = (unsigned)((n + threads - 1) / threads);
    rng_u32_kernel<<<blocks, threads>>>(seed, purpose, epoch, index0, n, n_draws, d_out);
    CUDA_TRY(cudaGetLastError());
    CUDA_TRY(cudaMemcpy(out, d_out, bytes, cudaMemcpyDeviceToHost));
    CUDA_TRY(cudaFree(d_out));
    return 0;
}
