/* CPU emulation of the small part of the CUDA runtime that kernels/{gpu_util,adam,embedding,
 * heads,interest}.cu use, for tests/emu/run.sh: every launch runs its threads one after another
 * on the host. It checks the kernels' indexing and arithmetic and the GPU tests' plumbing on a
 * machine without a GPU; it cannot see races, memory-model or launch-limit problems (the kernels
 * use no shared memory and no atomics, so serial execution is a faithful model of them). */
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
static dim3 blockIdx, threadIdx, blockDim, gridDim;

typedef int cudaError_t;
typedef void *cudaStream_t;
enum { cudaSuccess = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 };
static inline const char *cudaGetErrorString(int) { return "emulated CUDA error"; }
static inline int cudaGetLastError() { return 0; }
static inline int cudaDeviceSynchronize() { return 0; }
static inline int cudaMalloc(void **p, size_t n) {
    *p = malloc(n);
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

/* Round-to-nearest intrinsics: plain float operations (the host build uses -ffp-contract=off). */
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

/* run.sh rewrites `kernel<<<grid, block, ...>>>(args)` as
 * `emu_launch(kernel, EMU_CFG(grid, block, ...), args)`. */
struct emu_cfg {
    dim3 g, b;
};
#define EMU_CFG(g, b, ...) emu_cfg{dim3(g), dim3(b)}
template <class F, class... A> void emu_launch(F f, emu_cfg c, A... a) {
    gridDim = c.g;
    blockDim = c.b;
    for (unsigned by = 0; by < c.g.y; by++)
        for (unsigned bx = 0; bx < c.g.x; bx++)
            for (unsigned tx = 0; tx < c.b.x; tx++) {
                blockIdx = dim3(bx, by);
                threadIdx = dim3(tx);
                f(a...);
            }
}

/* cub::DeviceRadixSort::SortPairs: a stable sort on key bits [b0, b1). */
namespace cub {
struct DeviceRadixSort {
    template <class K, class V>
    static int SortPairs(void *tmp, size_t &bytes, const K *kin, K *kout, const V *vin, V *vout,
                         int n, int b0, int b1, cudaStream_t = 0) {
        if (!tmp) {
            bytes = 4096;
            return 0;
        }
        std::vector<int> idx(n);
        std::iota(idx.begin(), idx.end(), 0);
        const uint64_t mask = ((1ull << (b1 - b0)) - 1) << b0;
        std::stable_sort(idx.begin(), idx.end(),
                         [&](int x, int y) { return (kin[x] & mask) < (kin[y] & mask); });
        for (int i = 0; i < n; i++) {
            kout[i] = kin[idx[i]];
            vout[i] = vin[idx[i]];
        }
        return 0;
    }
};
}  // namespace cub
