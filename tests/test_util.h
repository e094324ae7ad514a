/* Tiny test helpers: every check counts a failure; main returns tu_finish(). Exit code 77
 * means SKIP (the runner reports it, with the reason the test printed). */
#ifndef TIMIREC_TEST_UTIL_H
#define TIMIREC_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tu_failures = 0;
static int tu_checks = 0;

#define TU_SKIP 77

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        tu_checks++;                                                       \
        if (!(cond)) {                                                     \
            tu_failures++;                                                 \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

/* NaN-safe closeness: false for NaN/Inf on either side. */
static inline int tu_close(double got, double want, double tol) {
    if (!isfinite(got) || !isfinite(want)) return 0;
    double diff = fabs(got - want);
    return diff <= tol;
}

#define CHECK_CLOSE(got, want, tol) \
    CHECK(tu_close((got), (want), (tol)), "got %.10g want %.10g (tol %g)", (double)(got), (double)(want), (double)(tol))

/* Running maximum of errors that cannot lose a NaN: *worst becomes max(*worst, err), except
 * that a NaN err makes *worst NaN for good (a later finite err does not replace it, as it
 * would with `if (!(err <= worst)) worst = err;`), and an infinite err of either sign counts
 * as +inf. Start *worst at 0 (or -INFINITY). A check written `worst <= tol` then fails on
 * NaN. Returns 1 when err became the new worst (for a site that also keeps its label or
 * index: `if (tu_max_err(&worst, err)) worst_at = i;`), else 0. */
static inline int tu_max_err(double *worst, double err) {
    if (isnan(*worst)) return 0;
    if (isnan(err)) {
        *worst = NAN;
        return 1;
    }
    if (isinf(err)) err = INFINITY;
    if (err > *worst) {
        *worst = err;
        return 1;
    }
    return 0;
}

/* 1 (failure, with a message) also when the test made no check at all: a test whose checks
 * were all skipped by a broken loop or an early return must not pass. */
static inline int tu_finish(const char *name) {
    if (tu_checks == 0) {
        fprintf(stderr, "%s: FAIL: no check ran\n", name);
        return 1;
    }
    if (tu_failures) {
        fprintf(stderr, "%s: %d of %d checks failed\n", name, tu_failures, tu_checks);
        return 1;
    }
    printf("%s: %d checks ok\n", name, tu_checks);
    return 0;
}

#endif
