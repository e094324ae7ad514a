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

extern "C" void gpu_adam_update(gpu_ctx_t *ctx, adam_t *opt, const model_layout_t *lay,
                                float *params, const float *grads, float *m, float *v) {
    (void)ctx;
    opt->step++;
    const adam_scalars_t s =
        tmr_adam_scalars(opt->lr, opt->beta1, opt->beta2, opt->eps, opt->l2, opt->step);
    adam_table_t table;
    memset(&table, 0, sizeof table);
    table.n = lay->n_tensors;
    for (int t = 0; t < lay->n_tensors; t++) {
        const param_t *p = &lay->t[t];
        if (p->offset != (t ? table.end[t - 1] : 0))
            tmr_fatal("gpu_adam_update: tensor %s is not contiguous with the one before", p->name);
        table.end[t] = p->offset + p->size;
        table.decay[t] = p->decay ? s.l2 : 0.0f;
    }
    if (lay->n_tensors < 1 || table.end[lay->n_tensors - 1] != lay->total)
        tmr_fatal("gpu_adam_update: the layout's tensors do not cover its %lld elements",
                  (long long)lay->total);
    LAUNCH(adam_kernel, lay->total, table, s, params, grads, m, v);
}
