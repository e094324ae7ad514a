/* The test helpers themselves (tests/test_util.h): tu_max_err keeps a NaN once seen (the
 * idiom `if (!(e <= worst)) worst = e;` it replaces loses it to the next finite error), so a
 * check `worst <= tol` fails; tu_finish fails a test that made no check. */

#include "test_util.h"

static int mismatches = 0;

/* Run tu_max_err over seq from 0; want: the result (NaN: any NaN), want_at: the index of the
 * last call that returned 1 (-1: none). */
static void expect(const char *what, const double *seq, int n, double want, int want_at) {
    double worst = 0;
    int at = -1;
    for (int i = 0; i < n; i++)
        if (tu_max_err(&worst, seq[i])) at = i;
    const int ok = (isnan(want) ? isnan(worst) : worst == want) && at == want_at;
    printf("  %-26s -> %g (worst at %d)%s\n", what, worst, at, ok ? "" : "  MISMATCH");
    if (!ok) {
        fprintf(stderr, "FAIL %s: got %g at %d, want %g at %d\n", what, worst, at, want, want_at);
        mismatches++;
    }
    CHECK(ok, "%s", what);
    /* What the replaced idiom makes of the same sequence, for the record. */
    double old = 0;
    for (int i = 0; i < n; i++)
        if (!(seq[i] <= old)) old = seq[i];
    printf("  %-26s    (the old idiom: %g)\n", "", old);
}

/* tu_finish in a child that made `checks` passing checks: its exit status. */
static int finish_child(void *checks_p) {
    const int checks = *(const int *)checks_p;
    tu_checks = 0, tu_failures = 0;
    for (int i = 0; i < checks; i++) CHECK(1, "never");
    return tu_finish(checks ? "child with checks" : "child without checks");
}
static int finish_status(int checks) {
    const int status = tu_run_child(finish_child, &checks, NULL, 0);
    if (status < 0) {
        perror("fork");
        exit(1);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int main(void) {
    const double s1[] = {0.1, NAN, 0.2}, s2[] = {NAN, 0}, s3[] = {INFINITY, 1}, s4[] = {1, 2, 3},
                 s5[] = {3, 2, 1}, s6[] = {0.5, -INFINITY, 0.25}, s7[] = {0, 0},
                 s8[] = {1, NAN, INFINITY}, s9[] = {INFINITY, NAN, 1};
    expect("{0.1, NaN, 0.2}", s1, 3, NAN, 1);
    expect("{NaN, 0}", s2, 2, NAN, 0);
    expect("{inf, 1}", s3, 2, INFINITY, 0);
    expect("{1, 2, 3}", s4, 3, 3, 2);
    expect("{3, 2, 1}", s5, 3, 3, 0);
    expect("{0.5, -inf, 0.25}", s6, 3, INFINITY, 1);
    expect("{0, 0} (nothing above 0)", s7, 2, 0, -1);
    expect("{1, NaN, inf}", s8, 3, NAN, 1);
    expect("{inf, NaN, 1}", s9, 3, NAN, 1);
    /* A check written `worst <= tol` fails on the NaN result. */
    double worst = 0;
    tu_max_err(&worst, 1e-9), tu_max_err(&worst, NAN), tu_max_err(&worst, 1e-9);
    CHECK(!(worst <= 1e-6), "a NaN error passed worst <= tol (worst %g)", worst);
    if (worst <= 1e-6) mismatches++;

    /* tu_finish: no check at all fails; passing checks pass. */
    const int none = finish_status(0), some = finish_status(3);
    printf("  tu_finish after 0 checks: exit %d; after 3 passing checks: exit %d\n", none, some);
    CHECK(none != 0 && none != TU_SKIP && none != -1,
          "tu_finish passed a test with no check (exit %d)", none);
    CHECK(some == 0, "tu_finish failed a test whose checks passed (exit %d)", some);
    if (!(none != 0 && none != TU_SKIP && none != -1) || some != 0) mismatches++;

    /* Non-zero on any mismatch even if the checks' own bookkeeping were broken. */
    if (mismatches) {
        fprintf(stderr, "test_util_selftest: %d mismatches\n", mismatches);
        tu_finish("test_util_selftest");
        return 1;
    }
    return tu_finish("test_util_selftest");
}
