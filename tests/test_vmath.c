/* The vectorisable float exp / sigmoid / tanh of timirec/vmath.h against double libm: at most 2
 * ulp (3 for sigmoid: a division after the exp) over random inputs of every scale and the edge cases (0, the
 * tanh switch at |x| = 0.625, the exp clamps, +-inf, NaN). */
#include "test_util.h"
#include "timirec/rng.h"
#include "timirec/vmath.h"

#include <float.h>
#include <math.h>

/* |got - want| in units of the float spacing at want (ulp of the correctly rounded float). */
static double ulp_err(float got, double want) {
    float w = (float)want;
    double ulp = fabs((double)nextafterf(w, INFINITY) - (double)w);
    if (ulp == 0 || !isfinite(ulp)) ulp = FLT_MIN;
    if (fabs(want) < FLT_MIN) ulp = (double)FLT_MIN * FLT_EPSILON; /* subnormal results */
    return fabs((double)got - want) / ulp;
}

static double worst_exp, worst_sig, worst_tanh;
static int n_nan; /* NaN errors (a NaN result for a finite exact value) */
static float at_exp, at_sig, at_tanh;

static void check_one(float x) {
    double e = ulp_err(vm_expf(x), exp((double)x));
    /* exp's documented ranges: below -87.34 the smallest normal, above 88.376 +inf. */
    if (x >= -87.33f && x <= 88.37f && tu_max_err(&worst_exp, e)) at_exp = x;
    double s = ulp_err(vm_sigmoidf(x), 1.0 / (1.0 + exp(-(double)x)));
    if (x >= -87.0f && tu_max_err(&worst_sig, s)) at_sig = x;
    double t = ulp_err(vm_tanhf(x), tanh((double)x));
    if (tu_max_err(&worst_tanh, t)) at_tanh = x;
    n_nan += (x >= -87.33f && x <= 88.37f && isnan(e)) + (x >= -87.0f && isnan(s)) + isnan(t);
}

int main(void) {
    for (uint64_t i = 0; i < 2000000; i++) {
        /* Magnitudes from 1e-6 to 100, both signs. */
        double u = rng_uniform01(rng_u32(7, RNG_TEST, 0, i, 0));
        double mag = pow(10.0, -6.0 + 8.0 * u);
        float x = (float)(rng_u32(7, RNG_TEST, 0, i, 1) & 1 ? mag : -mag);
        check_one(x);
    }
    const float edges[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 0.62499994f, 0.625f, -0.625f, 0.6250001f,
                           1.0f, -1.0f, 9.0f, -9.0f, 20.0f, -20.0f, 87.3f, -87.3f, 88.37f};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) check_one(edges[i]);
    printf("max ulp: exp %.2f (x = %g), sigmoid %.2f (x = %g), tanh %.2f (x = %g)\n", worst_exp,
           at_exp, worst_sig, at_sig, worst_tanh, at_tanh);
    CHECK(n_nan == 0, "%d NaN results for finite inputs", n_nan);
    CHECK(worst_exp <= 2.0, "exp error %.2f ulp at %g", worst_exp, at_exp);
    CHECK(worst_sig <= 3.0, "sigmoid error %.2f ulp at %g", worst_sig, at_sig);
    CHECK(worst_tanh <= 2.0, "tanh error %.2f ulp at %g", worst_tanh, at_tanh);

    /* Limits and specials. */
    CHECK(vm_expf(INFINITY) == INFINITY, "exp(inf) = %g", vm_expf(INFINITY));
    CHECK(vm_expf(100.0f) == INFINITY, "exp(100) = %g", vm_expf(100.0f));
    CHECK(vm_expf(-INFINITY) >= 0 && vm_expf(-INFINITY) <= 2 * FLT_MIN, "exp(-inf) = %g",
          vm_expf(-INFINITY));
    CHECK(isnan(vm_expf(NAN)), "exp(NaN) not NaN");
    CHECK(vm_sigmoidf(INFINITY) == 1.0f && vm_sigmoidf(-INFINITY) == 0.0f, "sigmoid(+-inf)");
    CHECK(vm_sigmoidf(-100.0f) == 0.0f && vm_sigmoidf(100.0f) == 1.0f, "sigmoid(+-100)");
    CHECK(isnan(vm_sigmoidf(NAN)), "sigmoid(NaN) not NaN");
    CHECK(vm_tanhf(INFINITY) == 1.0f && vm_tanhf(-INFINITY) == -1.0f, "tanh(+-inf)");
    CHECK(isnan(vm_tanhf(NAN)), "tanh(NaN) not NaN");
    CHECK(vm_tanhf(-0.3f) == -vm_tanhf(0.3f) && vm_tanhf(-3.0f) == -vm_tanhf(3.0f), "tanh is odd");
    return tu_finish("test_vmath");
}
