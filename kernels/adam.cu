/* Adam over the flat parameter buffer (model.h adam_step): one thread per element, the element
 * update of math_hd.h (the CPU runs the same function), weight decay per tensor from the
 * layout. */
#include <string.h>

#include "common.cuh"
#include "timirec/math_hd.h"

/* Tensor boundaries and decay factors, passed by value (a few hundred bytes). */
typedef struct {
    int n;
    int64_t end[MODEL_MAX_TENSORS];  /* offset + size of tensor t */
    float decay[MODEL_MAX_TENSORS];  /* l2 for tensors with weight decay, else 0 */
} adam_table_t;

__global__ void adam_kernel(int64_t n, adam_table_t table, adam_scalars_t s,
                            float *__restrict__ params, const float *__restrict__ grads,
                            float *__restrict__ m, float *__restrict__ v) {
    THREAD_INDEX(i, n);
    int t = 0;
    while (t < table.n - 1 && i >= table.end[t]) t++;
    params[i] = tmr_adam_elem(&s, table.decay[t], grads[i], params[i], &m[i], &v[i]);
}

/* The step's scalars and the per-tensor table (opt->step advances). */
static void adam_prepare(adam_t *opt, const model_layout_t *lay, adam_scalars_t *s,
                         adam_table_t *table) {
    opt->step++;
    *s = tmr_adam_scalars(opt->lr, opt->beta1, opt->beta2, opt->eps, opt->l2, opt->step);
    memset(table, 0, sizeof *table);
    table->n = lay->n_tensors;
    for (int t = 0; t < lay->n_tensors; t++) {
        const param_t *p = &lay->t[t];
        if (p->offset != (t ? table->end[t - 1] : 0))
            tmr_fatal("gpu_adam_update: tensor %s is not contiguous with the one before", p->name);
        table->end[t] = p->offset + p->size;
        table->decay[t] = p->decay ? s->l2 : 0.0f;
    }
    if (lay->n_tensors < 1 || table->end[lay->n_tensors - 1] != lay->total)
        tmr_fatal("gpu_adam_update: the layout's tensors do not cover its %lld elements",
                  (long long)lay->total);
}

extern "C" void gpu_adam_update(gpu_ctx_t *ctx, adam_t *opt, const model_layout_t *lay,
                                float *params, const float *grads, float *m, float *v) {
    (void)ctx;
    adam_scalars_t s;
    adam_table_t table;
    adam_prepare(opt, lay, &s, &table);
    LAUNCH(adam_kernel, lay->total, table, s, params, grads, m, v);
}

/* The same, skipped on the device once *bad >= 0 (the epoch driver's first non-finite loss:
 * that step and every later one leave the parameters and moments as they were); the scalars
 * from by_batch[*batch_ctr] when given (graph replays freeze the arguments). */
__global__ void adam_guarded_kernel(int64_t n, adam_table_t table, adam_scalars_t s,
                                    const int64_t *__restrict__ bad,
                                    const adam_scalars_t *__restrict__ by_batch,
                                    const int64_t *__restrict__ batch_ctr,
                                    float *__restrict__ params, const float *__restrict__ grads,
                                    float *__restrict__ m, float *__restrict__ v) {
    THREAD_INDEX(i, n);
    if (*bad >= 0) return;
    int t = 0;
    while (t < table.n - 1 && i >= table.end[t]) t++;
    const adam_scalars_t *sc = by_batch ? &by_batch[*batch_ctr] : &s;
    params[i] = tmr_adam_elem(sc, table.decay[t], grads[i], params[i], &m[i], &v[i]);
}

void gpu_adam_update_guarded(gpu_ctx_t *ctx, adam_t *opt, const model_layout_t *lay,
                             float *params, const float *grads, float *m, float *v,
                             const int64_t *bad, const adam_scalars_t *by_batch,
                             const int64_t *batch_ctr) {
    (void)ctx;
    adam_scalars_t s;
    adam_table_t table;
    adam_prepare(opt, lay, &s, &table);
    LAUNCH(adam_guarded_kernel, lay->total, table, s, bad, by_batch, batch_ctr, params, grads, m,
           v);
}
