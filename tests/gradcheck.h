/* Gradient checks against central finite differences, in double precision.
 *
 * The caller provides loss(ctx, params) -> double over a flat double buffer. For one tensor
 * (a range of the flat buffer), gc_check compares the analytic gradient with
 *   (loss(theta + h e_i) - loss(theta - h e_i)) / (2 h)
 * on every element (or an evenly spread sample of max_samples), prints one line
 *   <name>: max rel err 3.1e-09 over 64 elements
 * and returns the number of elements where
 *   !(|analytic - numeric| <= rtol * max(|analytic|, |numeric|) + atol)
 * (NaN fails). Kinks (ReLU, max) can make a finite difference straddle a non-differentiable
 * point; random inputs make that rare, and atol absorbs round-off. */
#ifndef TIMIREC_TEST_GRADCHECK_H
#define TIMIREC_TEST_GRADCHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "test_util.h"

typedef double (*gc_loss_fn)(void *ctx, const double *params);

typedef struct {
    double h;      /* step (default 1e-6) */
    double rtol;   /* default 1e-5 */
    double atol;   /* default 1e-9 */
    int max_samples; /* 0: every element */
} gc_opts_t;

static inline gc_opts_t gc_default_opts(void) {
    gc_opts_t o = {1e-6, 1e-5, 1e-9, 0};
    return o;
}

static inline int gc_check(const char *name, gc_loss_fn loss, void *ctx, double *params,
                           int64_t offset, int64_t size, const double *analytic,
                           const gc_opts_t *o) {
    int64_t n = size, stride = 1;
    if (o->max_samples > 0 && size > o->max_samples) {
        n = o->max_samples;
        stride = size / o->max_samples;
    }
    int bad = 0;
    double worst = 0, max_abs = 0;
    for (int64_t s = 0; s < n; s++) {
        int64_t i = offset + s * stride + (stride > 1 ? (s * 7919) % stride : 0);
        double keep = params[i];
        params[i] = keep + o->h;
        double up = loss(ctx, params);
        params[i] = keep - o->h;
        double down = loss(ctx, params);
        params[i] = keep;
        double numeric = (up - down) / (2 * o->h);
        double a = analytic[i];
        double diff = fabs(a - numeric), scale = fmax(fabs(a), fabs(numeric));
        if (!(diff <= o->rtol * scale + o->atol)) {
            if (bad < 3)
                fprintf(stderr, "  %s[%lld]: analytic %.10g numeric %.10g\n", name,
                        (long long)(i - offset), a, numeric);
            bad++;
        }
        double rel = scale > 0 ? diff / scale : diff;
        tu_max_err(&worst, rel);
        tu_max_err(&max_abs, scale);
    }
    printf("  %-58s max rel err %.2e over %lld elements (|grad| up to %.2e)%s\n", name, worst,
           (long long)n, max_abs, bad ? "  FAIL" : "");
    return bad;
}

#endif
