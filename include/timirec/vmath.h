/* Vectorisable float exp, sigmoid and tanh (host+device). libm's expf/tanhf are calls the
 * compiler cannot vectorise without -ffast-math, and the GRU cell needs three of them per
 * element (13% of the finetune step's CPU profile through libm): these are branch-free
 * straight-line float code that GCC turns into AVX-512 lanes: exp and tanh within 2 ulp of the
 * exact result, sigmoid within 3 (tests/test_vmath.c).
 *
 * exp: Cephes' expf. x = n ln2 + r with n = round(x / ln2) (the 1.5 * 2^23 rounding trick, whose
 * float bits also hold n), |r| <= ln2/2, e^r by a degree-7 polynomial, 2^n built in the exponent
 * bits. Below x = -87.34 the result is the smallest normal (~1.2e-38) instead of a subnormal
 * or 0; above x = 88.376 it is +inf (libm overflows only at 88.723: n = 128 has no exponent
 * bits). NaN stays NaN. No undefined behaviour for any input. */
#ifndef TIMIREC_VMATH_H
#define TIMIREC_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "timirec/common.h"

TMR_HD float vm_expf(float x) {
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    const float hi = 88.3762626647949f;
    const int over = x > hi;
    x = x < -87.33654f ? -87.33654f : x;
    x = x > hi ? hi : x;
    float kf = x * 1.44269504088896341f + magic;
    float n = kf - magic;
    float r = x - n * 0.693359375f;   /* ln2 in two parts: n * hi is exact */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    uint32_t kbits, sbits;
    memcpy(&kbits, &kf, sizeof kbits);
    sbits = (kbits - 0x4B400000u + 127u) << 23; /* (n + 127) << 23 = 2^n, n in -126..127 */
    float scale;
    memcpy(&scale, &sbits, sizeof scale);
    return over ? (float)INFINITY : p * scale;
}

/* 1 / (1 + e^-x): 0 and 1 at the ends (e^-x = inf gives 0), no cancellation. */
TMR_HD float vm_sigmoidf(float x) { return 1.0f / (1.0f + vm_expf(-x)); }

/* The same formula in double with libm's exp (the gradient checks' precision). */
TMR_HD double vm_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* Cephes' tanhf: an odd polynomial for |x| < 0.625 (where 1 - 2/(e^2x + 1) would cancel),
 * 1 - 2 / (e^2|x| + 1) with the sign restored above. Both are computed and one is selected
 * (no branch, so it vectorises). */
TMR_HD float vm_tanhf(float x) {
    float ax = x < 0 ? -x : x;
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                    1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float big = 1.0f - 2.0f / (vm_expf(2.0f * ax) + 1.0f);
    big = x < 0 ? -big : big;
    return ax < 0.625f ? small : big;
}

#endif
