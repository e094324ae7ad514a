/* Host emulation of the small part of CUDA, cuBLAS and CUB the training backend uses, so the
 * backend's own code (index arithmetic, buffer sizes, the row-major -> column-major cuBLAS
 * mapping, the host orchestration) can run and be tested on a machine without a GPU:
 * `make gpu-emu` compiles kernels/{context,linear,embedding,...}.cu with g++ -DTMR_EMULATE and
 * links the GPU parity tests against that (build/emu/). Under ASan every kernel's indexing is
 * bounds-checked (device buffers are malloc'd).
 *
 * What it is: every launch runs its threads one after another on the calling CPU thread
 * (blockIdx/threadIdx are globals set before each call); device memory is host memory;
 * cuBLAS routines are straightforward column-major loops written from the cuBLAS
 * documentation (argument validation included: a bad leading dimension fails as cuBLAS
 * would); CUB's radix sort is a stable sort. What it is not: a race detector (the backend's
 * kernels let one thread own each output element, so order does not matter; TMR_EMU_REVERSE=1
 * runs the threads in reverse order to check that), a check of launch limits, or of the
 * device's math library. Only the backend files are built this way (not device.cu /
 * ceilings.cu, which time real hardware). */
#ifndef TIMIREC_KERNELS_EMULATE_H
#define TIMIREC_KERNELS_EMULATE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)

struct dim3 {
    unsigned x, y, z;
};
/* The current emulated thread (set by emu_launch). */
extern dim3 blockIdx, threadIdx, blockDim, gridDim;

typedef int cudaError_t;
typedef void *cudaStream_t;
enum { cudaSuccess = 0, cudaErrorMemoryAllocation = 2, cudaErrorInvalidValue = 1 };
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};

static inline const char *cudaGetErrorString(cudaError_t e) {
    return e == cudaSuccess ? "no error" : e == cudaErrorMemoryAllocation ? "out of memory" : "invalid value";
}
static inline cudaError_t cudaMalloc(void **p, size_t n) {
    *p = malloc(n ? n : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
template <class T> static inline cudaError_t cudaMalloc(T **p, size_t n) {
    return cudaMalloc((void **)p, n);
}
static inline cudaError_t cudaFree(void *p) {
    free(p);
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind) {
    if (n) memmove(dst, src, n);
    return cudaSuccess;
}
static inline cudaError_t cudaMemset(void *p, int v, size_t n) {
    if (n) memset(p, v, n);
    return cudaSuccess;
}
static inline cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
static inline cudaError_t cudaGetLastError(void) { return cudaSuccess; }
static inline cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
static inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }

/* Runs body() once per thread of ceil(n / threads) blocks of `threads` threads. */
template <class F> static inline void emu_launch(int64_t n, unsigned threads, F body) {
    const int64_t blocks = (n + threads - 1) / threads;
    static int reverse = -1;
    if (reverse < 0) {
        const char *r = getenv("TMR_EMU_REVERSE");
        reverse = r && r[0] == '1';
    }
    blockDim.x = threads;
    blockDim.y = blockDim.z = 1;
    gridDim.x = (unsigned)blocks;
    gridDim.y = gridDim.z = 1;
    blockIdx.y = blockIdx.z = threadIdx.y = threadIdx.z = 0;
    for (int64_t s = 0; s < blocks * threads; s++) {
        const int64_t g = reverse ? blocks * threads - 1 - s : s;
        blockIdx.x = (unsigned)(g / threads);
        threadIdx.x = (unsigned)(g % threads);
        body();
    }
}

/* ---- cuBLAS (column-major, as documented) ---- */
typedef struct emu_cublas_ctx *cublasHandle_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2 } cublasMath_t;

static inline cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = (cublasHandle_t)malloc(1);
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasDestroy(cublasHandle_t h) {
    free((void *)h);
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) {
    return CUBLAS_STATUS_SUCCESS;
}
static inline int emu_max1(int a) { return a > 1 ? a : 1; }

/* C (m x n) = alpha op(A) op(B) + beta C; op(A) m x k, op(B) k x n; element (i, j) of a
 * column-major matrix X with leading dimension ld is X[i + j * ld]. beta == 0: C not read. */
static inline cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta,
                                         cublasOperation_t tb, int m, int n, int k,
                                         const float *alpha, const float *A, int lda,
                                         const float *B, int ldb, const float *beta, float *C,
                                         int ldc) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (lda < emu_max1(ta == CUBLAS_OP_N ? m : k) || ldb < emu_max1(tb == CUBLAS_OP_N ? k : n) ||
        ldc < emu_max1(m))
        return CUBLAS_STATUS_INVALID_VALUE;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float s = 0;
            for (int p = 0; p < k; p++) {
                float a = ta == CUBLAS_OP_N ? A[i + (int64_t)p * lda] : A[p + (int64_t)i * lda];
                float b = tb == CUBLAS_OP_N ? B[p + (int64_t)j * ldb] : B[j + (int64_t)p * ldb];
                s += a * b;
            }
            float *c = &C[i + (int64_t)j * ldc];
            *c = *beta == 0.0f ? *alpha * s : *alpha * s + *beta * *c;
        }
    return CUBLAS_STATUS_SUCCESS;
}

static inline cublasStatus_t cublasSgemmStridedBatched(
    cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
    const float *alpha, const float *A, int lda, long long sA, const float *B, int ldb,
    long long sB, const float *beta, float *C, int ldc, long long sC, int batch) {
    if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    for (int b = 0; b < batch; b++) {
        cublasStatus_t s = cublasSgemm(h, ta, tb, m, n, k, alpha, A + b * sA, lda, B + b * sB, ldb,
                                       beta, C + b * sC, ldc);
        if (s != CUBLAS_STATUS_SUCCESS) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}

/* y = alpha op(A) x + beta y, A m x n column-major. beta == 0: y not read. */
static inline cublasStatus_t cublasSgemv(cublasHandle_t h, cublasOperation_t t, int m, int n,
                                         const float *alpha, const float *A, int lda,
                                         const float *x, int incx, const float *beta, float *y,
                                         int incy) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || lda < emu_max1(m) || incx == 0 || incy == 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    const int rows = t == CUBLAS_OP_N ? m : n, cols = t == CUBLAS_OP_N ? n : m;
    for (int i = 0; i < rows; i++) {
        float s = 0;
        for (int j = 0; j < cols; j++) {
            float a = t == CUBLAS_OP_N ? A[i + (int64_t)j * lda] : A[j + (int64_t)i * lda];
            s += a * x[(int64_t)j * incx];
        }
        float *yi = &y[(int64_t)i * incy];
        *yi = *beta == 0.0f ? *alpha * s : *alpha * s + *beta * *yi;
    }
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- CUB ---- */
namespace cub {
struct DeviceRadixSort {
    /* Stable sort of (key, value) pairs by key, as CUB's; the first call (temp == NULL) asks
     * for the scratch size. */
    template <class K, class V>
    static cudaError_t SortPairs(void *temp, size_t &temp_bytes, const K *keys_in, K *keys_out,
                                 const V *vals_in, V *vals_out, int n, int begin_bit = 0,
                                 int end_bit = (int)sizeof(K) * 8, cudaStream_t stream = 0) {
        (void)begin_bit;
        (void)end_bit;
        (void)stream;
        if (!temp) {
            temp_bytes = 64 + (size_t)n;  /* something non-zero that grows with n */
            return cudaSuccess;
        }
        std::vector<int> idx((size_t)n);
        for (int i = 0; i < n; i++) idx[(size_t)i] = i;
        std::stable_sort(idx.begin(), idx.end(),
                         [&](int a, int b) { return keys_in[a] < keys_in[b]; });
        std::vector<K> k((size_t)n);
        std::vector<V> v((size_t)n);
        for (int i = 0; i < n; i++) {
            k[(size_t)i] = keys_in[idx[(size_t)i]];
            v[(size_t)i] = vals_in[idx[(size_t)i]];
        }
        for (int i = 0; i < n; i++) {
            keys_out[i] = k[(size_t)i];
            vals_out[i] = v[(size_t)i];
        }
        return cudaSuccess;
    }
};
}  // namespace cub

/* ---- added for the epoch driver (issue 6): asynchronous copies and cuBLAS streams, run
 * serially like everything else here (the emulation has one stream; graphs are not
 * emulated: the backend launches directly under TMR_EMULATE) ---- */
static inline cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind,
                                          cudaStream_t) {
    if (n) memmove(dst, src, n);
    return cudaSuccess;
}
static inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) {
    if (n) memset(p, v, n);
    return cudaSuccess;
}
static inline cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) {
    return CUBLAS_STATUS_SUCCESS;
}
/* Streams and events: one serial queue, so an event is always complete and waits return at
 * once; pinned host memory is plain host memory. */
typedef struct emu_event *cudaEvent_t;
enum { cudaStreamNonBlocking = 1, cudaHostAllocDefault = 0, cudaEventDisableTiming = 2 };
static inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) {
    *s = malloc(1);
    return *s ? cudaSuccess : cudaErrorMemoryAllocation;
}
static inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
    free(s);
    return cudaSuccess;
}
static inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) {
    *e = (cudaEvent_t)malloc(1);
    return *e ? cudaSuccess : cudaErrorMemoryAllocation;
}
static inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
    free((void *)e);
    return cudaSuccess;
}
static inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
static inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
static inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) {
    return cudaSuccess;
}
static inline cudaError_t cudaHostAlloc(void **p, size_t n, unsigned) {
    *p = malloc(n ? n : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
static inline cudaError_t cudaFreeHost(void *p) {
    free(p);
    return cudaSuccess;
}
/* ---- end of the epoch driver's additions ---- */

#endif
