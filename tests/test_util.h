/* Tiny test helpers: every check counts a failure; main returns tu_finish(). Exit code 77
 * means SKIP (the runner reports it, with the reason the test printed). */
#ifndef TIMIREC_TEST_UTIL_H
#define TIMIREC_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
/* Runs fn(arg) in a child process, its stderr captured into err (NUL-terminated, errlen bytes
 * at most; NULL: left alone); the child exits with fn's return value. Returns the child's wait
 * status (0: it exited with 0), -1 if it could not be run. For tests of what must stop a run. */
static inline int tu_run_child(int (*fn)(void *), void *arg, char *err, size_t errlen) {
    int fds[2] = {-1, -1};
    if (err && errlen && pipe(fds) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (err && errlen) {
            close(fds[0]);
            dup2(fds[1], 2);
        }
        _exit(fn(arg));
    }
    if (err && errlen) {
        close(fds[1]);
        size_t len = 0;
        ssize_t got;
        while (len + 1 < errlen && (got = read(fds[0], err + len, errlen - 1 - len)) > 0)
            len += (size_t)got;
        err[len] = '\0';
        close(fds[0]);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return status;
}

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
