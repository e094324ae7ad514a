/* Adam over the flat parameter buffer (model.h adam_step): a grid-stride loop over groups of
 * four elements with 16-byte loads and stores of params, grads, m and v (the update is
 * bandwidth-bound: 28 bytes moved per element), the element update of math_hd.h (the CPU runs
 * the same function), weight decay per tensor from the layout. The last n % 4 elements are
 * done one by one. LazyAdam (model.h adam_step_lazy): the same kernel skips the item tables
 * (whole groups by a jump, so their elements are not even read), then lazy_mark_kernel and
 * lazy_update_kernel update the rows the step touched, each with its own step count. */
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
    uint8_t skip[MODEL_MAX_TENSORS];    /* 1: not here (LazyAdam's tables: gpu_adam_update_lazy) */
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
        if (table.skip[t] && i + 4 <= table.end[t]) {
            /* the group lies in a skipped table: on to this thread's first group that does not
             * (the group holding the table's end, or the next one) */
            const int64_t past = table.end[t] / 4;
            q += ((past - q + stride - 1) / stride - 1) * stride;
            continue;
        }
        float4 p = p4[q], mm = m4[q], vv = v4[q];
        const float4 g = g4[q];
#define ADAM_ELEM(c)                                                                     \
    if (!table.skip[t])                                                                  \
        p.c = tmr_adam_elem(&s, table.decays[t] ? s.l2 : 0.0f, g.c, p.c, &mm.c, &vv.c)
        ADAM_ELEM(x);
        while (i + 1 >= table.end[t]) t++; /* a tensor may end inside the group */
        ADAM_ELEM(y);
        while (i + 2 >= table.end[t]) t++;
        ADAM_ELEM(z);
        while (i + 3 >= table.end[t]) t++;
        ADAM_ELEM(w);
#undef ADAM_ELEM
        p4[q] = p;
        m4[q] = mm;
        v4[q] = vv;
    }
    for (int64_t i = 4 * n4 + first; i < n; i += stride) {
        const int t = adam_tensor_of(&table, i);
        if (table.skip[t]) continue;
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

/* ---- LazyAdam's rows (model.h adam_step_lazy) ---- */

/* Where a step's ids are and what their tables are; by value. */
typedef struct {
    const int32_t *hist, *cand, *ids;  /* (BL), (BC): extractor's table; (T): predictor's */
    int64_t BL, BC, T;
    int64_t rows0;                     /* the predictor's rows follow these in row_step */
    int64_t off0, off1;                /* the two tables in the flat buffer */
    float decay0, decay1;              /* l2 or 0 */
    int d;
} lazy_args_t;

/* Occurrence i of the step's ids (hist, then cand, then ids) as a row of row_step. */
__device__ __forceinline__ int64_t lazy_row(const lazy_args_t &a, int64_t i) {
    if (i < a.BL) return a.hist[i];
    if (i < a.BL + a.BC) return a.cand[i - a.BL];
    return a.rows0 + a.ids[i - a.BL - a.BC];
}

__global__ void lazy_mark_kernel(int64_t n, lazy_args_t a, const int64_t *__restrict__ bad,
                                 int32_t *__restrict__ mark) {
    THREAD_INDEX(i, n);
    if (bad && *bad >= 0) return;
    mark[lazy_row(a, i)] = 1; /* the same value from every occurrence */
}

/* The thread that takes a row's mark (any one of its occurrences) updates the row: its count
 * moves on, the scalars of that count, tmr_adam_elem over its d elements. */
__global__ void lazy_update_kernel(int64_t n, lazy_args_t a, adam_scalars_t s,
                                   const adam_count_t *__restrict__ by_count,
                                   const int64_t *__restrict__ bad, int32_t *__restrict__ mark,
                                   int64_t *__restrict__ row_step, float *__restrict__ params,
                                   const float *__restrict__ grads, float *__restrict__ m,
                                   float *__restrict__ v) {
    THREAD_INDEX(i, n);
    if (bad && *bad >= 0) return;
    const int64_t r = lazy_row(a, i);
    if (atomicExch(&mark[r], 0) != 1) return;
    const int64_t t = ++row_step[r];
    s.step_size = by_count[t - 1].step_size;
    s.bc2_sqrt = by_count[t - 1].bc2_sqrt;
    const int second = r >= a.rows0;
    const float decay = second ? a.decay1 : a.decay0;
    const int64_t off = (second ? a.off1 + (r - a.rows0) * a.d : a.off0 + r * a.d);
    for (int j = 0; j < a.d; j++)
        params[off + j] = tmr_adam_elem(&s, decay, grads[off + j], params[off + j], &m[off + j],
                                        &v[off + j]);
}

extern "C" void gpu_lazy_adam_init(gpu_lazy_adam_t *z, const model_layout_t *lay) {
    memset(z, 0, sizeof *z);
    int ids[2];
    adam_lazy_tensors(lay, ids);
    z->n_rows = adam_lazy_rows(lay);
    z->rows0 = lay->t[ids[0]].rows;
    z->row_step = (int64_t *)gpu_malloc((size_t)z->n_rows * sizeof(int64_t));
    z->mark = (int32_t *)gpu_malloc((size_t)z->n_rows * sizeof(int32_t));
    gpu_zero(z->row_step, (size_t)z->n_rows * sizeof(int64_t));
    gpu_zero(z->mark, (size_t)z->n_rows * sizeof(int32_t));
}

extern "C" void gpu_lazy_adam_free(gpu_lazy_adam_t *z) {
    gpu_free(z->row_step);
    gpu_free(z->mark);
    gpu_free(z->by_count);
    free(z->h_by_count);
    memset(z, 0, sizeof *z);
}

extern "C" void gpu_lazy_adam_reserve(gpu_lazy_adam_t *z, const adam_t *opt, int64_t max_count) {
    if (max_count <= z->cap) return;
    int64_t cap = z->cap > 0 ? z->cap : 1024;
    while (cap < max_count) cap *= 2;
    z->h_by_count = (adam_count_t *)tmr_realloc(z->h_by_count, tmr_mul_size((size_t)cap, sizeof(adam_count_t)));
    for (int64_t c = z->cap + 1; c <= cap; c++) {
        const adam_scalars_t s = tmr_adam_scalars(opt->lr, opt->beta1, opt->beta2, opt->eps,
                                                  opt->l2, c);
        z->h_by_count[c - 1].step_size = s.step_size;
        z->h_by_count[c - 1].bc2_sqrt = s.bc2_sqrt;
    }
    gpu_free(z->by_count);
    z->by_count = (adam_count_t *)gpu_malloc((size_t)cap * sizeof(adam_count_t));
    gpu_to_device(z->by_count, z->h_by_count, (size_t)cap * sizeof(adam_count_t));
    z->cap = cap;
}

/* The touched rows' update after the dense one (stream order). */
static void lazy_launch(const adam_t *opt, const model_layout_t *lay, const gpu_lazy_batch_t *lb,
                        float *params, const float *grads, float *m, float *v,
                        const int64_t *bad) {
    gpu_lazy_adam_t *z = lb->z;
    if (opt->step > z->cap) /* the caller reserves before the step: no allocation in it */
        tmr_fatal("gpu_adam_update_lazy: counts up to %lld reserved, step %lld",
                  (long long)z->cap, (long long)opt->step);
    int ids[2] = {-1, -1};
    const int n_lazy = adam_lazy_tensors(lay, ids);
    const adam_scalars_t s = tmr_adam_scalars(opt->lr, opt->beta1, opt->beta2, opt->eps, opt->l2, 1);
    lazy_args_t a;
    memset(&a, 0, sizeof a);
    a.hist = lb->hist, a.cand = lb->cand, a.ids = lb->ids;
    a.BL = lb->BL, a.BC = lb->BC, a.T = n_lazy > 1 ? lb->T : 0;
    a.rows0 = z->rows0;
    a.off0 = lay->t[ids[0]].offset;
    a.decay0 = lay->t[ids[0]].decay ? s.l2 : 0.0f;
    if (n_lazy > 1) {
        a.off1 = lay->t[ids[1]].offset;
        a.decay1 = lay->t[ids[1]].decay ? s.l2 : 0.0f;
    }
    a.d = lay->cfg.emb_size;
    const int64_t n = a.BL + a.BC + a.T;
    if (n < 1) return;
    LAUNCH(lazy_mark_kernel, n, a, bad, z->mark);
    LAUNCH(lazy_update_kernel, n, a, s, z->by_count, bad, z->mark, z->row_step, params, grads, m,
           v);
}

static void adam_launch(adam_t *opt, const model_layout_t *lay, float *params,
                        const float *grads, float *m, float *v, const int64_t *bad,
                        const adam_scalars_t *by_batch, const int64_t *batch_ctr,
                        const gpu_lazy_batch_t *lb) {
    adam_scalars_t s;
    memset(&s, 0, sizeof s);
    if (!by_batch) { /* this step's scalars; with by_batch the driver advances opt->step */
        opt->step++;
        s = tmr_adam_scalars(opt->lr, opt->beta1, opt->beta2, opt->eps, opt->l2, opt->step);
    }
    adam_table_t table;
    adam_table(lay, &table);
    if (lb) {
        int ids[2];
        for (int k = 0, n = adam_lazy_tensors(lay, ids); k < n; k++) table.skip[ids[k]] = 1;
    }
    const unsigned blocks = adam_blocks(lay->total, params, grads, m, v);
    if (blocks >= 1)
        KLAUNCH(adam_kernel, blocks, ADAM_THREADS, 0, lay->total, table, s, bad, by_batch,
                batch_ctr, params, grads, m, v);
    /* opt->step is this step's (with by_batch the driver advanced it before the launch) */
    if (lb) lazy_launch(opt, lay, lb, params, grads, m, v, bad);
}

extern "C" void gpu_adam_update(gpu_ctx_t *ctx, adam_t *opt, const model_layout_t *lay,
                                float *params, const float *grads, float *m, float *v) {
    (void)ctx;
    adam_launch(opt, lay, params, grads, m, v, NULL, NULL, NULL, NULL);
}

extern "C" void gpu_adam_update_lazy(gpu_ctx_t *ctx, adam_t *opt, const model_layout_t *lay,
                                     const gpu_lazy_batch_t *lb, float *params,
                                     const float *grads, float *m, float *v) {
    (void)ctx;
    adam_launch(opt, lay, params, grads, m, v, NULL, NULL, NULL, lb);
}

void gpu_adam_update_guarded(gpu_ctx_t *ctx, adam_t *opt, const model_layout_t *lay,
                             float *params, const float *grads, float *m, float *v,
                             const int64_t *bad, const adam_scalars_t *by_batch,
                             const int64_t *batch_ctr, const gpu_lazy_batch_t *lb) {
    (void)ctx;
    if ((by_batch != NULL) != (batch_ctr != NULL))
        tmr_fatal("gpu_adam_update_guarded: by_batch and batch_ctr go together");
    adam_launch(opt, lay, params, grads, m, v, bad, by_batch, batch_ctr, lb);
}
