/* The backend's context (cuBLAS handle, scratch), device memory helpers and the launch check. */
#include <stdlib.h>
#include <string.h>

#include "common.cuh"

#ifdef TMR_EMULATE
dim3 blockIdx, threadIdx, blockDim, gridDim;
#endif

static int debug_sync = 0;

extern "C" void gpu_debug_sync(int on) { debug_sync = on; }
int gpu_debug_sync_enabled(void) { return debug_sync; }

cudaStream_t gpu_launch_stream = 0;

void gpu_set_launch_stream(gpu_ctx_t *ctx, cudaStream_t s) {
    gpu_launch_stream = s;
    CUBLAS_CHECK(cublasSetStream(ctx->blas, s));
}

extern "C" int gpu_is_emulated(void) {
#ifdef TMR_EMULATE
    return 1;
#else
    return 0;
#endif
}

/* ---- failures during a capture, the allocation generation, the no-sync region ---- */

static int capturing;
static char capture_why[512]; /* the capture's first failure ("" while none) */

void gpu_capture_begin(void) {
    capturing = 1;
    capture_why[0] = '\0';
}
int gpu_capturing(void) { return capturing; }
const char *gpu_capture_end(void) {
    capturing = 0;
    return capture_why[0] ? capture_why : NULL;
}

static void capture_failed(const char *msg) {
    if (!capture_why[0]) snprintf(capture_why, sizeof capture_why, "%s", msg);
}

void gpu_check_failed(const char *file, int line, const char *call, const char *what) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s:%d: %s failed: %s", file, line, call, what);
    if (!capturing) tmr_fatal("%s", msg);
    capture_failed(msg);
}

int gpu_grow_refused(const char *what, int64_t need, int64_t have) {
    if (!capturing) return 0;
    char msg[256];
    snprintf(msg, sizeof msg, "%s would grow from %lld to %lld inside the capture", what,
             (long long)have, (long long)need);
    capture_failed(msg);
    return 1;
}

static uint64_t alloc_generation = 1;
uint64_t gpu_alloc_generation(void) { return alloc_generation; }

static const char *nosync_region; /* NULL outside */

void gpu_nosync_begin(const char *region) {
    if (nosync_region) tmr_fatal("gpu_nosync_begin(%s) inside %s", region, nosync_region);
    nosync_region = region;
#ifdef TMR_EMULATE
    emu_nosync_region = region;
#endif
}
void gpu_nosync_end(void) {
    nosync_region = NULL;
#ifdef TMR_EMULATE
    emu_nosync_region = NULL;
#endif
}

/* The wrappers that make the host wait: fatal inside the no-sync region (except while
 * capturing: the capture refuses the call, so nothing waits, and the capture fails). */
static void may_sync(const char *call) {
    if (nosync_region && !capturing)
        tmr_fatal("%s inside %s: the host would wait for the device there (gpu_ops.h)", call,
                  nosync_region);
}

void gpu_after_launch(const char *kernel, const char *file, int line) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
        char what[256];
        snprintf(what, sizeof what, "launch of %s: %s", kernel, cudaGetErrorString(e));
        gpu_check_failed(file, line, "kernel launch", what);
        return;
    }
#ifndef TMR_EMULATE /* the emulation runs each launch to its end before returning */
    if (debug_sync && !capturing) {
        e = cudaDeviceSynchronize();
        if (e != cudaSuccess)
            tmr_fatal("%s:%d: %s failed while running: %s", file, line, kernel,
                      cudaGetErrorString(e));
    }
#endif
}

extern "C" int gpu_device_count(char *desc, size_t desclen) {
#ifdef TMR_EMULATE
    snprintf(desc, desclen, "emulated GPU (kernels run on the host, emu/emulate.h)");
    return 1;
#else
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(desc, desclen, "no GPU visible (%s)", cudaGetErrorString(e));
        return 0;
    }
    if (n == 0) {
        snprintf(desc, desclen, "no GPU visible");
        return 0;
    }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
        snprintf(desc, desclen, "%d GPU(s), properties unavailable", n);
        return n;
    }
    snprintf(desc, desclen, "%s (sm_%d%d, %.1f GiB, %d SMs)", p.name, p.major, p.minor,
             (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), p.multiProcessorCount);
    return n;
#endif
}

extern "C" gpu_ctx_t *gpu_ctx_create(char *err, size_t errlen) {
    char desc[256];
    if (gpu_device_count(desc, sizeof desc) < 1) {
        if (err && errlen) snprintf(err, errlen, "%s", desc);
        return NULL;
    }
    cudaError_t e = cudaSetDevice(0);
    if (e != cudaSuccess) {
        if (err && errlen) snprintf(err, errlen, "cudaSetDevice(0): %s", cudaGetErrorString(e));
        return NULL;
    }
    gpu_ctx_t *ctx = (gpu_ctx_t *)calloc(1, sizeof *ctx);
    if (!ctx) tmr_fatal("gpu_ctx_create: out of host memory");
    cublasStatus_t s = cublasCreate(&ctx->blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        if (err && errlen) snprintf(err, errlen, "cublasCreate failed: status %d", (int)s);
        free(ctx);
        return NULL;
    }
    /* Default math: FP32 products stay FP32 (TF32 only when asked for, and we do not ask). */
    CUBLAS_CHECK(cublasSetMathMode(ctx->blas, CUBLAS_DEFAULT_MATH));
    if (cudaDeviceGetAttribute(&ctx->smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) !=
            cudaSuccess || ctx->smem_optin < 48 * 1024) {
        cudaGetLastError();
        ctx->smem_optin = 48 * 1024;
    }
    return ctx;
}

extern "C" void gpu_ctx_free(gpu_ctx_t *ctx) {
    if (!ctx) return;
    cublasDestroy(ctx->blas);
    gpu_free(ctx->ones);
    gpu_free(ctx->sort_buf);
    gpu_free(ctx->sort_temp);
    gpu_free(ctx->rows);
    gpu_free(ctx->seg_partial);
    gpu_free(ctx->topk_scratch);
    gpu_free(ctx->topk_state);
    free(ctx);
}

extern "C" void *gpu_malloc(size_t bytes) {
    if (capturing) { /* cannot allocate while capturing; never reached when scratch growth
                        goes through gpu_grow_refused */
        capture_failed("gpu_malloc inside the capture");
        return NULL;
    }
    may_sync("gpu_malloc");
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 16);
    if (e != cudaSuccess)
        tmr_fatal("gpu_malloc: cudaMalloc of %zu bytes failed: %s", bytes, cudaGetErrorString(e));
    alloc_generation++;
    return p;
}

extern "C" void gpu_free(void *p) {
    if (!p) return;
    may_sync("gpu_free");
    CUDA_CHECK(cudaFree(p));
    alloc_generation++;
}

extern "C" void gpu_to_device(void *dst, const void *host_src, size_t bytes) {
    may_sync("gpu_to_device");
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, host_src, bytes, cudaMemcpyHostToDevice));
}

extern "C" void gpu_to_host(void *host_dst, const void *src, size_t bytes) {
    may_sync("gpu_to_host");
    if (bytes) CUDA_CHECK(cudaMemcpy(host_dst, src, bytes, cudaMemcpyDeviceToHost));
}

/* Both on the launch stream (ordered with the kernels; capturable into a graph). */
extern "C" void gpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes)
        CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, gpu_launch_stream));
}

extern "C" void gpu_zero(void *p, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, gpu_launch_stream));
}

extern "C" void gpu_poison(void *p, size_t bytes) {
    may_sync("gpu_poison");
    if (bytes) CUDA_CHECK(cudaMemset(p, 0xFF, bytes));
}

extern "C" void gpu_sync(void) {
    may_sync("gpu_sync");
    CUDA_CHECK(cudaDeviceSynchronize());
}

__global__ void fill_kernel(int64_t n, float value, float *x) {
    THREAD_INDEX(i, n);
    x[i] = value;
}

const float *gpu_ctx_ones(gpu_ctx_t *ctx, int64_t n) {
    if (n > ctx->ones_cap && !gpu_grow_refused("the context's ones", n, ctx->ones_cap)) {
        int64_t cap = n < 4096 ? 4096 : n;
        gpu_free(ctx->ones);
        ctx->ones = (float *)gpu_malloc((size_t)cap * sizeof(float));
        ctx->ones_cap = cap;
        LAUNCH(fill_kernel, cap, 1.0f, ctx->ones);
    }
    return ctx->ones;
}

double *gpu_ctx_rows(gpu_ctx_t *ctx, int64_t n) {
    if (n > ctx->rows_cap && !gpu_grow_refused("the context's loss rows", n, ctx->rows_cap)) {
        int64_t cap = n < 1024 ? 1024 : n;
        gpu_free(ctx->rows);
        ctx->rows = (double *)gpu_malloc((size_t)cap * sizeof(double));
        ctx->rows_cap = cap;
    }
    return ctx->rows;
}

void gpu_ctx_reserve(gpu_ctx_t *ctx, int64_t rows, int64_t scatter_rows, int d, int64_t loss_rows) {
    gpu_ctx_ones(ctx, rows);
    gpu_ctx_rows(ctx, loss_rows);
    gpu_scatter_reserve(ctx, scatter_rows, d);
}

struct gpu_timer {
#ifdef TMR_EMULATE
    double t0;
#else
    cudaEvent_t start, stop;
#endif
};

extern "C" gpu_timer_t *gpu_timer_create(void) {
    gpu_timer_t *t = (gpu_timer_t *)calloc(1, sizeof *t);
    if (!t) tmr_fatal("gpu_timer_create: out of host memory");
#ifndef TMR_EMULATE
    CUDA_CHECK(cudaEventCreate(&t->start));
    CUDA_CHECK(cudaEventCreate(&t->stop));
#endif
    return t;
}

extern "C" void gpu_timer_start(gpu_timer_t *t) {
#ifdef TMR_EMULATE
    t->t0 = tmr_now();
#else
    CUDA_CHECK(cudaEventRecord(t->start, 0));
#endif
}

extern "C" float gpu_timer_stop_ms(gpu_timer_t *t) {
#ifdef TMR_EMULATE
    return (float)((tmr_now() - t->t0) * 1e3);
#else
    float ms = 0;
    CUDA_CHECK(cudaEventRecord(t->stop, 0));
    CUDA_CHECK(cudaEventSynchronize(t->stop));
    CUDA_CHECK(cudaEventElapsedTime(&ms, t->start, t->stop));
    return ms;
#endif
}

extern "C" void gpu_timer_free(gpu_timer_t *t) {
    if (!t) return;
#ifndef TMR_EMULATE
    cudaEventDestroy(t->start);
    cudaEventDestroy(t->stop);
#endif
    free(t);
}
