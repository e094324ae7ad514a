/* Shared device helpers: checked CUDA/cuBLAS calls that report file:line and the failing call,
 * the launch macro every backend kernel goes through, and the context the op launchers share.
 * With TMR_EMULATE (build/emu, `make gpu-emu`) the same sources compile as host C++ against
 * kernels/emulate.h. */
#ifndef TIMIREC_KERNELS_COMMON_CUH
#define TIMIREC_KERNELS_COMMON_CUH

#ifdef TMR_EMULATE
#include "emulate.h"
#else
#include <cuda_runtime.h>
#include <cublas_v2.h>
#endif
#include <stdio.h>

#include "timirec/common.h"
#include "timirec/gpu_ops.h"

/* Record the first CUDA error into (err, errlen) and return -1 from the enclosing function. */
#define CUDA_TRY(call)                                                                   \
    do {                                                                                 \
        cudaError_t e_ = (call);                                                         \
        if (e_ != cudaSuccess) {                                                         \
            if (err && errlen)                                                           \
                snprintf(err, errlen, "%s:%d: %s failed: %s", __FILE__, __LINE__, #call, \
                         cudaGetErrorString(e_));                                        \
            return -1;                                                                   \
        }                                                                                \
    } while (0)

/* The same for cuBLAS calls (status code in the message). */
#define CUBLAS_TRY(call)                                                                 \
    do {                                                                                 \
        int s_ = (int)(call);                                                            \
        if (s_ != 0) {                                                                   \
            if (err && errlen)                                                           \
                snprintf(err, errlen, "%s:%d: %s failed: cuBLAS status %d", __FILE__,    \
                         __LINE__, #call, s_);                                           \
            return -1;                                                                   \
        }                                                                                \
    } while (0)

/* The backend's checks: a failing call is fatal (the step cannot go on), naming file:line,
 * the call and the runtime's message. */
#define CUDA_CHECK(call)                                                                     \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess)                                                               \
            tmr_fatal("%s:%d: %s failed: %s", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
    } while (0)

#define CUBLAS_CHECK(call)                                                                  \
    do {                                                                                    \
        cublasStatus_t s_ = (call);                                                         \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                    \
            tmr_fatal("%s:%d: %s failed: cuBLAS status %d", __FILE__, __LINE__, #call, (int)s_); \
    } while (0)

/* What the op launchers share (one per process is enough; not thread-safe). Scratch buffers
 * grow on demand and are never shrunk. */
struct gpu_ctx {
    cublasHandle_t blas;
    float *ones;            /* (ones_cap) 1.0f: column sums as a matrix-vector product */
    int64_t ones_cap;
    int32_t *sort_buf;      /* (4, sort_cap) keys in, values in, keys out, values out */
    int64_t sort_cap;
    void *sort_temp;        /* CUB's scratch */
    size_t sort_temp_cap;
    double *rows;           /* (rows_cap) per-row loss terms */
    int64_t rows_cap;
    int64_t *offsets;       /* (offsets_cap) a host offset table uploaded for one launch */
    int64_t offsets_cap;
    /* topk_gpu's (kernels/topk.cu), grown by tk_ctx_reserve; sizes in bytes */
    float *topk_scratch;    /* (U_c * n_vecs, N_c) one chunk pair's scores */
    size_t topk_scratch_bytes;
    uint64_t *topk_state;   /* (U_c, k) each row's list between item chunks, then (U_c) int32 lengths */
    size_t topk_state_bytes;
};

/* The stream every backend launch, cuBLAS call, CUB sort and gpu_zero/gpu_copy goes to: 0 (the
 * legacy default stream) except while the epoch driver captures a CUDA graph
 * (gpu_set_launch_stream). */
extern cudaStream_t gpu_launch_stream;
void gpu_set_launch_stream(gpu_ctx_t *ctx, cudaStream_t s);
/* Whether gpu_debug_sync(1) is on (no graph capture then: it synchronises after launches). */
int gpu_debug_sync_enabled(void);

/* After every launch: cudaGetLastError (bad configuration, missing kernel image), and with
 * gpu_debug_sync(1) a device synchronisation, so an error inside the kernel is reported at
 * the launch that caused it rather than at some later call. */
void gpu_after_launch(const char *kernel, const char *file, int line);

/* Scratch from the context: at least n ones / doubles. */
const float *gpu_ctx_ones(gpu_ctx_t *ctx, int64_t n);
double *gpu_ctx_rows(gpu_ctx_t *ctx, int64_t n);
/* A device copy of the host table host[0..n) (e.g. the GRU's step offsets), valid until the
 * next call (the copy is ordered with the launches on the default stream). */
const int64_t *gpu_ctx_offsets(gpu_ctx_t *ctx, const int64_t *host, int64_t n);

/* Elementwise kernels: signature kernel(int64_t n, ...), one thread per index i < n
 * (THREAD_INDEX), launched by LAUNCH(kernel, n, args...); no shared memory, no synchronisation
 * between threads, no atomics: each thread owns the output elements of its index. */
#define TMR_THREADS 256
#define THREAD_INDEX(i, n)                                                  \
    const int64_t i = (int64_t)blockIdx.x * (int64_t)blockDim.x + (int64_t)threadIdx.x; \
    if (i >= (n)) return

/* Block-cooperative kernels (shared memory, __syncthreads, warp shuffles) launch with an explicit
 * grid, block and dynamic shared size: KLAUNCH(kernel, grid, block, shared_bytes, args...).
 * Dynamic shared memory is declared TMR_DYNAMIC_SHARED(T, name) inside the kernel (the
 * emulation cannot take `extern __shared__`); a static __shared__ array is one copy per
 * function in the emulation, so a kernel writes it before reading it in every block (as CUDA
 * requires anyway). kernels/emulate.h says what the emulation checks. */
#ifdef TMR_EMULATE
#define KLAUNCH(kernel, grid, block, shared_bytes, ...)                                   \
    do {                                                                                  \
        TMR_EMU_LAUNCH(kernel, grid, block, shared_bytes, __VA_ARGS__);                   \
        gpu_after_launch(#kernel, __FILE__, __LINE__);                                    \
    } while (0)
#else
#define TMR_DYNAMIC_SHARED(T, name) extern __shared__ __align__(16) T name[]
#define KLAUNCH(kernel, grid, block, shared_bytes, ...)                                   \
    do {                                                                                  \
        kernel<<<grid, block, shared_bytes, gpu_launch_stream>>>(__VA_ARGS__);            \
        gpu_after_launch(#kernel, __FILE__, __LINE__);                                    \
    } while (0)
#endif

#ifdef TMR_EMULATE
#define LAUNCH(kernel, n, ...)                                                        \
    do {                                                                              \
        const int64_t n_ = (n);                                                       \
        if (n_ > 0) {                                                                 \
            emu_launch(n_, TMR_THREADS, [&]() { kernel(n_, __VA_ARGS__); });          \
            gpu_after_launch(#kernel, __FILE__, __LINE__);                            \
        }                                                                             \
    } while (0)
#else
#define LAUNCH(kernel, n, ...)                                                        \
    do {                                                                              \
        const int64_t n_ = (n);                                                       \
        if (n_ > 0) {                                                                 \
            const int64_t blocks_ = (n_ + TMR_THREADS - 1) / TMR_THREADS;             \
            if (blocks_ > 2147483647LL)                                               \
                tmr_fatal("%s:%d: %s: %lld threads exceed the grid", __FILE__, __LINE__, \
                          #kernel, (long long)n_);                                    \
            kernel<<<(unsigned)blocks_, TMR_THREADS, 0, gpu_launch_stream>>>(n_, __VA_ARGS__); \
            gpu_after_launch(#kernel, __FILE__, __LINE__);                            \
        }                                                                             \
    } while (0)
#endif

#endif
