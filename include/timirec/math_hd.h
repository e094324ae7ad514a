/* Per-element math shared by the CPU reference and the CUDA kernels (TMR_HD: host+device), so
 * both sides compute the very same formula: the stable sigmoid pieces of the ranking loss and
 * one element of Adam. Everything here is inline; nothing depends on a precision macro.
 *
 * Not here yet: the GRU gate functions (include/timirec/cpu/predictor_decl.h, being rewritten
 * for CPU vectorisation; kernels/gru.cu mirrors them with a TODO to share at merge time), the
 * masked softmax and LayerNorm row loops (written inline in src/cpu/extractor.inc with simd
 * reductions; the kernels restate them one thread per row, see kernels/attention.cu and
 * kernels/layernorm_ffn.cu). */
#ifndef TIMIREC_MATH_HD_H
#define TIMIREC_MATH_HD_H

#include <math.h>
#include <stdint.h>

#include "timirec/common.h"

/* log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)) and sigmoid(x), finite for any finite x
 * (the ranking loss, docs/MODEL.md "Ranking loss", evaluates them in double). */
TMR_HD double tmr_log_sigmoid(double x) { return fmin(x, 0.0) - log1p(exp(-fabs(x))); }
TMR_HD double tmr_sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* Adam's per-step scalars (model.h adam_step): formed in double as PyTorch does, then used by
 * the float element update as floats. */
typedef struct {
    float step_size;   /* lr / (1 - beta1^t) */
    float bc2_sqrt;    /* sqrt(1 - beta2^t) */
    float b1, one_minus_b1, b2, one_minus_b2, eps, l2;
} adam_scalars_t;

/* Scalars for step t (counting from 1). Host only. */
static inline adam_scalars_t tmr_adam_scalars(double lr, double beta1, double beta2, double eps,
                                              double l2, int64_t t) {
    adam_scalars_t s;
    double bc1 = 1.0 - pow(beta1, (double)t);
    double bc2 = 1.0 - pow(beta2, (double)t);
    s.step_size = (float)(lr / bc1);
    s.bc2_sqrt = (float)sqrt(bc2);
    s.b1 = (float)beta1;
    s.one_minus_b1 = (float)(1.0 - beta1);
    s.b2 = (float)beta2;
    s.one_minus_b2 = (float)(1.0 - beta2);
    s.eps = (float)eps;
    s.l2 = (float)l2;
    return s;
}

/* One element: g = grad + decay * x (decay = l2 for tensors with weight decay, else 0);
 * m, v updated in place as torch 1.13's mul_(beta).add_(...); returns the new x. */
TMR_HD float tmr_adam_elem(const adam_scalars_t *s, float decay, float grad, float x, float *m,
                           float *v) {
    float g = grad + decay * x;
    float mt = *m * s->b1 + s->one_minus_b1 * g;
    float vt = *v * s->b2 + s->one_minus_b2 * g * g;
    *m = mt;
    *v = vt;
    float denom = sqrtf(vt) / s->bc2_sqrt + s->eps;
    return x + (-s->step_size) * mt / denom;
}

#endif
