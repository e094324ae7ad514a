/* CPU emulation of what kernels/topk.cu uses, for tests/emu/run_topk.sh: a launch runs its
 * blocks one after another and each block's threads as real host threads (one std::thread per
 * CUDA thread), so __syncthreads is a real barrier, __shared__ memory is one static array the
 * block's threads share, and atomicAdd is atomic. The cuBLAS product sums each element as one
 * fused multiply-add chain in ascending k, as the CPU's built-in product does, so the emulated
 * GPU and topk_cpu compute the same float scores. Races between barriers are not detected
 * (run it under EMU_SAN=-fsanitize=thread for that). */
#pragma once
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
static thread_local dim3 blockIdx, threadIdx;
static dim3 blockDim, gridDim;

/* A reusable barrier for the threads of one block. */
struct emu_barrier_t {
    std::mutex m;
    std::condition_variable cv;
    unsigned count = 0, waiting = 0, generation = 0;
    void wait() {
        std::unique_lock<std::mutex> lock(m);
        unsigned gen = generation;
        if (++waiting == count) {
            waiting = 0;
            generation++;
            cv.notify_all();
        } else {
            cv.wait(lock, [&] { return gen != generation; });
        }
    }
};
static emu_barrier_t emu_barrier;
static inline void __syncthreads() { emu_barrier.wait(); }
static inline int atomicAdd(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }

typedef int cudaError_t;
typedef void *cudaStream_t;
enum { cudaSuccess = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 };
static inline const char *cudaGetErrorString(int) { return "emulated CUDA error"; }
static inline int cudaGetLastError() { return 0; }
static inline int cudaDeviceSynchronize() { return 0; }
static inline int cudaGetDeviceCount(int *n) {
    *n = 1;
    return 0;
}
static inline int cudaMalloc(void **p, size_t n) {
    *p = malloc(n ? n : 1);
    if (*p) memset(*p, 0xA5, n); /* poison: nothing may rely on fresh memory being zero */
    return *p ? 0 : 1;
}
static inline int cudaFree(void *p) {
    free(p);
    return 0;
}
static inline int cudaMemcpy(void *d, const void *s, size_t n, int) {
    memcpy(d, s, n);
    return 0;
}

/* `kernel<<<grid, block>>>(args)` is rewritten by run_topk.sh as emu_launch(kernel, EMU_CFG(...), args). */
struct emu_cfg {
    dim3 g, b;
};
#define EMU_CFG(g, b, ...) emu_cfg{dim3(g), dim3(b)}
template <class F, class... A> void emu_launch(F f, emu_cfg c, A... a) {
    gridDim = c.g;
    blockDim = c.b;
    emu_barrier.count = c.b.x;
    for (unsigned by = 0; by < c.g.y; by++)
        for (unsigned bx = 0; bx < c.g.x; bx++) {
            std::vector<std::thread> threads;
            for (unsigned tx = 0; tx < c.b.x; tx++)
                threads.emplace_back([=] {
                    blockIdx = dim3(bx, by);
                    threadIdx = dim3(tx);
                    f(a...);
                });
            for (auto &t : threads) t.join();
        }
}

/* cuBLAS: column-major C (m, n) = alpha op(A) op(B) + beta C. */
typedef void *cublasHandle_t;
enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 };
static inline int cublasCreate(cublasHandle_t *h) {
    *h = (void *)1;
    return 0;
}
static inline int cublasDestroy(cublasHandle_t) { return 0; }
static inline int cublasSetMathMode(cublasHandle_t, int) { return 0; }
static inline int cublasSgemm(cublasHandle_t, int ta, int tb, int m, int n, int k,
                              const float *alpha, const float *A, int lda, const float *B,
                              int ldb, const float *beta, float *C, int ldc) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float s = 0;
            for (int p = 0; p < k; p++) {
                float a = ta ? A[p + (size_t)i * lda] : A[i + (size_t)p * lda];
                float b = tb ? B[j + (size_t)p * ldb] : B[p + (size_t)j * ldb];
                s = fmaf(a, b, s);
            }
            float *c = &C[i + (size_t)j * ldc];
            *c = *alpha * s + (*beta == 0 ? 0.0f : *beta * *c);
        }
    return 0;
}

/* cub::DeviceSegmentedRadixSort::SortKeysDescending: each segment sorted descending. */
#include <algorithm>
#include <functional>
namespace cub {
struct DeviceSegmentedRadixSort {
    template <class K>
    static int SortKeysDescending(void *tmp, size_t &bytes, const K *in, K *out, int n,
                                  int n_segments, const int *begin, const int *end) {
        if (!tmp) {
            bytes = 64;
            return 0;
        }
        memcpy(out, in, sizeof(K) * (size_t)n);
        for (int s = 0; s < n_segments; s++) std::sort(out + begin[s], out + end[s], std::greater<K>());
        return 0;
    }
};
}  // namespace cub
