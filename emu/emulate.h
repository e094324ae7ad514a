/* Host emulation of the small part of CUDA, cuBLAS and CUB the training backend uses, so the
 * backend's own code (index arithmetic, buffer sizes, the row-major -> column-major cuBLAS
 * mapping, the host orchestration, block-cooperative kernels) can run and be tested on a machine
 * without a GPU: the Makefile compiles kernels/{context,linear,embedding,...}.cu and
 * emu/emulate.cpp with g++ -DTMR_EMULATE and links the GPU parity tests against that
 * (build/emu/, tests build/tests/test_emu_*; emu/README.md). Under ASan every kernel's indexing is
 * bounds-checked (device buffers and dynamic shared memory are malloc'd).
 *
 * What it emulates:
 * - Launches (emu_launch_grid, TMR_EMU_LAUNCH, TMR_EMU_LAUNCH_ON): blocks run one after another, in
 *   linear order (x fastest); grid and block are dim3 (x, y, z), with CUDA's limits checked
 *   (1024 threads a block, block z <= 64, grid y/z <= 65535, 227 KiB dynamic shared memory).
 *   Device memory is host memory.
 * - Threads of a block: run straight through, one after another, on the calling thread, as
 *   long as none calls a synchronising primitive; the first call of one (__syncthreads,
 *   __syncwarp, a shuffle, a vote) turns the rest of that block into cooperative fibers (own
 *   stacks, switched by hand at every barrier and warp rendezvous: emu/emulate.cpp), so
 *   kernels that never synchronise cost what they did before. The thread that was running
 *   keeps running on the caller's stack as one of the fibers.
 * - __syncthreads() (and _count/_and/_or): every thread of the block waits until all have
 *   arrived; then the next phase runs the threads in launch order.
 * - Warp primitives over 32-lane warps of the block (lane = linear thread index % 32):
 *   __shfl_sync, __shfl_up_sync, __shfl_down_sync, __shfl_xor_sync (width included),
 *   __ballot_sync, __any_sync, __all_sync, __syncwarp: a rendezvous of the lanes in the mask;
 *   once all have deposited their value, every lane gets its partner's. A lane that reads a
 *   lane outside the mask (undefined on the GPU) gets all-ones bits (NaN for a float, -1 for
 *   an int), so that a result that depends on it shows in a parity test.
 * - Shared memory. __shared__ is `static`: a __shared__ array inside a kernel is a static
 *   local, one copy shared by all the threads (fibers) of the block that runs; blocks run one
 *   at a time, so it acts as per-block memory. The rule: a kernel must write shared memory
 *   before reading it in every block (CUDA requires that too; here a block that reads first
 *   sees the previous block's values, not garbage). Dynamic shared memory (the third launch
 *   argument) cannot be `extern __shared__ T name[]` (`extern static` does not compile): declare
 *   it with TMR_DYNAMIC_SHARED(T, name), which is `extern __shared__ T name[]` under nvcc
 *   (common.cuh / the kernel file defines that side) and a pointer to a per-launch malloc'd
 *   buffer here, refilled with 0xff bytes (NaN floats) before every block.
 * - atomicAdd/Sub/Max/Min/Exch/CAS (plain read-modify-write: threads never run at the same
 *   time), __ldg (a load), __threadfence* (nothing), and the fast-math intrinsics mapped to
 *   the float libm functions the CPU reference uses: __expf -> expf, __logf -> logf,
 *   __powf -> powf, __fdividef(a, b) -> a / b, rsqrtf(x) -> 1.0f / sqrtf(x), __fsqrt_rn ->
 *   sqrtf, __frcp_rn(x) -> 1.0f / x, __saturatef; fmaxf/fminf/expf/... are libm's own.
 *   The GPU's versions differ in the last bits (its __expf by a few ulps): parity tolerances,
 *   not this file, absorb that.
 * - Misuse that would hang or be undefined on the GPU aborts with file:line and the threads
 *   involved: a __syncthreads that some thread of the block does not reach (it exited, or
 *   waits at another barrier or a shuffle), threads at two different __syncthreads in one
 *   phase, a warp primitive whose mask leaves out the caller, names a lane that does not
 *   exist or has exited, or differs between lanes, a shuffle width that is not a power of 2
 *   up to 32, and any other deadlock.
 * - TMR_EMU_REVERSE=1 (read at every launch) runs blocks and threads in reverse order, both
 *   straight-through threads and fibers in every phase between barriers, so a result that
 *   depends on an unsynchronised order changes and fails its parity test.
 *
 * What it is not: a model of the GPU's memory (no races beyond the two orders above, no
 * caches, no weak ordering: legacy warp-synchronous code without __syncwarp works here and
 * not there), of timing, of independent thread scheduling within a warp, of streams, or of
 * the device's math library; launch errors abort instead of returning from
 * cudaGetLastError. Launches must come from one host thread at a time. Only the backend files
 * are built this way (not device.cu / ceilings.cu, which time real hardware). */
#ifndef TIMIREC_EMU_EMULATE_H
#define TIMIREC_EMU_EMULATE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
/* One copy per function, shared by the fibers of the running block (see the header comment). */
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
/* The current emulated thread (set by the launcher and at every fiber switch). */
extern dim3 blockIdx, threadIdx, blockDim, gridDim;
static const int warpSize = 32;

typedef int cudaError_t;
typedef void *cudaStream_t;
enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorIllegalState = 401,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureImplicit = 906
};
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };

static inline const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorIllegalState: return "the operation is not permitted in the current state";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
        return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit:
        return "operation would make the legacy stream depend on a capturing blocking stream";
    }
    return "invalid value";
}

/* ---- one queue, stream capture and the no-sync region (emu/emulate.cpp) ----
 * Device work (launches, asynchronous copies and sets, cuBLAS products, CUB sorts, graph
 * launches) goes through emu_submit: it runs at once, except while a stream is being captured
 * (cudaStreamBeginCapture), when work on that stream is recorded instead, with its arguments
 * copied as CUDA copies a kernel node's parameters, and replayed by cudaGraphLaunch. So a
 * value passed by value is frozen in the graph, a replay after its buffer was freed reads freed
 * memory (ASan), and work issued on the legacy stream during a capture fails and invalidates
 * the capture (cudaErrorStreamCaptureImplicit), as on the GPU in
 * cudaStreamCaptureModeThreadLocal. Synchronous calls (cudaMemcpy, cudaMemset, cudaMalloc,
 * cudaFree, cudaHostAlloc, cudaFreeHost and the synchronisations) go through emu_sync_call:
 * during a capture they fail with cudaErrorStreamCaptureUnsupported and invalidate it; inside
 * a no-sync region (emu_nosync_region, set by the backend's gpu_nosync_begin) they abort,
 * naming the region: a training step must never make the host wait for the device. */
#include <functional>
cudaError_t emu_submit(cudaStream_t stream, const char *what, std::function<void()> work);
cudaError_t emu_sync_call(const char *what);
/* The region's name, or NULL outside one. */
extern const char *emu_nosync_region;
/* The error the last failing call left for cudaGetLastError. */
extern cudaError_t emu_last_error;
static inline cudaError_t emu_fail(cudaError_t e) {
    if (e != cudaSuccess) emu_last_error = e;
    return e;
}

static inline cudaError_t cudaMalloc(void **p, size_t n) {
    *p = NULL;
    if (cudaError_t e = emu_sync_call("cudaMalloc")) return e;
    *p = malloc(n ? n : 1);
    return *p ? cudaSuccess : emu_fail(cudaErrorMemoryAllocation);
}
template <class T> static inline cudaError_t cudaMalloc(T **p, size_t n) {
    return cudaMalloc((void **)p, n);
}
static inline cudaError_t cudaFree(void *p) {
    if (cudaError_t e = emu_sync_call("cudaFree")) return e;
    free(p);
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind) {
    if (cudaError_t e = emu_sync_call("cudaMemcpy")) return e;
    if (n) memmove(dst, src, n);
    return cudaSuccess;
}
static inline cudaError_t cudaMemset(void *p, int v, size_t n) {
    if (cudaError_t e = emu_sync_call("cudaMemset")) return e;
    if (n) memset(p, v, n);
    return cudaSuccess;
}
static inline cudaError_t cudaDeviceSynchronize(void) {
    return emu_sync_call("cudaDeviceSynchronize");
}
static inline cudaError_t cudaGetLastError(void) {
    const cudaError_t e = emu_last_error;
    emu_last_error = cudaSuccess;
    return e;
}
static inline cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
static inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
static inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr attr, int) {
    *v = attr == cudaDevAttrMaxSharedMemoryPerBlockOptin ? 227 * 1024 : 0;
    return cudaSuccess;
}
/* Opting in to more than 48 KiB of dynamic shared memory, per kernel: recorded, and checked
 * when a launch runs (directly or replayed from a graph), as the GPU checks it: a launch asking
 * for more than 48 KiB and more than the kernel's opt-in fails. */
void emu_set_shared_optin(const void *kernel, int bytes);
void emu_check_shared_optin(const void *kernel, size_t bytes, const char *what);
template <class K> static inline cudaError_t cudaFuncSetAttribute(K kernel, cudaFuncAttribute, int bytes) {
    if (bytes < 0 || bytes > 227 * 1024) return emu_fail(cudaErrorInvalidValue);
    emu_set_shared_optin((const void *)kernel, bytes);
    return cudaSuccess;
}

/* ---- the launcher's state and the fiber scheduler (emu/emulate.cpp) ---- */
struct emu_state_t {
    int coop;              /* 1 while the running block's threads are fibers */
    unsigned fast_pos;     /* straight-through mode: position of the running thread in the order */
    unsigned block_threads;
    int reverse;           /* TMR_EMU_REVERSE=1 for this launch */
    void *dynamic_shared;  /* this launch's dynamic shared memory */
};
extern emu_state_t emu_state;

/* Launch bookkeeping: checks the configuration (fatal with `what` named when it is not one the
 * GPU runs), reads TMR_EMU_REVERSE, allocates dynamic shared memory and records `call(arg)`,
 * which runs the kernel for the current thread, for the fibers. */
void emu_grid_begin(dim3 grid, dim3 block, size_t shared_bytes, void (*call)(void *), void *arg,
                    const char *what);
void emu_grid_end(void);
/* Sets blockIdx and clears the block's barrier and warp state; poisons dynamic shared memory. */
void emu_block_begin(uint64_t linear_block);
/* The thread on the caller's stack, in fiber mode, returned from the kernel: runs the block's
 * remaining fibers to their end. */
void emu_coop_host_exit(void);

static inline void emu_set_thread(unsigned linear) {
    if (blockDim.y == 1 && blockDim.z == 1) {
        threadIdx.x = linear;
        threadIdx.y = threadIdx.z = 0;
    } else {
        threadIdx.x = linear % blockDim.x;
        threadIdx.y = (linear / blockDim.x) % blockDim.y;
        threadIdx.z = linear / (blockDim.x * blockDim.y);
    }
}

template <class F> static inline void emu_call_body(void *f) { (*(F *)f)(); }

/* Runs body() once per thread of a grid x block launch with `shared_bytes` of dynamic shared
 * memory (see the header comment for the order and the fibers). */
template <class F>
static inline void emu_launch_grid(dim3 grid, dim3 block, size_t shared_bytes, F body,
                                   const char *what = "kernel") {
    emu_grid_begin(grid, block, shared_bytes, &emu_call_body<F>, (void *)&body, what);
    const uint64_t blocks = (uint64_t)grid.x * grid.y * grid.z;
    const unsigned threads = block.x * block.y * block.z;
    const int reverse = emu_state.reverse;
    for (uint64_t b = 0; b < blocks; b++) {
        emu_block_begin(reverse ? blocks - 1 - b : b);
        for (unsigned t = 0; t < threads; t++) {
            emu_state.fast_pos = t;
            emu_set_thread(reverse ? threads - 1 - t : t);
            body();
            if (emu_state.coop) {
                emu_coop_host_exit();
                break;
            }
        }
    }
    emu_grid_end();
}

/* kernel<<<grid, block, shared_bytes, stream>>>(args...): the arguments are converted to the
 * kernel's parameter types once, at the launch, and kept by value with the launch, as CUDA
 * does; the launch runs now or, on a capturing stream, when its graph is launched. */
template <class... P, class... A>
static inline void emu_launch_kernel(dim3 grid, dim3 block, size_t shared_bytes,
                                     cudaStream_t stream, void (*kernel)(P...), const char *what,
                                     A &&...args) {
    std::tuple<typename std::decay<P>::type...> params(std::forward<A>(args)...);
    emu_submit(stream, what, [=]() {
        emu_check_shared_optin((const void *)kernel, shared_bytes, what);
        emu_launch_grid(grid, block, shared_bytes, [&]() { std::apply(kernel, params); }, what);
    });
}
#define TMR_EMU_LAUNCH(kernel, grid, block, shared_bytes, ...) \
    emu_launch_kernel(grid, block, shared_bytes, (cudaStream_t)0, kernel, #kernel, ##__VA_ARGS__)
#define TMR_EMU_LAUNCH_ON(stream, kernel, grid, block, shared_bytes, ...) \
    emu_launch_kernel(grid, block, shared_bytes, stream, kernel, #kernel, ##__VA_ARGS__)

/* Dynamic shared memory: see the header comment. */
#define TMR_DYNAMIC_SHARED(T, name) T *const name = reinterpret_cast<T *>(emu_state.dynamic_shared)

/* ---- barriers and warp primitives (fiber switches: emu/emulate.cpp) ---- */
enum { EMU_BAR_SYNC, EMU_BAR_COUNT, EMU_BAR_AND, EMU_BAR_OR };
int emu_barrier(int kind, int predicate, const char *file, int line);
#define __syncthreads() ((void)emu_barrier(EMU_BAR_SYNC, 1, __FILE__, __LINE__))
#define __syncthreads_count(p) emu_barrier(EMU_BAR_COUNT, (p), __FILE__, __LINE__)
#define __syncthreads_and(p) emu_barrier(EMU_BAR_AND, (p), __FILE__, __LINE__)
#define __syncthreads_or(p) emu_barrier(EMU_BAR_OR, (p), __FILE__, __LINE__)

enum {
    EMU_WARP_SYNC,
    EMU_WARP_SHFL,
    EMU_WARP_SHFL_UP,
    EMU_WARP_SHFL_DOWN,
    EMU_WARP_SHFL_XOR,
    EMU_WARP_BALLOT,
    EMU_WARP_ANY,
    EMU_WARP_ALL
};
/* A warp rendezvous: the caller deposits `bits` (a value of up to 8 bytes) and gets back its
 * partner's (shuffles) or the vote's result. */
uint64_t emu_warp_op(int op, unsigned mask, uint64_t bits, int arg, int width, const char *file,
                     int line);

template <class T> static inline uint64_t emu_to_bits(T v) {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8,
                  "emulated shuffles move values of up to 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    return b;
}
template <class T> static inline T emu_from_bits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof v);
    return v;
}
template <class T>
static inline T emu_shfl(int op, const char *file, int line, unsigned mask, T var, int arg,
                         int width = 32) {
    return emu_from_bits<T>(emu_warp_op(op, mask, emu_to_bits(var), arg, width, file, line));
}
#define __shfl_sync(...) emu_shfl(EMU_WARP_SHFL, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) emu_shfl(EMU_WARP_SHFL_UP, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) emu_shfl(EMU_WARP_SHFL_DOWN, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) emu_shfl(EMU_WARP_SHFL_XOR, __FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(mask, p) \
    ((unsigned)emu_warp_op(EMU_WARP_BALLOT, (mask), (p) != 0, 0, 32, __FILE__, __LINE__))
#define __any_sync(mask, p) \
    ((int)emu_warp_op(EMU_WARP_ANY, (mask), (p) != 0, 0, 32, __FILE__, __LINE__))
#define __all_sync(mask, p) \
    ((int)emu_warp_op(EMU_WARP_ALL, (mask), (p) != 0, 0, 32, __FILE__, __LINE__))
static inline void emu_syncwarp(const char *file, int line, unsigned mask = 0xffffffffu) {
    (void)emu_warp_op(EMU_WARP_SYNC, mask, 0, 0, 32, file, line);
}
#define __syncwarp(...) emu_syncwarp(__FILE__, __LINE__, ##__VA_ARGS__)

static inline void __threadfence(void) {}
static inline void __threadfence_block(void) {}

/* ---- atomics: threads never run at the same time, so a plain read-modify-write ---- */
template <class T> static inline T atomicAdd(T *p, T v) {
    static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value ||
                      std::is_same<T, int>::value || std::is_same<T, unsigned>::value ||
                      std::is_same<T, unsigned long long>::value,
                  "atomicAdd: a type CUDA has an overload for");
    T old = *p;
    *p = old + v;
    return old;
}
template <class T> static inline T atomicSub(T *p, T v) {
    static_assert(std::is_same<T, int>::value || std::is_same<T, unsigned>::value,
                  "atomicSub: int or unsigned, as CUDA");
    T old = *p;
    *p = old - v;
    return old;
}
/* CUDA has no float atomicMax/atomicMin; neither does this. */
template <class T> static inline T atomicMax(T *p, T v) {
    static_assert(std::is_integral<T>::value, "atomicMax: integer types only, as CUDA");
    T old = *p;
    *p = old > v ? old : v;
    return old;
}
template <class T> static inline T atomicMin(T *p, T v) {
    static_assert(std::is_integral<T>::value, "atomicMin: integer types only, as CUDA");
    T old = *p;
    *p = old < v ? old : v;
    return old;
}
template <class T> static inline T atomicExch(T *p, T v) {
    T old = *p;
    *p = v;
    return old;
}
template <class T> static inline T atomicCAS(T *p, T compare, T v) {
    static_assert(std::is_integral<T>::value, "atomicCAS: integer types, as CUDA");
    T old = *p;
    if (old == compare) *p = v;
    return old;
}

template <class T> static inline T __ldg(const T *p) { return *p; }

/* CUDA's 16-byte vector type (kernels load and store float4 through reinterpret_cast). */
struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

/* ---- device math: the float libm functions the CPU reference calls (header comment) ---- */
/* glibc declares __expf/__logf/__powf itself (its internal names): macros, not functions. */
#define __expf(x) expf(x)
#define __logf(x) logf(x)
#define __powf(x, y) powf(x, y)
static inline float __fdividef(float a, float b) { return a / b; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }

/* ---- cuBLAS (column-major, as documented). A handle holds its stream (cublasSetStream, which
 * also drops a workspace set before, as cuBLAS does); products are submitted to that stream
 * with alpha and beta read at the call (host pointer mode). ---- */
struct emu_cublas_ctx {
    cudaStream_t stream;
    void *workspace;
    size_t workspace_bytes;
};
typedef struct emu_cublas_ctx *cublasHandle_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_EXECUTION_FAILED = 13
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;

static inline cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = (cublasHandle_t)calloc(1, sizeof(struct emu_cublas_ctx));
    return *h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}
static inline cublasStatus_t cublasDestroy(cublasHandle_t h) {
    free((void *)h);
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) {
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    h->workspace = NULL;
    h->workspace_bytes = 0;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->workspace = ws;
    h->workspace_bytes = bytes;
    return CUBLAS_STATUS_SUCCESS;
}
static inline int emu_max1(int a) { return a > 1 ? a : 1; }
static inline cublasStatus_t emu_blas_submit(cublasHandle_t h, const char *what,
                                             std::function<void()> work) {
    return emu_submit(h->stream, what, std::move(work)) == cudaSuccess
               ? CUBLAS_STATUS_SUCCESS
               : CUBLAS_STATUS_EXECUTION_FAILED;
}

/* C (m x n) = alpha op(A) op(B) + beta C; op(A) m x k, op(B) k x n; element (i, j) of a
 * column-major matrix X with leading dimension ld is X[i + j * ld]. beta == 0: C not read. */
static inline void emu_sgemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                             float alpha, const float *A, int lda, const float *B, int ldb,
                             float beta, float *C, int ldc) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float s = 0;
            for (int p = 0; p < k; p++) {
                float a = ta == CUBLAS_OP_N ? A[i + (int64_t)p * lda] : A[p + (int64_t)i * lda];
                float b = tb == CUBLAS_OP_N ? B[p + (int64_t)j * ldb] : B[j + (int64_t)p * ldb];
                s += a * b;
            }
            float *c = &C[i + (int64_t)j * ldc];
            *c = beta == 0.0f ? alpha * s : alpha * s + beta * *c;
        }
}
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
    const float al = *alpha, be = *beta;
    return emu_blas_submit(h, "cublasSgemm", [=]() {
        emu_sgemm(ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc);
    });
}

static inline cublasStatus_t cublasSgemmStridedBatched(
    cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
    const float *alpha, const float *A, int lda, long long sA, const float *B, int ldb,
    long long sB, const float *beta, float *C, int ldc, long long sC, int batch) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (batch < 0 || m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (lda < emu_max1(ta == CUBLAS_OP_N ? m : k) || ldb < emu_max1(tb == CUBLAS_OP_N ? k : n) ||
        ldc < emu_max1(m))
        return CUBLAS_STATUS_INVALID_VALUE;
    const float al = *alpha, be = *beta;
    return emu_blas_submit(h, "cublasSgemmStridedBatched", [=]() {
        for (int b = 0; b < batch; b++)
            emu_sgemm(ta, tb, m, n, k, al, A + b * sA, lda, B + b * sB, ldb, be, C + b * sC, ldc);
    });
}

/* y = alpha op(A) x + beta y, A m x n column-major. beta == 0: y not read. */
static inline cublasStatus_t cublasSgemv(cublasHandle_t h, cublasOperation_t t, int m, int n,
                                         const float *alpha, const float *A, int lda,
                                         const float *x, int incx, const float *beta, float *y,
                                         int incy) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || lda < emu_max1(m) || incx == 0 || incy == 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    const float al = *alpha, be = *beta;
    return emu_blas_submit(h, "cublasSgemv", [=]() {
        const int rows = t == CUBLAS_OP_N ? m : n, cols = t == CUBLAS_OP_N ? n : m;
        for (int i = 0; i < rows; i++) {
            float s = 0;
            for (int j = 0; j < cols; j++) {
                float a = t == CUBLAS_OP_N ? A[i + (int64_t)j * lda] : A[j + (int64_t)i * lda];
                s += a * x[(int64_t)j * incx];
            }
            float *yi = &y[(int64_t)i * incy];
            *yi = be == 0.0f ? al * s : al * s + be * *yi;
        }
    });
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
        if (!temp) {
            temp_bytes = 64 + (size_t)n;  /* something non-zero that grows with n */
            return cudaSuccess;
        }
        if (temp_bytes < 64 + (size_t)n) return emu_fail(cudaErrorInvalidValue);
        return emu_submit(stream, "cub::DeviceRadixSort::SortPairs", [=]() {
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
        });
    }
};
}  // namespace cub

/* ---- asynchronous copies, streams, events, graphs (emu_submit: run now, or recorded while
 * their stream is captured) ---- */
static inline cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind,
                                          cudaStream_t s) {
    return emu_submit(s, "cudaMemcpyAsync", [=]() {
        if (n) memmove(dst, src, n);
    });
}
static inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
    return emu_submit(s, "cudaMemsetAsync", [=]() {
        if (n) memset(p, v, n);
    });
}
/* Streams and events: one serial queue, so an event is always complete and waits return at
 * once (outside a no-sync region and a capture); pinned host memory is plain host memory. */
typedef struct emu_event *cudaEvent_t;
enum { cudaStreamNonBlocking = 1, cudaHostAllocDefault = 0, cudaEventDisableTiming = 2 };
static inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) {
    *s = malloc(1);
    return *s ? cudaSuccess : cudaErrorMemoryAllocation;
}
static inline cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
static inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
    free(s);
    return cudaSuccess;
}
static inline cudaError_t cudaStreamSynchronize(cudaStream_t) {
    return emu_sync_call("cudaStreamSynchronize");
}
static inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) {
    *e = (cudaEvent_t)malloc(1);
    return *e ? cudaSuccess : cudaErrorMemoryAllocation;
}
static inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
    free((void *)e);
    return cudaSuccess;
}
static inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t s) {
    return emu_submit(s, "cudaEventRecord", []() {});
}
static inline cudaError_t cudaEventSynchronize(cudaEvent_t) {
    return emu_sync_call("cudaEventSynchronize");
}
static inline cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t, unsigned) {
    return emu_submit(s, "cudaStreamWaitEvent", []() {});
}
static inline cudaError_t cudaHostAlloc(void **p, size_t n, unsigned) {
    *p = NULL;
    if (cudaError_t e = emu_sync_call("cudaHostAlloc")) return e;
    *p = malloc(n ? n : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
static inline cudaError_t cudaFreeHost(void *p) {
    if (cudaError_t e = emu_sync_call("cudaFreeHost")) return e;
    free(p);
    return cudaSuccess;
}

/* Graphs: a capture records the work submitted to its stream in order; an instantiated graph
 * replays it (cudaGraphLaunch submits the whole replay to a stream as one piece of work). */
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2
};
struct emu_graph {
    std::vector<std::function<void()>> nodes;
};
typedef struct emu_graph *cudaGraph_t;
struct emu_graph_exec {
    std::vector<std::function<void()>> nodes;
};
typedef struct emu_graph_exec *cudaGraphExec_t;
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph);
static inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph,
                                               unsigned long long flags = 0) {
    (void)flags;
    *exec = NULL;
    if (!graph) return emu_fail(cudaErrorInvalidValue);
    *exec = new emu_graph_exec{graph->nodes};
    return cudaSuccess;
}
static inline cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
    if (!exec) return emu_fail(cudaErrorInvalidValue);
    return emu_submit(s, "cudaGraphLaunch", [exec]() {
        for (const auto &node : exec->nodes) node();
    });
}
static inline cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
static inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
    delete e;
    return cudaSuccess;
}

#endif
