/* The device's measured ceilings: copy bandwidth (device-to-device, and host<->device through
 * pinned and pageable memory), cuBLAS single-precision product rate (FP32 and TF32), launch
 * overhead with and without a graph. Benchmarks compare their kernels against these numbers
 * rather than datasheet figures. All inputs are random (never zeros: see METHOD.md). */
#include <cublas_v2.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "timirec/cuda.h"
#include "timirec/rng.h"

__global__ void fill_uniform_kernel(float *x, int64_t n, uint64_t seed) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = rng_u32(seed, RNG_TEST, 0, (uint64_t)i, 0) * (1.0f / 4294967296.0f) - 0.5f;
}

__global__ void empty_kernel(int *x) {
    if (x && threadIdx.x == 1024) x[0] = 1;  // never true: keeps the launch from being elided
}

static float median_of(float *v, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            float t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v[n / 2];
}

/* Median milliseconds of `reps` timed runs of a copy after one warm-up. */
static int time_copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, int reps,
                     float *ms_out, char *err, size_t errlen) {
    cudaEvent_t a, b;
    CUDA_TRY(cudaEventCreate(&a));
    CUDA_TRY(cudaEventCreate(&b));
    CUDA_TRY(cudaMemcpy(dst, src, bytes, kind));
    float t[32];
    for (int r = 0; r < reps; r++) {
        CUDA_TRY(cudaEventRecord(a));
        CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, kind));
        CUDA_TRY(cudaEventRecord(b));
        CUDA_TRY(cudaEventSynchronize(b));
        CUDA_TRY(cudaEventElapsedTime(&t[r], a, b));
    }
    *ms_out = median_of(t, reps);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return 0;
}

/* Median ms of C[m x n] = A[m x k] * B[k x n] (row-major view) through cublasGemmEx. */
static int time_sgemm(cublasHandle_t h, int m, int n, int k, cublasComputeType_t ct, int reps,
                      float *ms_out, char *err, size_t errlen) {
    float *A, *B, *C;
    CUDA_TRY(cudaMalloc(&A, (size_t)m * k * sizeof(float)));
    CUDA_TRY(cudaMalloc(&B, (size_t)k * n * sizeof(float)));
    CUDA_TRY(cudaMalloc(&C, (size_t)m * n * sizeof(float)));
    fill_uniform_kernel<<<(unsigned)(((int64_t)m * k + 255) / 256), 256>>>(A, (int64_t)m * k, 1);
    fill_uniform_kernel<<<(unsigned)(((int64_t)k * n + 255) / 256), 256>>>(B, (int64_t)k * n, 2);
    CUDA_TRY(cudaGetLastError());
    const float one = 1.0f, zero = 0.0f;
    cudaEvent_t a, b;
    CUDA_TRY(cudaEventCreate(&a));
    CUDA_TRY(cudaEventCreate(&b));
    /* Row-major C = A B is column-major C^T = B^T A^T. */
    for (int w = 0; w < 3; w++)
        CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, B, CUDA_R_32F, n, A,
                                CUDA_R_32F, k, &zero, C, CUDA_R_32F, n, ct, CUBLAS_GEMM_DEFAULT));
    float t[32];
    for (int r = 0; r < reps; r++) {
        CUDA_TRY(cudaEventRecord(a));
        CUBLAS_TRY(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, B, CUDA_R_32F, n, A,
                                CUDA_R_32F, k, &zero, C, CUDA_R_32F, n, ct, CUBLAS_GEMM_DEFAULT));
        CUDA_TRY(cudaEventRecord(b));
        CUDA_TRY(cudaEventSynchronize(b));
        CUDA_TRY(cudaEventElapsedTime(&t[r], a, b));
    }
    *ms_out = median_of(t, reps);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
    return 0;
}

extern "C" int tmr_cuda_ceilings(tmr_ceilings_t *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        if (err && errlen) snprintf(err, errlen, "no GPU visible");
        return -1;
    }
    cudaDeviceProp p;
    CUDA_TRY(cudaGetDeviceProperties(&p, 0));
    snprintf(c->device, sizeof c->device, "%s", p.name);
    c->sms = p.multiProcessorCount;
    c->l2_bytes = p.l2CacheSize;
    c->mem_bytes = p.totalGlobalMem;
    int clock_khz = 0;
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0);
    /* FP32 peak: 128 FP32 lanes per SM on Hopper, 2 FLOP per FMA, boost clock. A lead only. */
    c->fp32_peak_tflops = 2.0 * 128.0 * c->sms * clock_khz * 1e3 / 1e12;

    const size_t big = (size_t)1 << 30, host = (size_t)256 << 20;
    float *d0, *d1;
    CUDA_TRY(cudaMalloc(&d0, big));
    CUDA_TRY(cudaMalloc(&d1, big));
    fill_uniform_kernel<<<(unsigned)(big / 4 / 256), 256>>>(d0, (int64_t)(big / 4), 3);
    CUDA_TRY(cudaGetLastError());
    float ms;
    if (time_copy(d1, d0, big, cudaMemcpyDeviceToDevice, 10, &ms, err, errlen)) return -1;
    c->d2d_gbps = 2.0 * big / (ms * 1e-3) / 1e9;  // bytes read + bytes written

    void *pinned, *pageable = malloc(host);
    CUDA_TRY(cudaMallocHost(&pinned, host));
    memset(pinned, 1, host);
    memset(pageable, 1, host);
    if (time_copy(d0, pinned, host, cudaMemcpyHostToDevice, 5, &ms, err, errlen)) return -1;
    c->h2d_pinned_gbps = host / (ms * 1e-3) / 1e9;
    if (time_copy(pinned, d0, host, cudaMemcpyDeviceToHost, 5, &ms, err, errlen)) return -1;
    c->d2h_pinned_gbps = host / (ms * 1e-3) / 1e9;
    if (time_copy(d0, pageable, host, cudaMemcpyHostToDevice, 5, &ms, err, errlen)) return -1;
    c->h2d_pageable_gbps = host / (ms * 1e-3) / 1e9;
    CUDA_TRY(cudaFreeHost(pinned));
    free(pageable);
    CUDA_TRY(cudaFree(d0));
    CUDA_TRY(cudaFree(d1));

    cublasHandle_t h;
    CUBLAS_TRY(cublasCreate(&h));
    const int S = 8192;
    if (time_sgemm(h, S, S, S, CUBLAS_COMPUTE_32F, 5, &ms, err, errlen)) return -1;
    c->sgemm_tflops = 2.0 * S * S * S / (ms * 1e-3) / 1e12;
    if (time_sgemm(h, S, S, S, CUBLAS_COMPUTE_32F_FAST_TF32, 5, &ms, err, errlen)) return -1;
    c->tf32_tflops = 2.0 * S * S * S / (ms * 1e-3) / 1e12;
    /* The model's own shapes: a batch's history rows through a 64x64 projection (256 x 20
     * rows) and dev scoring at MovieLens-1M scale (6,040 users x 3,706 items x 64). */
    if (time_sgemm(h, 5120, 64, 64, CUBLAS_COMPUTE_32F, 21, &ms, err, errlen)) return -1;
    c->proj_us = ms * 1e3;
    if (time_sgemm(h, 6040, 3706, 64, CUBLAS_COMPUTE_32F, 21, &ms, err, errlen)) return -1;
    c->score_us = ms * 1e3;
    cublasDestroy(h);

    /* Launch overhead: 1000 empty launches back to back, then the same captured as a graph. */
    cudaStream_t s;
    CUDA_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaEvent_t a, b;
    CUDA_TRY(cudaEventCreate(&a));
    CUDA_TRY(cudaEventCreate(&b));
    for (int i = 0; i < 100; i++) empty_kernel<<<1, 32, 0, s>>>(NULL);
    CUDA_TRY(cudaEventRecord(a, s));
    for (int i = 0; i < 1000; i++) empty_kernel<<<1, 32, 0, s>>>(NULL);
    CUDA_TRY(cudaEventRecord(b, s));
    CUDA_TRY(cudaEventSynchronize(b));
    CUDA_TRY(cudaEventElapsedTime(&ms, a, b));
    c->launch_us = ms;  // ms per 1000 launches = us per launch
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CUDA_TRY(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    for (int i = 0; i < 1000; i++) empty_kernel<<<1, 32, 0, s>>>(NULL);
    CUDA_TRY(cudaStreamEndCapture(s, &g));
    CUDA_TRY(cudaGraphInstantiate(&ge, g, 0));
    CUDA_TRY(cudaGraphLaunch(ge, s));
    CUDA_TRY(cudaEventRecord(a, s));
    CUDA_TRY(cudaGraphLaunch(ge, s));
    CUDA_TRY(cudaEventRecord(b, s));
    CUDA_TRY(cudaEventSynchronize(b));
    CUDA_TRY(cudaEventElapsedTime(&ms, a, b));
    c->graph_launch_us = ms;
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaStreamDestroy(s);
    CUDA_TRY(cudaGetLastError());
    return 0;
}
