/* Shared device helpers: checked CUDA/cuBLAS calls that report file:line and the failing call,
 * the launch macro every backend kernel goes through, and the context the op launchers share.
 * With TMR_EMULATE (build/emu: the test_emu_* programs of `make test`) the same sources
 * compile as host C++ against emu/emulate.h. */
#ifndef TIMIREC_KERNELS_COMMON_CUH
#define TIMIREC_KERNELS_COMMON_CUH

#ifdef TMR_EMULATE
#include "../emu/emulate.h"
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
 * the call and the runtime's message; except while a graph is being captured
 * (gpu_capture_begin), when the first failure is recorded instead, the capture is abandoned
 * and the step runs again by direct launches (kernels/epoch.cu graph_step). */
void gpu_check_failed(const char *file, int line, const char *call, const char *what);
#define CUDA_CHECK(call)                                                                     \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess) gpu_check_failed(__FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
    } while (0)

#define CUBLAS_CHECK(call)                                                                  \
    do {                                                                                    \
        cublasStatus_t s_ = (call);                                                         \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                  \
            char m_[48];                                                                    \
            snprintf(m_, sizeof m_, "cuBLAS status %d", (int)s_);                           \
            gpu_check_failed(__FILE__, __LINE__, #call, m_);                                \
        }                                                                                   \
    } while (0)

/* ---- graph capture (kernels/context.cu) ----
 * gpu_capture_begin() starts recording failures instead of dying on them; gpu_capturing()
 * says whether a capture is under way (scratch must not grow then: gpu_grow_refused);
 * gpu_capture_end() stops and returns the first failure's message (NULL: none). */
void gpu_capture_begin(void);
int gpu_capturing(void);
const char *gpu_capture_end(void);
/* Inside a capture a growing buffer would allocate (not allowed while capturing): records
 * "what must grow inside a capture" as the capture's failure and returns 1 (the caller keeps
 * its old buffer; the capture is thrown away and the step rerun directly, where it grows). */
int gpu_grow_refused(const char *what, int64_t need, int64_t have);

/* Every device allocation and free moves this counter on (gpu_malloc, gpu_free): a CUDA graph
 * captured at generation G holds pointers that are all still valid while the counter is G. */
uint64_t gpu_alloc_generation(void);

/* Dynamic shared memory above the default 48 KiB needs a per-kernel opt-in. *allowed (one
 * static int per kernel) is the opt-in set so far: it is only ever raised, never lowered, so a
 * graph captured with a larger size keeps launching after a smaller call, and gpu_model_create
 * raises every kernel to the largest size its run needs before anything is captured. */
template <class Kernel>
static inline void gpu_allow_shared(Kernel kernel, int *allowed, size_t bytes) {
    if (bytes <= 48 * 1024 || bytes <= (size_t)*allowed) return;
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)bytes));
    *allowed = (int)bytes;
}

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
    int smem_optin;         /* bytes of shared memory a block may use (static + dynamic) */
    float *seg_partial;     /* (seg_partial_cap) chunk sums of gpu_scatter_add_rows' long runs */
    int64_t seg_partial_cap;
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
/* Grow the scratch buffers once for a model's largest step (gpu_model_create): column sums over
 * up to `rows` rows, table scatters of up to `scatter_rows` rows of d, `loss_rows` per-row loss
 * terms; so no step allocates (a training step must not: gpu_ops.h). */
void gpu_ctx_reserve(gpu_ctx_t *ctx, int64_t rows, int64_t scatter_rows, int d, int64_t loss_rows);
/* The scatter's scratch (kernels/embedding.cu): sort buffers, CUB's temporary storage and the
 * chunk sums for n rows of d; 0, or -1 when it had to grow inside a capture (gpu_grow_refused). */
int gpu_scatter_reserve(gpu_ctx_t *ctx, int64_t n, int d);

/* Raise the dynamic shared memory opt-ins of the op families' kernels to what a model of these
 * sizes needs at most (gpu_model_create, before any capture): emb d, attention a, K interests,
 * max_C candidates. */
void gpu_attn_reserve_shared(int d);
void gpu_interest_reserve_shared(int d, int a, int K);
void gpu_heads_reserve_shared(gpu_ctx_t *ctx, int K, int d, int max_C);
void gpu_gru_reserve_shared(int d);

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
 * requires anyway). emu/emulate.h says what the emulation checks. */
#ifdef TMR_EMULATE
#define KLAUNCH(kernel, grid, block, shared_bytes, ...)                                   \
    do {                                                                                  \
        TMR_EMU_LAUNCH_ON(gpu_launch_stream, kernel, grid, block, shared_bytes, __VA_ARGS__); \
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
            const int64_t blocks_ = (n_ + TMR_THREADS - 1) / TMR_THREADS;             \
            if (blocks_ > 2147483647LL)                                               \
                tmr_fatal("%s:%d: %s: %lld threads exceed the grid", __FILE__, __LINE__, \
                          #kernel, (long long)n_);                                    \
            emu_launch_kernel(dim3((unsigned)blocks_), dim3(TMR_THREADS), 0, gpu_launch_stream, \
                              kernel, #kernel, n_, __VA_ARGS__);                      \
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
