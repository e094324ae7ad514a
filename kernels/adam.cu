/* Adam over the one flat parameter buffer (the device twin of adam_step in src/cpu/model.c). */
#include <math.h>
#include <string.h>

#include "common.cuh"
#include "timirec/gpu_ops.h"

/* The layout as the kernel needs it, passed by value (kernel parameter space, 4 KiB limit:
 * 48 tensors x 17 bytes fits). */
typedef struct {
    int n_tensors;
    int64_t offset[MODEL_MAX_TENSORS];
    int64_t size[MODEL_MAX_TENSORS];
    unsigned char decay[MODEL_MAX_TENSORS];
} adam_table_t;

typedef struct {
    float step_size, bc2_sqrt, b1, one_minus_b1, b2, one_minus_b2, eps, l2;
} adam_scalars_t;

/* blockIdx.y = tensor; the x blocks stride over that tensor's elements, one element per thread
 * per stride. Every element of every tensor is updated exactly once.
 * The arithmetic uses explicit round-to-nearest intrinsics (__fmul_rn, __fadd_rn, __fdiv_rn,
 * __fsqrt_rn): nvcc would otherwise fuse multiply-adds, while the CPU build (-std=c11, no
 * contraction) rounds every operation; this way the GPU computes the CPU's exact values. */
__global__ void adam_kernel(adam_table_t tab, adam_scalars_t s, float *params, const float *grads,
                            float *m, float *v) {
    const int t = blockIdx.y;
    const int64_t off = tab.offset[t], size = tab.size[t];
    const float decay = tab.decay[t] ? s.l2 : 0.0f;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < size;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t e = off + i;
        const float x = params[e];
        /* g = grad + decay * x */
        const float g = __fadd_rn(grads[e], __fmul_rn(decay, x));
        /* m = m * b1 + (1 - b1) * g;  v = v * b2 + (1 - b2) * g * g */
        const float mt = __fadd_rn(__fmul_rn(m[e], s.b1), __fmul_rn(s.one_minus_b1, g));
        const float vt =
            __fadd_rn(__fmul_rn(v[e], s.b2), __fmul_rn(__fmul_rn(s.one_minus_b2, g), g));
        /* denom = sqrt(v) / sqrt(bc2) + eps;  x = x + (-step_size) * m / denom */
        const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vt), s.bc2_sqrt), s.eps);
        m[e] = mt;
        v[e] = vt;
        params[e] = __fadd_rn(x, __fdiv_rn(__fmul_rn(-s.step_size, mt), denom));
    }
}

extern "C" int tmr_gpu_adam_step(adam_t *opt, const model_layout_t *lay, float *params,
                                 const float *grads, float *m, float *v, void *stream, char *err,
                                 size_t errlen) {
    GPU_CHECK_SIZE(lay->n_tensors >= 1 && lay->n_tensors <= MODEL_MAX_TENSORS);
    adam_table_t tab;
    memset(&tab, 0, sizeof tab);
    tab.n_tensors = lay->n_tensors;
    int64_t max_size = 1;
    for (int t = 0; t < lay->n_tensors; t++) {
        GPU_CHECK_SIZE(lay->t[t].offset >= 0 && lay->t[t].size >= 0 &&
                       lay->t[t].offset + lay->t[t].size <= lay->total);
        tab.offset[t] = lay->t[t].offset;
        tab.size[t] = lay->t[t].size;
        tab.decay[t] = (unsigned char)(lay->t[t].decay != 0);
        if (lay->t[t].size > max_size) max_size = lay->t[t].size;
    }
    /* Scalars exactly as adam_step forms them: in double, then rounded to float once. */
    opt->step++;
    const double bc1 = 1.0 - pow(opt->beta1, (double)opt->step);
    const double bc2 = 1.0 - pow(opt->beta2, (double)opt->step);
    adam_scalars_t s;
    s.step_size = (float)(opt->lr / bc1);
    s.bc2_sqrt = (float)sqrt(bc2);
    s.b1 = (float)opt->beta1;
    s.one_minus_b1 = (float)(1.0 - opt->beta1);
    s.b2 = (float)opt->beta2;
    s.one_minus_b2 = (float)(1.0 - opt->beta2);
    s.eps = (float)opt->eps;
    s.l2 = (float)opt->l2;
    const int threads = 256;
    int64_t xblocks = (max_size + threads - 1) / threads;
    if (xblocks > 4096) xblocks = 4096; /* the rest by the grid-stride loop */
    dim3 grid((unsigned)xblocks, (unsigned)lay->n_tensors);
    adam_kernel<<<grid, threads, 0, (cudaStream_t)stream>>>(tab, s, params, grads, m, v);
    CUDA_TRY(cudaGetLastError());
    return 0;
}
