/* Adam over the flat parameter buffer (model.h adam_step): a grid-stride loop over groups of
 * four elements with 16-byte loads and stores of params, grads, m and v (the update is
 * bandwidth-bound: 28 bytes moved per element), the element update of math_hd.h (the CPU runs
 * the same function), weight decay per tensor from the layout. The last n % 4 elements are
 * done one by one. */
#include <stdint.h>
#include <string.h>

#include "common.cuh"
#include "timirec/math_hd.h"

/* Tensor boundaries and which tensors get weight decay, passed by value (a few hundred
 * bytes). Only the layout is here: the decay's value (l2) comes with the step's scalars, so a
 * CUDA graph that froze this table still applies the l2 of the step it replays. */
typedef struct {
    int n;
    int64_t end[MODEL_MAX_TENSORS];     /* offset + size of tensor t */
    uint8_t decays[MODEL_MAX_TENSORS];  /* 1: tensor t gets l2 weight decay */
} adam_table_t;

/* The tensor holding element i: the first t with i < end[t] (binary search). */
__device__ __forceinline__ int adam_tensor_of(const adam_table_t *table, int64_t i) {
    int lo = 0, hi = table->n - 1;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (i < table->end[mid]) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

#define ADAM_THREADS 256
#define ADAM_MAX_BLOCKS 2048 /* enough to fill any current GPU; more elements loop */

/* This thread's share of the update (grid-stride over groups of four, then the tail). */
__device__ __forceinline__ void adam_body(int64_t n, const adam_table_t &table,
                                          const adam_scalars_t &s, float *__restrict__ params,
                                          const float *__restrict__ grads, float *__restrict__ m,
                                          float *__restrict__ v) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t first = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t n4 = n / 4;
    float4 *p4 = reinterpret_cast<float4 *>(params);
    const float4 *g4 = reinterpret_cast<const float4 *>(grads);
    float4 *m4 = reinterpret_cast<float4 *>(m), *v4 = reinterpret_cast<float4 *>(v);
    for (int64_t q = first; q < n4; q += stride) {
        const int64_t i = 4 * q;
        int t = adam_tensor_of(&table, i);
        float4 p = p4[q], mm = m4[q], vv = v4[q];
        const float4 g = g4[q];
        p.x = tmr_adam_elem(&s, table.decays[t] ? s.l2 : 0.0f, g.x, p.x, &mm.x, &vv.x);
        while (i + 1 >= table.end[t]) t++; /* a tensor may end inside the group */
        p.y = tmr_adam_elem(&s, table.decays[t] ? s.l2 : 0.0f, g.y, p.y, &mm.y, &vv.y);
        while (i + 2 >= table.end[t]) t++;
        p.z = tmr_adam_elem(&s, table.decays[t] ? s.l2 : 0.0f, g.z, p.z, &mm.z, &vv.z);
        while (i + 3 >= table.end[t]) t++;
        p.w = tmr_adam_elem(&s, table.decays[t] ? s.l2 : 0.0f, g.w, p.w, &mm.w, &vv.w);
        p4[q] = p;
        m4[q] = mm;
        v4[q] = vv;
    }
    for (int64_t i = 4 * n4 + first; i < n; i += stride) {
        const int t = adam_tensor_of(&table, i);
        params[i] = tmr_adam_elem(&s, table.decays[t] ? s.l2 : 0.0f, grads[i], params[i], &m[i], &v[i]);
    }
}

/* The one Adam kernel (the per-step path and the epoch driver launch the same code, so their
 * updates agree bit for bit): skipped on the device once bad is given and *bad >= 0 (the epoch
 * driver's first non-finite loss: that step and every later one leave the parameters and
 * moments as they were); the scalars from by_batch[*batch_ctr] when given (read when the
 * kernel runs: graph replays), else s. */
__global__ void adam_kernel(int64_t n, adam_table_t table, adam_scalars_t s,
                            const int64_t *__restrict__ bad,
                            const adam_scalars_t *__restrict__ by_batch,
                            const int64_t *__restrict__ batch_ctr, float *__restrict__ params,
                            const float *__restrict__ grads, float *__restrict__ m,
                            float *__restrict__ v) {
    if (bad && *bad >= 0) return;
    adam_body(n, table, by_batch ? by_batch[*batch_ctr] : s, params, grads, m, v);
}

/* The launch shape and the float4 alignment check. */
static unsigned adam_blocks(int64_t n, const float *params, const float *grads, const float *m,
                            const float *v) {
    if (((uintptr_t)params | (uintptr_t)grads | (uintptr_t)m | (uintptr_t)v) & 15u)
        tmr_fatal("gpu_adam_update: params, grads, m and v must be 16-byte aligned (float4)");
    const int64_t groups = (n + 3) / 4;
    int64_t blocks = (groups + ADAM_THREADS - 1) / ADAM_THREADS;
    if (blocks > ADAM_MAX_BLOCKS) blocks = ADAM_MAX_BLOCKS;
    return (unsigned)blocks;
}

/* The per-tensor table of the layout. */
static void adam_table(const model_layout_t *lay, adam_table_t *table) {
    memset(table, 0, sizeof *table);
    table->n = lay->n_tensors;
    for (int t = 0; t < lay->n_tensors; t++) {
        const param_t *p = &lay->t[t];
        if (p->offset != (t ? table->end[t - 1] : 0))
            tmr_fatal("gpu_adam_update: tensor %s is not contiguous with the one before", p->name);
        table->end[t] = p->offset + p->size;
        table->decays[t] = p->decay != 0;
    }
    if (lay->n_tensors < 1 || table->end[lay->n_tensors - 1] != lay->total)
        tmr_fatal("gpu_adam_update: the layout's tensors do not cover its %lld elements",
                  (long long)lay->total);
}

static void adam_launch(adam_t *opt, const model_layout_t *lay, float *params,
                        const float *grads, float *m, float *v, const int64_t *bad,
                        const adam_scalars_t *by_batch, const int64_t *batch_ctr) {
    adam_scalars_t s;
    memset(&s, 0, sizeof s);
    if (!by_batch) { /* this step's scalars; with by_batch the driver advances opt->step */
        opt->step++;
        s = tmr_adam_scalars(opt->lr, opt->beta1, opt->beta2, opt->eps, opt->l2, opt->step);
    }
    adam_table_t table;
    adam_table(lay, &table);
    const unsigned blocks = adam_blocks(lay->total, params, grads, m, v);
    if (blocks < 1) return;
    KLAUNCH(adam_kernel, blocks, ADAM_THREADS, 0, lay->total, table, s, bad, by_batch, batch_ctr,
            params, grads, m, v);
}

extern "C" void gpu_adam_update(gpu_ctx_t *ctx, adam_t *opt, const model_layout_t *lay,
                                float *params, const float *grads, float *m, float *v) {
    (void)ctx;
    adam_launch(opt, lay, params, grads, m, v, NULL, NULL, NULL);
}

void gpu_adam_update_guarded(gpu_ctx_t *ctx, adam_t *opt, const model_layout_t *lay,
                             float *params, const float *grads, float *m, float *v,
                             const int64_t *bad, const adam_scalars_t *by_batch,
                             const int64_t *batch_ctr) {
    (void)ctx;
    if ((by_batch != NULL) != (batch_ctr != NULL))
        tmr_fatal("gpu_adam_update_guarded: by_batch and batch_ctr go together");
    adam_launch(opt, lay, params, grads, m, v, bad, by_batch, batch_ctr);
}
