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

/* x[0 .. n) uniform in [-0.5, 0.5). Nothing to launch for n == 0 (a 0-block launch is an
 * invalid configuration). */
static int fill_uniform(float *x, int64_t n, uint64_t seed, char *err, size_t errlen) {
    if (n <= 0) return 0;
    fill_uniform_kernel<<<(unsigned)((n + 255) / 256), 256>>>(x, n, seed);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

/* Median milliseconds of `reps` (<= 32) timed runs of a copy after one warm-up, each between
 * the events a and b. */
static int time_copy(cudaEvent_t a, cudaEvent_t b, void *dst, const void *src, size_t bytes,
                     cudaMemcpyKind kind, int reps, float *ms_out, char *err, size_t errlen) {
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
    return 0;
}

/* time_sgemm's work, its buffers abc = {A (m, k), B (k, n), C (m, n)} allocated into the
 * caller's array so that the caller frees them whichever step failed. */
static int sgemm_timed(cublasHandle_t h, cudaEvent_t a, cudaEvent_t b, float *abc[3], int m,
                       int n, int k, cublasComputeType_t ct, int reps, float *ms_out, char *err,
                       size_t errlen) {
    CUDA_TRY(cudaMalloc(&abc[0], (size_t)m * k * sizeof(float)));
    CUDA_TRY(cudaMalloc(&abc[1], (size_t)k * n * sizeof(float)));
    CUDA_TRY(cudaMalloc(&abc[2], (size_t)m * n * sizeof(float)));
    const float *A = abc[0], *B = abc[1];
    float *C = abc[2];
    if (fill_uniform(abc[0], (int64_t)m * k, 1, err, errlen) ||
        fill_uniform(abc[1], (int64_t)k * n, 2, err, errlen))
        return -1;
    const float one = 1.0f, zero = 0.0f;
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
    return 0;
}

/* Median ms of C[m x n] = A[m x k] * B[k x n] (row-major view) through cublasGemmEx, `reps`
 * (<= 32) runs after three warm-ups, each between the events a and b. */
static int time_sgemm(cublasHandle_t h, cudaEvent_t a, cudaEvent_t b, int m, int n, int k,
                      cublasComputeType_t ct, int reps, float *ms_out, char *err, size_t errlen) {
    float *abc[3] = {NULL, NULL, NULL};
    const int rc = sgemm_timed(h, a, b, abc, m, n, k, ct, reps, ms_out, err, errlen);
    for (int i = 0; i < 3; i++) cudaFree(abc[i]); /* on every path */
    return rc;
}

/* Everything tmr_cuda_ceilings holds, released by ceilings_release whichever step failed. */
typedef struct {
    float *d0, *d1;          /* (1 GiB) each: the device copy */
    void *pinned, *pageable; /* (256 MiB) each: the host copies */
    cublasHandle_t blas;
    cudaStream_t stream;     /* the launch-overhead runs */
    cudaEvent_t a, b;        /* every timing's start and end */
    cudaGraph_t graph;
    cudaGraphExec_t exec;
} ceilings_res_t;

static void ceilings_release(ceilings_res_t *r) {
    cudaFree(r->d0);
    cudaFree(r->d1);
    if (r->pinned) cudaFreeHost(r->pinned);
    free(r->pageable);
    if (r->blas) cublasDestroy(r->blas);
    if (r->exec) cudaGraphExecDestroy(r->exec);
    if (r->graph) cudaGraphDestroy(r->graph);
    if (r->a) cudaEventDestroy(r->a);
    if (r->b) cudaEventDestroy(r->b);
    if (r->stream) cudaStreamDestroy(r->stream);
}

/* cudaFree that forgets the pointer, so that ceilings_release does not free it again. */
static cudaError_t free_device(float **p) {
    const cudaError_t e = cudaFree(*p);
    *p = NULL;
    return e;
}

/* The measurements; every resource goes into r as soon as it exists. */
static int ceilings_measure(tmr_ceilings_t *c, ceilings_res_t *r, char *err, size_t errlen) {
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
    CUDA_TRY(cudaEventCreate(&r->a));
    CUDA_TRY(cudaEventCreate(&r->b));

    const size_t big = (size_t)1 << 30, host = (size_t)256 << 20;
    CUDA_TRY(cudaMalloc(&r->d0, big));
    CUDA_TRY(cudaMalloc(&r->d1, big));
    if (fill_uniform(r->d0, (int64_t)(big / 4), 3, err, errlen)) return -1;
    float ms;
    if (time_copy(r->a, r->b, r->d1, r->d0, big, cudaMemcpyDeviceToDevice, 10, &ms, err, errlen))
        return -1;
    c->d2d_gbps = 2.0 * big / (ms * 1e-3) / 1e9;  // bytes read + bytes written

    CUDA_TRY(cudaMallocHost(&r->pinned, host));
    r->pageable = malloc(host);
    if (!r->pageable) {
        if (err && errlen) snprintf(err, errlen, "tmr_cuda_ceilings: out of host memory");
        return -1;
    }
    memset(r->pinned, 1, host);
    memset(r->pageable, 1, host);
    if (time_copy(r->a, r->b, r->d0, r->pinned, host, cudaMemcpyHostToDevice, 5, &ms, err, errlen))
        return -1;
    c->h2d_pinned_gbps = host / (ms * 1e-3) / 1e9;
    if (time_copy(r->a, r->b, r->pinned, r->d0, host, cudaMemcpyDeviceToHost, 5, &ms, err, errlen))
        return -1;
    c->d2h_pinned_gbps = host / (ms * 1e-3) / 1e9;
    if (time_copy(r->a, r->b, r->d0, r->pageable, host, cudaMemcpyHostToDevice, 5, &ms, err,
                  errlen))
        return -1;
    c->h2d_pageable_gbps = host / (ms * 1e-3) / 1e9;
    /* The 2 GiB back before the products' buffers. */
    CUDA_TRY(free_device(&r->d0));
    CUDA_TRY(free_device(&r->d1));

    CUBLAS_TRY(cublasCreate(&r->blas));
    const int S = 8192;
    if (time_sgemm(r->blas, r->a, r->b, S, S, S, CUBLAS_COMPUTE_32F, 5, &ms, err, errlen))
        return -1;
    c->sgemm_tflops = 2.0 * S * S * S / (ms * 1e-3) / 1e12;
    if (time_sgemm(r->blas, r->a, r->b, S, S, S, CUBLAS_COMPUTE_32F_FAST_TF32, 5, &ms, err, errlen))
        return -1;
    c->tf32_tflops = 2.0 * S * S * S / (ms * 1e-3) / 1e12;
    /* The model's own shapes: a batch's history rows through a 64x64 projection (256 x 20
     * rows) and dev scoring at MovieLens-1M scale (6,040 users x 3,706 items x 64). */
    if (time_sgemm(r->blas, r->a, r->b, 5120, 64, 64, CUBLAS_COMPUTE_32F, 21, &ms, err, errlen))
        return -1;
    c->proj_us = ms * 1e3;
    if (time_sgemm(r->blas, r->a, r->b, 6040, 3706, 64, CUBLAS_COMPUTE_32F, 21, &ms, err, errlen))
        return -1;
    c->score_us = ms * 1e3;

    /* Launch overhead: 1000 empty launches back to back, then the same captured as a graph. */
    CUDA_TRY(cudaStreamCreateWithFlags(&r->stream, cudaStreamNonBlocking));
    cudaStream_t s = r->stream;
    for (int i = 0; i < 100; i++) empty_kernel<<<1, 32, 0, s>>>(NULL);
    CUDA_TRY(cudaGetLastError());
    CUDA_TRY(cudaEventRecord(r->a, s));
    for (int i = 0; i < 1000; i++) empty_kernel<<<1, 32, 0, s>>>(NULL);
    CUDA_TRY(cudaEventRecord(r->b, s));
    CUDA_TRY(cudaEventSynchronize(r->b));
    CUDA_TRY(cudaEventElapsedTime(&ms, r->a, r->b));
    c->launch_us = ms;  // ms per 1000 launches = us per launch
    CUDA_TRY(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    for (int i = 0; i < 1000; i++) empty_kernel<<<1, 32, 0, s>>>(NULL);
    CUDA_TRY(cudaStreamEndCapture(s, &r->graph));
    CUDA_TRY(cudaGraphInstantiate(&r->exec, r->graph, 0));
    CUDA_TRY(cudaGraphLaunch(r->exec, s));
    CUDA_TRY(cudaEventRecord(r->a, s));
    CUDA_TRY(cudaGraphLaunch(r->exec, s));
    CUDA_TRY(cudaEventRecord(r->b, s));
    CUDA_TRY(cudaEventSynchronize(r->b));
    CUDA_TRY(cudaEventElapsedTime(&ms, r->a, r->b));
    c->graph_launch_us = ms;
    CUDA_TRY(cudaGetLastError());
    return 0;
}

extern "C" int tmr_cuda_ceilings(tmr_ceilings_t *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        cudaGetLastError(); /* not left for the next launch check */
        if (err && errlen) snprintf(err, errlen, "no GPU visible");
        return -1;
    }
    ceilings_res_t r;
    memset(&r, 0, sizeof r);
    const int rc = ceilings_measure(c, &r, err, errlen);
    ceilings_release(&r); /* on every path */
    if (rc) cudaGetLastError(); /* a failed call's error is not left for later launch checks */
    return rc;
}
